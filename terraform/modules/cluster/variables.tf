variable "cluster_name" {
  description = "Name of the EKS cluster; also prefixes its IAM roles and node groups."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.cluster_name))
    error_message = "cluster_name must be 3-40 lowercase letters, digits or hyphens, starting with a letter (it prefixes IAM role names, which are limited to 64 characters)."
  }
}

variable "kubernetes_version" {
  description = "EKS Kubernetes minor version, e.g. \"1.33\": 1.30 or newer, as the operator needs (docs/deploy.md, \"Supported Kubernetes versions\"). Upgrade one minor version at a time."
  type        = string

  validation {
    condition     = can(regex("^1\\.3[0-9]$", var.kubernetes_version))
    error_message = "kubernetes_version must be an EKS minor version between 1.30 and 1.39, e.g. \"1.33\": the BlockSight operator needs Kubernetes 1.30 or newer (see docs/deploy.md, \"Supported Kubernetes versions\")."
  }
}

variable "vpc_id" {
  description = "ID of the VPC the cluster runs in (network module output vpc_id)."
  type        = string

  validation {
    condition     = can(regex("^vpc-[0-9a-f]+$", var.vpc_id))
    error_message = "vpc_id must look like vpc-0123456789abcdef0."
  }
}

variable "private_subnet_ids" {
  description = "Private subnets, one per availability zone, for the control plane ENIs and the system and application node groups."
  type        = list(string)

  validation {
    condition     = length(var.private_subnet_ids) >= 2
    error_message = "EKS needs private subnets in at least two availability zones."
  }
}

variable "storage_subnet_ids" {
  description = "Subnets of the storage node group. EBS volumes are zonal: keep this to ONE subnet so a replaced storage node always comes back in the zone of the bitcoind/electrs volumes."
  type        = list(string)

  validation {
    condition     = length(var.storage_subnet_ids) >= 1 && alltrue([for id in var.storage_subnet_ids : contains(var.private_subnet_ids, id)])
    error_message = "storage_subnet_ids must name at least one subnet, all of them among private_subnet_ids."
  }
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint (the Terraform runner and operators). Nodes use the private endpoint."
  type        = list(string)

  validation {
    condition     = length(var.endpoint_public_access_cidrs) > 0 && alltrue([for cidr in var.endpoint_public_access_cidrs : can(cidrhost(cidr, 0))])
    error_message = "endpoint_public_access_cidrs must list at least one valid IPv4 CIDR."
  }
}

variable "cluster_admin_principal_arns" {
  description = "IAM role/user ARNs given cluster-admin through EKS access entries (the identity that runs Terraform gets it automatically)."
  type        = list(string)
  default     = []

  validation {
    condition     = alltrue([for arn in var.cluster_admin_principal_arns : can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:(role|user)/.+$", arn))])
    error_message = "cluster_admin_principal_arns must contain IAM role or user ARNs."
  }
}

variable "node_groups" {
  description = <<-EOT
    Sizes of the three managed node groups, keyed system, storage and application:
    system runs cluster add-ons, Argo CD and the operator; storage runs bitcoind and electrs
    (tainted blocksight.live/storage=true:NoSchedule); application runs postgres, redis, the API
    and monitoring. root_volume_size_gib is the node's gp3 root disk (images, logs, emptyDir);
    chain data lives on PersistentVolumes, not here.
  EOT
  type = map(object({
    instance_types       = list(string)
    min_size             = number
    desired_size         = number
    max_size             = number
    capacity_type        = optional(string, "ON_DEMAND")
    root_volume_size_gib = optional(number, 50)
  }))

  validation {
    condition     = toset(keys(var.node_groups)) == toset(["system", "storage", "application"])
    error_message = "node_groups must have exactly the keys system, storage and application."
  }

  validation {
    condition = alltrue([
      for group in values(var.node_groups) :
      length(group.instance_types) > 0 && group.min_size >= 0 && group.min_size <= group.desired_size && group.desired_size <= group.max_size
    ])
    error_message = "Every node group needs at least one instance type and 0 <= min_size <= desired_size <= max_size."
  }

  validation {
    condition     = alltrue([for group in values(var.node_groups) : contains(["ON_DEMAND", "SPOT"], group.capacity_type)])
    error_message = "capacity_type must be ON_DEMAND or SPOT."
  }

  # A Spot reclaim gives two minutes' notice; bitcoind needs far longer to flush its UTXO cache.
  validation {
    condition     = try(var.node_groups["storage"].capacity_type, "ON_DEMAND") == "ON_DEMAND"
    error_message = "The storage node group must be ON_DEMAND: a Spot interruption kills bitcoind mid-flush and costs a long chainstate replay."
  }

  validation {
    condition     = alltrue([for group in values(var.node_groups) : group.root_volume_size_gib >= 20 && group.root_volume_size_gib <= 1000])
    error_message = "root_volume_size_gib must be between 20 and 1000."
  }
}

variable "storage_class" {
  description = "The gp3 StorageClass created for BlockSight volumes. iops/throughput_mibps are the per-volume gp3 provisioned performance; raise them to shorten bitcoind's initial block download. is_default makes it the cluster's default class: EKS >= 1.30 marks none, and claims without storageClassName (as in argocd/environments) would stay Pending."
  type = object({
    name             = optional(string, "gp3")
    iops             = optional(number, 3000)
    throughput_mibps = optional(number, 125)
    is_default       = optional(bool, true)
  })
  default = {}

  validation {
    condition     = var.storage_class.iops >= 3000 && var.storage_class.iops <= 16000
    error_message = "gp3 iops must be between 3000 and 16000."
  }

  validation {
    condition     = var.storage_class.throughput_mibps >= 125 && var.storage_class.throughput_mibps <= 1000 && var.storage_class.throughput_mibps <= var.storage_class.iops / 4
    error_message = "gp3 throughput_mibps must be between 125 and 1000 and at most iops / 4."
  }
}

variable "addon_versions" {
  description = "Exact EKS add-on versions by add-on name (e.g. {\"aws-ebs-csi-driver\" = \"v1.44.0-eksbuild.1\"}, see `aws eks describe-addon-versions`). Add-ons not listed track the newest version for the cluster's Kubernetes version."
  type        = map(string)
  default     = {}

  validation {
    condition     = alltrue([for name in keys(var.addon_versions) : contains(["coredns", "kube-proxy", "vpc-cni", "aws-ebs-csi-driver", "snapshot-controller"], name)])
    error_message = "addon_versions keys must be among coredns, kube-proxy, vpc-cni, aws-ebs-csi-driver, snapshot-controller."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
