//! The render engine of `blocksight render`: every BlockSight of a file parsed, validated,
//! built and serialized as the controller would apply it, on every core, in file order.
//!
//! Why not rayon's ordered parallel iteration: tried on 2026-12-03 (rayon 1.12: a pool of
//! `threads`, `into_par_iter().map().collect()` for validation, windows of
//! `threads * CHUNKS_AHEAD_PER_THREAD` chunks rendered in parallel while the previous window
//! is written), measured with `blocksight-bench` (render mode, 1,000 BlockSights, release,
//! 2 cores shared with other work, load 1.4-2.7, under `nice -n 10`), both binaries run in
//! turn. BlockSights/s, YAML / JSON, all cores: hand-written 843/910, 992/992, 1052/1056;
//! rayon 922/935, 810/952, 750/828 (means 962/986 against 827/905). Not at least as fast,
//! and it adds a dependency, so the hand-written engine stays. Neither reached the
//! 2,000/s of docs/performance.md on the busy machine; compare again on an idle one.

use anyhow::{Context as _, bail};
use serde_json::Value;

use crate::crd::{self, BlockSight};
use crate::desired::{self, BuildSettings};
use crate::validate::{self, FieldError, InvalidSpec, ValidBlockSight};

/// How `render` prints the objects.
#[derive(Clone, Copy, Debug)]
pub enum OutputFormat {
    Yaml,
    Json,
}

/// Every CRD as multi-document YAML.
pub fn crd_yaml() -> String {
    crd_files().into_iter().map(|(_, yaml)| yaml).collect()
}

/// The files of crds/: `<plural>.<group>.yaml`, one CRD each, sorted by file name (the
/// order `ls crds/` and `kubectl apply -f crds/` use).
pub fn crd_files() -> Vec<(String, String)> {
    let mut files: Vec<(String, String)> = crd::all_crds()
        .iter()
        .map(|c| {
            let name = c.metadata.name.clone().unwrap_or_default();
            (
                format!("{name}.yaml"),
                format!("---\n{}", serde_yaml::to_string(c).expect("CRDs serialize")),
            )
        })
        .collect();
    files.sort();
    files
}

/// Parse one YAML document into a BlockSight, naming the field of any type error, and
/// refusing fields the BlockSight does not declare (`spec.bitcoind.dbCache: unknown field`),
/// as kubectl's strict field validation does, rather than dropping them. The top-level
/// `apiVersion`, `kind`, `metadata` and `status` are not checked.
///
/// Offline only: the controller never sees an unknown field, since the API server refuses
/// them (strict field validation) or prunes them (structural schema) before storing.
pub fn parse_blocksight(doc: Value) -> Result<BlockSight, InvalidSpec> {
    let mut unknown = Vec::new();
    let mut track = serde_path_to_error::Track::new();
    let parsed: Result<BlockSight, _> = serde_ignored::deserialize(
        serde_path_to_error::Deserializer::new(doc, &mut track),
        |path| {
            let field = ignored_field(&path);
            let top = field.split(['.', '[']).next().unwrap_or_default();
            if !matches!(top, "apiVersion" | "kind" | "metadata" | "status") {
                unknown.push(FieldError {
                    field,
                    reason: "unknown field".to_owned(),
                });
            }
        },
    );
    match parsed {
        Err(e) => {
            let path = track.path().to_string();
            let field = if path == "." {
                "(document)".to_owned()
            } else {
                path
            };
            Err(InvalidSpec(vec![FieldError {
                field,
                reason: e.to_string(),
            }]))
        }
        Ok(_) if !unknown.is_empty() => Err(InvalidSpec(unknown)),
        Ok(bs) => Ok(bs),
    }
}

/// A path serde ignored, as serde_path_to_error (and so every FieldError) writes one:
/// `spec.api.env[0].valeu`.
fn ignored_field(path: &serde_ignored::Path) -> String {
    use serde_ignored::Path;
    match path {
        Path::Root => String::new(),
        Path::Seq { parent, index } => format!("{}[{index}]", ignored_field(parent)),
        Path::Map { parent, key } => match ignored_field(parent) {
            parent if parent.is_empty() => key.clone(),
            parent => format!("{parent}.{key}"),
        },
        Path::Some { parent }
        | Path::NewtypeStruct { parent }
        | Path::NewtypeVariant { parent } => ignored_field(parent),
    }
}

/// Render every BlockSight in `text` (multi-document YAML) as the controller would build it.
pub fn render(
    text: &str,
    output: OutputFormat,
    with_secrets: bool,
    settings: &BuildSettings,
) -> anyhow::Result<String> {
    render_with(text, output, with_secrets, false, settings)
}

/// [`render`], plus (`backup_jobs`) one example of each Job the operator creates for
/// BlockSightBackups and BlockSightRestores, so they can be reviewed and validated offline.
pub fn render_with(
    text: &str,
    output: OutputFormat,
    with_secrets: bool,
    backup_jobs: bool,
    settings: &BuildSettings,
) -> anyhow::Result<String> {
    let options = RenderOptions {
        output,
        with_secrets,
        backup_jobs,
        threads: 0,
    };
    let rendering = Rendering::new(text, options, settings)?;
    let mut out = String::new();
    rendering
        .write_with(&mut |text| {
            out.push_str(text);
            Ok(())
        })
        .expect("writing into memory does not fail");
    Ok(out)
}

/// Documents per unit of parallel work: large enough that handing out work costs nothing
/// (a BlockSight is ~0.7 ms of work), small enough to balance the cores on a short file.
const DOCUMENTS_PER_CHUNK: usize = 4;

/// Chunks each thread may render ahead of the writer: what bounds the memory of a large file
/// (a BlockSight is ~70 KB of YAML, ~125 KB of JSON).
const CHUNKS_AHEAD_PER_THREAD: usize = 2;

/// What `render` prints, and on how many threads.
#[derive(Clone, Copy, Debug)]
pub struct RenderOptions {
    pub output: OutputFormat,
    /// Also the credentials Secrets the controller generates (fresh random values).
    pub with_secrets: bool,
    /// Also an example of each Job of BlockSightBackups and BlockSightRestores.
    pub backup_jobs: bool,
    /// Threads that validate, build and serialize the documents; 0: one per core. The output
    /// is the same, byte for byte, on any number.
    pub threads: usize,
}

/// The BlockSights of a file, every one parsed and validated: what `render` prints.
///
/// Input errors are all found by [`Rendering::new`], before anything is written, so invalid
/// input prints nothing. [`Rendering::write_to`] then builds and serializes the documents on
/// every core, a few at a time, and writes them in document order: the output is the same,
/// byte for byte, whatever the number of threads, and memory holds only the parsed specs and
/// a bounded number of rendered chunks.
pub struct Rendering<'s> {
    documents: Vec<ValidBlockSight>,
    options: RenderOptions,
    settings: &'s BuildSettings,
}

impl<'s> Rendering<'s> {
    /// Parse and validate every document of `text`. The error names the first bad document,
    /// in document order, as a sequential read would.
    pub fn new(
        text: &str,
        mut options: RenderOptions,
        settings: &'s BuildSettings,
    ) -> anyhow::Result<Self> {
        if options.threads == 0 {
            options.threads =
                std::thread::available_parallelism().map_or(1, std::num::NonZero::get);
        }
        // Splitting the YAML stream is sequential (and cheap: ~0.01 ms per BlockSight); it
        // stops at the first document that is not YAML or not a BlockSight.
        let mut documents: Vec<(usize, Value)> = Vec::new();
        let mut stream_error = None;
        for (index, doc) in serde_yaml::Deserializer::from_str(text).enumerate() {
            let value: Value = match serde::Deserialize::deserialize(doc)
                .with_context(|| format!("document {}: not YAML", index + 1))
            {
                Ok(value) => value,
                Err(e) => {
                    stream_error = Some(e);
                    break;
                }
            };
            if value.is_null() {
                continue;
            }
            let kind = value
                .get("kind")
                .and_then(Value::as_str)
                .unwrap_or_default();
            if kind != "BlockSight" {
                stream_error = Some(anyhow::anyhow!(
                    "document {}: kind {kind:?} is not BlockSight",
                    index + 1
                ));
                break;
            }
            documents.push((index, value));
        }
        // Validation (~0.1 ms each, with CEL) on every core; the first error in document
        // order wins, and every document before a stream error comes before it.
        let documents = map_in_order(documents, options.threads, |(index, value)| {
            validate_document(index, value)
        })
        .into_iter()
        .collect::<anyhow::Result<Vec<_>>>()?;
        if let Some(e) = stream_error {
            return Err(e);
        }
        if documents.is_empty() {
            bail!("no BlockSight document found");
        }
        Ok(Self {
            documents,
            options,
            settings,
        })
    }

    /// The validated BlockSights, in file order.
    pub fn documents(&self) -> &[ValidBlockSight] {
        &self.documents
    }

    /// Write every object: YAML documents each after a `---` line, or one JSON List
    /// (pretty-printed, keys sorted).
    pub fn write_to(&self, out: &mut impl std::io::Write) -> std::io::Result<()> {
        self.write_with(&mut |text| out.write_all(text.as_bytes()))
    }

    /// [`Rendering::write_to`], handing the text piece by piece to `write`.
    pub fn write_with(
        &self,
        write: &mut dyn FnMut(&str) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        match self.options.output {
            OutputFormat::Yaml => self.write_chunks(|range| self.yaml(range), write),
            OutputFormat::Json => {
                // serde_json's pretty List, item by item: `{ "apiVersion", "items": [...],
                // "kind" }`, each item indented two levels.
                write("{\n  \"apiVersion\": \"v1\",\n  \"items\": [")?;
                let mut items = false;
                self.write_chunks(|range| self.json_items(range), &mut |chunk| {
                    if chunk.is_empty() {
                        return Ok(());
                    }
                    write(if items { ",\n" } else { "\n" })?;
                    items = true;
                    write(chunk)
                })?;
                if items {
                    write("\n  ")?;
                }
                write("],\n  \"kind\": \"List\"\n}\n")
            }
        }
    }

    /// Render the documents chunk by chunk on `options.threads` threads; hand each chunk's
    /// text to `write` in document order.
    fn write_chunks(
        &self,
        render: impl Fn(std::ops::Range<usize>) -> String + Sync,
        write: &mut dyn FnMut(&str) -> std::io::Result<()>,
    ) -> std::io::Result<()> {
        use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
        use std::sync::{Condvar, Mutex, mpsc};

        let count = self.documents.len();
        let chunks = count.div_ceil(DOCUMENTS_PER_CHUNK);
        let range = |chunk: usize| {
            chunk * DOCUMENTS_PER_CHUNK..((chunk + 1) * DOCUMENTS_PER_CHUNK).min(count)
        };
        let threads = self.options.threads.min(chunks);
        if threads <= 1 {
            return (0..chunks).try_for_each(|chunk| write(&render(range(chunk))));
        }
        let window = threads * CHUNKS_AHEAD_PER_THREAD;
        // Workers take the next chunk, but never more than `window` chunks past the last one
        // written; the writer (this thread) puts them back in order.
        let next = AtomicUsize::new(0);
        let written = (Mutex::new(0usize), Condvar::new());
        let stop = AtomicBool::new(false);
        std::thread::scope(|scope| {
            let (send, receive) = mpsc::channel::<(usize, String)>();
            for _ in 0..threads {
                let send = send.clone();
                let (next, written, stop, render) = (&next, &written, &stop, &render);
                scope.spawn(move || {
                    // A panic here would leave the others waiting for its chunk: stop them
                    // (the scope then re-raises the panic).
                    let _stop_on_panic = StopOnPanic(stop, written);
                    loop {
                        let chunk = next.fetch_add(1, Ordering::Relaxed);
                        if chunk >= chunks {
                            return;
                        }
                        let mut done = written.0.lock().expect("not poisoned");
                        while chunk >= *done + window && !stop.load(Ordering::Relaxed) {
                            done = written.1.wait(done).expect("not poisoned");
                        }
                        drop(done);
                        if stop.load(Ordering::Relaxed) {
                            return;
                        }
                        if send.send((chunk, render(range(chunk)))).is_err() {
                            return;
                        }
                    }
                });
            }
            drop(send);
            let mut ready = std::collections::BTreeMap::new();
            let mut done = 0;
            let result = (|| {
                for (chunk, text) in &receive {
                    ready.insert(chunk, text);
                    while let Some(text) = ready.remove(&done) {
                        write(&text)?;
                        done += 1;
                        *written.0.lock().expect("not poisoned") = done;
                        written.1.notify_all();
                    }
                }
                Ok(())
            })();
            if result.is_err() {
                // A failed write (a closed pipe): stop the workers and return its error.
                stop_workers(&stop, &written);
            }
            drop(receive);
            result
        })
    }

    /// The YAML of `range`'s documents: every object after a `---` line.
    fn yaml(&self, range: std::ops::Range<usize>) -> String {
        let mut yaml = String::new();
        for valid in &self.documents[range] {
            self.for_each_object(valid, |value, child| {
                yaml.push_str("---\n");
                match (value, child) {
                    (_, Some(child)) => child.write_yaml(&mut yaml),
                    (Some(value), None) => desired::write_yaml(&mut yaml, &value),
                    (None, None) => {}
                }
            });
        }
        yaml
    }

    /// The List items of `range`'s documents, pretty-printed at their depth in the List
    /// (JSON strings hold no raw newline, so indenting every line is exact), `,\n` between.
    fn json_items(&self, range: std::ops::Range<usize>) -> String {
        let mut items = String::new();
        for valid in &self.documents[range] {
            self.for_each_object(valid, |value, child| {
                let Some(value) = value.or_else(|| child.map(desired::Child::to_value)) else {
                    return;
                };
                let json = serde_json::to_string_pretty(&value).expect("serializes");
                if !items.is_empty() {
                    items.push_str(",\n");
                }
                for (i, line) in json.split('\n').enumerate() {
                    if i > 0 {
                        items.push('\n');
                    }
                    items.push_str("    ");
                    items.push_str(line);
                }
            });
        }
        items
    }

    /// Every object printed for one BlockSight, in order: generated Secrets (as JSON values),
    /// the children, example backup Jobs (as JSON values).
    fn for_each_object(
        &self,
        valid: &ValidBlockSight,
        mut emit: impl FnMut(Option<Value>, Option<&desired::Child>),
    ) {
        if self.options.with_secrets {
            for secret in desired::secrets::generate(valid, &mut rand::rng()) {
                emit(
                    Some(serde_json::to_value(&secret).expect("serializes")),
                    None,
                );
            }
        }
        for child in &desired::build(valid, self.settings).children {
            emit(None, Some(child));
        }
        if self.options.backup_jobs {
            for job in desired::backup::example_jobs(valid, self.settings) {
                emit(Some(serde_json::to_value(&job).expect("serializes")), None);
            }
        }
    }
}

/// Tell the render workers to stop, and wake those waiting for the writer.
fn stop_workers(
    stop: &std::sync::atomic::AtomicBool,
    written: &(std::sync::Mutex<usize>, std::sync::Condvar),
) {
    stop.store(true, std::sync::atomic::Ordering::Relaxed);
    let _guard = written
        .0
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    written.1.notify_all();
}

/// Calls [`stop_workers`] when dropped by a panic.
struct StopOnPanic<'a>(
    &'a std::sync::atomic::AtomicBool,
    &'a (std::sync::Mutex<usize>, std::sync::Condvar),
);

impl Drop for StopOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            stop_workers(self.0, self.1);
        }
    }
}

/// Parse and validate the BlockSight at `index` (0-based) of a file.
fn validate_document(index: usize, value: Value) -> anyhow::Result<ValidBlockSight> {
    let name = value
        .pointer("/metadata/name")
        .and_then(Value::as_str)
        .unwrap_or("<unnamed>")
        .to_owned();
    let invalid = |e: InvalidSpec| {
        anyhow::anyhow!("document {} (BlockSight {name}): invalid: {e}", index + 1)
    };
    let bs = parse_blocksight(value).map_err(invalid)?;
    validate::validate(&bs).map_err(invalid)
}

/// `items.into_iter().map(f).collect()`, on up to `threads` threads over contiguous parts.
fn map_in_order<T: Send, R: Send>(
    mut items: Vec<T>,
    threads: usize,
    f: impl Fn(T) -> R + Sync,
) -> Vec<R> {
    let threads = threads.clamp(1, items.len().max(1));
    if threads == 1 {
        return items.into_iter().map(f).collect();
    }
    let per_thread = items.len().div_ceil(threads);
    let mut parts = Vec::new();
    while items.len() > per_thread {
        parts.push(items.split_off(items.len() - per_thread));
    }
    parts.push(items);
    parts.reverse();
    std::thread::scope(|scope| {
        let f = &f;
        let handles: Vec<_> = parts
            .into_iter()
            .map(|part| scope.spawn(move || part.into_iter().map(f).collect::<Vec<R>>()))
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join()
                    .unwrap_or_else(|panic| std::panic::resume_unwind(panic))
            })
            .collect()
    })
}

#[cfg(test)]
mod tests {
    use super::{OutputFormat, RenderOptions, Rendering};
    use crate::desired::BuildSettings;

    /// 40 BlockSights, validated, to render on 3 threads.
    fn forty(settings: &BuildSettings) -> Rendering<'_> {
        let text = include_str!("../examples/regtest.yaml");
        let text: String = (0..40)
            .map(|i| {
                format!(
                    "---\n{}",
                    text.replace("name: dev\n", &format!("name: n{i}\n"))
                )
            })
            .collect();
        let options = RenderOptions {
            output: OutputFormat::Yaml,
            with_secrets: false,
            backup_jobs: false,
            threads: 3,
        };
        Rendering::new(&text, options, settings).unwrap()
    }

    #[test]
    fn a_failed_write_stops_the_render_workers_and_is_returned() {
        let settings = BuildSettings::default();
        let rendering = forty(&settings);
        let mut writes = 0;
        let result = rendering.write_chunks(|range| format!("{range:?}"), &mut |_| {
            writes += 1;
            if writes == 2 {
                Err(std::io::ErrorKind::BrokenPipe.into())
            } else {
                Ok(())
            }
        });
        assert_eq!(result.unwrap_err().kind(), std::io::ErrorKind::BrokenPipe);
        assert_eq!(writes, 2, "nothing written after the error");
    }

    #[test]
    fn a_panic_while_rendering_is_raised_not_waited_for() {
        let settings = BuildSettings::default();
        let rendering = forty(&settings);
        let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
            rendering.write_chunks(
                |range| {
                    assert!(range.start != 8, "boom");
                    String::new()
                },
                &mut |_| Ok(()),
            )
        }));
        assert!(result.is_err());
    }

    #[test]
    fn chunks_are_written_in_order_on_any_number_of_threads() {
        let settings = BuildSettings::default();
        for threads in [1, 2, 3, 16] {
            let mut rendering = forty(&settings);
            rendering.options.threads = threads;
            let mut written = Vec::new();
            rendering
                .write_chunks(|range| format!("{range:?}"), &mut |text| {
                    written.push(text.to_owned());
                    Ok(())
                })
                .unwrap();
            let expected: Vec<String> =
                (0..10).map(|c| format!("{:?}", c * 4..c * 4 + 4)).collect();
            assert_eq!(written, expected, "{threads} threads");
        }
    }
}
