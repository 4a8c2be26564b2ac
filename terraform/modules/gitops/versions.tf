terraform {
  # 1.9 is the first release that lets a variable's validation refer to other variables.
  required_version = ">= 1.9.0, < 2.0.0"

  # Exact pins, identical in every module and environment (tests/assets/test_terraform.py
  # enforces it). helm 2.x: 3.0 changed the `kubernetes` and `set` syntax.
  required_providers {
    helm = {
      source  = "hashicorp/helm"
      version = "2.17.0"
    }
    # The labelled in-cluster cluster Secret.
    kubernetes = {
      source  = "hashicorp/kubernetes"
      version = "2.37.1"
    }
  }
}
