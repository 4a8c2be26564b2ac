output "vpc_id" {
  description = "ID of the VPC."
  value       = module.vpc.vpc_id
}

output "vpc_cidr_block" {
  description = "IPv4 CIDR of the VPC."
  value       = module.vpc.vpc_cidr_block
}

output "azs" {
  description = "Availability zones of the subnets, in the order of the subnet lists."
  value       = var.azs
}

output "private_subnet_ids" {
  description = "IDs of the private subnets (nodes, pods), one per zone, in the order of azs."
  value       = module.vpc.private_subnets
}

output "private_subnet_ids_by_az" {
  description = "Private subnet ID per availability zone: lets a caller pin zonal workloads (EBS-backed storage nodes) to one zone."
  value       = zipmap(var.azs, module.vpc.private_subnets)
}

output "public_subnet_ids" {
  description = "IDs of the public subnets (internet-facing load balancers, NAT gateways), one per zone."
  value       = module.vpc.public_subnets
}

output "nat_public_ips" {
  description = "Elastic IPs of the NAT gateways: the cluster's egress addresses (allow-list them where needed)."
  value       = module.vpc.nat_public_ips
}
