"""`helm template` of the operator's chart (real Helm through helm-python-sdk), printing only
the objects a cluster needs to run the operator outside a pod: its ServiceAccount, Roles,
ClusterRoles and their bindings. The operator's Deployment, Service and monitors need its
image, which a local control plane (kwok) cannot run.

    python tests/controlplane/helm_template.py [--namespace NS] [--watch-namespace NS]
                                               [--release NAME] [--all]

--all prints every object of the chart (what `helm install` creates), for the e2e test that
installs the whole chart.
"""
import argparse
import pathlib
import sys

import helm_python as helm
import yaml

CHART = pathlib.Path(__file__).resolve().parents[2] / "charts" / "blocksight-operator"
KINDS = {"ServiceAccount", "ClusterRole", "ClusterRoleBinding", "Role", "RoleBinding"}


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--release", default="blocksight-operator")
    parser.add_argument("--namespace", default="blocksight-system")
    parser.add_argument("--watch-namespace", default="")
    parser.add_argument("--all", action="store_true", help="every object, not only RBAC")
    args = parser.parse_args()
    values = {"watchNamespace": args.watch_namespace} if args.watch_namespace else {}
    with helm.Chart.load(CHART) as chart:
        manifests = chart.render(values, name=args.release, namespace=args.namespace)
    docs = []
    for path, text in sorted(manifests.items()):
        if path.endswith("NOTES.txt"):
            continue
        for doc in yaml.safe_load_all(text):
            if doc and (args.all or doc.get("kind") in KINDS):
                docs.append(doc)
    if not docs:
        print("helm_template.py: the chart rendered no RBAC objects", file=sys.stderr)
        return 1
    yaml.safe_dump_all(docs, sys.stdout, sort_keys=False)
    return 0


if __name__ == "__main__":
    sys.exit(main())
