//! What users install, on the real API server: the whole Helm chart (`helm template` of
//! charts/blocksight-operator, applied as `helm install` would create it: the operator's
//! Deployment runs under kwok, which starts no container but schedules and readies its pods),
//! and the GitOps manifests (argocd/) against Argo CD's own CRDs.

use std::path::Path;
use std::process::Command;
use std::time::Duration;

use k8s_openapi::api::apps::v1::Deployment;
use kube::api::Api;

use crate::kit;

const REPO: &str = env!("CARGO_MANIFEST_DIR");

fn python() -> String {
    std::env::var("PYTHON").unwrap_or_else(|_| format!("{REPO}/.venv/bin/python"))
}

/// `helm template` of the whole chart, as release `release` in `namespace`.
fn chart(release: &str, namespace: &str) -> String {
    let out = Command::new(python())
        .arg(format!("{REPO}/tests/controlplane/helm_template.py"))
        .args(["--all", "--release", release, "--namespace", namespace])
        .output()
        .expect("helm_template.py runs (the .venv of tests/run.sh)");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_whole_chart_installs_and_the_operator_deployment_becomes_available() {
    let client = kit::admin().await;
    let ns = kit::namespace(&client, "chart").await;
    // Another release name than the suite's own install, so that no cluster-wide object of
    // that install (ClusterRole, binding) is touched.
    let release = format!("chart-{}", &ns[ns.len() - 4..]);
    let manifests = chart(&release, &ns);
    let (ok, out) = kit::kubectl(
        &[
            "apply",
            "--server-side",
            "--field-manager=helm",
            "-n",
            &ns,
            "-f",
            "-",
        ],
        Some(&manifests),
    );
    assert!(ok, "the API server refused the chart: {out}");
    let deployments: Api<Deployment> = Api::namespaced(client.clone(), &ns);
    let name = format!("{release}-blocksight-operator");
    kit::eventually(
        "the operator Deployment available (2 replicas)",
        Duration::from_secs(90),
        || async {
            let d = deployments.get_opt(&name).await.ok()??;
            let status = d.status?;
            (status.available_replicas == Some(2)).then_some(())
        },
    )
    .await;
    let (ok, out) = kit::kubectl(
        &["delete", "-n", &ns, "--wait=false", "-f", "-"],
        Some(&manifests),
    );
    assert!(ok, "{out}");
    kit::delete_namespace(&client, &ns).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gitops_manifests_are_accepted_by_the_api_server() {
    let shared = std::env::var("SHARED_DIR").unwrap_or_else(|_| format!("{REPO}/../shared"));
    let argo_crds = Path::new(&shared).join("schemas/crds");
    assert!(
        argo_crds.is_dir(),
        "Argo CD's CRDs are read from {} (SHARED_DIR)",
        argo_crds.display()
    );
    for crd in [
        "argoproj.io_application.yaml",
        "argoproj.io_applicationset.yaml",
        "argoproj.io_appproject.yaml",
    ] {
        let path = argo_crds.join(crd);
        let (ok, out) = kit::kubectl(
            &[
                "apply",
                "--server-side",
                "--field-manager=e2e-argocd",
                "-f",
                path.to_str().unwrap(),
            ],
            None,
        );
        assert!(ok, "{crd}: {out}");
    }
    // Until the CRDs have conditions at all, `kubectl wait` fails at once: retry it.
    kit::eventually(
        "Argo CD's CRDs Established",
        Duration::from_secs(60),
        || async {
            let (ok, _) = kit::kubectl(
                &[
                    "wait",
                    "--for=condition=Established",
                    "crd/applications.argoproj.io",
                    "crd/applicationsets.argoproj.io",
                    "crd/appprojects.argoproj.io",
                    "--timeout=10s",
                ],
                None,
            );
            ok.then_some(())
        },
    )
    .await;
    let client = kit::admin().await;
    // The Applications live in argocd's namespace.
    let (ok, out) = kit::kubectl(&["create", "namespace", "argocd"], None);
    assert!(ok || out.contains("AlreadyExists"), "{out}");
    for folder in ["argocd/apps", "argocd/bootstrap.yaml"] {
        let (ok, out) = kit::kubectl(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=argocd",
                "-f",
                &format!("{REPO}/{folder}"),
            ],
            None,
        );
        assert!(ok, "{folder}: {out}");
    }
    // Each environment's BlockSight, as the ApplicationSet applies it into its namespace.
    let ns = kit::namespace(&client, "gitops").await;
    for env in ["dev", "staging", "production"] {
        let (ok, out) = kit::kubectl(
            &[
                "apply",
                "--server-side",
                "--dry-run=server",
                "--field-manager=argocd",
                "-n",
                &ns,
                "-f",
                &format!("{REPO}/argocd/environments/{env}/blocksight.yaml"),
            ],
            None,
        );
        assert!(ok, "{env}: {out}");
    }
    kit::delete_namespace(&client, &ns).await;
}
