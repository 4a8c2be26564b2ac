locals {
  # Private /19s (a /16 VPC) for nodes and pods: the VPC CNI gives every pod a VPC address.
  private_subnets = [for index, _ in var.azs : cidrsubnet(var.cidr, 3, index)]
  # Public /22s (a /16 VPC) carved from the seventh eighth: only load balancers and NAT live there.
  public_subnets = [for index, _ in var.azs : cidrsubnet(var.cidr, 6, 48 + index)]
}

module "vpc" {
  source  = "terraform-aws-modules/vpc/aws"
  version = "5.21.0"

  name = var.name
  cidr = var.cidr
  azs  = var.azs

  private_subnets = local.private_subnets
  public_subnets  = local.public_subnets

  enable_nat_gateway     = true
  single_nat_gateway     = var.nat_gateway_mode == "single"
  one_nat_gateway_per_az = var.nat_gateway_mode == "one_per_az"

  enable_dns_hostnames = true
  enable_dns_support   = true

  # Subnet discovery for the AWS Load Balancer Controller and in-tree service load balancers.
  public_subnet_tags = {
    "kubernetes.io/role/elb" = "1"
  }
  private_subnet_tags = {
    "kubernetes.io/role/internal-elb" = "1"
  }

  tags = var.tags
}
