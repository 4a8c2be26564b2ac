data "aws_partition" "current" {}

locals {
  # Where each node group runs and what it advertises. The storage group's label and taint are
  # the contract with BlockSight: spec.bitcoind.placement / spec.electrs.placement select
  # blocksight.live/node-pool=storage and tolerate blocksight.live/storage=true:NoSchedule,
  # so only the chain tiers land on these nodes.
  node_group_placement = {
    system = {
      subnet_ids = var.private_subnet_ids
      labels     = { "blocksight.live/node-pool" = "system" }
      taints     = {}
    }
    storage = {
      subnet_ids = var.storage_subnet_ids
      labels     = { "blocksight.live/node-pool" = "storage" }
      taints = {
        blocksight-storage = {
          key    = "blocksight.live/storage"
          value  = "true"
          effect = "NO_SCHEDULE"
        }
      }
    }
    application = {
      subnet_ids = var.private_subnet_ids
      labels     = { "blocksight.live/node-pool" = "application" }
      taints     = {}
    }
  }

  # Add-on name => extra settings; the version comes from var.addon_versions or tracks the newest.
  addons = {
    coredns    = {}
    kube-proxy = {}
    # Before the node groups, or nodes come up without pod networking.
    vpc-cni = { before_compute = true }
    aws-ebs-csi-driver = {
      service_account_role_arn = aws_iam_role.ebs_csi_driver.arn
    }
    # VolumeSnapshot CRDs and controller: BlockSight backups snapshot the chain volumes.
    snapshot-controller = {}
  }
}

module "eks" {
  source  = "terraform-aws-modules/eks/aws"
  version = "20.37.2"

  cluster_name    = var.cluster_name
  cluster_version = var.kubernetes_version

  # Exact IAM role names: the module's default name_prefix is capped at 38 characters, which
  # "<cluster_name>-cluster-" outgrows for longer cluster names.
  iam_role_name            = "${var.cluster_name}-cluster"
  iam_role_use_name_prefix = false

  vpc_id                   = var.vpc_id
  subnet_ids               = var.private_subnet_ids
  control_plane_subnet_ids = var.private_subnet_ids

  cluster_endpoint_private_access      = true
  cluster_endpoint_public_access       = true
  cluster_endpoint_public_access_cidrs = var.endpoint_public_access_cidrs

  # Access entries only (no aws-auth ConfigMap). The identity running Terraform becomes admin so
  # the helm provider can install Argo CD in the same apply.
  authentication_mode                      = "API"
  enable_cluster_creator_admin_permissions = true
  access_entries = {
    for arn in var.cluster_admin_principal_arns : arn => {
      principal_arn = arn
      policy_associations = {
        cluster-admin = {
          policy_arn   = "arn:${data.aws_partition.current.partition}:eks::aws:cluster-access-policy/AmazonEKSClusterAdminPolicy"
          access_scope = { type = "cluster" }
        }
      }
    }
  }

  # IRSA: the EBS CSI driver and the BlockSight backup Jobs assume roles through the OIDC provider.
  enable_irsa = true

  cluster_addons = {
    for name, settings in local.addons : name => merge(settings, {
      addon_version = lookup(var.addon_versions, name, null)
      most_recent   = !contains(keys(var.addon_versions), name)
    })
  }

  eks_managed_node_group_defaults = {
    ami_type = "AL2023_x86_64_STANDARD"
  }

  eks_managed_node_groups = {
    for name, group in var.node_groups : name => {
      name                     = name
      use_name_prefix          = true
      iam_role_name            = "${var.cluster_name}-${name}-node"
      iam_role_use_name_prefix = false
      instance_types           = group.instance_types
      capacity_type            = group.capacity_type
      min_size                 = group.min_size
      desired_size             = group.desired_size
      max_size                 = group.max_size
      subnet_ids               = local.node_group_placement[name].subnet_ids
      labels                   = local.node_group_placement[name].labels
      taints                   = local.node_group_placement[name].taints

      # Replace one node at a time: the storage group usually runs a single bitcoind.
      update_config = { max_unavailable = 1 }

      block_device_mappings = {
        root = {
          device_name = "/dev/xvda"
          ebs = {
            volume_size           = group.root_volume_size_gib
            volume_type           = "gp3"
            encrypted             = true
            delete_on_termination = true
          }
        }
      }
    }
  }

  tags = var.tags
}

# IRSA role of the EBS CSI controller (ServiceAccount kube-system/ebs-csi-controller-sa).
data "aws_iam_policy_document" "ebs_csi_driver_trust" {
  statement {
    actions = ["sts:AssumeRoleWithWebIdentity"]

    principals {
      type        = "Federated"
      identifiers = [module.eks.oidc_provider_arn]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:sub"
      values   = ["system:serviceaccount:kube-system:ebs-csi-controller-sa"]
    }

    condition {
      test     = "StringEquals"
      variable = "${module.eks.oidc_provider}:aud"
      values   = ["sts.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "ebs_csi_driver" {
  name               = "${var.cluster_name}-ebs-csi-driver"
  description        = "EBS CSI driver controller of EKS cluster ${var.cluster_name}"
  assume_role_policy = data.aws_iam_policy_document.ebs_csi_driver_trust.json
  tags               = var.tags
}

resource "aws_iam_role_policy_attachment" "ebs_csi_driver" {
  role       = aws_iam_role.ebs_csi_driver.name
  policy_arn = "arn:${data.aws_partition.current.partition}:iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy"
}

# gp3 for every BlockSight volume. EKS only ships the old gp2 class, which cannot be given
# provisioned IOPS/throughput and, since EKS 1.30, is not the default. Retain: a deleted PVC
# must not take days of chain sync with it.
resource "kubernetes_storage_class_v1" "gp3" {
  metadata {
    name = var.storage_class.name
    annotations = {
      "storageclass.kubernetes.io/is-default-class" = tostring(var.storage_class.is_default)
    }
  }

  storage_provisioner    = "ebs.csi.aws.com"
  reclaim_policy         = "Retain"
  volume_binding_mode    = "WaitForFirstConsumer"
  allow_volume_expansion = true

  parameters = {
    type                        = "gp3"
    iops                        = tostring(var.storage_class.iops)
    throughput                  = tostring(var.storage_class.throughput_mibps)
    encrypted                   = "true"
    "csi.storage.k8s.io/fstype" = "ext4"
  }

  # Needs the API endpoint, the Terraform identity's access entry and the CSI driver.
  depends_on = [module.eks]
}
