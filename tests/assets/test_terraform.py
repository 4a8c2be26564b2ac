"""Offline checks of terraform/ (modules network, cluster, backup-storage, identity, gitops and
the staging/production environments that compose them).

What runs:
- `terraform fmt -check -recursive` when the terraform binary is installed (skipped otherwise);
- python-hcl2 parses every .tf and .tfvars file;
- structure: module layout, typed/described/validated variables, described outputs, exact
  provider/module/chart pins, the S3 backend with locking, both environments sharing their code;
- a static stand-in for `terraform validate`: module call arguments against the called
  module's variables, `module.X.Y` against X's outputs, `var.`/`local.` references against
  declarations, tfvars keys against the environment's variables;
- security and contract checks: no credentials in the code, the backup bucket's SSE-KMS,
  versioning, public access block, TLS-only policy and retention lifecycle, the IRSA policy
  scoped to the bucket prefix, the storage node group's taint and label, the EBS CSI and
  snapshot-controller add-ons, Argo CD with the BlockSight health check and the bootstrap
  Application.

`terraform validate` is NOT run: it needs `terraform init`, which downloads the providers and
the terraform-aws-modules registry modules, and these tests run without registry access
(`terraform init -backend=false` fails offline). The static checks above cover what validate
would catch in our own code; the registry modules' inputs are pinned by exact version.
"""
import json
import os
import re
import shutil
import subprocess
from functools import lru_cache
from pathlib import Path

import hcl2
import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
TF = REPO / "terraform"
MODULES = TF / "modules"
ENVIRONMENTS = TF / "environments"
MODULE_NAMES = ["network", "cluster", "backup-storage", "identity", "gitops"]
ENV_NAMES = ["staging", "production"]
MODULE_DIRS = [MODULES / name for name in MODULE_NAMES]
ENV_DIRS = [ENVIRONMENTS / name for name in ENV_NAMES]
ALL_DIRS = MODULE_DIRS + ENV_DIRS
# Files both environments must keep identical (they differ only in tfvars and backend).
SHARED_ENV_FILES = ["main.tf", "variables.tf", "outputs.tf", "providers.tf", "versions.tf"]
EXACT_VERSION = re.compile(r"^=?\s*\d+\.\d+\.\d+$")
MODULE_META_ARGS = {"source", "version", "providers", "depends_on", "count", "for_each"}
HCL_OPTIONS = hcl2.SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, with_comments=False
)


def _rel(path: Path) -> str:
    return str(path.relative_to(REPO))


def _hcl_files():
    if not TF.is_dir():
        return []
    return sorted(
        p for p in TF.rglob("*") if p.suffix in (".tf", ".tfvars") and ".terraform" not in p.parts
    )


@lru_cache(maxsize=None)
def parse(path: Path) -> dict:
    with open(path) as handle:
        return hcl2.load(handle, serialization_options=HCL_OPTIONS)


@lru_cache(maxsize=None)
def load_dir(directory: Path) -> dict:
    """All top-level blocks of a Terraform module folder, merged across its .tf files."""
    merged: dict = {}
    for path in sorted(directory.glob("*.tf")):
        for kind, entries in parse(path).items():
            merged.setdefault(kind, []).extend(entries)
    return merged


def named_blocks(directory: Path, kind: str) -> dict:
    """variable/output/module blocks: {name: body}."""
    return {name: body for entry in load_dir(directory).get(kind, []) for name, body in entry.items()}


def typed_blocks(directory: Path, kind: str, type_name: str) -> dict:
    """resource/data blocks of one type: {name: body}."""
    found = {}
    for entry in load_dir(directory).get(kind, []):
        found.update(entry.get(type_name, {}))
    return found


def locals_of(directory: Path) -> dict:
    merged = {}
    for entry in load_dir(directory).get("locals", []):
        merged.update(entry)
    return merged


def terraform_blocks(directory: Path) -> list:
    return load_dir(directory).get("terraform", [])


def resolve(directory: Path, value):
    """Follow a bare `${var.x}` to its default and `${local.x}` to its value."""
    match = re.fullmatch(r"\$\{(var|local)\.([\w-]+)\}", value) if isinstance(value, str) else None
    if not match:
        return value
    kind, name = match.groups()
    if kind == "var":
        variable = named_blocks(directory, "variable")[name]
        assert "default" in variable, f"{name} has no default to resolve"
        return resolve(directory, variable["default"])
    return resolve(directory, locals_of(directory)[name])


def code_text(directory: Path) -> str:
    """The module's .tf source without comment lines."""
    lines = []
    for path in sorted(directory.glob("*.tf")):
        lines += [l for l in path.read_text().splitlines() if not l.lstrip().startswith(("#", "//"))]
    return "\n".join(lines)


def policy_document_of(directory: Path, reference: str) -> dict:
    match = re.fullmatch(r"\$\{data\.aws_iam_policy_document\.([\w-]+)\.json\}", reference)
    assert match, f"policy must come from an aws_iam_policy_document, got {reference!r}"
    return typed_blocks(directory, "data", "aws_iam_policy_document")[match.group(1)]


@pytest.fixture(scope="module", autouse=True)
def _terraform_tree_exists():
    assert TF.is_dir(), "terraform/ is missing"


# --------------------------------------------------------------------------- tools and parsing


def test_terraform_fmt_is_clean():
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("SKIPPED: terraform binary not found on PATH; `terraform fmt -check` needs it")
    proc = subprocess.run(
        [terraform, "fmt", "-check", "-recursive", "-diff", str(TF)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, f"terraform fmt -check failed, run `terraform fmt -recursive terraform/`:\n{proc.stdout}{proc.stderr}"


@pytest.mark.parametrize("path", _hcl_files(), ids=_rel)
def test_hcl_file_parses(path):
    assert isinstance(parse(path), dict)


def test_every_module_and_environment_has_hcl():
    assert _hcl_files(), "no .tf files under terraform/"
    for directory in ALL_DIRS:
        assert list(directory.glob("*.tf")), f"{_rel(directory)} has no .tf files"


# --------------------------------------------------------------------------- structure


def test_module_folders_are_complete():
    present = sorted(p.name for p in MODULES.iterdir() if p.is_dir())
    assert present == sorted(MODULE_NAMES), f"unexpected module set {present}"
    for directory in MODULE_DIRS:
        for name in ("README.md", "versions.tf", "outputs.tf", "variables.tf", "main.tf"):
            assert (directory / name).is_file(), f"{_rel(directory)} lacks {name}"


def test_environment_folders_are_complete():
    for directory in ENV_DIRS:
        for name in ("README.md", "versions.tf", "outputs.tf", "variables.tf", "main.tf",
                     "providers.tf", "backend.tf", "terraform.tfvars"):
            assert (directory / name).is_file(), f"{_rel(directory)} lacks {name}"


@pytest.mark.parametrize("directory", ALL_DIRS, ids=_rel)
def test_every_variable_is_typed_and_described(directory):
    variables = named_blocks(directory, "variable")
    assert variables, f"{_rel(directory)} declares no variables"
    for name, body in variables.items():
        assert body.get("type"), f"{_rel(directory)}: variable {name} has no type"
        assert str(body.get("description", "")).strip(), f"{_rel(directory)}: variable {name} has no description"


@pytest.mark.parametrize("directory", ALL_DIRS, ids=_rel)
def test_every_output_is_described(directory):
    outputs = named_blocks(directory, "output")
    assert outputs, f"{_rel(directory)} declares no outputs"
    for name, body in outputs.items():
        assert str(body.get("description", "")).strip(), f"{_rel(directory)}: output {name} has no description"


CONSTRAINED_VARIABLES = {
    "network": ["name", "cidr", "azs", "nat_gateway_mode"],
    "cluster": ["cluster_name", "kubernetes_version", "vpc_id", "private_subnet_ids",
                "storage_subnet_ids", "endpoint_public_access_cidrs",
                "cluster_admin_principal_arns", "node_groups", "storage_class", "addon_versions"],
    "backup-storage": ["bucket_name", "prefix", "backup_retention_days",
                       "noncurrent_version_retention_days", "kms_key_deletion_window_days"],
    "identity": ["role_name", "oidc_provider_arn", "oidc_provider", "service_accounts",
                 "bucket_arn", "bucket_prefix", "kms_key_arn", "max_session_duration_seconds"],
    "gitops": ["repo_root", "repo_url", "target_revision", "environments", "bootstrap_path", "namespace",
               "argocd_chart_version", "argocd_apps_chart_version"],
}
CONSTRAINED_ENV_VARIABLES = ["environment", "aws_account_id", "region",
                             "storage_availability_zone", "argocd_high_availability",
                             "gitops_target_revision", "gitops_environments"]


@pytest.mark.parametrize("directory", ALL_DIRS, ids=_rel)
def test_constrained_variables_are_validated(directory):
    names = CONSTRAINED_VARIABLES.get(directory.name, CONSTRAINED_ENV_VARIABLES)
    variables = named_blocks(directory, "variable")
    for name in names:
        assert name in variables, f"{_rel(directory)}: variable {name} is missing"
        validations = variables[name].get("validation", [])
        assert validations, f"{_rel(directory)}: variable {name} takes constrained values but has no validation"
        for validation in validations:
            assert f"var.{name}" in validation["condition"], f"{name}: validation does not test var.{name}"
            assert validation.get("error_message"), f"{name}: validation without error_message"


def test_no_credentials_in_code():
    patterns = {
        "AWS access key ID": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
        "aws_secret_access_key": re.compile(r"aws_secret_access_key", re.I),
        "access/secret key argument": re.compile(r"\b(access_key|secret_key|token)\s*=\s*\"", re.I),
        "password literal": re.compile(r"password\w*\"?\s*[=:]\s*\"[^\"$]+\"", re.I),
        "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    }
    files = [p for p in TF.rglob("*") if p.is_file() and ".terraform" not in p.parts]
    docs = REPO / "docs" / "deploy.md"
    files += [docs] if docs.exists() else []
    leaks = [
        f"{_rel(path)}: {what}"
        for path in files
        for what, pattern in patterns.items()
        if pattern.search(path.read_text(errors="replace"))
    ]
    assert not leaks, "credentials in code:\n" + "\n".join(leaks)


# --------------------------------------------------------------------------- pins


def test_providers_are_pinned_exactly_and_identically():
    seen: dict = {}
    for directory in ALL_DIRS:
        blocks = [tb for tb in terraform_blocks(directory) if "required_providers" in tb]
        assert blocks, f"{_rel(directory)} has no required_providers"
        assert any(tb.get("required_version") for tb in terraform_blocks(directory)), f"{_rel(directory)} has no required_version"
        for block in blocks:
            for providers in block["required_providers"]:
                for name, spec in providers.items():
                    assert spec["source"] == f"hashicorp/{name}", f"{_rel(directory)}: {name} source {spec['source']}"
                    assert EXACT_VERSION.match(spec["version"]), f"{_rel(directory)}: {name} pinned to range {spec['version']!r}"
                    seen.setdefault(name, {})[_rel(directory)] = spec["version"]
    for name, versions in seen.items():
        assert len(set(versions.values())) == 1, f"provider {name} pinned differently: {versions}"
    assert {"aws", "kubernetes", "helm"} <= set(seen)


def test_module_sources_are_pinned():
    registry_modules = []
    for directory in ALL_DIRS:
        for name, body in named_blocks(directory, "module").items():
            source = body["source"]
            if source.startswith(("./", "../")):
                target = (directory / source).resolve()
                assert target.is_dir() and target.parent == MODULES, f"{_rel(directory)}: module {name} -> {source} is not one of ours"
                assert "version" not in body, f"{_rel(directory)}: local module {name} must not set version"
            else:
                assert re.fullmatch(r"[\w-]+/[\w-]+/[\w-]+(//[\w/-]+)?", source), f"{_rel(directory)}: module {name} source {source!r} is not a registry address"
                assert EXACT_VERSION.match(str(body.get("version", ""))), f"{_rel(directory)}: module {name} ({source}) is not pinned to an exact version"
                registry_modules.append(source)
    assert "terraform-aws-modules/vpc/aws" in registry_modules
    assert "terraform-aws-modules/eks/aws" in registry_modules


@pytest.mark.parametrize("directory", ENV_DIRS, ids=_rel)
def test_environment_composes_all_modules_from_local_paths(directory):
    sources = {body["source"] for body in named_blocks(directory, "module").values()}
    assert sources == {f"../../modules/{name}" for name in MODULE_NAMES}


@pytest.mark.parametrize("directory", ENV_DIRS, ids=_rel)
def test_environment_has_s3_backend_with_locking(directory):
    backends = [b for tb in terraform_blocks(directory) for b in tb.get("backend", [])]
    assert len(backends) == 1 and "s3" in backends[0], f"{_rel(directory)}: expected one s3 backend, got {backends}"
    s3 = backends[0]["s3"]
    for key in ("bucket", "key", "region"):
        assert s3.get(key), f"{_rel(directory)}: backend s3 lacks {key}"
    assert s3.get("encrypt") is True, "state must be encrypted"
    assert s3.get("use_lockfile") is True or s3.get("dynamodb_table"), "state must be locked (use_lockfile or dynamodb_table)"
    assert directory.name in s3["key"], "each environment needs its own state key"


def test_environments_share_their_code():
    staging, production = ENV_DIRS
    for name in SHARED_ENV_FILES:
        assert (staging / name).read_text() == (production / name).read_text(), f"environments/*/{name} differ: keep them identical, vary terraform.tfvars"


# --------------------------------------------------------------------------- static validate


@pytest.mark.parametrize("directory", ALL_DIRS, ids=_rel)
def test_module_calls_match_module_interfaces(directory):
    for name, body in named_blocks(directory, "module").items():
        if not body["source"].startswith(("./", "../")):
            continue
        target = (directory / body["source"]).resolve()
        declared = named_blocks(target, "variable")
        passed = set(body) - MODULE_META_ARGS
        unknown = passed - set(declared)
        assert not unknown, f"{_rel(directory)}: module {name} gets undeclared arguments {sorted(unknown)}"
        required = {v for v, spec in declared.items() if "default" not in spec}
        missing = required - passed
        assert not missing, f"{_rel(directory)}: module {name} misses required arguments {sorted(missing)}"


@pytest.mark.parametrize("directory", ALL_DIRS, ids=_rel)
def test_module_output_references_exist(directory):
    calls = named_blocks(directory, "module")
    for module_name, output in set(re.findall(r"\bmodule\.([\w-]+)\.([\w-]+)", code_text(directory))):
        assert module_name in calls, f"{_rel(directory)}: reference to undeclared module {module_name}"
        source = calls[module_name]["source"]
        if source.startswith(("./", "../")):
            outputs = named_blocks((directory / source).resolve(), "output")
            assert output in outputs, f"{_rel(directory)}: module.{module_name}.{output} is not an output of {source}"


@pytest.mark.parametrize("directory", ALL_DIRS, ids=_rel)
def test_var_and_local_references_are_declared(directory):
    text = code_text(directory)
    variables = named_blocks(directory, "variable")
    local_values = locals_of(directory)
    for name in set(re.findall(r"\bvar\.([\w-]+)", text)):
        assert name in variables, f"{_rel(directory)}: var.{name} is not declared"
    for name in set(re.findall(r"\blocal\.([\w-]+)", text)):
        assert name in local_values, f"{_rel(directory)}: local.{name} is not declared"
    unused = {v for v in variables if f"var.{v}" not in text}
    assert not unused, f"{_rel(directory)}: variables never used: {sorted(unused)}"


@pytest.mark.parametrize("directory", ENV_DIRS, ids=_rel)
def test_tfvars_match_environment_variables(directory):
    values = parse(directory / "terraform.tfvars")
    variables = named_blocks(directory, "variable")
    unknown = set(values) - set(variables)
    assert not unknown, f"{_rel(directory)}/terraform.tfvars sets undeclared variables {sorted(unknown)}"
    missing = {v for v, spec in variables.items() if "default" not in spec} - set(values)
    assert not missing, f"{_rel(directory)}/terraform.tfvars misses required variables {sorted(missing)}"
    assert values["environment"] == directory.name
    assert values["storage_availability_zone"] in values["availability_zones"]
    assert sorted(values["node_groups"]) == ["application", "storage", "system"]


# --------------------------------------------------------------------------- backup bucket

BACKUP = MODULES / "backup-storage"


def _only(blocks: dict, what: str):
    assert len(blocks) == 1, f"expected exactly one {what}, found {sorted(blocks)}"
    return next(iter(blocks.values()))


def test_backup_bucket_is_encrypted_with_kms():
    sse = _only(typed_blocks(BACKUP, "resource", "aws_s3_bucket_server_side_encryption_configuration"), "SSE configuration")
    default = sse["rule"][0]["apply_server_side_encryption_by_default"][0]
    assert default["sse_algorithm"] == "aws:kms"
    assert re.fullmatch(r"\$\{aws_kms_key\.[\w-]+\.(arn|key_id|id)\}", default["kms_master_key_id"]), default
    key = _only(typed_blocks(BACKUP, "resource", "aws_kms_key"), "KMS key")
    assert key.get("enable_key_rotation") is True


def test_backup_bucket_is_versioned():
    versioning = _only(typed_blocks(BACKUP, "resource", "aws_s3_bucket_versioning"), "versioning")
    assert versioning["versioning_configuration"][0]["status"] == "Enabled"


def test_backup_bucket_blocks_all_public_access():
    block = _only(typed_blocks(BACKUP, "resource", "aws_s3_bucket_public_access_block"), "public access block")
    for flag in ("block_public_acls", "block_public_policy", "ignore_public_acls", "restrict_public_buckets"):
        assert block.get(flag) is True, f"{flag} must be true"


def test_backup_bucket_policy_denies_insecure_transport():
    policy = _only(typed_blocks(BACKUP, "resource", "aws_s3_bucket_policy"), "bucket policy")
    document = policy_document_of(BACKUP, policy["policy"])
    tls_denials = [
        s for s in document["statement"]
        if s.get("effect") == "Deny"
        and any(c["test"] == "Bool" and c["variable"] == "aws:SecureTransport" and c["values"] == ["false"]
                for c in s.get("condition", []))
    ]
    assert tls_denials, "no Deny statement on aws:SecureTransport = false"
    statement = tls_denials[0]
    assert statement["actions"] == ["s3:*"]
    assert any(p["identifiers"] == ["*"] for p in statement["principals"])
    bucket_arn = "${aws_s3_bucket.backups.arn}"
    assert set(statement["resources"]) == {bucket_arn, f"{bucket_arn}/*"}


def test_backup_lifecycle_follows_retention_variable():
    lifecycle = _only(typed_blocks(BACKUP, "resource", "aws_s3_bucket_lifecycle_configuration"), "lifecycle configuration")
    rules = [r for r in lifecycle["rule"] if r.get("status") == "Enabled"]
    assert rules, "no enabled lifecycle rule"
    expirations = [(r, e) for r in rules for e in r.get("expiration", [])]
    assert expirations, "no expiration rule"
    for rule, expiration in expirations:
        assert expiration.get("days") == "${var.backup_retention_days}", f"expiration days {expiration.get('days')!r} do not follow var.backup_retention_days"
        assert rule["filter"][0].get("prefix") == "${var.prefix}", "expiration must be limited to the backup prefix"
        assert rule.get("noncurrent_version_expiration"), "versioned bucket: noncurrent versions must expire too"
    retention = named_blocks(BACKUP, "variable")["backup_retention_days"]
    assert retention["type"] == "number" and "default" not in retention, "retention must be chosen explicitly"
    for directory in ENV_DIRS:
        call = named_blocks(directory, "module")["backup_storage"]
        assert call["backup_retention_days"] == "${var.backup_retention_days}"
        assert isinstance(parse(directory / "terraform.tfvars")["backup_retention_days"], int)


# --------------------------------------------------------------------------- backup identity

IDENTITY = MODULES / "identity"
BACKUP_ACTIONS = {
    "s3:ListBucket", "s3:GetObject", "s3:PutObject", "s3:DeleteObject",
    "kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey",
}


def _backup_role_policy() -> dict:
    role_policy = _only(typed_blocks(IDENTITY, "resource", "aws_iam_role_policy"), "inline role policy")
    assert not typed_blocks(IDENTITY, "resource", "aws_iam_role_policy_attachment"), "no extra policies on the backup role"
    return policy_document_of(IDENTITY, role_policy["policy"])


def test_backup_role_policy_is_scoped_to_bucket_prefix():
    statements = _backup_role_policy()["statement"]
    actions = {a for s in statements for a in s["actions"]}
    assert actions == BACKUP_ACTIONS, f"actions {sorted(actions)}"
    for statement in statements:
        assert statement.get("effect", "Allow") == "Allow"
        assert not statement.get("not_actions") and not statement.get("not_resources")
        assert not any("*" in a for a in statement["actions"]), f"wildcard action in {statement['actions']}"
        assert "*" not in statement["resources"], "wildcard resource"
        actions_here = set(statement["actions"])
        if actions_here == {"s3:ListBucket"}:
            assert statement["resources"] == ["${var.bucket_arn}"]
            assert {"test": "StringLike", "variable": "s3:prefix", "values": ["${var.bucket_prefix}*"]} in statement.get("condition", []), "ListBucket must be limited to the prefix"
        elif actions_here <= {"s3:GetObject", "s3:PutObject", "s3:DeleteObject"}:
            assert statement["resources"] == ["${var.bucket_arn}/${var.bucket_prefix}*"]
        elif actions_here <= {"kms:Encrypt", "kms:Decrypt", "kms:GenerateDataKey"}:
            assert statement["resources"] == ["${var.kms_key_arn}"]
        else:
            pytest.fail(f"statement mixes services or actions: {sorted(actions_here)}")


def test_backup_role_trusts_only_listed_service_accounts():
    role = _only(typed_blocks(IDENTITY, "resource", "aws_iam_role"), "IAM role")
    statements = policy_document_of(IDENTITY, role["assume_role_policy"])["statement"]
    assert len(statements) == 1
    trust = statements[0]
    assert trust["actions"] == ["sts:AssumeRoleWithWebIdentity"]
    assert trust["principals"] == [{"type": "Federated", "identifiers": ["${var.oidc_provider_arn}"]}]
    conditions = {c["variable"]: c for c in trust["condition"]}
    sub = conditions["${var.oidc_provider}:sub"]
    assert sub["test"] == "StringEquals", "StringLike would let patterns match unlisted ServiceAccounts"
    assert re.fullmatch(
        r"\$\{\[for (\w+) in var\.service_accounts : \"system:serviceaccount:\$\{\1\.namespace\}:\$\{\1\.name\}\"\]\}",
        sub["values"],
    ), sub["values"]
    aud = conditions["${var.oidc_provider}:aud"]
    assert aud["test"] == "StringEquals" and aud["values"] == ["sts.amazonaws.com"]
    accounts_type = named_blocks(IDENTITY, "variable")["service_accounts"]["type"]
    assert re.sub(r"\s", "", accounts_type) == "${list(object({namespace=string,name=string}))}"


@pytest.mark.parametrize("directory", ENV_DIRS, ids=_rel)
def test_backup_role_trusts_the_environments_backup_service_account(directory):
    accounts = parse(directory / "terraform.tfvars")["backup_service_accounts"]
    assert accounts and all(sa["name"].endswith("-backup") for sa in accounts), accounts
    gitops_env = REPO / "argocd" / "environments" / directory.name
    if not (gitops_env / "config.yaml").is_file():
        pytest.skip(f"SKIPPED: {_rel(gitops_env)}/config.yaml is not in the tree; cannot cross-check the namespace")
    namespace = yaml.safe_load((gitops_env / "config.yaml").read_text())["namespace"]
    blocksights = [d for d in yaml.safe_load_all((gitops_env / "blocksight.yaml").read_text())
                   if d and d.get("kind") == "BlockSight"]
    expected = [{"namespace": namespace, "name": f"{d['metadata']['name']}-backup"} for d in blocksights]
    assert expected and all(sa in accounts for sa in expected), f"backup role must trust {expected}, tfvars has {accounts}"


# --------------------------------------------------------------------------- cluster

CLUSTER = MODULES / "cluster"


def _eks_module() -> dict:
    module = named_blocks(CLUSTER, "module")["eks"]
    assert module["source"] == "terraform-aws-modules/eks/aws"
    return module


def test_storage_node_group_is_tainted_and_labelled():
    placement = locals_of(CLUSTER)["node_group_placement"]
    assert set(placement) == {"system", "storage", "application"}
    storage = placement["storage"]
    assert storage["labels"] == {"blocksight.live/node-pool": "storage"}
    assert list(storage["taints"].values()) == [
        {"key": "blocksight.live/storage", "value": "true", "effect": "NO_SCHEDULE"}
    ]
    assert storage["subnet_ids"] == "${var.storage_subnet_ids}"
    for other in ("system", "application"):
        assert placement[other]["taints"] == {}, f"{other} nodes must not carry taints BlockSight does not tolerate"
        assert placement[other]["labels"] == {"blocksight.live/node-pool": other}
    groups = _eks_module()["eks_managed_node_groups"]
    for attribute in ("labels", "taints", "subnet_ids"):
        assert f"{attribute} = local.node_group_placement[name].{attribute}" in groups, f"node groups do not take {attribute} from node_group_placement"
    assert "for name, group in var.node_groups" in groups
    assert 'volume_type = "gp3"' in groups


def test_storage_placement_output_matches_the_taint():
    value = named_blocks(CLUSTER, "output")["storage_placement"]["value"]
    assert value["nodeSelector"] == "${local.node_group_placement.storage.labels}"
    tolerations = value["tolerations"]
    assert "local.node_group_placement.storage.taints" in tolerations
    assert 'NO_SCHEDULE = "NoSchedule"' in tolerations and 'operator = "Equal"' in tolerations


def test_ebs_csi_and_snapshot_controller_addons():
    addons = locals_of(CLUSTER)["addons"]
    assert "aws-ebs-csi-driver" in addons and "snapshot-controller" in addons
    assert addons["aws-ebs-csi-driver"]["service_account_role_arn"] == "${aws_iam_role.ebs_csi_driver.arn}"
    assert "in local.addons" in _eks_module()["cluster_addons"]
    trust = typed_blocks(CLUSTER, "data", "aws_iam_policy_document")["ebs_csi_driver_trust"]["statement"][0]
    assert any(c["values"] == ["system:serviceaccount:kube-system:ebs-csi-controller-sa"] for c in trust["condition"])
    attachment = typed_blocks(CLUSTER, "resource", "aws_iam_role_policy_attachment")["ebs_csi_driver"]
    assert attachment["policy_arn"].endswith(":iam::aws:policy/service-role/AmazonEBSCSIDriverPolicy")


def test_gp3_storage_class_retains_and_expands():
    storage_class = typed_blocks(CLUSTER, "resource", "kubernetes_storage_class_v1")["gp3"]
    assert storage_class["storage_provisioner"] == "ebs.csi.aws.com"
    assert storage_class["parameters"]["type"] == "gp3"
    assert storage_class["parameters"]["encrypted"] == "true"
    assert storage_class["reclaim_policy"] == "Retain"
    assert storage_class["volume_binding_mode"] == "WaitForFirstConsumer"
    assert storage_class["allow_volume_expansion"] is True
    # EKS >= 1.30 has no default class; the GitOps BlockSights name none.
    annotation = storage_class["metadata"][0]["annotations"]["storageclass.kubernetes.io/is-default-class"]
    assert annotation == "${tostring(var.storage_class.is_default)}"
    assert "is_default       = optional(bool, true)" in (CLUSTER / "variables.tf").read_text()


def test_production_storage_nodes_are_sized_for_mainnet():
    values = parse(ENVIRONMENTS / "production" / "terraform.tfvars")
    storage = values["node_groups"]["storage"]
    for instance_type in storage["instance_types"]:
        match = re.fullmatch(r"(r|m)[6-8][a-z]*\.(\d*)xlarge", instance_type)
        assert match and int(match.group(2) or 1) >= 2, f"{instance_type}: mainnet bitcoind + electrs need an r/m class of at least 2xlarge"
    assert storage.get("capacity_type", "ON_DEMAND") == "ON_DEMAND"
    assert values["storage_class"]["iops"] > 3000 and values["storage_class"]["throughput_mibps"] > 125
    assert values["nat_gateway_mode"] == "one_per_az"
    assert values["argocd_high_availability"] is True and values["node_groups"]["system"]["min_size"] >= 3
    assert re.fullmatch(r"v\d+\.\d+\.\d+", values["gitops_target_revision"]), "production follows a release tag"


# --------------------------------------------------------------------------- gitops

GITOPS = MODULES / "gitops"
HEALTH_CHECKS = "argocd/health"
HEALTH_KINDS = ["blocksight.live_BlockSight", "argoproj.io_Application"]


def _helm_release(chart: str) -> tuple:
    releases = {n: b for n, b in typed_blocks(GITOPS, "resource", "helm_release").items() if b["chart"] == chart}
    assert len(releases) == 1, f"expected one helm_release of {chart}"
    return next(iter(releases.items()))


def test_argocd_release_is_pinned_and_registers_blocksight_health_check():
    _, release = _helm_release("argo-cd")
    assert resolve(GITOPS, release["repository"]) == "https://argoproj.github.io/argo-helm"
    assert EXACT_VERSION.match(resolve(GITOPS, release["version"]))
    assert release["values"] == ["${yamlencode(local.argocd_values)}"]
    assert locals_of(GITOPS)["health_checks_dir"] == f"${{var.repo_root}}/{HEALTH_CHECKS}"
    cm = locals_of(GITOPS)["argocd_values"]["configs"]["cm"]
    for kind in HEALTH_KINDS:
        health = cm.get(f"resource.customizations.health.{kind}")
        assert health == f'${{file("${{local.health_checks_dir}}/{kind}/health.lua")}}', f"{kind}: {health!r}"
    health_dir = REPO / HEALTH_CHECKS
    if not health_dir.is_dir():
        pytest.skip(f"SKIPPED: {HEALTH_CHECKS}/ is not in the tree; cannot check every health check is wired")
    in_repo = sorted(p.parent.name for p in health_dir.glob("*/health.lua"))
    wired = sorted(k.removeprefix("resource.customizations.health.") for k in cm if k.startswith("resource.customizations.health."))
    assert in_repo == wired, f"health checks in {HEALTH_CHECKS}/ {in_repo} != wired into argocd-cm {wired}"


def test_bootstrap_application_points_at_this_repos_argocd_folder():
    _, argocd = _helm_release("argo-cd")
    name, release = _helm_release("argocd-apps")
    assert resolve(GITOPS, release["repository"]) == "https://argoproj.github.io/argo-helm"
    assert EXACT_VERSION.match(resolve(GITOPS, release["version"]))
    argocd_name = [n for n, b in typed_blocks(GITOPS, "resource", "helm_release").items() if b is argocd][0]
    assert f"${{helm_release.{argocd_name}}}" in release.get("depends_on", []), "the Application CRD comes with Argo CD"
    values = release["values"][0]
    for expected in ("repoURL = var.repo_url", "targetRevision = var.target_revision", "path = var.bootstrap_path",
                     'server = "https://kubernetes.default.svc"'):
        assert expected in values, f"bootstrap Application lacks {expected}"
    assert "resources-finalizer" not in values, "deleting the bootstrap must not cascade into BlockSight"
    variables = named_blocks(GITOPS, "variable")
    path = variables["bootstrap_path"]["default"]
    assert path == "argocd/apps"
    assert "default" not in variables["repo_url"], "repo URL must be given by the environment"
    bootstrap_yaml = REPO / "argocd" / "bootstrap.yaml"
    if not bootstrap_yaml.is_file():
        pytest.skip("SKIPPED: argocd/bootstrap.yaml is not in the tree; cannot cross-check the bootstrap Application")
    assert (REPO / path).is_dir(), f"{path}/ does not exist"
    by_hand = yaml.safe_load(bootstrap_yaml.read_text())
    assert by_hand["metadata"]["name"] == resolve(GITOPS, "${local.bootstrap_application}"), "Terraform and argocd/bootstrap.yaml must create the same Application"
    assert by_hand["spec"]["source"]["path"] == path


@pytest.mark.parametrize("directory", ENV_DIRS, ids=_rel)
def test_environment_repo_root_reaches_the_health_check(directory):
    call = named_blocks(directory, "module")["gitops"]
    match = re.fullmatch(r"\$\{path\.root\}/(.+)", call["repo_root"])
    assert match, f"repo_root {call['repo_root']!r} must be relative to path.root"
    assert (directory / match.group(1)).resolve() == REPO
    assert "${module.cluster}" in call.get("depends_on", []), "Argo CD needs the node groups"
    if not (REPO / "argocd").is_dir():
        pytest.skip("SKIPPED: argocd/ is not in the tree yet; cannot check the health check files exist")
    for kind in HEALTH_KINDS:
        lua = REPO / HEALTH_CHECKS / kind / "health.lua"
        assert lua.is_file(), f"{_rel(lua)} is missing: terraform plan would fail in the gitops module"


# --------------------------------------------------------------------------- environments per cluster
#
# Each cluster's Argo CD syncs the same argocd/apps; the gitops module's labelled in-cluster
# cluster Secret decides which environments the ApplicationSet generates there. These tests
# evaluate the real HCL with `terraform console` (no providers needed: the values live in
# modules/gitops/locals.tf and the variables' validations) and feed the result to the
# ApplicationSet model of test_argocd.py.

import test_argocd as argocd_model  # noqa: E402  (module import: its tests are not collected twice)

GITOPS_REQUIRED_VARS = {"repo_url": "https://github.com/blocksight-live/blocksight-operator.git",
                        "target_revision": "main"}


def terraform_console(tmp_path: Path, files: list, expression: str, variables: dict, var_files=()):
    """Evaluate `expression` over copies of `files`; returns (value or None, error text)."""
    terraform = shutil.which("terraform")
    if not terraform:
        pytest.skip("SKIPPED: terraform binary not found on PATH; `terraform console` needs it")
    work = tmp_path / "config"
    work.mkdir()
    for path in files:
        shutil.copy(path, work / path.name)
    (tmp_path / "terraformrc").write_text("")
    args = [terraform, "console"]
    args += [f"-var-file={f}" for f in var_files]
    args += [f"-var={name}={value}" for name, value in variables.items()]
    proc = subprocess.run(args, cwd=work, input=f"jsonencode({expression})\n", capture_output=True, text=True,
                          timeout=60, env={"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path),
                                           "TF_CLI_CONFIG_FILE": str(tmp_path / "terraformrc"),
                                           "TF_IN_AUTOMATION": "1"})
    # console reports a failed variable validation on stderr but may still exit 0.
    errors = " ".join(re.sub(r"\x1b\[[0-9;]*m|[│╷╵]", " ", proc.stderr).split())
    if "Error:" in errors or proc.returncode != 0:
        return None, errors or f"exit {proc.returncode}"
    return json.loads(json.loads(proc.stdout.strip())), ""


def gitops_in_cluster_secret(tmp_path: Path, environments) -> dict:
    value, errors = terraform_console(
        tmp_path, [GITOPS / "variables.tf", GITOPS / "locals.tf"], "local.in_cluster_secret",
        {**GITOPS_REQUIRED_VARS, "repo_root": str(REPO), "environments": json.dumps(sorted(environments))})
    assert value is not None, errors
    return value


def as_secret_manifest(value: dict) -> dict:
    return {"apiVersion": "v1", "kind": "Secret",
            "metadata": {"name": value["name"], "namespace": "argocd", "labels": value["labels"]},
            "type": "Opaque", "stringData": value["data"]}


def test_gitops_module_keeps_its_locals_pure():
    """locals.tf must stay evaluable without providers, or the console tests below cannot run it."""
    blocks = parse(GITOPS / "locals.tf")
    assert set(blocks) == {"locals"}
    assert not re.search(r"\b(data|module|helm_release|kubernetes_\w+)\.", (GITOPS / "locals.tf").read_text())
    secret = typed_blocks(GITOPS, "resource", "kubernetes_secret_v1")["in_cluster"]
    metadata = secret["metadata"][0]
    assert metadata["labels"] == "${local.in_cluster_secret.labels}"
    assert metadata["name"] == "${local.in_cluster_secret.name}" and metadata["namespace"] == "${var.namespace}"
    assert secret["data"] == "${local.in_cluster_secret.data}"
    _, bootstrap = _helm_release("argocd-apps")
    assert "${kubernetes_secret_v1.in_cluster}" in bootstrap["depends_on"], "label the cluster before the ApplicationSet exists"


@pytest.mark.parametrize("directory", ENV_DIRS, ids=_rel)
def test_cluster_runs_exactly_its_assigned_environments(directory, tmp_path):
    """tfvars -> gitops module -> labelled cluster Secret -> ApplicationSet: the Applications of this cluster."""
    assert named_blocks(directory, "module")["gitops"]["environments"] == "${var.gitops_environments}"
    assigned = parse(directory / "terraform.tfvars")["gitops_environments"]
    secret = as_secret_manifest(gitops_in_cluster_secret(tmp_path, assigned))
    applications = argocd_model.generate_applications([secret])
    assert sorted(a["metadata"]["name"] for a in applications) == sorted(f"blocksight-{e}" for e in assigned)
    for application in applications:
        assert application["spec"]["destination"]["server"] == "https://kubernetes.default.svc"


def test_clusters_split_the_environments_between_them():
    assigned = {d.name: set(parse(d / "terraform.tfvars")["gitops_environments"]) for d in ENV_DIRS}
    assert assigned == {"staging": {"dev", "staging"}, "production": {"production"}}
    in_repo = {p.parent.name for p in (REPO / "argocd" / "environments").glob("*/config.yaml")}
    # Every environment runs somewhere, and on one cluster only (two clusters would fight over nothing,
    # but would run two copies of the same BlockSight).
    assert set().union(*assigned.values()) == in_repo
    assert sum(len(a) for a in assigned.values()) == len(in_repo)


def test_by_hand_cluster_secret_is_the_terraform_one(tmp_path):
    by_hand = yaml.safe_load((REPO / "argocd" / "cluster-in-cluster.yaml").read_text())
    environments = [k.removeprefix("blocksight.live/environment-") for k in by_hand["metadata"]["labels"]
                    if k.startswith("blocksight.live/environment-")]
    value = gitops_in_cluster_secret(tmp_path, environments)
    assert by_hand["metadata"]["name"] == value["name"]
    assert by_hand["metadata"]["labels"] == value["labels"]
    assert {**by_hand["stringData"], "config": json.loads(by_hand["stringData"]["config"])} == \
        {**value["data"], "config": json.loads(value["data"]["config"])}
    assert by_hand["metadata"]["namespace"] == named_blocks(GITOPS, "variable")["namespace"]["default"]


@pytest.mark.parametrize("environments, message", [
    (["qa"], "needs argocd/environments/<env>/config.yaml"),
    ([], "must list at least one environment"),
    (["Dev"], "lowercase DNS label"),
])
def test_gitops_module_rejects_unknown_environments(tmp_path, environments, message):
    value, errors = terraform_console(
        tmp_path, [GITOPS / "variables.tf", GITOPS / "locals.tf"], "var.environments",
        {**GITOPS_REQUIRED_VARS, "repo_root": str(REPO), "environments": json.dumps(environments)})
    assert value is None and message in errors, errors


@pytest.mark.parametrize("environment, overrides, message", [
    ("staging", {}, None),
    ("production", {}, None),
    ("production", {"gitops_environments": ["production", "dev"]}, "runs the production environment only"),
    ("staging", {"gitops_environments": ["dev"]}, "must include the cluster's own environment"),
    ("production", {"gitops_target_revision": "main"}, "production follows a release tag"),
    ("staging", {"gitops_target_revision": "main"}, None),
])
def test_environment_gitops_variables_are_validated(tmp_path, environment, overrides, message):
    directory = ENVIRONMENTS / environment
    variables = {k: json.dumps(v) if isinstance(v, list) else v for k, v in overrides.items()}
    value, errors = terraform_console(tmp_path, [directory / "variables.tf"], "var.gitops_environments", variables,
                                      var_files=[directory / "terraform.tfvars"])
    if message is None:
        assert value is not None, errors
    else:
        assert value is None and message in errors, errors


@pytest.mark.parametrize("directory", ENV_DIRS, ids=_rel)
def test_gitops_target_revision_is_the_environments_revision(directory):
    """The app of apps (operator chart, ApplicationSet) and the cluster's own environment move together."""
    values = parse(directory / "terraform.tfvars")
    config = yaml.safe_load((REPO / "argocd" / "environments" / values["environment"] / "config.yaml").read_text())
    assert values["gitops_target_revision"] == config["targetRevision"]
    # Environments sharing a cluster share its one operator (argocd/apps at gitops_target_revision),
    # so they follow that revision too.
    for environment in values["gitops_environments"]:
        other = yaml.safe_load((REPO / "argocd" / "environments" / environment / "config.yaml").read_text())
        assert other["targetRevision"] == values["gitops_target_revision"], environment


TAINT_EFFECTS = {"NO_SCHEDULE": "NoSchedule", "NO_EXECUTE": "NoExecute", "PREFER_NO_SCHEDULE": "PreferNoSchedule"}


@pytest.mark.parametrize("directory", ENV_DIRS, ids=_rel)
def test_blocksight_placements_match_the_clusters_node_pools(directory):
    """Every node pool a BlockSight on this cluster selects exists here, and its taints are tolerated."""
    pools = locals_of(CLUSTER)["node_group_placement"]
    values = parse(directory / "terraform.tfvars")
    checked = 0
    for environment in values["gitops_environments"]:
        spec = yaml.safe_load((REPO / "argocd" / "environments" / environment / "blocksight.yaml").read_text())["spec"]
        for component, settings in spec.items():
            placement = settings.get("placement") if isinstance(settings, dict) else None
            if not placement:
                continue
            matching = [name for name, pool in pools.items() if pool["labels"] == placement["nodeSelector"]]
            assert len(matching) == 1, f"{environment}/{component}: no node pool has labels {placement['nodeSelector']}"
            assert matching[0] in values["node_groups"], f"{environment}/{component}: no {matching[0]} node group here"
            for taint in pools[matching[0]]["taints"].values():
                wanted = {"key": taint["key"], "operator": "Equal", "value": taint["value"],
                          "effect": TAINT_EFFECTS[taint["effect"]]}
                assert wanted in placement.get("tolerations", []), f"{environment}/{component} does not tolerate {wanted}"
            checked += 1
    assert checked, "no BlockSight on this cluster selects a node pool"
