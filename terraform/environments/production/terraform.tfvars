# BlockSight production: mainnet BlockSight. NAT per zone, HA Argo CD following a release tag.
# Values marked CHANGE are account-specific.

environment    = "production"
aws_account_id = "123456789012" # CHANGE: the production account
region         = "eu-central-1"

cluster_name       = "blocksight-production"
kubernetes_version = "1.33"

vpc_cidr                  = "10.40.0.0/16"
availability_zones        = ["eu-central-1a", "eu-central-1b", "eu-central-1c"]
storage_availability_zone = "eu-central-1a"
nat_gateway_mode          = "one_per_az"

# CHANGE: the egress CIDRs of the Terraform runner and operators (documentation range here).
endpoint_public_access_cidrs = ["198.51.100.0/24"]

node_groups = {
  # CoreDNS, EBS CSI controller, Argo CD (HA: redis-ha needs three nodes), the operator.
  system = {
    instance_types = ["m6i.large"]
    min_size       = 3
    desired_size   = 3
    max_size       = 4
  }
  # Mainnet bitcoind + electrs. r6i.2xlarge = 8 vCPU / 64 GiB: the production BlockSight
  # (argocd/environments/production) limits bitcoind to 12 GiB and two electrs replicas to
  # 8 GiB each; the remaining ~30 GiB is page cache for bitcoind's chainstate and electrs'
  # RocksDB index, and room to raise dbcache for the initial block download, which verifies
  # signatures on every core. On a 32 GiB m6i.2xlarge those limits alone would fill the
  # node and leave no page cache. Its EBS bandwidth (up to 10 Gbit/s) leaves room for the
  # chain volumes' provisioned gp3 throughput.
  storage = {
    instance_types       = ["r6i.2xlarge"]
    min_size             = 1
    desired_size         = 1
    max_size             = 2
    root_volume_size_gib = 100
  }
  # postgres (analytics tables), redis, API replicas, Prometheus, Grafana.
  application = {
    instance_types = ["m6i.2xlarge"]
    min_size       = 2
    desired_size   = 3
    max_size       = 6
  }
}

# gp3 for the chain volumes (1.5 TiB bitcoind and 200 GiB per electrs replica in the
# production BlockSight): size and performance are bought separately, so 6000 IOPS / 250 MiB/s
# cost far less than gp2 or io2 of the same speed and keep the initial sync CPU-bound rather
# than disk-bound.
storage_class = {
  iops             = 6000
  throughput_mibps = 250
}

backup_prefix         = "blocksight/"
backup_retention_days = 30
# The operator runs backup Jobs as <BlockSight name>-backup in the BlockSight's namespace
# (argocd/environments/production: BlockSight "blocksight" in blocksight-production).
backup_service_accounts = [
  { namespace = "blocksight-production", name = "blocksight-backup" },
]

gitops_repo_url = "https://github.com/blocksight-live/blocksight-operator.git"
# Equals targetRevision in argocd/environments/production/config.yaml; promote both together
# (argocd/README.md, "Revisions and promotion").
gitops_target_revision   = "v0.1.0"
gitops_environments      = ["production"]
argocd_high_availability = true
