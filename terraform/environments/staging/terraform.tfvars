# BlockSight staging: testnet4 BlockSight for release rehearsals. Small, single NAT,
# Argo CD follows main. Values marked CHANGE are account-specific.

environment    = "staging"
aws_account_id = "123456789012" # CHANGE: the staging account
region         = "eu-central-1"

cluster_name       = "blocksight-staging"
kubernetes_version = "1.33"

vpc_cidr                  = "10.30.0.0/16"
availability_zones        = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
storage_availability_zone = "eu-central-1a"
nat_gateway_mode          = "single"

# CHANGE: the egress CIDRs of the Terraform runner and operators (documentation range here).
endpoint_public_access_cidrs = ["198.51.100.0/24"]

node_groups = {
  # CoreDNS, EBS CSI controller, Argo CD, the operator.
  system = {
    instance_types = ["m6i.large"]
    min_size       = 2
    desired_size   = 2
    max_size       = 3
  }
  # bitcoind + electrs on testnet4 (argocd/environments/staging: 3 GiB + 2 GiB memory limits,
  # 100 + 50 GiB volumes): 4 vCPU / 16 GiB leaves page cache for the chainstate and index.
  storage = {
    instance_types       = ["m6i.xlarge"]
    min_size             = 1
    desired_size         = 1
    max_size             = 1
    root_volume_size_gib = 100
  }
  # postgres, redis, API, Prometheus, Grafana.
  application = {
    instance_types = ["m6i.large"]
    min_size       = 1
    desired_size   = 2
    max_size       = 4
  }
}

# Baseline gp3 (3000 IOPS, 125 MiB/s, no extra charge): test chains sync in hours anyway.
storage_class = {}

backup_prefix         = "blocksight/"
backup_retention_days = 7
# The operator runs backup Jobs as <BlockSight name>-backup in the BlockSight's namespace
# (argocd/environments/staging: BlockSight "blocksight" in blocksight-staging).
backup_service_accounts = [
  { namespace = "blocksight-staging", name = "blocksight-backup" },
]

gitops_repo_url = "https://github.com/blocksight-live/blocksight-operator.git"
# Equals targetRevision in argocd/environments/staging/config.yaml.
gitops_target_revision = "main"
# The staging cluster also hosts dev (regtest, no node placement: it schedules onto the
# untainted system and application nodes).
gitops_environments      = ["dev", "staging"]
argocd_high_availability = false
