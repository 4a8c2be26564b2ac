# Pure values only (no resources or data sources), so tests/assets/test_terraform.py can
# evaluate them with `terraform console` without providers.
locals {
  argocd_repository = "https://argoproj.github.io/argo-helm"

  # The same Application as argocd/bootstrap.yaml (the by-hand bootstrap for clusters this
  # Terraform did not build), so both routes converge on one object.
  bootstrap_application = "blocksight-bootstrap"

  # Health checks Argo CD lacks, kept in the repo so the GitOps tests exercise exactly what
  # Argo CD runs: without the BlockSight one a BlockSight is "Healthy" as soon as it exists,
  # long before bitcoind has synced; the Application one makes the app of apps' sync waves
  # wait for each child Application to become healthy.
  health_checks_dir = "${var.repo_root}/argocd/health"

  replicas = var.high_availability ? 2 : 1

  # Argo CD's own cluster as a cluster Secret. Argo CD deploys there without one, but the
  # environments ApplicationSet (argocd/apps/blocksight-environments.yaml) picks clusters by
  # label and only a Secret carries labels: blocksight.live/environment-<env> = "true" for each
  # environment this cluster runs. argocd/cluster-in-cluster.yaml is the by-hand copy.
  environment_label_prefix = "blocksight.live/environment-"
  in_cluster_secret = {
    name = "in-cluster"
    labels = merge(
      { "argocd.argoproj.io/secret-type" = "cluster" },
      { for environment in var.environments : "${local.environment_label_prefix}${environment}" => "true" },
    )
    data = {
      name   = "in-cluster"
      server = "https://kubernetes.default.svc"
      # No credentials: for this server Argo CD then uses its own ServiceAccount.
      config = jsonencode({ tlsClientConfig = { insecure = false } })
    }
  }

  argocd_values = {
    global = {
      nodeSelector = var.node_selector
    }
    configs = {
      cm = {
        "resource.customizations.health.blocksight.live_BlockSight" = file("${local.health_checks_dir}/blocksight.live_BlockSight/health.lua")
        "resource.customizations.health.argoproj.io_Application"    = file("${local.health_checks_dir}/argoproj.io_Application/health.lua")
      }
    }
    # No SSO in the bootstrap; add Dex or OIDC through the GitOps repo.
    dex = {
      enabled = false
    }
    redis-ha = {
      enabled = var.high_availability
    }
    controller = {
      replicas = 1
    }
    server = {
      replicas = local.replicas
    }
    repoServer = {
      replicas = local.replicas
    }
    applicationSet = {
      replicas = local.replicas
    }
  }
}
