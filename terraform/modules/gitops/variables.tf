variable "repo_root" {
  description = "Path of this repository's checkout (environments pass path.root joined with \"../../..\"). Argo CD's custom health checks are read from argocd/health/<group>_<kind>/health.lua under it, so Argo CD and the repo never disagree on them."
  type        = string

  validation {
    condition = alltrue([
      fileexists("${var.repo_root}/argocd/health/blocksight.live_BlockSight/health.lua"),
      fileexists("${var.repo_root}/argocd/health/argoproj.io_Application/health.lua"),
    ])
    error_message = "repo_root must be the repository checkout: argocd/health/blocksight.live_BlockSight/health.lua or argocd/health/argoproj.io_Application/health.lua is missing under it."
  }
}

variable "repo_url" {
  description = "Git URL of this repository, which Argo CD syncs (e.g. https://github.com/blocksight-live/blocksight-operator.git)."
  type        = string

  validation {
    condition     = can(regex("^(https://|ssh://|git@)[^ ]+$", var.repo_url))
    error_message = "repo_url must be an https://, ssh:// or git@ Git URL."
  }
}

variable "target_revision" {
  description = "Branch, tag or commit of repo_url that Argo CD deploys. Production should follow a release tag, not a branch."
  type        = string

  validation {
    condition     = length(trimspace(var.target_revision)) > 0
    error_message = "target_revision must not be empty."
  }
}

variable "environments" {
  description = "BlockSight environments this cluster runs: names of folders argocd/environments/<env> (e.g. [\"dev\", \"staging\"]). Written as labels blocksight.live/environment-<env> on the in-cluster cluster Secret, which the environments ApplicationSet selects on; an environment not listed here is not deployed to this cluster."
  type        = set(string)

  validation {
    # The name becomes part of a label key, whose name part holds at most 63 characters.
    condition     = length(var.environments) > 0 && alltrue([for environment in var.environments : can(regex("^[a-z0-9]([-a-z0-9]{0,49}[a-z0-9])?$", environment))])
    error_message = "environments must list at least one environment, each a lowercase DNS label of at most 51 characters."
  }

  validation {
    condition     = alltrue([for environment in var.environments : fileexists("${var.repo_root}/argocd/environments/${environment}/config.yaml")])
    error_message = "Every entry of environments needs argocd/environments/<env>/config.yaml under repo_root; a label for an environment the ApplicationSet does not know would deploy nothing."
  }
}

variable "bootstrap_path" {
  description = "Folder of repo_url holding the Argo CD objects that make up BlockSight (app of apps: the AppProject, the operator Application and the environments ApplicationSet)."
  type        = string
  default     = "argocd/apps"

  validation {
    condition     = !startswith(var.bootstrap_path, "/") && !endswith(var.bootstrap_path, "/") && length(var.bootstrap_path) > 0
    error_message = "bootstrap_path must be a relative folder path without leading or trailing \"/\"."
  }
}

variable "bootstrap_auto_prune" {
  description = "Let Argo CD delete Applications that disappear from bootstrap_path. Off by default: a bad commit must not remove the BlockSight installation and its chain volumes."
  type        = bool
  default     = false
}

variable "namespace" {
  description = "Namespace of Argo CD and of the bootstrap Application."
  type        = string
  default     = "argocd"

  validation {
    condition     = can(regex("^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$", var.namespace))
    error_message = "namespace must be a valid Kubernetes namespace name."
  }
}

variable "argocd_chart_version" {
  description = "Exact version of the argo-cd Helm chart (https://argoproj.github.io/argo-helm)."
  type        = string
  default     = "8.1.3"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.argocd_chart_version))
    error_message = "argocd_chart_version must be an exact version (x.y.z), not a range."
  }
}

variable "argocd_apps_chart_version" {
  description = "Exact version of the argocd-apps Helm chart that creates the bootstrap Application."
  type        = string
  default     = "2.0.2"

  validation {
    condition     = can(regex("^[0-9]+\\.[0-9]+\\.[0-9]+$", var.argocd_apps_chart_version))
    error_message = "argocd_apps_chart_version must be an exact version (x.y.z), not a range."
  }
}

variable "high_availability" {
  description = "Run Argo CD highly available (redis-ha, two replicas of server, repo server and ApplicationSet controller). Needs at least three nodes for redis-ha anti-affinity."
  type        = bool
  default     = false
}

variable "node_selector" {
  description = "Node labels Argo CD pods must match (e.g. {\"blocksight.live/node-pool\" = \"system\"}); empty runs them anywhere."
  type        = map(string)
  default     = {}
}
