variable "name" {
  description = "Name of the VPC and prefix of its subnets, NAT gateways and route tables (usually the cluster name)."
  type        = string

  validation {
    condition     = can(regex("^[a-z][a-z0-9-]{1,38}[a-z0-9]$", var.name))
    error_message = "name must be 3-40 lowercase letters, digits or hyphens, starting with a letter."
  }
}

variable "cidr" {
  description = "IPv4 CIDR of the VPC. Private subnets take the first three /19-equivalents (one eighth each), public subnets three small blocks at the top."
  type        = string

  validation {
    condition     = can(cidrhost(var.cidr, 0)) && try(tonumber(split("/", var.cidr)[1]) <= 18, false)
    error_message = "cidr must be a valid IPv4 CIDR of size /18 or larger (e.g. 10.40.0.0/16): pods take VPC addresses through the VPC CNI."
  }
}

variable "azs" {
  description = "The three availability zones to spread the subnets and NAT gateways over, e.g. [\"eu-central-1a\", \"eu-central-1b\", \"eu-central-1c\"]."
  type        = list(string)

  validation {
    condition     = length(var.azs) == 3 && length(distinct(var.azs)) == 3
    error_message = "azs must list exactly three distinct availability zones."
  }
}

variable "nat_gateway_mode" {
  description = "\"single\": one NAT gateway for the VPC (cheaper, staging). \"one_per_az\": one per zone, so losing a zone does not cut the other zones' egress (production)."
  type        = string
  default     = "one_per_az"

  validation {
    condition     = contains(["single", "one_per_az"], var.nat_gateway_mode)
    error_message = "nat_gateway_mode must be \"single\" or \"one_per_az\"."
  }
}

variable "tags" {
  description = "Tags added to every resource of the module (on top of the provider's default_tags)."
  type        = map(string)
  default     = {}
}
