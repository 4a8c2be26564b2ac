output "cluster_name" {
  description = "Name of the EKS cluster."
  value       = module.eks.cluster_name
}

output "cluster_endpoint" {
  description = "HTTPS endpoint of the Kubernetes API server."
  value       = module.eks.cluster_endpoint
}

output "cluster_certificate_authority_data" {
  description = "Base64-encoded CA certificate of the API server (for provider and kubeconfig configuration)."
  value       = module.eks.cluster_certificate_authority_data
}

output "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider, the Federated principal of IRSA role trust policies."
  value       = module.eks.oidc_provider_arn
}

output "oidc_provider" {
  description = "OIDC issuer without https:// (e.g. oidc.eks.eu-central-1.amazonaws.com/id/ABC...), the prefix of the :sub and :aud condition keys in IRSA trust policies."
  value       = module.eks.oidc_provider
}

output "node_security_group_id" {
  description = "Security group shared by the managed node groups."
  value       = module.eks.node_security_group_id
}

output "ebs_csi_driver_role_arn" {
  description = "IAM role assumed by the EBS CSI controller through IRSA."
  value       = aws_iam_role.ebs_csi_driver.arn
}

output "storage_class_name" {
  description = "Name of the gp3 StorageClass to use in BlockSight volume claims."
  value       = kubernetes_storage_class_v1.gp3.metadata[0].name
}

output "storage_placement" {
  description = "Placement for the chain tiers, in the shape of BlockSight's spec.bitcoind.placement / spec.electrs.placement ({nodeSelector, tolerations})."
  value = {
    nodeSelector = local.node_group_placement.storage.labels
    tolerations = [
      for taint in values(local.node_group_placement.storage.taints) : {
        key      = taint.key
        operator = "Equal"
        value    = taint.value
        effect   = { NO_SCHEDULE = "NoSchedule", NO_EXECUTE = "NoExecute", PREFER_NO_SCHEDULE = "PreferNoSchedule" }[taint.effect]
      }
    ]
  }
}
