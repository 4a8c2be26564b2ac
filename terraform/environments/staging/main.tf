# One BlockSight environment: network -> cluster -> backup bucket -> backup role -> Argo CD.
# staging and production share this file; they differ in terraform.tfvars and backend.tf.

module "network" {
  source = "../../modules/network"

  name             = var.cluster_name
  cidr             = var.vpc_cidr
  azs              = var.availability_zones
  nat_gateway_mode = var.nat_gateway_mode
}

module "cluster" {
  source = "../../modules/cluster"

  cluster_name       = var.cluster_name
  kubernetes_version = var.kubernetes_version
  vpc_id             = module.network.vpc_id
  private_subnet_ids = module.network.private_subnet_ids
  # One zone: the chain volumes are EBS, and EBS volumes stay in their zone.
  storage_subnet_ids           = [module.network.private_subnet_ids_by_az[var.storage_availability_zone]]
  endpoint_public_access_cidrs = var.endpoint_public_access_cidrs
  cluster_admin_principal_arns = var.cluster_admin_principal_arns
  node_groups                  = var.node_groups
  storage_class                = var.storage_class
  addon_versions               = var.addon_versions
}

module "backup_storage" {
  source = "../../modules/backup-storage"

  bucket_name           = coalesce(var.backup_bucket_name, "${var.cluster_name}-backups-${var.aws_account_id}")
  prefix                = var.backup_prefix
  backup_retention_days = var.backup_retention_days
}

module "identity" {
  source = "../../modules/identity"

  role_name         = "${var.cluster_name}-blocksight-backup"
  oidc_provider_arn = module.cluster.oidc_provider_arn
  oidc_provider     = module.cluster.oidc_provider
  service_accounts  = var.backup_service_accounts
  bucket_arn        = module.backup_storage.bucket_arn
  bucket_prefix     = module.backup_storage.prefix
  kms_key_arn       = module.backup_storage.kms_key_arn
}

module "gitops" {
  source = "../../modules/gitops"

  repo_root         = "${path.root}/../../.."
  repo_url          = var.gitops_repo_url
  target_revision   = var.gitops_target_revision
  environments      = var.gitops_environments
  high_availability = var.argocd_high_availability
  node_selector     = { "blocksight.live/node-pool" = "system" }

  # Argo CD needs the node groups, CoreDNS and the EBS CSI driver, not just the API endpoint.
  depends_on = [module.cluster]
}
