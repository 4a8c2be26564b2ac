//! The e2e test kit: the cluster's clients, a namespace per test, the operator binary run as
//! the chart's ServiceAccount, waiting, and the API server's audit log.
//!
//! The cluster comes from the environment, which `tests/run.sh` sets after starting the local
//! control plane (`tests/controlplane/up.sh`) and installing the CRDs and the chart's RBAC
//! (`tests/controlplane/install.sh`):
//! - `BLOCKSIGHT_E2E_KUBECONFIG`: a cluster admin (the test's own eyes and hands);
//! - `BLOCKSIGHT_E2E_OPERATOR_KUBECONFIG`: the operator's ServiceAccount token;
//! - `BLOCKSIGHT_E2E_AUDIT_LOG`: the API server's audit log (local control plane only; the
//!   tests that count requests on the server need it and fail without it);
//! - `BLOCKSIGHT_E2E_KUBECTL`: kubectl (default `kubectl`), for what users do with it.
//!
//! Without the first two the tests fail with that message: e2e is never skipped.

use std::future::Future;
use std::io::{BufRead, Read};
use std::path::PathBuf;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::Namespace;
use kube::api::{Api, DeleteParams, PostParams};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::{Client, Config};
use serde::Deserialize;

/// The ServiceAccount the chart creates; the operator runs as it.
pub const OPERATOR_USER: &str = "system:serviceaccount:blocksight-system:blocksight-operator";

pub struct Env {
    pub kubeconfig: PathBuf,
    pub operator_kubeconfig: PathBuf,
    pub audit_log: Option<PathBuf>,
    pub kubectl: String,
}

pub fn env() -> Env {
    let var = |name: &str| {
        std::env::var_os(name)
            .filter(|v| !v.is_empty())
            .map(PathBuf::from)
    };
    let missing = |name: &str| -> ! {
        panic!(
            "{name} is not set: the e2e tests need a cluster. `bash tests/run.sh` starts a local \
             control plane and sets it; for kind/k3d set BLOCKSIGHT_E2E_KUBECONFIG and run \
             tests/controlplane/install.sh first (see tests/run.sh)"
        )
    };
    Env {
        kubeconfig: var("BLOCKSIGHT_E2E_KUBECONFIG")
            .unwrap_or_else(|| missing("BLOCKSIGHT_E2E_KUBECONFIG")),
        operator_kubeconfig: var("BLOCKSIGHT_E2E_OPERATOR_KUBECONFIG")
            .unwrap_or_else(|| missing("BLOCKSIGHT_E2E_OPERATOR_KUBECONFIG")),
        audit_log: var("BLOCKSIGHT_E2E_AUDIT_LOG"),
        kubectl: std::env::var("BLOCKSIGHT_E2E_KUBECTL").unwrap_or_else(|_| "kubectl".into()),
    }
}

async fn client_from(path: &PathBuf) -> Client {
    let kubeconfig =
        Kubeconfig::read_from(path).unwrap_or_else(|e| panic!("reading {}: {e}", path.display()));
    let config = Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .unwrap_or_else(|e| panic!("kubeconfig {}: {e}", path.display()));
    Client::try_from(config).expect("client")
}

/// A cluster-admin client: what the test reads and does by hand.
pub async fn admin() -> Client {
    client_from(&env().kubeconfig).await
}

/// A new namespace `e2e-<prefix>-<random>`, so reruns against a kind cluster never collide.
pub async fn namespace(client: &Client, prefix: &str) -> String {
    let name = format!("e2e-{prefix}-{:04x}", rand::random::<u16>());
    let ns: Namespace =
        serde_json::from_value(serde_json::json!({"metadata": {"name": name}})).expect("namespace");
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .unwrap_or_else(|e| panic!("creating namespace {name}: {e}"));
    name
}

/// Deletes a namespace (the test's last step; a failed test leaves its namespace to look at).
pub async fn delete_namespace(client: &Client, name: &str) {
    let _ = Api::<Namespace>::all(client.clone())
        .delete(name, &DeleteParams::background())
        .await;
}

/// Polls `check` every 500 ms until it returns Some, or panics naming `what` after `timeout`.
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return value;
        }
        if Instant::now() > deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
    }
}

/// `kubectl` with the admin kubeconfig: what a user types. Returns (success, stdout+stderr).
pub fn kubectl(args: &[&str], stdin: Option<&str>) -> (bool, String) {
    let env = env();
    let mut child = Command::new(&env.kubectl)
        .arg("--kubeconfig")
        .arg(&env.kubeconfig)
        .args(args)
        .stdin(if stdin.is_some() {
            Stdio::piped()
        } else {
            Stdio::null()
        })
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("running {}: {e}", env.kubectl));
    if let Some(input) = stdin {
        use std::io::Write;
        child
            .stdin
            .take()
            .unwrap()
            .write_all(input.as_bytes())
            .unwrap();
    }
    let out = child.wait_with_output().expect("kubectl ran");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// The operator binary (`blocksight run`), as a separate process with the ServiceAccount's
/// kubeconfig: exactly the chart's permissions, never the test's admin credentials. Stopped
/// (SIGKILL) when dropped; a failing test prints the end of its log.
pub struct Operator {
    child: std::process::Child,
    log: tempfile::NamedTempFile,
    pub identity: String,
}

impl Operator {
    /// An operator watching `namespace`, without leader election.
    pub fn start(namespace: &str) -> Operator {
        Operator::spawn(
            &format!("e2e-{namespace}"),
            &[
                "--namespace",
                namespace,
                "--leader-election=false",
                "--probe-interval=5s",
                "--resync-interval=5s",
            ],
        )
    }

    /// `blocksight run <args>` as identity `identity` (POD_NAME).
    pub fn spawn(identity: &str, args: &[&str]) -> Operator {
        let env = env();
        let log = tempfile::NamedTempFile::new().expect("log file");
        let child = Command::new(env!("CARGO_BIN_EXE_blocksight"))
            .arg("run")
            .arg("--metrics-addr=127.0.0.1:0")
            .args(args)
            .env("KUBECONFIG", &env.operator_kubeconfig)
            .env("POD_NAMESPACE", "blocksight-system")
            .env("POD_NAME", identity)
            .env("NO_COLOR", "1")
            .env(
                "RUST_LOG",
                std::env::var("BLOCKSIGHT_E2E_LOG").unwrap_or_else(|_| "info".into()),
            )
            .stdin(Stdio::null())
            .stdout(log.reopen().expect("log"))
            .stderr(log.reopen().expect("log"))
            .spawn()
            .expect("the blocksight binary starts");
        Operator {
            child,
            log,
            identity: identity.to_owned(),
        }
    }

    pub fn pid(&self) -> i32 {
        self.child.id() as i32
    }

    /// SIGTERM, as kubelet stops a pod.
    pub fn terminate(&self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe { libc_kill(self.pid(), 15) };
    }

    /// Waits for the process to exit; None when it is still running after `timeout`.
    pub fn wait_exit(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(status) = self.child.try_wait().expect("try_wait") {
                return Some(status);
            }
            if Instant::now() > deadline {
                return None;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    pub fn is_running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Everything the operator logged so far.
    pub fn log(&self) -> String {
        let mut text = String::new();
        let _ = std::fs::File::open(self.log.path()).and_then(|mut f| f.read_to_string(&mut text));
        text
    }
}

impl Drop for Operator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        if std::thread::panicking() {
            let log = self.log();
            let lines: Vec<&str> = log.lines().collect();
            let tail = &lines[lines.len().saturating_sub(60)..];
            eprintln!(
                "----- operator {} log (last {} lines)\n{}",
                self.identity,
                tail.len(),
                tail.join("\n")
            );
        }
    }
}

unsafe extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

/// One request recorded in the API server's audit log.
#[derive(Clone, Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Audited {
    pub verb: String,
    pub user: AuditUser,
    #[serde(default)]
    pub object_ref: Option<AuditObject>,
    #[serde(default)]
    pub response_status: Option<AuditStatus>,
    pub stage: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuditUser {
    pub username: String,
}

#[derive(Clone, Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct AuditObject {
    #[serde(default)]
    pub resource: String,
    #[serde(default)]
    pub namespace: String,
    #[serde(default)]
    pub name: String,
    #[serde(default)]
    pub subresource: String,
}

#[derive(Clone, Debug, Deserialize)]
pub struct AuditStatus {
    #[serde(default)]
    pub code: u16,
}

impl Audited {
    pub fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        )
    }
    pub fn is_read(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list")
    }
    pub fn namespace(&self) -> &str {
        self.object_ref
            .as_ref()
            .map(|o| o.namespace.as_str())
            .unwrap_or("")
    }
    /// `verb resource[/subresource] name`, for messages.
    pub fn line(&self) -> String {
        let o = self.object_ref.clone().unwrap_or_default();
        let sub = if o.subresource.is_empty() {
            String::new()
        } else {
            format!("/{}", o.subresource)
        };
        format!("{} {}{} {}", self.verb, o.resource, sub, o.name)
    }
}

/// A position in the audit log: requests after it are read with [`AuditLog::since`].
pub struct AuditLog {
    path: PathBuf,
    offset: u64,
}

impl AuditLog {
    /// From now on. Panics when the cluster has no audit log (the local control plane has).
    pub fn mark() -> AuditLog {
        let path = env().audit_log.expect(
            "BLOCKSIGHT_E2E_AUDIT_LOG is not set: counting requests on the server needs the \
             local control plane's audit log",
        );
        let offset = std::fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        AuditLog { path, offset }
    }

    /// The completed requests (ResponseComplete) by `user` in `namespace` since the mark.
    pub fn since(&self, user: &str, namespace: &str) -> Vec<Audited> {
        use std::io::Seek;
        let mut file = std::fs::File::open(&self.path).expect("audit log");
        file.seek(std::io::SeekFrom::Start(self.offset))
            .expect("seek");
        std::io::BufReader::new(file)
            .lines()
            .map_while(Result::ok)
            .filter_map(|l| serde_json::from_str::<Audited>(&l).ok())
            .filter(|a| {
                a.stage == "ResponseComplete"
                    && a.user.username == user
                    && a.namespace() == namespace
            })
            .collect()
    }
}
