output "namespace" {
  description = "Namespace of Argo CD and the bootstrap Application."
  value       = helm_release.argocd.namespace
}

output "argocd_chart_version" {
  description = "Installed argo-cd chart version."
  value       = helm_release.argocd.version
}

output "bootstrap_application" {
  description = "Name of the bootstrap (app of apps) Application: `kubectl -n <namespace> get application <name>`."
  value       = local.bootstrap_application
}

output "bootstrap_source" {
  description = "Git source the bootstrap Application syncs: repo URL, revision and path."
  value = {
    repo_url        = var.repo_url
    target_revision = var.target_revision
    path            = var.bootstrap_path
  }
}

output "environments" {
  description = "BlockSight environments assigned to this cluster (labels of the in-cluster cluster Secret)."
  value       = sort(tolist(var.environments))
}

output "cluster_secret_labels" {
  description = "Labels of the Argo CD cluster Secret for the in-cluster destination: `kubectl -n <namespace> get secret in-cluster --show-labels`."
  value       = kubernetes_secret_v1.in_cluster.metadata[0].labels
}
