provider "aws" {
  region = var.region

  # A plan run with the wrong credentials fails instead of building staging in production.
  allowed_account_ids = [var.aws_account_id]

  default_tags {
    tags = {
      Project     = "blocksight"
      Environment = var.environment
      ManagedBy   = "terraform"
    }
  }
}

# Both Kubernetes-facing providers authenticate with a short-lived token from the AWS CLI, so
# no kubeconfig or long-lived credential is involved.
provider "kubernetes" {
  host                   = module.cluster.cluster_endpoint
  cluster_ca_certificate = base64decode(module.cluster.cluster_certificate_authority_data)

  exec {
    api_version = "client.authentication.k8s.io/v1beta1"
    command     = "aws"
    args        = ["eks", "get-token", "--cluster-name", module.cluster.cluster_name, "--region", var.region]
  }
}

provider "helm" {
  kubernetes {
    host                   = module.cluster.cluster_endpoint
    cluster_ca_certificate = base64decode(module.cluster.cluster_certificate_authority_data)

    exec {
      api_version = "client.authentication.k8s.io/v1beta1"
      command     = "aws"
      args        = ["eks", "get-token", "--cluster-name", module.cluster.cluster_name, "--region", var.region]
    }
  }
}
