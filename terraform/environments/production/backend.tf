# Remote state in S3, locked with a lock object next to the state (use_lockfile, Terraform
# >= 1.11; the older alternative is dynamodb_table = "<table>"). The state bucket is created
# once per account before the first `terraform init`: see docs/deploy.md.
# Replace 123456789012 with the account ID, or keep this file and pass
# `terraform init -backend-config="bucket=<name>"`.
terraform {
  backend "s3" {
    bucket       = "blocksight-terraform-state-123456789012"
    key          = "blocksight/production/terraform.tfstate"
    region       = "eu-central-1"
    encrypt      = true
    use_lockfile = true
  }
}
