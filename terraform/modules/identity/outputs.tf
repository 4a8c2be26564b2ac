output "role_arn" {
  description = "ARN of the backup role; annotate the backup ServiceAccount with it."
  value       = aws_iam_role.backup.arn
}

output "role_name" {
  description = "Name of the backup role."
  value       = aws_iam_role.backup.name
}

output "service_account_annotations" {
  description = "Annotations for BlockSight's spec.backup.serviceAccountAnnotations, which the operator puts on the <name>-backup ServiceAccount."
  value = {
    "eks.amazonaws.com/role-arn" = aws_iam_role.backup.arn
  }
}
