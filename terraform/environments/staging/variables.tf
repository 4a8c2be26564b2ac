variable "environment" {
  description = "Environment name, used in tags."
  type        = string

  validation {
    condition     = contains(["staging", "production"], var.environment)
    error_message = "environment must be \"staging\" or \"production\"."
  }
}

variable "aws_account_id" {
  description = "AWS account this environment lives in; the provider refuses any other account, and it makes the default backup bucket name unique."
  type        = string

  validation {
    condition     = can(regex("^[0-9]{12}$", var.aws_account_id))
    error_message = "aws_account_id must be 12 digits."
  }
}

variable "region" {
  description = "AWS region of the environment, e.g. \"eu-central-1\"."
  type        = string

  validation {
    condition     = can(regex("^[a-z]{2}(-gov)?-[a-z]+-[0-9]$", var.region))
    error_message = "region must be an AWS region name such as eu-central-1."
  }
}

variable "cluster_name" {
  description = "Name of the EKS cluster; also names the VPC and prefixes IAM roles and the backup bucket (validated by the cluster module)."
  type        = string
}

variable "kubernetes_version" {
  description = "EKS Kubernetes minor version, e.g. \"1.33\" (validated by the cluster module)."
  type        = string
}

variable "vpc_cidr" {
  description = "IPv4 CIDR of the VPC, /18 or larger (validated by the network module)."
  type        = string
}

variable "availability_zones" {
  description = "The three availability zones of the VPC (validated by the network module)."
  type        = list(string)
}

variable "storage_availability_zone" {
  description = "Zone of the storage node group and hence of the bitcoind/electrs EBS volumes."
  type        = string

  validation {
    condition     = contains(var.availability_zones, var.storage_availability_zone)
    error_message = "storage_availability_zone must be one of availability_zones."
  }
}

variable "nat_gateway_mode" {
  description = "\"single\" NAT gateway or \"one_per_az\" (validated by the network module)."
  type        = string
}

variable "endpoint_public_access_cidrs" {
  description = "CIDRs allowed to reach the public Kubernetes API endpoint: the Terraform runner's and operators' egress addresses (validated by the cluster module)."
  type        = list(string)
}

variable "cluster_admin_principal_arns" {
  description = "IAM role/user ARNs given cluster-admin besides the identity that runs Terraform."
  type        = list(string)
  default     = []
}

variable "node_groups" {
  description = "Sizes of the system, storage and application node groups (see the cluster module; validated there)."
  type = map(object({
    instance_types       = list(string)
    min_size             = number
    desired_size         = number
    max_size             = number
    capacity_type        = optional(string, "ON_DEMAND")
    root_volume_size_gib = optional(number, 50)
  }))
}

variable "storage_class" {
  description = "Name and gp3 performance of the BlockSight StorageClass (validated by the cluster module)."
  type = object({
    name             = optional(string, "gp3")
    iops             = optional(number, 3000)
    throughput_mibps = optional(number, 125)
    is_default       = optional(bool, true)
  })
  default = {}
}

variable "addon_versions" {
  description = "Exact EKS add-on versions by add-on name; unlisted add-ons take the newest version for the Kubernetes version."
  type        = map(string)
  default     = {}
}

variable "backup_bucket_name" {
  description = "Name of the backup bucket; null means \"<cluster_name>-backups-<aws_account_id>\"."
  type        = string
  default     = null
}

variable "backup_prefix" {
  description = "Key prefix of BlockSight backups in the bucket; must match the BlockSight backup prefix (validated by the backup-storage module)."
  type        = string
  default     = "blocksight/"
}

variable "backup_retention_days" {
  description = "Days S3 keeps a backup object; set it to the BlockSight backup retention (validated by the backup-storage module)."
  type        = number
}

variable "backup_service_accounts" {
  description = "ServiceAccounts of BlockSight backup Jobs allowed to assume the backup role: <blocksight-name>-backup in the BlockSight's namespace (argocd/environments/<env>/config.yaml)."
  type = list(object({
    namespace = string
    name      = string
  }))
}

variable "gitops_repo_url" {
  description = "Git URL of this repository, synced by Argo CD (validated by the gitops module)."
  type        = string
}

variable "gitops_target_revision" {
  description = "Branch, tag or commit of the app of apps (argocd/apps: project, operator chart, environments ApplicationSet). Must equal the targetRevision in argocd/environments/<environment>/config.yaml (tests/assets/test_terraform.py checks it): main on staging, a release tag on production."
  type        = string

  validation {
    condition     = var.environment != "production" || can(regex("^v[0-9]+\\.[0-9]+\\.[0-9]+$", var.gitops_target_revision))
    error_message = "production follows a release tag (vX.Y.Z), never a branch."
  }
}

variable "gitops_environments" {
  description = "BlockSight environments (argocd/environments/<env>) this cluster runs, written as labels on Argo CD's in-cluster cluster Secret (validated by the gitops module)."
  type        = set(string)

  validation {
    condition     = contains(var.gitops_environments, var.environment)
    error_message = "gitops_environments must include the cluster's own environment."
  }

  validation {
    # Production shares its cluster with nothing: a dev or staging BlockSight there would compete
    # with mainnet for the storage nodes and carry untested releases into the production cluster.
    condition     = var.environment != "production" || var.gitops_environments == toset(["production"])
    error_message = "the production cluster runs the production environment only."
  }
}

variable "argocd_high_availability" {
  description = "Run Argo CD highly available; redis-ha needs three system nodes."
  type        = bool
  default     = false

  validation {
    condition     = !var.argocd_high_availability || try(var.node_groups["system"].min_size, 0) >= 3
    error_message = "argocd_high_availability needs node_groups.system.min_size >= 3: redis-ha spreads its three pods over distinct nodes and Argo CD runs on the system nodes."
  }
}
