resource "helm_release" "argocd" {
  name             = "argocd"
  namespace        = var.namespace
  create_namespace = true

  repository = local.argocd_repository
  chart      = "argo-cd"
  version    = var.argocd_chart_version

  values = [yamlencode(local.argocd_values)]

  # Fail the apply (and roll back) instead of leaving a half-installed Argo CD.
  atomic  = true
  wait    = true
  timeout = 900
}

# The labels that assign environments to this cluster (see local.in_cluster_secret).
resource "kubernetes_secret_v1" "in_cluster" {
  metadata {
    name      = local.in_cluster_secret.name
    namespace = var.namespace
    labels    = local.in_cluster_secret.labels
  }

  data = local.in_cluster_secret.data

  # The namespace comes with the Argo CD release.
  depends_on = [helm_release.argocd]
}

# The app of apps. A second chart rather than kubernetes_manifest: kubernetes_manifest needs the
# Application CRD at plan time, which does not exist before the release above is installed.
resource "helm_release" "bootstrap" {
  name      = "blocksight-bootstrap"
  namespace = var.namespace

  repository = local.argocd_repository
  chart      = "argocd-apps"
  version    = var.argocd_apps_chart_version

  values = [yamlencode({
    applications = {
      (local.bootstrap_application) = {
        namespace = var.namespace
        project   = "default"
        # No resources-finalizer: deleting this Application must not cascade into BlockSight
        # and its chain volumes.
        source = {
          repoURL        = var.repo_url
          targetRevision = var.target_revision
          path           = var.bootstrap_path
        }
        destination = {
          server    = "https://kubernetes.default.svc"
          namespace = var.namespace
        }
        syncPolicy = {
          automated = {
            prune    = var.bootstrap_auto_prune
            selfHeal = true
          }
        }
      }
    }
  })]

  wait    = true
  timeout = 300

  # The ApplicationSet's first generation then already sees this cluster's environments.
  depends_on = [helm_release.argocd, kubernetes_secret_v1.in_cluster]
}
