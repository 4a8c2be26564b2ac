# IRSA: only the listed ServiceAccounts of this cluster can assume the role. StringEquals (not
# StringLike) so no pattern can match a ServiceAccount nobody listed.
data "aws_iam_policy_document" "trust" {
  statement {
    sid     = "BlockSightBackupServiceAccounts"
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [var.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:sub"
      values   = [for sa in var.service_accounts : "system:serviceaccount:${sa.namespace}:${sa.name}"]
    }

    condition {
      test     = "StringEquals"
      variable = "${var.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

# Exactly the backup prefix: list it, read/write/delete objects under it, and use the bucket's
# key. Nothing else in the bucket or the account.
data "aws_iam_policy_document" "backups" {
  statement {
    sid       = "ListBackupPrefix"
    actions   = ["s3:ListBucket"]
    resources = [var.bucket_arn]

    condition {
      test     = "StringLike"
      variable = "s3:prefix"
      values   = ["${var.bucket_prefix}*"]
    }
  }

  statement {
    sid = "ReadWriteBackupObjects"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:DeleteObject",
    ]
    resources = ["${var.bucket_arn}/${var.bucket_prefix}*"]
  }

  statement {
    sid = "UseBucketKey"
    actions = [
      "kms:Encrypt",
      "kms:Decrypt",
      "kms:GenerateDataKey",
    ]
    resources = [var.kms_key_arn]
  }
}

resource "aws_iam_role" "backup" {
  name                 = var.role_name
  description          = "BlockSight backup Jobs (IRSA): s3://${split(":::", var.bucket_arn)[1]}/${var.bucket_prefix}"
  assume_role_policy   = data.aws_iam_policy_document.trust.json
  max_session_duration = var.max_session_duration_seconds
  tags                 = var.tags
}

resource "aws_iam_role_policy" "backup" {
  name   = "blocksight-backup-objects"
  role   = aws_iam_role.backup.id
  policy = data.aws_iam_policy_document.backups.json
}
