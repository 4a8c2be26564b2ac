terraform {
  # 1.9 is the first release that lets a variable's validation refer to other variables.
  required_version = ">= 1.9.0, < 2.0.0"

  # Exact pins, identical in every module and environment (tests/assets/test_terraform.py
  # enforces it): these modules are only consumed from this repository, so one upgrade moves
  # all of them together and a plan never picks up a provider nobody reviewed.
  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = "5.100.0"
    }
  }
}
