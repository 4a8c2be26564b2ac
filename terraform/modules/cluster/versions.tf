terraform {
  # 1.9 is the first release that lets a variable's validation refer to other variables.
  required_version = ">= 1.9.0, < 2.0.0"

  # Exact pins, identical in every module and environment (tests/assets/test_terraform.py
  # enforces it). terraform-aws-modules/eks 20.x needs aws >= 5.95, < 6.0.
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "2.37.1"
    }
  }
}
