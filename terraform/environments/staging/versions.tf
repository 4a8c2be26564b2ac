terraform {
  # 1.11: S3 backend state locking with a lock file in the bucket (use_lockfile) is GA.
  required_version = ">= 1.11.0, < 2.0.0"

  # Exact pins; the registry modules' own dependencies (tls, time, cloudinit) are pinned by
  # .terraform.lock.hcl: commit it after the first `terraform init`.
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "2.37.1"
    }
    helm = {
      source  = "hashicorp/helm"
      version = "2.17.0"
    }
  }
}
