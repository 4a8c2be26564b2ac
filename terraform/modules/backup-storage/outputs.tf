output "bucket_name" {
  description = "Name of the backup bucket (BlockSight's backup bucket setting)."
  value       = aws_s3_bucket.backups.id
}

output "bucket_arn" {
  description = "ARN of the backup bucket."
  value       = aws_s3_bucket.backups.arn
}

output "bucket_region" {
  description = "Region of the backup bucket (BlockSight's backup region setting)."
  value       = aws_s3_bucket.backups.region
}

output "prefix" {
  description = "Key prefix of BlockSight backups, as validated by this module."
  value       = var.prefix
}

output "kms_key_arn" {
  description = "ARN of the KMS key that encrypts the bucket; backup writers and readers need Encrypt/Decrypt/GenerateDataKey on it."
  value       = aws_kms_key.backups.arn
}

output "backup_retention_days" {
  description = "Days after which S3 expires a backup object (keep BlockSight's retention equal)."
  value       = var.backup_retention_days
}
