variable "bucket_name" {
  description = "Globally unique name of the backup bucket."
  type        = string

  validation {
    condition     = can(regex("^[a-z0-9][a-z0-9-]{1,61}[a-z0-9]$", var.bucket_name))
    error_message = "bucket_name must be 3-63 lowercase letters, digits or hyphens, starting and ending with a letter or digit (no dots: they break virtual-hosted TLS)."
  }
}

variable "prefix" {
  description = "Key prefix of BlockSight backups in the bucket (the operator's backup prefix, default \"blocksight/\"). Lifecycle rules and the identity module's IAM policy are scoped to it."
  type        = string
  default     = "blocksight/"

  validation {
    condition     = can(regex("^[A-Za-z0-9][A-Za-z0-9._-]*(/[A-Za-z0-9][A-Za-z0-9._-]*)*/$", var.prefix))
    error_message = "prefix must be one or more path segments ending in \"/\" and not starting with \"/\" (e.g. \"blocksight/\"), with no \"*\": it is used as an IAM resource pattern."
  }
}

variable "backup_retention_days" {
  description = "Days a backup object is kept after it is written: S3 expires it afterwards. Set it to the BlockSight backup retention, so the bucket never keeps what the operator has pruned nor deletes what it still lists."
  type        = number

  validation {
    condition     = var.backup_retention_days >= 1 && var.backup_retention_days <= 3650 && floor(var.backup_retention_days) == var.backup_retention_days
    error_message = "backup_retention_days must be a whole number of days between 1 and 3650."
  }
}

variable "noncurrent_version_retention_days" {
  description = "Days an overwritten or deleted backup object stays recoverable as a noncurrent version (protects against a buggy prune or a compromised writer)."
  type        = number
  default     = 7

  validation {
    condition     = var.noncurrent_version_retention_days >= 1 && var.noncurrent_version_retention_days <= 365 && floor(var.noncurrent_version_retention_days) == var.noncurrent_version_retention_days
    error_message = "noncurrent_version_retention_days must be a whole number of days between 1 and 365."
  }
}

variable "kms_key_deletion_window_days" {
  description = "Waiting period before a scheduled deletion of the bucket's KMS key takes effect (every backup is unreadable without it)."
  type        = number
  default     = 30

  validation {
    condition     = var.kms_key_deletion_window_days >= 7 && var.kms_key_deletion_window_days <= 30
    error_message = "kms_key_deletion_window_days must be between 7 and 30 (the KMS limits)."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
