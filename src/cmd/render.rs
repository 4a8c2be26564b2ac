//! `blocksight render`: read a file of BlockSights, print what the controller would apply.

use std::io::Read;
use std::path::PathBuf;

use anyhow::Context as _;
use clap::{Args, ValueEnum};

use crate::desired::BuildSettings;
use crate::render::{RenderOptions, Rendering};

#[derive(Debug, Args)]
pub struct RenderArgs {
    /// File with BlockSight documents ("-" for standard input).
    #[arg(short = 'f', long = "filename")]
    file: PathBuf,
    #[arg(short = 'o', long = "output", value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
    /// Also print the credentials Secrets the controller creates on first reconcile,
    /// with freshly generated values (never commit them).
    #[arg(long)]
    with_secrets: bool,
    /// Render as for a cluster with the prometheus-operator CRDs installed
    /// (ServiceMonitors and PodMonitors under `prometheusOperator: auto`).
    #[arg(long)]
    prometheus_operator: bool,
    /// Also print an example of each Job the operator creates for BlockSightBackup and
    /// BlockSightRestore objects (backup, drill, restore, delete).
    #[arg(long)]
    backup_jobs: bool,
    /// The operator image the deployment runs (as the controller would use it).
    #[arg(long, env = "OPERATOR_IMAGE", default_value = crate::desired::DEFAULT_OPERATOR_IMAGE)]
    operator_image: String,
}

// `--output`: crate::render::OutputFormat as a flag value.
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum OutputFormat {
    Yaml,
    Json,
}

impl From<OutputFormat> for crate::render::OutputFormat {
    fn from(format: OutputFormat) -> Self {
        match format {
            OutputFormat::Yaml => Self::Yaml,
            OutputFormat::Json => Self::Json,
        }
    }
}

/// Render the file on stdout; an invalid file prints nothing but the error (exit code 1).
pub fn execute(args: RenderArgs) -> anyhow::Result<u8> {
    let RenderArgs {
        file,
        output,
        with_secrets,
        prometheus_operator,
        backup_jobs,
        operator_image,
    } = args;
    let text = read_input(&file)?;
    let settings = BuildSettings {
        prometheus_operator_crds: prometheus_operator,
        operator_image,
        ..Default::default()
    };
    // Every document is checked before anything is printed: invalid input prints
    // nothing (a pipe into `kubectl apply` never gets half a file).
    let options = RenderOptions {
        output: output.into(),
        with_secrets,
        backup_jobs,
        threads: 0,
    };
    match Rendering::new(&text, options, &settings) {
        Ok(rendering) => {
            let mut stdout = std::io::stdout().lock();
            rendering
                .write_to(&mut stdout)
                .and_then(|()| std::io::Write::flush(&mut stdout))
                .context("writing to standard output")?;
            Ok(0)
        }
        Err(e) => {
            eprintln!("error: {}: {e}", file.display());
            Ok(1)
        }
    }
}

fn read_input(file: &PathBuf) -> anyhow::Result<String> {
    if file.as_os_str() == "-" {
        let mut text = String::new();
        std::io::stdin()
            .read_to_string(&mut text)
            .context("reading standard input")?;
        Ok(text)
    } else {
        std::fs::read_to_string(file).with_context(|| format!("reading {}", file.display()))
    }
}
