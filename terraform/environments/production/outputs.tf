output "region" {
  description = "AWS region of the environment."
  value       = var.region
}

output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.cluster.cluster_name
}

output "cluster_endpoint" {
  description = "Kubernetes API endpoint."
  value       = module.cluster.cluster_endpoint
}

output "kubeconfig_command" {
  description = "Command that writes a kubeconfig entry for the cluster."
  value       = "aws eks update-kubeconfig --region ${var.region} --name ${module.cluster.cluster_name}"
}

output "nat_public_ips" {
  description = "Egress IPs of the cluster (NAT gateways)."
  value       = module.network.nat_public_ips
}

output "storage_class_name" {
  description = "StorageClass for BlockSight volumes."
  value       = module.cluster.storage_class_name
}

output "storage_placement" {
  description = "Value for spec.bitcoind.placement and spec.electrs.placement of the BlockSight: selects and tolerates the storage nodes."
  value       = module.cluster.storage_placement
}

output "backup_bucket_name" {
  description = "S3 bucket for BlockSight backups."
  value       = module.backup_storage.bucket_name
}

output "backup_bucket_region" {
  description = "Region of the backup bucket."
  value       = module.backup_storage.bucket_region
}

output "backup_prefix" {
  description = "Key prefix of BlockSight backups (BlockSight's backup prefix must be the same)."
  value       = module.backup_storage.prefix
}

output "backup_retention_days" {
  description = "Days S3 keeps a backup (BlockSight's retention must be the same)."
  value       = module.backup_storage.backup_retention_days
}

output "backup_role_arn" {
  description = "IAM role of the backup Jobs."
  value       = module.identity.role_arn
}

output "backup_service_account_annotations" {
  description = "Value for spec.backup.serviceAccountAnnotations of the BlockSight."
  value       = module.identity.service_account_annotations
}

output "argocd_namespace" {
  description = "Namespace of Argo CD."
  value       = module.gitops.namespace
}

output "bootstrap_application" {
  description = "Argo CD Application that syncs the argocd/ folder of this repository."
  value       = module.gitops.bootstrap_application
}

output "gitops_environments" {
  description = "BlockSight environments Argo CD deploys to this cluster."
  value       = module.gitops.environments
}
