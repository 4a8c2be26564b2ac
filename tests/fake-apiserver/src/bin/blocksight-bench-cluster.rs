//! blocksight-bench-cluster: the operator binary against a REAL local control plane
//! (tests/controlplane: etcd, kube-apiserver, the controller manager, the scheduler and kwok)
//! for N BlockSights; prints a JSON summary next to blocksight-bench's figures on the fake
//! (docs/performance.md, "On the real control plane").
//!
//!   tests/controlplane/up.sh /tmp/bench-cp
//!   KUBECTL=$(tests/controlplane/build.sh)/kubectl tests/controlplane/install.sh \
//!     /tmp/bench-cp/kubeconfig /tmp/bench-cp
//!   cargo build --release --bin blocksight
//!   cargo run --release -p blocksight-fake-apiserver --bin blocksight-bench-cluster -- \
//!     --kubeconfig /tmp/bench-cp/kubeconfig --operator-kubeconfig /tmp/bench-cp/operator.kubeconfig \
//!     --audit-log /tmp/bench-cp/audit.log --pids /tmp/bench-cp/pids --n 100,1000
//!
//! The operator's requests are counted on the server, from the API server's audit log (up.sh
//! logs every request by a ServiceAccount; the operator runs as the chart's). CPU of the
//! operator and of every control plane process comes from /proc. Builds nothing itself: it
//! runs the binary given by --operator.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};
use std::io::{BufRead, Read, Seek};
use std::net::SocketAddr;
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use clap::Parser;
use futures::{Stream, StreamExt, TryStreamExt};
use k8s_openapi::api::apps::v1::{Deployment, StatefulSet};
use k8s_openapi::api::core::v1::{Namespace, Pod};
use kube::api::{
    Api, ApiResource, DeleteParams, DynamicObject, ListParams, Patch, PatchParams, PostParams,
};
use kube::config::{KubeConfigOptions, Kubeconfig};
use kube::core::PartialObjectMeta;
use kube::runtime::{WatchStreamExt, watcher};
use kube::{Client, ResourceExt};
use serde_json::{Value, json};

use blocksight_fake_apiserver::convergence::{self, CHILD_RESOURCES, Expected};
use blocksight_fake_apiserver::operator::{self, regtest_blocksight};
use blocksight_operator::crd::BlockSight;
use blocksight_operator::desired::BuildSettings;

/// The ServiceAccount install.sh gives the operator (its kubeconfig's token).
const OPERATOR_USER: &str = "system:serviceaccount:blocksight-system:blocksight-operator";
/// The field manager of the benchmark's own applies (the user's, not the operator's).
const FIELD_MANAGER: &str = "blocksight-bench";
/// The operator's field manager (src/desired/meta.rs).
const OPERATOR_MANAGER: &str = blocksight_operator::names::FIELD_MANAGER;

#[derive(Debug, Parser)]
#[command(
    about = "Measure the BlockSight operator against a real (local) Kubernetes control plane"
)]
struct Args {
    /// The operator binary (build it first: cargo build --release --bin blocksight).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/blocksight"))]
    operator: PathBuf,
    /// A cluster-admin kubeconfig (up.sh's DIR/kubeconfig): the benchmark's own requests.
    #[arg(long)]
    kubeconfig: PathBuf,
    /// The operator's ServiceAccount kubeconfig (install.sh's DIR/operator.kubeconfig).
    #[arg(long)]
    operator_kubeconfig: PathBuf,
    /// The API server's audit log (up.sh's DIR/audit.log; rotated files beside it are read too).
    #[arg(long)]
    audit_log: PathBuf,
    /// The control plane's "<pid> <name>" lines (up.sh's DIR/pids).
    #[arg(long)]
    pids: PathBuf,
    /// BlockSight counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    n: Vec<usize>,
    /// Length of the steady-state window in seconds.
    #[arg(long, default_value_t = 30)]
    steady_seconds: u64,
    /// The operator's --resync-interval in seconds (its default is 300).
    #[arg(long, default_value_t = 5)]
    resync_seconds: u64,
    /// The operator's --probe-interval in seconds (its default is 30).
    #[arg(long, default_value_t = 30)]
    probe_interval_seconds: u64,
    /// Give up waiting for convergence after this many seconds (from the first apply).
    #[arg(long, default_value_t = 600)]
    converge_timeout_seconds: u64,
    /// At rest: no BlockSight's resourceVersion moved for this many seconds.
    #[arg(long, default_value_t = 15)]
    rest_seconds: u64,
    /// Give up waiting for rest after this many seconds (the steady window runs anyway).
    #[arg(long, default_value_t = 600)]
    rest_timeout_seconds: u64,
    /// BlockSights applied at once.
    #[arg(long, default_value_t = 16)]
    concurrency: usize,
    /// How long to wait for a namespace to be deleted before the next N (the last one's
    /// deletion is not waited for).
    #[arg(long, default_value_t = 900)]
    delete_timeout_seconds: u64,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

fn progress(message: impl AsRef<str>) {
    eprintln!(
        "[blocksight-bench-cluster {}] {}",
        jiff::Timestamp::now().strftime("%H:%M:%S"),
        message.as_ref()
    );
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

fn per(count: usize, n: usize) -> f64 {
    round(count as f64 / n.max(1) as f64, 2)
}

fn machine() -> Value {
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let model = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_owned());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory_kib: Option<u64> = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|l| l.split_whitespace().next()?.parse().ok());
    json!({
        "cpus": std::thread::available_parallelism().map(|n| n.get()).ok(),
        "cpu_model": model,
        "memory_mib": memory_kib.map(|k| k / 1024),
        "kernel": std::fs::read_to_string("/proc/sys/kernel/osrelease").ok().map(|s| s.trim().to_owned()),
    })
}

/// Clock ticks per second of /proc/PID/stat's utime and stime.
fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 { ticks as f64 } else { 100.0 }
}

/// Peak and current resident memory (MiB) and CPU seconds (user + system) of a process.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    peak_rss_mib: f64,
    rss_mib: f64,
    cpu_seconds: f64,
}

fn usage(pid: u32) -> Option<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let kib = |field: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on;
    // utime and stime are fields 14 and 15: indexes 11 and 12.
    let fields: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let ticks = |index: usize| -> f64 {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    Some(Usage {
        peak_rss_mib: kib("VmHWM:") / 1024.0,
        rss_mib: kib("VmRSS:") / 1024.0,
        cpu_seconds: (ticks(11) + ticks(12)) / clock_ticks(),
    })
}

/// The control plane's processes, from up.sh's pids file: (name, pid).
fn control_plane(pids: &Path) -> anyhow::Result<Vec<(String, u32)>> {
    let text =
        std::fs::read_to_string(pids).with_context(|| format!("reading {}", pids.display()))?;
    let procs: Vec<(String, u32)> = text
        .lines()
        .filter_map(|l| {
            let (pid, name) = l.trim().split_once(' ')?;
            Some((name.trim().to_owned(), pid.parse().ok()?))
        })
        .collect();
    for name in ["kube-apiserver", "etcd"] {
        let Some((_, pid)) = procs.iter().find(|(n, _)| n == name) else {
            bail!("{} names no {name}", pids.display());
        };
        if usage(*pid).is_none() {
            bail!("{name} (pid {pid}) is not running");
        }
    }
    Ok(procs)
}

/// CPU seconds of the operator and of every control plane process at one moment.
#[derive(Clone, Debug)]
struct CpuMark {
    at: Instant,
    operator: f64,
    control_plane: BTreeMap<String, f64>,
}

impl CpuMark {
    fn take(operator_pid: u32, procs: &[(String, u32)]) -> CpuMark {
        CpuMark {
            at: Instant::now(),
            operator: usage(operator_pid).map_or(0.0, |u| u.cpu_seconds),
            control_plane: procs
                .iter()
                .map(|(name, pid)| (name.clone(), usage(*pid).map_or(0.0, |u| u.cpu_seconds)))
                .collect(),
        }
    }

    /// CPU seconds used since `earlier`, per process, and the wall time between.
    fn since(&self, earlier: &CpuMark) -> Value {
        let mut processes = serde_json::Map::new();
        processes.insert(
            "blocksight-operator".into(),
            json!(round(self.operator - earlier.operator, 2)),
        );
        for (name, cpu) in &self.control_plane {
            let before = earlier.control_plane.get(name).copied().unwrap_or(0.0);
            processes.insert(name.clone(), json!(round(cpu - before, 2)));
        }
        let wall = self.at.duration_since(earlier.at).as_secs_f64();
        json!({"wall_seconds": round(wall, 1), "cpu_seconds": processes})
    }
}

// ------------------------------------------------------------------------------------------
// The audit log. kube-apiserver rotates it (at 100 MB by default: audit.log is renamed
// audit-<time>.log, same inode, and a new audit.log starts), so a mark is a file and an offset.

#[derive(Clone, Copy, Debug)]
struct AuditMark {
    inode: u64,
    /// The end of the last complete line.
    offset: u64,
}

fn audit_mark(path: &Path) -> anyhow::Result<AuditMark> {
    let mut file = std::fs::File::open(path).with_context(|| format!("{}", path.display()))?;
    let meta = file.metadata()?;
    let len = meta.len();
    let back = len.min(1 << 20);
    file.seek(std::io::SeekFrom::Start(len - back))?;
    let mut tail = Vec::with_capacity(back as usize);
    file.take(back).read_to_end(&mut tail)?;
    let offset = match tail.iter().rposition(|b| *b == b'\n') {
        Some(i) => len - back + i as u64 + 1,
        None => len - back,
    };
    Ok(AuditMark {
        inode: meta.ino(),
        offset,
    })
}

/// The audit log and the files rotated from it, oldest first: (path, inode).
fn audit_files(path: &Path) -> anyhow::Result<Vec<(PathBuf, u64)>> {
    let dir = path.parent().unwrap_or(Path::new("."));
    let live = path.file_name().context("the audit log names a file")?;
    let stem = path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_default();
    let mut files = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let entry = entry?;
        let name = entry.file_name();
        let text = name.to_string_lossy();
        let rotated = text.starts_with(&format!("{stem}-")) && text.ends_with(".log");
        if name != live && !rotated {
            continue;
        }
        let meta = entry.metadata()?;
        // The live file last; rotated ones by their last write.
        let order = (name == live, meta.modified()?);
        files.push((order, entry.path(), meta.ino()));
    }
    files.sort_by_key(|a| a.0);
    Ok(files.into_iter().map(|(_, p, i)| (p, i)).collect())
}

/// One request of the operator, as the audit log recorded it.
#[derive(Clone, Debug)]
struct Request {
    verb: String,
    /// `resource[/subresource]`.
    resource: String,
    name: String,
    namespace: String,
    code: u16,
    /// ResponseStarted (watches) or ResponseComplete.
    stage: String,
    /// Time in the API server (audit stageTimestamp - requestReceivedTimestamp).
    server_ms: Option<f64>,
}

impl Request {
    fn is_write(&self) -> bool {
        matches!(
            self.verb.as_str(),
            "create" | "update" | "patch" | "delete" | "deletecollection"
        ) && self.stage == "ResponseComplete"
    }
    fn is_read(&self) -> bool {
        matches!(self.verb.as_str(), "get" | "list") && self.stage == "ResponseComplete"
    }
    fn is_watch_start(&self) -> bool {
        self.verb == "watch" && self.stage == "ResponseStarted"
    }
    fn key(&self) -> String {
        format!("{} {}", self.verb, self.resource)
    }
    /// The BlockSight the object belongs to: `bs-NNNN` (itself, its children `bs-NNNN-...`,
    /// their Events `bs-NNNN-....<id>`).
    fn blocksight(&self) -> Option<&str> {
        let name = self.name.get(..7)?;
        let digits = name.strip_prefix("bs-")?;
        let next = self.name.as_bytes().get(7);
        (digits.bytes().all(|b| b.is_ascii_digit()) && matches!(next, None | Some(b'-' | b'.')))
            .then_some(name)
    }
}

/// The operator's requests (all namespaces) between two marks of the audit log.
fn audit_read(path: &Path, from: AuditMark, to: AuditMark) -> anyhow::Result<Vec<Request>> {
    let files = audit_files(path)?;
    let index = |inode: u64| files.iter().position(|(_, i)| *i == inode);
    let (Some(first), Some(last)) = (index(from.inode), index(to.inode)) else {
        bail!(
            "the audit log a mark points into is gone (rotated files: {:?})",
            files
        );
    };
    let mut requests = Vec::new();
    for (i, (file, _)) in files.iter().enumerate().take(last + 1).skip(first) {
        let start = if i == first { from.offset } else { 0 };
        let end = if i == last { to.offset } else { u64::MAX };
        read_requests(file, start, end, &mut requests)?;
    }
    Ok(requests)
}

fn read_requests(path: &Path, from: u64, to: u64, into: &mut Vec<Request>) -> anyhow::Result<()> {
    let mut file = std::fs::File::open(path)?;
    file.seek(std::io::SeekFrom::Start(from))?;
    let reader = std::io::BufReader::new(file.take(to.saturating_sub(from)));
    let timestamp = |v: &Value| v.as_str()?.parse::<jiff::Timestamp>().ok();
    for line in reader.lines() {
        let line = line?;
        if !line.contains(OPERATOR_USER) {
            continue;
        }
        let Ok(event) = serde_json::from_str::<Value>(&line) else {
            continue;
        };
        if event["user"]["username"] != OPERATOR_USER {
            continue;
        }
        let object = &event["objectRef"];
        let text = |v: &Value| v.as_str().unwrap_or_default().to_owned();
        let mut resource = text(&object["resource"]);
        if let Some(sub) = object["subresource"].as_str() {
            resource = format!("{resource}/{sub}");
        }
        if resource.is_empty() {
            resource = text(&event["requestURI"]);
        }
        let server_ms = match (
            timestamp(&event["requestReceivedTimestamp"]),
            timestamp(&event["stageTimestamp"]),
        ) {
            (Some(a), Some(b)) => Some(b.duration_since(a).as_secs_f64() * 1000.0),
            _ => None,
        };
        into.push(Request {
            verb: text(&event["verb"]),
            resource,
            name: text(&object["name"]),
            namespace: text(&object["namespace"]),
            code: event["responseStatus"]["code"].as_u64().unwrap_or(0) as u16,
            stage: text(&event["stage"]),
            server_ms,
        });
    }
    Ok(())
}

fn count_by(requests: &[&Request], key: impl Fn(&Request) -> String) -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    for r in requests {
        *counts.entry(key(r)).or_default() += 1;
    }
    counts
}

fn percentile(sorted: &[f64], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let index = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[index.min(sorted.len() - 1)]
}

/// The operator's requests of a window: in the benchmark's namespace by verb and resource,
/// answers other than 2xx, requests elsewhere (cluster-scoped or another namespace), and the
/// time its writes took in the API server.
fn summarize(requests: &[Request], namespace: &str) -> Value {
    let here: Vec<&Request> = requests
        .iter()
        .filter(|r| r.namespace == namespace)
        .collect();
    let completed: Vec<&Request> = here
        .iter()
        .copied()
        .filter(|r| r.stage == "ResponseComplete" && r.verb != "watch")
        .collect();
    let failed: Vec<&Request> = completed
        .iter()
        .copied()
        .filter(|r| !(200..300).contains(&r.code))
        .collect();
    let elsewhere: Vec<&Request> = requests
        .iter()
        .filter(|r| r.namespace != namespace)
        .filter(|r| (r.stage == "ResponseComplete" && r.verb != "watch") || r.is_watch_start())
        .collect();
    let watches: Vec<&Request> = here
        .iter()
        .copied()
        .filter(|r| r.is_watch_start())
        .collect();
    let mut write_ms: Vec<f64> = here
        .iter()
        .filter(|r| r.is_write())
        .filter_map(|r| r.server_ms)
        .collect();
    write_ms.sort_by(f64::total_cmp);
    let mean = if write_ms.is_empty() {
        0.0
    } else {
        write_ms.iter().sum::<f64>() / write_ms.len() as f64
    };
    json!({
        "writes": here.iter().filter(|r| r.is_write()).count(),
        "reads_get_list": here.iter().filter(|r| r.is_read()).count(),
        "watches_started": watches.len(),
        "by_verb_and_resource": count_by(&completed, Request::key),
        "watches_started_by_resource": count_by(&watches, |r| r.resource.clone()),
        "not_2xx": count_by(&failed, |r| format!("{} {}", r.code, r.key())),
        "outside_the_namespace": count_by(&elsewhere, Request::key),
        "write_ms_in_api_server": {
            "mean": round(mean, 1),
            "p50": round(percentile(&write_ms, 0.5), 1),
            "p99": round(percentile(&write_ms, 0.99), 1),
            "max": round(write_ms.last().copied().unwrap_or(0.0), 1),
        },
    })
}

/// Writes per BlockSight, in blocksight-bench's categories (on the real server a server-side
/// apply is audited as verb `patch`), over the BlockSights in `done` (each request counted for
/// the BlockSight its object's name belongs to).
fn per_blocksight(
    requests: &[Request],
    namespace: &str,
    done: &BTreeSet<String>,
    expected: &Expected,
) -> Value {
    let n = done.len();
    let in_namespace: Vec<&Request> = requests
        .iter()
        .filter(|r| r.namespace == namespace && r.is_write())
        .collect();
    let writes: Vec<&Request> = in_namespace
        .iter()
        .copied()
        .filter(|r| r.blocksight().is_some_and(|b| done.contains(b)))
        .collect();
    let count = |verb: &[&str], resource: &str| {
        writes
            .iter()
            .filter(|r| verb.contains(&r.verb.as_str()) && r.resource == resource)
            .count()
    };
    let child_applies = writes
        .iter()
        .filter(|r| r.verb == "patch" && CHILD_RESOURCES.contains(&r.resource.as_str()))
        .count();
    let child_other = writes
        .iter()
        .filter(|r| r.verb != "patch" && CHILD_RESOURCES.contains(&r.resource.as_str()))
        .count();
    let secrets = count(&["create"], "secrets");
    let status = count(&["patch", "update"], "blocksights/status");
    let events = count(&["create", "patch"], "events");
    let other = writes.len() - child_applies - child_other - secrets - status - events;
    // Objects written more than once (verb, resource, name), children and Secrets.
    let mut seen: BTreeMap<(&str, &str, &str), usize> = BTreeMap::new();
    for r in writes
        .iter()
        .filter(|r| CHILD_RESOURCES.contains(&r.resource.as_str()) || r.resource == "secrets")
    {
        *seen
            .entry((r.verb.as_str(), r.resource.as_str(), r.name.as_str()))
            .or_default() += 1;
    }
    let repeated: Vec<Value> = seen
        .iter()
        .filter(|(_, times)| **times > 1)
        .map(|((verb, resource, name), times)| {
            json!({"verb": verb, "resource": resource, "name": name, "times": times})
        })
        .collect();
    json!({
        "blocksights": n,
        "writes": per(writes.len(), n),
        "child_applies": per(child_applies, n),
        "children_built": expected.children.len(),
        "child_writes_other_than_apply": per(child_other, n),
        "secret_creates": per(secrets, n),
        "secrets_built": expected.secrets.len(),
        "status_writes": per(status, n),
        "events": per(events, n),
        "other_writes": per(other, n),
        "objects_written_more_than_once": repeated.len(),
        "objects_written_more_than_once_examples": repeated.into_iter().take(5).collect::<Vec<_>>(),
        "writes_in_the_namespace_for_other_blocksights": in_namespace.len() - writes.len(),
    })
}

// ------------------------------------------------------------------------------------------
// What the benchmark sees of the namespace: watches, not polls, so that watching costs the
// API server about what one more watcher costs.

#[derive(Debug, Default)]
struct Seen {
    /// name -> (resourceVersion, status.observedGeneration == metadata.generation)
    blocksights: HashMap<String, (String, bool)>,
    statefulsets: HashSet<String>,
    deployments: HashSet<String>,
    /// When a BlockSight's resourceVersion last moved.
    bs_changed: Option<Instant>,
    errors: usize,
}

impl Seen {
    fn observed(&self) -> BTreeSet<String> {
        self.blocksights
            .iter()
            .filter(|(_, (_, ok))| *ok)
            .map(|(name, _)| name.clone())
            .collect()
    }
}

type Shared = Arc<Mutex<Seen>>;

fn spawn_watch<K, S>(
    stream: S,
    seen: Shared,
    fold: fn(&mut Seen, watcher::Event<K>),
) -> tokio::task::JoinHandle<()>
where
    K: Send + 'static,
    S: Stream<Item = Result<watcher::Event<K>, watcher::Error>> + Send + 'static,
{
    tokio::spawn(async move {
        let mut stream = std::pin::pin!(stream);
        while let Some(event) = stream.next().await {
            let mut seen = seen.lock().expect("lock");
            match event {
                Ok(event) => fold(&mut seen, event),
                Err(_) => seen.errors += 1,
            }
        }
    })
}

fn fold_blocksight(seen: &mut Seen, event: watcher::Event<BlockSight>) {
    match event {
        watcher::Event::Apply(bs) | watcher::Event::InitApply(bs) => {
            let rv = bs.resource_version().unwrap_or_default();
            let observed = bs.status.as_ref().and_then(|s| s.observed_generation)
                == bs.metadata.generation
                && bs.metadata.generation.is_some();
            let previous = seen
                .blocksights
                .insert(bs.name_any(), (rv.clone(), observed));
            if previous.is_none_or(|(old, _)| old != rv) {
                seen.bs_changed = Some(Instant::now());
            }
        }
        watcher::Event::Delete(bs) => {
            seen.blocksights.remove(&bs.name_any());
            seen.bs_changed = Some(Instant::now());
        }
        watcher::Event::Init | watcher::Event::InitDone => {}
    }
}

fn fold_names(
    set: &mut HashSet<String>,
    event: watcher::Event<PartialObjectMeta<impl kube::Resource>>,
) {
    match event {
        watcher::Event::Apply(o) | watcher::Event::InitApply(o) => {
            set.insert(o.name_any());
        }
        watcher::Event::Delete(o) => {
            set.remove(&o.name_any());
        }
        watcher::Event::Init | watcher::Event::InitDone => {}
    }
}

fn fold_statefulset(seen: &mut Seen, event: watcher::Event<PartialObjectMeta<StatefulSet>>) {
    fold_names(&mut seen.statefulsets, event);
}

fn fold_deployment(seen: &mut Seen, event: watcher::Event<PartialObjectMeta<Deployment>>) {
    fold_names(&mut seen.deployments, event);
}

// ------------------------------------------------------------------------------------------
// The operator.

struct Operator {
    child: tokio::process::Child,
    pid: u32,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Operator {
    fn start(args: &Args, namespace: &str, log: PathBuf) -> anyhow::Result<Operator> {
        // A free port rather than 127.0.0.1:0, so the benchmark can read /readyz and /metrics.
        let metrics = operator::free_local_addr()?;
        let out = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(&args.operator)
            .args([
                "run",
                "--namespace",
                namespace,
                "--leader-election=false",
                &format!("--probe-interval={}s", args.probe_interval_seconds),
                &format!("--resync-interval={}s", args.resync_seconds),
                "--metrics-addr",
                &metrics.to_string(),
            ])
            .env("KUBECONFIG", &args.operator_kubeconfig)
            .env("POD_NAMESPACE", "blocksight-system")
            .env("NO_COLOR", "1")
            // The operator's own default log filter, whatever the caller's environment.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(out.try_clone()?)
            .stderr(out)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", args.operator.display()))?;
        let pid = child.id().context("the operator has a pid")?;
        Ok(Operator {
            child,
            pid,
            metrics,
            log,
        })
    }

    fn exited(&mut self) -> anyhow::Result<()> {
        if let Some(status) = self.child.try_wait()? {
            bail!(
                "the operator exited ({status}); its log: {}",
                self.log.display()
            );
        }
        Ok(())
    }

    async fn readyz(&self) -> u16 {
        operator::http_get(self.metrics, "/readyz")
            .await
            .map(|(status, _)| status)
            .unwrap_or(0)
    }

    async fn metric(&self, name: &str) -> Option<f64> {
        let text = operator::scrape(self.metrics).await.ok()?;
        // + 0.0: an empty sum is -0.0.
        Some(operator::metric(&text, name) + 0.0)
    }

    /// SIGTERM, as kubelet stops a pod (it finishes the reconciles in flight, whose API
    /// calls may each wait up to --reconcile-timeout, 60 s); SIGKILL after 90 s.
    async fn stop(mut self) -> anyhow::Result<Value> {
        // SAFETY: signalling our own child, which has not been reaped (it is running).
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let started = Instant::now();
        let status = match tokio::time::timeout(Duration::from_secs(90), self.child.wait()).await {
            Ok(status) => status?.code(),
            Err(_) => {
                self.child.kill().await?;
                None
            }
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let count = |level: &str| log.lines().filter(|l| l.contains(level)).count();
        // Distinct WARN/ERROR messages (the text after the level, without the timestamp).
        let mut messages: BTreeMap<String, usize> = BTreeMap::new();
        for line in log.lines() {
            if let Some((_, rest)) = line
                .split_once(" WARN ")
                .or_else(|| line.split_once(" ERROR "))
            {
                *messages
                    .entry(rest.chars().take(160).collect())
                    .or_default() += 1;
            }
        }
        Ok(json!({
            "exit_code": status,
            "seconds_to_exit": round(started.elapsed().as_secs_f64(), 1),
            "log": self.log,
            "log_lines": log.lines().count(),
            "warn_lines": count(" WARN "),
            "error_lines": count(" ERROR "),
            "warn_and_error_messages": messages,
        }))
    }
}

// ------------------------------------------------------------------------------------------

async fn client_from(path: &Path) -> anyhow::Result<Client> {
    let kubeconfig =
        Kubeconfig::read_from(path).with_context(|| format!("reading {}", path.display()))?;
    let config = kube::Config::from_custom_kubeconfig(kubeconfig, &KubeConfigOptions::default())
        .await
        .with_context(|| format!("kubeconfig {}", path.display()))?;
    Ok(Client::try_from(config)?)
}

fn api_resource(plural: &str) -> ApiResource {
    let (group, version, kind) = match plural {
        "configmaps" => ("", "v1", "ConfigMap"),
        "services" => ("", "v1", "Service"),
        "serviceaccounts" => ("", "v1", "ServiceAccount"),
        "persistentvolumeclaims" => ("", "v1", "PersistentVolumeClaim"),
        "secrets" => ("", "v1", "Secret"),
        "cronjobs" => ("batch", "v1", "CronJob"),
        "networkpolicies" => ("networking.k8s.io", "v1", "NetworkPolicy"),
        "statefulsets" => ("apps", "v1", "StatefulSet"),
        "deployments" => ("apps", "v1", "Deployment"),
        "horizontalpodautoscalers" => ("autoscaling", "v2", "HorizontalPodAutoscaler"),
        "poddisruptionbudgets" => ("policy", "v1", "PodDisruptionBudget"),
        "ingresses" => ("networking.k8s.io", "v1", "Ingress"),
        other => ("", "v1", other),
    };
    ApiResource {
        group: group.into(),
        version: version.into(),
        api_version: if group.is_empty() {
            version.into()
        } else {
            format!("{group}/{version}")
        },
        kind: kind.into(),
        plural: plural.into(),
    }
}

/// Per resource: the objects the builders make for N BlockSights, the objects in the
/// namespace, and those the operator's field manager wrote (others are the controllers',
/// e.g. the PVCs of StatefulSets' volumeClaimTemplates).
async fn object_counts(client: &Client, namespace: &str, n: usize, expected: &Expected) -> Value {
    let mut counts = serde_json::Map::new();
    let mut resources: Vec<&str> = CHILD_RESOURCES.to_vec();
    resources.push("secrets");
    for resource in resources {
        let want = if resource == "secrets" {
            expected.secrets.len()
        } else {
            expected
                .children
                .iter()
                .filter(|c| c.resource == resource)
                .count()
        } * n;
        let api: Api<DynamicObject> =
            Api::namespaced_with(client.clone(), namespace, &api_resource(resource));
        let (mut found, mut by_operator) = (0usize, 0usize);
        let mut params = ListParams::default().limit(500);
        loop {
            let Ok(page) = api.list_metadata(&params).await else {
                break;
            };
            for item in &page.items {
                found += 1;
                if item
                    .metadata
                    .managed_fields
                    .iter()
                    .flatten()
                    .any(|m| m.manager.as_deref() == Some(OPERATOR_MANAGER))
                {
                    by_operator += 1;
                }
            }
            match page.metadata.continue_.filter(|c| !c.is_empty()) {
                Some(token) => params = params.continue_token(&token),
                None => break,
            }
        }
        counts.insert(
            resource.to_owned(),
            json!({"built": want, "found": found, "written_by_operator": by_operator}),
        );
    }
    Value::Object(counts)
}

/// The namespace's Pods by phase (kwok's Nodes take 110 Pods each).
async fn pods_by_phase(client: &Client, namespace: &str) -> Value {
    let api: Api<Pod> = Api::namespaced(client.clone(), namespace);
    let mut phases: BTreeMap<String, usize> = BTreeMap::new();
    let mut params = ListParams::default().limit(500);
    loop {
        let Ok(page) = api.list(&params).await else {
            break;
        };
        for pod in &page.items {
            let phase = pod
                .status
                .as_ref()
                .and_then(|s| s.phase.clone())
                .unwrap_or_else(|| "Unknown".into());
            *phases.entry(phase).or_default() += 1;
        }
        match page.metadata.continue_.filter(|c| !c.is_empty()) {
            Some(token) => params = params.continue_token(&token),
            None => break,
        }
    }
    json!(phases)
}

async fn delete_namespace(client: &Client, namespace: &str, timeout: Duration) -> Value {
    let api: Api<Namespace> = Api::all(client.clone());
    let started = Instant::now();
    if let Err(e) = api.delete(namespace, &DeleteParams::background()).await {
        return json!({"deleted": false, "error": e.to_string()});
    }
    if timeout.is_zero() {
        return json!({"deleted": "requested, not waited for"});
    }
    while started.elapsed() < timeout {
        if let Ok(None) = api.get_opt(namespace).await {
            return json!({"deleted": true, "seconds": round(started.elapsed().as_secs_f64(), 1)});
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
    json!({"deleted": false, "gave_up_after_seconds": timeout.as_secs()})
}

async fn run_one(
    args: &Args,
    client: &Client,
    procs: &[(String, u32)],
    n: usize,
    scratch: &Path,
    last: bool,
) -> anyhow::Result<Value> {
    let namespace = format!("bench-n{n}-{:04x}", rand::random::<u16>());
    let ns: Namespace = serde_json::from_value(json!({"metadata": {"name": namespace}}))?;
    Api::<Namespace>::all(client.clone())
        .create(&PostParams::default(), &ns)
        .await
        .with_context(|| format!("creating namespace {namespace}"))?;
    // What one regtest BlockSight makes, API gated at zero replicas (no PostgreSQL answers
    // the probes under kwok), as tests/e2e's desired_children.
    let mut template = regtest_blocksight("bs-0000");
    template["metadata"]["namespace"] = json!(namespace);
    let expected =
        convergence::expected(&template, &BuildSettings::default()).map_err(anyhow::Error::msg)?;
    let kind_count = |resource: &str| {
        expected
            .children
            .iter()
            .filter(|c| c.resource == resource)
            .count()
    };
    let want_sts = kind_count("statefulsets") * n;
    let want_deploy = kind_count("deployments") * n;

    // The benchmark's eyes: three watches.
    let seen: Shared = Arc::default();
    let config = watcher::Config::default();
    let watches = vec![
        spawn_watch(
            watcher(
                Api::<BlockSight>::namespaced(client.clone(), &namespace),
                config.clone(),
            )
            .default_backoff(),
            seen.clone(),
            fold_blocksight,
        ),
        spawn_watch(
            watcher(
                Api::<PartialObjectMeta<StatefulSet>>::namespaced(client.clone(), &namespace),
                config.clone(),
            )
            .default_backoff(),
            seen.clone(),
            fold_statefulset,
        ),
        spawn_watch(
            watcher(
                Api::<PartialObjectMeta<Deployment>>::namespaced(client.clone(), &namespace),
                config.clone(),
            )
            .default_backoff(),
            seen.clone(),
            fold_deployment,
        ),
    ];

    let log = scratch.join(format!("operator-n{n}.log"));
    let started = Instant::now();
    let mut operator = Operator::start(args, &namespace, log)?;
    loop {
        operator.exited()?;
        if operator.readyz().await == 200 {
            break;
        }
        if started.elapsed() > Duration::from_secs(60) {
            bail!("the operator was not ready within 60 s");
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let ready_seconds = started.elapsed().as_secs_f64();
    let usage_idle = usage(operator.pid).unwrap_or_default();
    progress(format!(
        "N={n}: namespace {namespace}; operator ready in {ready_seconds:.1}s; applying {n} BlockSights, {} at once",
        args.concurrency
    ));

    // Creation: server-side apply of N copies of examples/regtest.yaml, `concurrency` at once.
    let audit_start = audit_mark(&args.audit_log)?;
    let cpu_start = CpuMark::take(operator.pid, procs);
    let created_at = Instant::now();
    let api: Api<BlockSight> = Api::namespaced(client.clone(), &namespace);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    futures::stream::iter(0..n)
        .map(|i| {
            let (api, params) = (&api, &params);
            async move {
                let name = format!("bs-{i:04}");
                api.patch(&name, params, &Patch::Apply(regtest_blocksight(&name)))
                    .await
                    .with_context(|| format!("applying BlockSight {name}"))
            }
        })
        .buffer_unordered(args.concurrency.max(1))
        .try_for_each(|_| async { Ok(()) })
        .await?;
    let applied_seconds = created_at.elapsed().as_secs_f64();
    progress(format!("N={n}: applied in {applied_seconds:.1}s"));

    // Converged: every BlockSight's status describes its generation, and every StatefulSet
    // and Deployment the builders make exists.
    let timeout = Duration::from_secs(args.converge_timeout_seconds);
    let state = |seen: &Shared| {
        let seen = seen.lock().expect("lock");
        (
            seen.blocksights.len(),
            seen.observed().len(),
            seen.statefulsets.len(),
            seen.deployments.len(),
        )
    };
    let mut timeline = Vec::new();
    let mut next_sample = Duration::ZERO;
    let converged = loop {
        operator.exited()?;
        let (bs, observed, sts, deploy) = state(&seen);
        let elapsed = created_at.elapsed();
        if bs == n && observed == n && sts == want_sts && deploy == want_deploy {
            break true;
        }
        if elapsed > timeout {
            break false;
        }
        if elapsed >= next_sample {
            next_sample += Duration::from_secs(30);
            timeline.push(json!({
                "seconds": elapsed.as_secs(),
                "observed_generation_current": observed,
                "statefulsets": sts,
                "deployments": deploy,
            }));
            if elapsed.as_secs() > 0 {
                progress(format!(
                    "N={n}: {:.0}s: observedGeneration {observed}/{n}; StatefulSets {sts}/{want_sts}; Deployments {deploy}/{want_deploy}",
                    elapsed.as_secs_f64()
                ));
            }
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    };
    let converge_seconds = created_at.elapsed().as_secs_f64();
    let audit_converged = audit_mark(&args.audit_log)?;
    let cpu_converged = CpuMark::take(operator.pid, procs);
    let reconciled_converged = operator.metric("blocksight_reconciliations_total").await;
    let usage_converged = usage(operator.pid).unwrap_or_default();
    let (bs_seen, observed, sts_seen, deploy_seen) = state(&seen);
    let done = seen.lock().expect("lock").observed();
    if converged {
        progress(format!("N={n}: converged in {converge_seconds:.1}s"));
    } else {
        progress(format!(
            "N={n}: NOT converged after {converge_seconds:.0}s: observedGeneration {observed}/{n}; StatefulSets {sts_seen}/{want_sts}; Deployments {deploy_seen}/{want_deploy}"
        ));
    }
    let convergence = json!({
        "converged": converged,
        "seconds_to_apply_all": round(applied_seconds, 2),
        "seconds_to_converge": converged.then(|| round(converge_seconds, 2)),
        "gave_up_after_seconds": (!converged).then(|| round(converge_seconds, 0)),
        "blocksights_seen": bs_seen,
        "observed_generation_current": observed,
        "statefulsets": {"expected": want_sts, "found": sts_seen},
        "deployments": {"expected": want_deploy, "found": deploy_seen},
        "timeline_every_30s": timeline,
    });

    // Settling: until no BlockSight's resourceVersion moved for --rest-seconds.
    let mut at_rest = false;
    let mut rest_seconds = 0.0;
    if converged {
        let rest_started = Instant::now();
        let quiet = Duration::from_secs(args.rest_seconds);
        while rest_started.elapsed() < Duration::from_secs(args.rest_timeout_seconds) {
            operator.exited()?;
            let changed = seen.lock().expect("lock").bs_changed;
            if changed.is_none_or(|t| t.elapsed() >= quiet) {
                at_rest = true;
                break;
            }
            tokio::time::sleep(Duration::from_millis(250)).await;
        }
        rest_seconds = rest_started.elapsed().as_secs_f64();
        progress(format!(
            "N={n}: {} after {rest_seconds:.1}s more",
            if at_rest { "at rest" } else { "NOT at rest" }
        ));
    }
    let audit_rest = audit_mark(&args.audit_log)?;
    let cpu_rest = CpuMark::take(operator.pid, procs);
    let reconciled_rest = operator.metric("blocksight_reconciliations_total").await;
    let failures_rest = operator.metric("blocksight_reconcile_failures_total").await;

    let until_converged = audit_read(&args.audit_log, audit_start, audit_converged)?;
    let until_rest = audit_read(&args.audit_log, audit_start, audit_rest)?;
    let creation = json!({
        "convergence": convergence,
        "rest": converged.then(|| json!({
            "at_rest": at_rest,
            "quiet_seconds": args.rest_seconds,
            "seconds_after_convergence": round(rest_seconds, 1),
        })),
        "per_blocksight_until_converged": per_blocksight(&until_converged, &namespace, &done, &expected),
        "per_blocksight_until_rest": converged.then(|| per_blocksight(&until_rest, &namespace, &done, &expected)),
        "reconciliations_per_blocksight_until_converged": reconciled_converged.map(|r| round(r / n as f64, 1)),
        "reconciliations_per_blocksight_until_rest": reconciled_rest.map(|r| round(r / n as f64, 1)),
        "reconcile_failures": failures_rest,
        "requests_until_converged": summarize(&until_converged, &namespace),
        "requests_until_rest": converged.then(|| summarize(&until_rest, &namespace)),
        "cpu_until_converged": cpu_converged.since(&cpu_start),
        "cpu_from_converged_to_rest": converged.then(|| cpu_rest.since(&cpu_converged)),
    });

    // Steady state.
    let steady = if converged {
        let reconciled_before = reconciled_rest.unwrap_or(0.0);
        let rv_changes_before = seen.lock().expect("lock").bs_changed;
        tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
        operator.exited()?;
        let audit_end = audit_mark(&args.audit_log)?;
        let cpu_end = CpuMark::take(operator.pid, procs);
        let reconciled = operator
            .metric("blocksight_reconciliations_total")
            .await
            .map(|r| r - reconciled_before);
        let moved = seen.lock().expect("lock").bs_changed != rv_changes_before;
        let requests = audit_read(&args.audit_log, audit_rest, audit_end)?;
        let summary = summarize(&requests, &namespace);
        let window = cpu_end.at.duration_since(cpu_rest.at).as_secs_f64();
        progress(format!(
            "N={n}: steady state ({window:.0}s): {} writes, {} GET/LIST",
            summary["writes"], summary["reads_get_list"]
        ));
        json!({
            "window_seconds": round(window, 1),
            "resync_interval_seconds": args.resync_seconds,
            "resync_rounds": round(window / args.resync_seconds as f64, 1),
            "reconciliations": reconciled,
            "a_blocksight_changed_in_the_window": moved,
            "requests": summary,
            "cpu": cpu_end.since(&cpu_rest),
        })
    } else {
        Value::Null
    };

    let objects = object_counts(client, &namespace, n, &expected).await;
    let pods = pods_by_phase(client, &namespace).await;
    let usage_end = usage(operator.pid).unwrap_or_default();
    let readyz = operator.readyz().await;
    progress(format!("N={n}: stopping the operator (SIGTERM)"));
    let exit = operator.stop().await?;
    for watch in watches {
        watch.abort();
    }
    let watch_errors = seen.lock().expect("lock").errors;
    progress(format!("N={n}: deleting namespace {namespace}"));
    // The next N starts on a quiet control plane; after the last one nobody waits.
    let deletion = delete_namespace(
        client,
        &namespace,
        Duration::from_secs(if last { 0 } else { args.delete_timeout_seconds }),
    )
    .await;
    progress(format!("N={n}: namespace deletion: {deletion}"));

    Ok(json!({
        "n": n,
        "namespace": namespace,
        "operator_ready_seconds": round(ready_seconds, 2),
        "creation": creation,
        "steady_state": steady,
        "objects": objects,
        "pods_by_phase": pods,
        "operator_process": {
            "peak_rss_mib": round(usage_end.peak_rss_mib, 1),
            "rss_mib": {
                "idle": round(usage_idle.rss_mib, 1),
                "converged_or_gave_up": round(usage_converged.rss_mib, 1),
                "end": round(usage_end.rss_mib, 1),
            },
            "cpu_seconds_total": round(usage_end.cpu_seconds, 2),
            "readyz_at_end": readyz,
            "exit": exit,
        },
        "benchmark_watch_errors": watch_errors,
        "namespace_deletion": deletion,
    }))
}

async fn bench(args: Args) -> anyhow::Result<()> {
    if !args.operator.is_file() {
        bail!(
            "{} does not exist: build it first (cargo build --release --bin blocksight) or pass --operator",
            args.operator.display()
        );
    }
    let procs = control_plane(&args.pids)?;
    let client = client_from(&args.kubeconfig).await?;
    let version = client
        .apiserver_version()
        .await
        .context("asking the API server its version")?;
    audit_mark(&args.audit_log)?;
    let scratch =
        std::env::temp_dir().join(format!("blocksight-bench-cluster-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let date = jiff::Timestamp::now();
    let mut runs = Vec::new();
    for &n in &args.n {
        let last = runs.len() + 1 == args.n.len();
        runs.push(run_one(&args, &client, &procs, n, &scratch, last).await?);
    }
    let summary = json!({
        "benchmark": "blocksight-bench-cluster",
        "date": date.to_string(),
        "command_line": std::env::args().collect::<Vec<_>>(),
        "machine": machine(),
        "clock_ticks_per_second": clock_ticks(),
        "operator": args.operator,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "control_plane": {
            "kube_apiserver": version.git_version,
            "processes": procs.iter().map(|(name, _)| name.clone()).collect::<Vec<_>>(),
            "audit_log": args.audit_log,
        },
        "settings": {
            "resync_interval_seconds": args.resync_seconds,
            "probe_interval_seconds": args.probe_interval_seconds,
            "steady_state_seconds": args.steady_seconds,
            "rest_quiet_seconds": args.rest_seconds,
            "apply_concurrency": args.concurrency,
            "converge_timeout_seconds": args.converge_timeout_seconds,
        },
        "runs": runs,
    });
    let text = serde_json::to_string_pretty(&summary)?;
    println!("{text}");
    if let Some(path) = &args.output {
        std::fs::write(path, format!("{text}\n"))?;
    }
    Ok(())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    match bench(args).await {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
