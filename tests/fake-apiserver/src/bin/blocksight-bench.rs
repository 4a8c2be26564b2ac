//! blocksight-bench: the operator binary against the fake API server for N BlockSights;
//! prints a JSON summary (docs/performance.md explains every figure).
//!
//!   cargo build --release --bin blocksight
//!   cargo run --release -p blocksight-fake-apiserver --bin blocksight-bench -- --n 1,100,1000
//!
//! Builds nothing itself: it runs the binary given by --operator.

use std::collections::{BTreeMap, BTreeSet};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{ExitCode, Stdio};
use std::time::{Duration, Instant};

use anyhow::{Context as _, bail};
use blocksight_fake_apiserver::convergence::{self, CHILD_RESOURCES, Expected};
use blocksight_fake_apiserver::operator::{self, regtest_blocksight};
use blocksight_fake_apiserver::{Config, Counts, FakeApiServer, RequestRecord, Subresource, Verb};
use blocksight_operator::desired::BuildSettings;
use blocksight_operator::render::{OutputFormat, RenderOptions, Rendering, render};
use clap::Parser;
use serde_json::{Value, json};

const NAMESPACE: &str = "bench";
/// The operator's default --resync-interval: what one accelerated resync round stands for.
const DEFAULT_RESYNC_MINUTES: f64 = 5.0;

#[derive(Debug, Parser)]
#[command(about = "Measure the BlockSight operator against a fake API server")]
struct Args {
    /// The operator binary (build it first: cargo build --release --bin blocksight).
    #[arg(long, default_value = concat!(env!("CARGO_MANIFEST_DIR"), "/../../target/release/blocksight"))]
    operator: PathBuf,
    /// BlockSight counts to measure, comma-separated.
    #[arg(long, value_delimiter = ',', default_value = "1,100,1000")]
    n: Vec<usize>,
    /// The operator's --resync-interval in seconds (its default is 300).
    #[arg(long, default_value_t = 2)]
    resync_seconds: u64,
    /// Length of the steady-state window in seconds.
    #[arg(long, default_value_t = 20)]
    steady_seconds: u64,
    /// Give up waiting for convergence after this many seconds.
    #[arg(long, default_value_t = 300)]
    converge_timeout_seconds: u64,
    /// How long after a workload changes the simulated kubelet reports it ready.
    #[arg(long, default_value_t = 100)]
    kubelet_delay_ms: u64,
    /// Create the BlockSights at this rate per second (0: all at once).
    #[arg(long, default_value_t = 0.0)]
    creation_rate: f64,
    /// How long to measure `render` throughput, in seconds.
    #[arg(long, default_value_t = 3.0)]
    render_seconds: f64,
    /// Skip the restart phase.
    #[arg(long)]
    no_restart: bool,
    /// Exit 1 when a request-count target is missed (convergence, steady state, creation
    /// writes, spec change); time and memory targets are only reported.
    #[arg(long)]
    check: bool,
    /// Also write the JSON summary to this file.
    #[arg(long)]
    output: Option<PathBuf>,
}

fn progress(message: impl AsRef<str>) {
    eprintln!("[blocksight-bench] {}", message.as_ref());
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

/// Peak and current resident memory (MiB) and CPU seconds (user + system) of a process.
#[derive(Clone, Copy, Debug, Default)]
struct Usage {
    peak_rss_mib: f64,
    rss_mib: f64,
    cpu_seconds: f64,
}

fn usage(pid: u32) -> anyhow::Result<Usage> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))?;
    let kib = |field: &str| -> f64 {
        status
            .lines()
            .find_map(|l| l.strip_prefix(field))
            .and_then(|l| l.split_whitespace().next()?.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the command name (which may hold spaces), from field 3 (state) on.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest.split_whitespace().collect())
        .unwrap_or_default();
    let ticks = |index: usize| -> f64 {
        fields
            .get(index)
            .and_then(|v| v.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) } as f64;
    Ok(Usage {
        peak_rss_mib: kib("VmHWM:") / 1024.0,
        rss_mib: kib("VmRSS:") / 1024.0,
        // utime and stime are fields 14 and 15: indexes 11 and 12 from field 3.
        cpu_seconds: (ticks(11) + ticks(12)) / per_second,
    })
}

fn round(value: f64, digits: i32) -> f64 {
    let scale = 10f64.powi(digits);
    (value * scale).round() / scale
}

/// BlockSights per second through `blocksight_operator::render::render` (validate, build,
/// serialize, on every core), on a file of 1,000 BlockSights; and on one thread, to tell
/// the parallel speed-up from the rest.
fn render_throughput(seconds: f64) -> anyhow::Result<Value> {
    const DOCUMENTS: usize = 1000;
    let text: String = (0..DOCUMENTS)
        .map(|i| {
            let doc = regtest_blocksight(&format!("bs-{i:04}"));
            format!("---\n{}", serde_yaml::to_string(&doc).expect("serializes"))
        })
        .collect();
    let settings = BuildSettings::default();
    let mut results = serde_json::Map::new();
    // BlockSights per second of `call` (which renders the whole file), run for `seconds`.
    let rate = |call: &mut dyn FnMut() -> anyhow::Result<usize>| -> anyhow::Result<(f64, usize)> {
        let started = Instant::now();
        let mut rendered = 0usize;
        let mut bytes = 0usize;
        while started.elapsed().as_secs_f64() < seconds || rendered == 0 {
            bytes = call()?;
            rendered += DOCUMENTS;
        }
        Ok((rendered as f64 / started.elapsed().as_secs_f64(), bytes))
    };
    for (label, format) in [("yaml", OutputFormat::Yaml), ("json", OutputFormat::Json)] {
        let (all_cores, bytes) = rate(&mut || Ok(render(&text, format, false, &settings)?.len()))?;
        let (one_thread, _) = rate(&mut || {
            let mut out = Vec::new();
            let options = RenderOptions {
                output: format,
                with_secrets: false,
                backup_jobs: false,
                threads: 1,
            };
            Rendering::new(&text, options, &settings)?.write_to(&mut out)?;
            Ok(out.len())
        })?;
        progress(format!(
            "render -o {label}: {all_cores:.0} BlockSights/s ({one_thread:.0}/s on one thread)"
        ));
        results.insert(
            format!("blocksights_per_second_{label}"),
            json!(round(all_cores, 0)),
        );
        results.insert(
            format!("blocksights_per_second_{label}_one_thread"),
            json!(round(one_thread, 0)),
        );
        results.insert(
            format!("output_bytes_per_blocksight_{label}"),
            json!(bytes / DOCUMENTS),
        );
    }
    results.insert("documents_per_call".into(), json!(DOCUMENTS));
    results.insert(
        "threads".into(),
        json!(std::thread::available_parallelism().map_or(1, std::num::NonZero::get)),
    );
    results.insert(
        "stages_ms_per_blocksight".into(),
        render_stages(seconds / 2.0)?,
    );
    Ok(Value::Object(results))
}

/// Where `render`'s time goes, per BlockSight: each stage of it timed on its own.
fn render_stages(seconds: f64) -> anyhow::Result<Value> {
    use blocksight_operator::{desired, render, validate};
    let doc = serde_yaml::to_string(&regtest_blocksight("dev"))?;
    let settings = BuildSettings::default();
    // Milliseconds per call of `stage`, run for `seconds`.
    let time = |stage: &mut dyn FnMut()| {
        let started = Instant::now();
        let mut calls = 0u32;
        while started.elapsed().as_secs_f64() < seconds || calls == 0 {
            stage();
            calls += 1;
        }
        round(
            started.elapsed().as_secs_f64() * 1000.0 / f64::from(calls),
            3,
        )
    };
    let parse = || -> Value { serde_yaml::from_str(&doc).expect("YAML") };
    let bs = render::parse_blocksight(parse()).map_err(anyhow::Error::msg)?;
    let valid = validate::validate(&bs).map_err(anyhow::Error::msg)?;
    let desired = desired::build(&valid, &settings);
    let values: Vec<Value> = desired
        .children
        .iter()
        .map(desired::Child::to_value)
        .collect();
    let mut sizes: Vec<(usize, String)> = values
        .iter()
        .map(|v| {
            let kind = v["kind"].as_str().unwrap_or_default();
            let name = v["metadata"]["name"].as_str().unwrap_or_default();
            (v.to_string().len(), format!("{kind} {name}"))
        })
        .collect();
    sizes.sort_by(|a, b| b.cmp(a));
    let largest: Vec<Value> = sizes
        .into_iter()
        .take(3)
        .map(|(bytes, child)| json!({"child": child, "bytes": bytes}))
        .collect();
    let mut by_size: Vec<(&Value, &desired::Child)> =
        values.iter().zip(&desired.children).collect();
    by_size.sort_by_key(|(v, _)| std::cmp::Reverse(v.to_string().len()));
    let largest_two: Vec<(&Value, &desired::Child)> = by_size.into_iter().take(2).collect();
    let mut sink = 0usize;
    let stages = json!({
        "parse_yaml": time(&mut || sink += parse().as_object().map_or(0, |o| o.len())),
        "validate": time(&mut || sink += usize::from(validate::validate(&bs).is_ok())),
        "build_and_hash": time(&mut || sink += desired::build(&valid, &settings).children.len()),
        "to_json_values": time(&mut || sink += desired.children.iter().map(desired::Child::to_value).count()),
        // As `render -o yaml` does: each typed child straight into one string (serde-saphyr).
        "serialize_yaml": time(&mut || {
            let mut yaml = String::new();
            for child in &desired.children {
                yaml.push_str("---\n");
                child.write_yaml(&mut yaml);
            }
            sink += yaml.len();
        }),
        "serialize_json": time(&mut || sink += values.iter().map(|v| serde_json::to_string_pretty(v).expect("JSON").len()).sum::<usize>()),
        // The part of the above spent on the two largest children: hashing (as the build
        // stamps each child) and serializing them.
        "largest_two_hash": time(&mut || sink += largest_two.iter().map(|(v, _)| desired::meta::digest(v.to_string().as_bytes()).len()).sum::<usize>()),
        "largest_two_serialize_yaml": time(&mut || sink += largest_two.iter().map(|(_, c)| c.to_yaml().len()).sum::<usize>()),
        "children": values.len(),
        "largest_children_bytes": largest,
    });
    std::hint::black_box(sink);
    Ok(stages)
}

/// The operator under test, as a child process.
struct Operator {
    child: tokio::process::Child,
    pid: u32,
    metrics: SocketAddr,
    log: PathBuf,
}

impl Operator {
    async fn start(
        binary: &Path,
        kubeconfig: &Path,
        resync_seconds: u64,
        log: PathBuf,
    ) -> anyhow::Result<Operator> {
        let metrics = operator::free_local_addr()?;
        let stderr = std::fs::File::create(&log)?;
        let child = tokio::process::Command::new(binary)
            .args([
                "run",
                "--leader-election=false",
                "--no-probes",
                &format!("--resync-interval={resync_seconds}s"),
                "--metrics-addr",
                &metrics.to_string(),
            ])
            .env("KUBECONFIG", kubeconfig)
            // The operator's own default log filter, whatever the caller's environment.
            .env_remove("RUST_LOG")
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(stderr)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
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

    /// The HTTP status of /readyz (0 when it does not answer).
    async fn readyz(&self) -> u16 {
        operator::http_get(self.metrics, "/readyz")
            .await
            .map(|(status, _)| status)
            .unwrap_or(0)
    }

    /// How many BlockSights this process has reconciled (one phase gauge set to 1 each).
    async fn instances(&self) -> f64 {
        match operator::scrape(self.metrics).await {
            Ok(text) => operator::metric(&text, "blocksight_instance_phase"),
            Err(_) => 0.0,
        }
    }

    async fn reconciliations(&self) -> f64 {
        match operator::scrape(self.metrics).await {
            Ok(text) => operator::metric(&text, "blocksight_reconciliations_total"),
            Err(_) => f64::NAN,
        }
    }

    /// SIGTERM, as Kubernetes stops a pod; SIGKILL if it lingers.
    async fn stop(mut self) -> anyhow::Result<Value> {
        // SAFETY: signalling our own child, which has not been reaped (it is running).
        unsafe { libc::kill(self.pid as i32, libc::SIGTERM) };
        let status = match tokio::time::timeout(Duration::from_secs(10), self.child.wait()).await {
            Ok(status) => status?.code(),
            Err(_) => {
                self.child.kill().await?;
                None
            }
        };
        let log = std::fs::read_to_string(&self.log).unwrap_or_default();
        let count = |level: &str| log.lines().filter(|l| l.contains(level)).count();
        Ok(json!({
            "exit_code": status,
            "log": self.log,
            "log_lines": log.lines().count(),
            "warn_lines": count(" WARN "),
            "error_lines": count(" ERROR "),
        }))
    }
}

/// Wait until `quiet` passes with no write, or `limit`.
async fn wait_quiet(fake: &FakeApiServer, quiet: Duration, limit: Duration) -> bool {
    let started = Instant::now();
    let mut writes = fake.counts().writes();
    let mut since = Instant::now();
    while since.elapsed() < quiet {
        if started.elapsed() > limit {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
        let now = fake.counts().writes();
        if now != writes {
            writes = now;
            since = Instant::now();
        }
    }
    true
}

fn summarize(counts: &Counts) -> Value {
    let by_verb: serde_json::Map<String, Value> = Verb::ALL
        .iter()
        .filter(|v| counts.verb(**v) > 0)
        .map(|v| (v.as_str().to_owned(), json!(counts.verb(*v))))
        .collect();
    json!({
        "writes": counts.writes(),
        "reads_get_list": counts.reads(),
        "watches": counts.verb(Verb::Watch),
        "by_verb": by_verb,
        "by_verb_and_resource": counts.to_json(),
    })
}

/// Writes the API server answered without changing anything (wasted requests): how many,
/// when the first came (seconds after `start`, on the fake's clock), per 10 s, examples.
fn unchanged_writes(records: &[RequestRecord], start: Duration) -> Value {
    let wasted: Vec<&RequestRecord> = records
        .iter()
        .filter(|r| r.verb.is_write() && r.unchanged)
        .collect();
    let seconds = |r: &RequestRecord| r.at.saturating_sub(start).as_secs_f64();
    let mut per_10s: BTreeMap<u64, usize> = BTreeMap::new();
    let mut by_resource: BTreeMap<&str, (usize, f64)> = BTreeMap::new();
    for r in &wasted {
        *per_10s.entry(seconds(r) as u64 / 10 * 10).or_default() += 1;
        by_resource
            .entry(r.resource.as_str())
            .or_insert((0, round(seconds(r), 1)))
            .0 += 1;
    }
    let by_resource: BTreeMap<&str, Value> = by_resource
        .into_iter()
        .map(|(r, (n, first))| (r, json!({"count": n, "first_after_seconds": first})))
        .collect();
    json!({
        "count": wasted.len(),
        "by_resource": by_resource,
        "first_after_seconds": wasted.first().map(|r| round(seconds(r), 1)),
        "per_10s": per_10s.into_iter().map(|(t, n)| (format!("{t}s"), json!(n))).collect::<serde_json::Map<_, _>>(),
        "examples": wasted.iter().take(5).map(|r| format!("{} {} {}", r.verb, r.resource, r.name.as_deref().unwrap_or_default())).collect::<Vec<_>>(),
    })
}

/// What the operator's watch caches hold for one BlockSight, as JSON bytes: the
/// BlockSight and its Secrets whole, StatefulSets and Deployments without their pod
/// templates, every other child as metadata only (as src/run.rs watches them).
fn cache_footprint(fake: &FakeApiServer, name: &str, expected: &Expected) -> Value {
    let mut total = 0usize;
    let mut managed_fields = 0usize;
    let mut add = |object: &Value| {
        total += object.to_string().len();
        managed_fields += object["metadata"]["managedFields"].to_string().len();
    };
    if let Some(bs) = fake.get("blocksights", NAMESPACE, name) {
        add(&bs);
    }
    for secret in &expected.secrets {
        if let Some(object) = fake.get("secrets", NAMESPACE, secret) {
            add(&object);
        }
    }
    for child in &expected.children {
        let Some(object) = fake.get(child.resource, NAMESPACE, &child.name) else {
            continue;
        };
        let mut cached = (*object).clone();
        match child.resource {
            "statefulsets" | "deployments" => {
                if let Some(spec) = cached["spec"].as_object_mut() {
                    spec.remove("template");
                    spec.remove("volumeClaimTemplates");
                }
            }
            _ => cached = json!({"metadata": cached["metadata"]}),
        }
        add(&cached);
    }
    json!({"json_bytes": total, "of_which_managed_fields": managed_fields})
}

/// How fast the fake answered the writes of a window, and its CPU (the benchmark's
/// process, which hosts it) over `cpu_seconds`.
fn fake_service(records: &[RequestRecord], cpu_seconds: f64) -> Value {
    let took: Vec<f64> = records
        .iter()
        .filter(|r| r.verb.is_write())
        .map(|r| r.took.as_secs_f64() * 1000.0)
        .collect();
    let mean = if took.is_empty() {
        0.0
    } else {
        took.iter().sum::<f64>() / took.len() as f64
    };
    json!({
        "write_ms_mean": round(mean, 3),
        "write_ms_max": round(took.iter().copied().fold(0.0, f64::max), 1),
        "benchmark_process_cpu_seconds": round(cpu_seconds, 2),
    })
}

/// `items` for a message: the first few and how many in all.
fn abridged<T: std::fmt::Debug>(items: impl IntoIterator<Item = T>) -> String {
    let items: Vec<T> = items.into_iter().collect();
    let shown: Vec<String> = items.iter().take(4).map(|i| format!("{i:?}")).collect();
    if items.len() > shown.len() {
        format!("[{}, ... ({} in all)]", shown.join(", "), items.len())
    } else {
        format!("[{}]", shown.join(", "))
    }
}

/// Objects written more than once in a window (by verb, resource, name).
fn repeated_writes(records: &[RequestRecord], resources: &[&str]) -> Vec<Value> {
    let mut seen: BTreeMap<(Verb, &str, &str), usize> = BTreeMap::new();
    for r in records
        .iter()
        .filter(|r| r.verb.is_write() && resources.contains(&r.resource.as_str()))
    {
        *seen
            .entry((
                r.verb,
                r.resource.as_str(),
                r.name.as_deref().unwrap_or_default(),
            ))
            .or_default() += 1;
    }
    seen.into_iter()
        .filter(|(_, n)| *n > 1)
        .map(|((verb, resource, name), n)| json!({"verb": verb.as_str(), "resource": resource, "name": name, "times": n}))
        .collect()
}

struct RunResult {
    summary: Value,
    failures: Vec<String>,
}

async fn run_one(args: &Args, n: usize, scratch: &Path) -> anyhow::Result<RunResult> {
    let mut failures = Vec::new();
    let watch_cap = Duration::from_secs((args.steady_seconds / 2).max(1));
    let fake = FakeApiServer::start(Config {
        kubelet: Some(Duration::from_millis(args.kubelet_delay_ms)),
        bookmark_interval: Duration::from_secs(10),
        max_watch_timeout: Some(watch_cap),
        ..Config::default()
    })
    .await?;
    let kubeconfig = scratch.join(format!("kubeconfig-{n}"));
    fake.write_kubeconfig(&kubeconfig)?;
    let mut operator = Operator::start(
        &args.operator,
        &kubeconfig,
        args.resync_seconds,
        scratch.join(format!("operator-{n}.log")),
    )
    .await?;

    // Ready: every watch of the controller is open.
    let mut watched: Vec<&str> = CHILD_RESOURCES.to_vec();
    watched.extend(["blocksights", "secrets"]);
    let started = Instant::now();
    loop {
        operator.exited()?;
        let open = fake.active_watches();
        if watched
            .iter()
            .all(|r| open.get(*r).copied().unwrap_or(0) > 0)
        {
            break;
        }
        if started.elapsed() > Duration::from_secs(30) {
            bail!("the operator did not open its watches within 30 s: {open:?}");
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let startup = fake.counts();
    let usage_idle = usage(operator.pid)?;
    progress(format!(
        "N={n}: operator ready in {:.1}s; creating {n} BlockSights",
        started.elapsed().as_secs_f64()
    ));

    // Creation: N BlockSights appear at once (as `kubectl apply -f` of N manifests would),
    // or at --creation-rate per second.
    let mark = fake.request_mark();
    let created_at = Instant::now();
    let creation_clock = fake.elapsed();
    let bench_cpu = usage(std::process::id())?.cpu_seconds;
    let names: Vec<String> = (0..n).map(|i| format!("bs-{i:04}")).collect();
    let mut expected: BTreeMap<String, Expected> = BTreeMap::new();
    for (i, name) in names.iter().enumerate() {
        if args.creation_rate > 0.0 {
            let due = created_at + Duration::from_secs_f64(i as f64 / args.creation_rate);
            tokio::time::sleep_until(due.into()).await;
        }
        let stored = fake
            .create("blocksights", NAMESPACE, regtest_blocksight(name))
            .map_err(anyhow::Error::msg)?;
        expected.insert(
            name.clone(),
            convergence::expected(&stored, &BuildSettings::default())
                .map_err(anyhow::Error::msg)?,
        );
    }
    let mut pending: Vec<&String> = names.iter().collect();
    let mut last_reason = String::new();
    let timeout = Duration::from_secs(args.converge_timeout_seconds);
    while !pending.is_empty() && created_at.elapsed() < timeout {
        operator.exited()?;
        pending.retain(|name| {
            match convergence::check_state(&fake, NAMESPACE, name, &expected[*name]) {
                Ok(()) => false,
                Err(reason) => {
                    last_reason = reason;
                    true
                }
            }
        });
        if !pending.is_empty() {
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    }
    let converge_seconds = created_at.elapsed().as_secs_f64();
    let converged = pending.is_empty();
    if converged {
        progress(format!("N={n}: converged in {converge_seconds:.1}s"));
    } else {
        progress(format!(
            "N={n}: {} of {n} not converged after {converge_seconds:.0}s (e.g. {last_reason})",
            pending.len()
        ));
        failures.push(format!(
            "N={n}: {} BlockSights not converged",
            pending.len()
        ));
    }
    let settled = wait_quiet(&fake, Duration::from_secs(2), Duration::from_secs(60)).await;
    let creation_reconciliations = operator.reconciliations().await;
    let creation_counts = fake.counts().since(&startup);
    let creation_log = fake.requests(mark);
    let usage_created = usage(operator.pid)?;

    let expected_applies: usize = expected.values().map(|e| e.children.len()).sum();
    let expected_secrets: usize = expected.values().map(|e| e.secrets.len()).sum();
    let child_applies: u64 = CHILD_RESOURCES
        .iter()
        .map(|r| creation_counts.get(Verb::Apply, r))
        .sum();
    let status_writes = creation_counts.get(Verb::Apply, "blocksights/status");
    let mut writable: Vec<&str> = CHILD_RESOURCES.to_vec();
    writable.push("secrets");
    let repeated = repeated_writes(&creation_log, &writable);
    let wasted = creation_log
        .iter()
        .filter(|r| r.verb.is_write() && r.unchanged)
        .count();
    if wasted > 0 {
        failures.push(format!(
            "N={n}: {wasted} writes during creation changed nothing"
        ));
    }
    if !repeated.is_empty() {
        failures.push(format!(
            "N={n}: {} child objects written more than once",
            repeated.len()
        ));
    }
    let mut object_counts = serde_json::Map::new();
    let mut unexpected = 0i64;
    for resource in &writable {
        let want = if *resource == "secrets" {
            expected_secrets
        } else {
            expected
                .values()
                .flat_map(|e| &e.children)
                .filter(|c| c.resource == *resource)
                .count()
        };
        let have = fake.count_objects(resource);
        unexpected += have as i64 - want as i64;
        object_counts.insert(
            (*resource).to_owned(),
            json!({"expected": want, "found": have}),
        );
    }
    if unexpected != 0 {
        failures.push(format!(
            "N={n}: {unexpected} objects more than the builders produce"
        ));
    }
    let footprint = cache_footprint(&fake, &names[0], &expected[&names[0]]);
    let creation = json!({
        "converged": converged,
        "not_converged": pending.len(),
        "seconds_to_converge": round(converge_seconds, 2),
        "settled_within_60s_after": settled,
        "requests": summarize(&creation_counts),
        "per_blocksight": {
            "child_applies": round(child_applies as f64 / n as f64, 2),
            "children_built": round(expected_applies as f64 / n as f64, 2),
            "secret_creates": round(creation_counts.get(Verb::Create, "secrets") as f64 / n as f64, 2),
            "secrets_built": round(expected_secrets as f64 / n as f64, 2),
            "status_writes": round(status_writes as f64 / n as f64, 2),
            "reconciliations": round(creation_reconciliations / n as f64, 1),
            "events": round(creation_counts.get(Verb::Create, "events") as f64 / n as f64, 2),
        },
        "objects_written_more_than_once": repeated,
        "writes_that_changed_nothing": unchanged_writes(&creation_log, creation_clock),
        "fake_api_server": fake_service(&creation_log, usage(std::process::id())?.cpu_seconds - bench_cpu),
        "objects": object_counts,
        "watch_cache_per_blocksight": footprint,
    });

    // Steady state: nothing changes; the operator resyncs every BlockSight each
    // --resync-interval and its watches restart (the fake caps their timeout).
    let before = fake.counts();
    let reconciled_before = operator.reconciliations().await;
    let steady_started = Instant::now();
    tokio::time::sleep(Duration::from_secs(args.steady_seconds)).await;
    operator.exited()?;
    let steady_counts = fake.counts().since(&before);
    let steady_window = steady_started.elapsed().as_secs_f64();
    let reconciled = operator.reconciliations().await - reconciled_before;
    let usage_steady = usage(operator.pid)?;
    let rounds = steady_window / args.resync_seconds as f64;
    if steady_counts.writes() > 0 || steady_counts.reads() > 0 {
        failures.push(format!(
            "N={n}: steady state made {} writes and {} GET/LIST",
            steady_counts.writes(),
            steady_counts.reads()
        ));
    }
    let steady_cpu = usage_steady.cpu_seconds - usage_created.cpu_seconds;
    let steady = json!({
        "window_seconds": round(steady_window, 1),
        "resync_interval_seconds": args.resync_seconds,
        "resync_rounds": round(rounds, 1),
        "simulated_minutes_at_default_resync": round(rounds * DEFAULT_RESYNC_MINUTES, 0),
        "reconciliations": reconciled,
        "requests": summarize(&steady_counts),
        "operator_cpu_seconds": round(steady_cpu, 2),
        "operator_cpu_ms_per_reconciliation": if reconciled > 0.0 { round(steady_cpu * 1000.0 / reconciled, 3) } else { f64::NAN },
    });

    // One spec change: bitcoind's dbcache of the first BlockSight.
    let target = &names[0];
    let mark = fake.request_mark();
    let before = fake.counts();
    let changed_at = Instant::now();
    let change_clock = fake.elapsed();
    let patched = fake
        .merge_patch(
            "blocksights",
            NAMESPACE,
            target,
            &json!({"spec": {"bitcoind": {"dbcache": 256}}}),
            "kubectl-patch",
            Subresource::Main,
        )
        .map_err(anyhow::Error::msg)?;
    let after =
        convergence::expected(&patched, &BuildSettings::default()).map_err(anyhow::Error::msg)?;
    let should_change = after.changed_since(&expected[target]);
    let mut change_converged = false;
    while changed_at.elapsed() < Duration::from_secs(60) {
        operator.exited()?;
        if convergence::check_state(&fake, NAMESPACE, target, &after).is_ok() {
            change_converged = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    let change_seconds = changed_at.elapsed().as_secs_f64();
    wait_quiet(&fake, Duration::from_secs(2), Duration::from_secs(30)).await;
    let change_counts = fake.counts().since(&before);
    let change_log = fake.requests(mark);
    let writes: Vec<Value> = change_log
        .iter()
        .filter(|r| r.verb.is_write())
        .map(|r| {
            json!(format!(
                "{} {} {}",
                r.verb,
                r.resource,
                r.name.as_deref().unwrap_or_default()
            ))
        })
        .collect();
    let child_writes: BTreeSet<(String, String)> = change_log
        .iter()
        .filter(|r| r.verb.is_write() && CHILD_RESOURCES.contains(&r.resource.as_str()))
        .map(|r| (r.resource.clone(), r.name.clone().unwrap_or_default()))
        .collect();
    let child_write_count = change_log
        .iter()
        .filter(|r| r.verb.is_write() && CHILD_RESOURCES.contains(&r.resource.as_str()))
        .count();
    let should: BTreeSet<(String, String)> = should_change
        .iter()
        .map(|(r, name)| ((*r).to_owned(), name.clone()))
        .collect();
    let exact = change_converged && child_writes == should && child_write_count == should.len();
    if !exact {
        failures.push(format!(
            "N={n}: the spec change wrote {} ({child_write_count} writes); the builders changed {}",
            abridged(&child_writes),
            abridged(&should)
        ));
    }
    let spec_change = json!({
        "change": format!("spec.bitcoind.dbcache 128 -> 256 on {target}"),
        "converged": change_converged,
        "seconds_to_converge": round(change_seconds, 2),
        "children_changed_by_builders": should.iter().map(|(r, n)| format!("{r} {n}")).collect::<Vec<_>>(),
        "writes": writes,
        "writes_total": change_counts.writes(),
        "writes_that_changed_nothing": unchanged_writes(&change_log, change_clock),
        "reads_get_list": change_counts.reads(),
        "child_writes_exactly_the_changed_children": exact,
    });

    let usage_end = usage(operator.pid)?;
    let readyz = operator.readyz().await;
    let process = operator.stop().await?;

    // Restart over the converged cluster (a rollout, a new leader): every BlockSight is
    // reconciled again from fresh caches; nothing should be written.
    let restart = if args.no_restart {
        Value::Null
    } else {
        restart(args, &fake, n, scratch, &mut failures).await?
    };
    let summary = json!({
        "n": n,
        "creation": creation,
        "steady_state": steady,
        "spec_change": spec_change,
        "operator_process": {
            "peak_rss_mib": round(usage_end.peak_rss_mib, 1),
            "rss_mib": {
                "idle": round(usage_idle.rss_mib, 1),
                "after_creation": round(usage_created.rss_mib, 1),
                "end": round(usage_end.rss_mib, 1),
            },
            "cpu_seconds": {
                "startup": round(usage_idle.cpu_seconds, 2),
                "creation": round(usage_created.cpu_seconds - usage_idle.cpu_seconds, 2),
                "steady_state": round(steady_cpu, 2),
                "total": round(usage_end.cpu_seconds, 2),
            },
            "readyz_at_end": readyz,
            "exit": process,
        },
        "restart": restart,
        "fake_api_server": {"objects": fake.count_objects("blocksights"), "resource_version": fake.resource_version()},
    });
    Ok(RunResult { summary, failures })
}

/// Start a second operator over the `n` converged BlockSights of `fake`.
async fn restart(
    args: &Args,
    fake: &FakeApiServer,
    n: usize,
    scratch: &Path,
    failures: &mut Vec<String>,
) -> anyhow::Result<Value> {
    let kubeconfig = scratch.join(format!("kubeconfig-{n}"));
    let before = fake.counts();
    let started = Instant::now();
    let mut operator = Operator::start(
        &args.operator,
        &kubeconfig,
        args.resync_seconds,
        scratch.join(format!("operator-{n}-restart.log")),
    )
    .await?;
    // Every BlockSight reconciled at least once: a new process has a phase gauge for each
    // BlockSight it has reconciled.
    let limit = Duration::from_secs(args.converge_timeout_seconds.min(60));
    let mut reconciled = 0.0;
    while started.elapsed() < limit {
        operator.exited()?;
        reconciled = operator.instances().await;
        if reconciled >= n as f64 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let all_reconciled = reconciled >= n as f64;
    let seconds = started.elapsed().as_secs_f64();
    // Then one resync window: a healthy operator reconciles each BlockSight every interval.
    let window = Duration::from_secs((args.resync_seconds * 3).max(5));
    let at_window = operator.reconciliations().await;
    tokio::time::sleep(window).await;
    let in_window = operator.reconciliations().await - at_window;
    let expected_in_window = n as f64 * window.as_secs_f64() / args.resync_seconds as f64;
    let counts = fake.counts().since(&before).without("discovery");
    let readyz = operator.readyz().await;
    let usage = usage(operator.pid)?;
    let exit = operator.stop().await?;
    if !all_reconciled {
        failures.push(format!(
            "N={n}: after a restart only {reconciled} of {n} BlockSights were reconciled within {}s",
            limit.as_secs()
        ));
    }
    if counts.writes() > 0 {
        failures.push(format!("N={n}: a restart made {} writes", counts.writes()));
    }
    Ok(json!({
        "every_blocksight_reconciled": all_reconciled,
        "seconds_until_every_blocksight_reconciled": all_reconciled.then(|| round(seconds, 2)),
        "blocksights_reconciled": reconciled,
        "resync_window_seconds": window.as_secs(),
        "reconciliations_in_resync_window": in_window,
        "reconciliations_expected_in_resync_window": round(expected_in_window, 0),
        "requests_excluding_discovery": summarize(&counts),
        "readyz": readyz,
        "peak_rss_mib": round(usage.peak_rss_mib, 1),
        "cpu_seconds": round(usage.cpu_seconds, 2),
        "exit": exit,
    }))
}

async fn bench(args: Args) -> anyhow::Result<bool> {
    if !args.operator.is_file() {
        bail!(
            "{} does not exist: build it first (cargo build --release --bin blocksight) or pass --operator",
            args.operator.display()
        );
    }
    let scratch = std::env::temp_dir().join(format!("blocksight-bench-{}", std::process::id()));
    std::fs::create_dir_all(&scratch)?;
    let render = render_throughput(args.render_seconds)?;
    let mut runs = Vec::new();
    let mut failures = Vec::new();
    for &n in &args.n {
        let result = run_one(&args, n, &scratch).await?;
        failures.extend(result.failures);
        runs.push(result.summary);
    }
    let summary = json!({
        "machine": machine(),
        "operator": args.operator,
        "build": if cfg!(debug_assertions) { "debug" } else { "release" },
        "settings": {
            "resync_interval_seconds": args.resync_seconds,
            "steady_state_seconds": args.steady_seconds,
            "kubelet_delay_ms": args.kubelet_delay_ms,
            "watch_timeout_cap_seconds": (args.steady_seconds / 2).max(1),
            "creation_rate_per_second": if args.creation_rate > 0.0 { json!(args.creation_rate) } else { json!("all at once") },
        },
        "render": render,
        "runs": runs,
        "count_targets_missed": failures,
    });
    let text = serde_json::to_string_pretty(&summary)?;
    println!("{text}");
    if let Some(path) = &args.output {
        std::fs::write(path, format!("{text}\n"))?;
    }
    for failure in &failures {
        progress(format!("target missed: {failure}"));
    }
    Ok(failures.is_empty())
}

#[tokio::main]
async fn main() -> ExitCode {
    let args = Args::parse();
    let check = args.check;
    match bench(args).await {
        Ok(met) if met || !check => ExitCode::SUCCESS,
        Ok(_) => ExitCode::FAILURE,
        Err(e) => {
            eprintln!("error: {e:#}");
            ExitCode::from(2)
        }
    }
}
