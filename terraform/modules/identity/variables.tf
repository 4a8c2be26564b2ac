variable "role_name" {
  description = "Name of the IAM role assumed by the BlockSight backup Jobs."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9+=,.@_-]{1,64}$", var.role_name))
    error_message = "role_name must be 1-64 characters from A-Z a-z 0-9 + = , . @ _ -."
  }
}

variable "oidc_provider_arn" {
  description = "ARN of the cluster's IAM OIDC provider (cluster module output oidc_provider_arn)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:iam::[0-9]{12}:oidc-provider/.+$", var.oidc_provider_arn))
    error_message = "oidc_provider_arn must be an IAM OIDC provider ARN."
  }
}

variable "oidc_provider" {
  description = "OIDC issuer of the cluster without https:// (cluster module output oidc_provider); prefix of the :sub and :aud condition keys."
  type        = string

  validation {
    condition     = !startswith(var.oidc_provider, "https://") && length(var.oidc_provider) > 0
    error_message = "oidc_provider must be the issuer host and path without the https:// scheme."
  }
}

variable "service_accounts" {
  description = "Kubernetes ServiceAccounts allowed to assume the role, as namespace/name pairs. BlockSight backup Jobs run as <blocksight-name>-backup in the BlockSight's namespace."
  type = list(object({
    namespace = string
    name      = string
  }))

  validation {
    condition     = length(var.service_accounts) > 0
    error_message = "service_accounts must name at least one ServiceAccount: a role nobody may assume is a configuration mistake."
  }

  # Names are matched with StringEquals: a wildcard here would not widen the trust, it would
  # only make a role no ServiceAccount can assume.
  validation {
    condition = alltrue([
      for sa in var.service_accounts :
      can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", sa.namespace)) && can(regex("^[a-z0-9]([-a-z0-9.]{0,251}[a-z0-9])?$", sa.name))
    ])
    error_message = "Each service account needs a valid Kubernetes namespace and ServiceAccount name (DNS labels, no wildcards)."
  }
}

variable "bucket_arn" {
  description = "ARN of the backup bucket (backup-storage module output bucket_arn)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:s3:::[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$", var.bucket_arn))
    error_message = "bucket_arn must be an S3 bucket ARN (arn:aws:s3:::name), not an object ARN."
  }
}

variable "bucket_prefix" {
  description = "Key prefix the role may list, read, write and delete under (backup-storage module output prefix), e.g. \"blocksight/\"."
  type        = string

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*/$", var.bucket_prefix))
    error_message = "bucket_prefix must end in \"/\", must not start with \"/\" and must not contain \"*\" (it becomes an IAM resource pattern)."
  }
}

variable "kms_key_arn" {
  description = "ARN of the KMS key encrypting the bucket (backup-storage module output kms_key_arn)."
  type        = string

  validation {
    condition     = can(regex("^arn:aws[a-z-]*:kms:[a-z0-9-]+:[0-9]{12}:key/.+$", var.kms_key_arn))
    error_message = "kms_key_arn must be a KMS key ARN (not an alias)."
  }
}

variable "max_session_duration_seconds" {
  description = "Maximum session length of the role; SDKs refresh web-identity credentials on their own, so long backups do not need a longer session."
  type        = number
  default     = 3600

  validation {
    condition     = var.max_session_duration_seconds >= 3600 && var.max_session_duration_seconds <= 43200
    error_message = "max_session_duration_seconds must be between 3600 and 43200."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
