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
    /// yaml or json: the objects on standard output. compose: a Docker Compose project of
    /// the same components (one BlockSight) written into --dir.
    #[arg(short = 'o', long = "output", visible_alias = "format", value_enum, default_value_t = OutputFormat::Yaml)]
    output: OutputFormat,
    /// With --format compose: the project directory for compose.yaml, config/ and .env
    /// (default: ./blocksight-NAME).
    #[arg(long, value_name = "DIR")]
    dir: Option<PathBuf>,
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
    Compose,
}

/// Render the file on stdout; an invalid file prints nothing but the error (exit code 1).
pub fn execute(args: RenderArgs) -> anyhow::Result<u8> {
    let RenderArgs {
        file,
        output,
        dir,
        with_secrets,
        prometheus_operator,
        backup_jobs,
        operator_image,
    } = args;
    let format = match output {
        OutputFormat::Yaml => crate::render::OutputFormat::Yaml,
        OutputFormat::Json => crate::render::OutputFormat::Json,
        OutputFormat::Compose => crate::render::OutputFormat::Yaml,
    };
    if dir.is_some() && !matches!(output, OutputFormat::Compose) {
        anyhow::bail!("--dir is for --format compose");
    }
    if matches!(output, OutputFormat::Compose) && (with_secrets || backup_jobs) {
        anyhow::bail!("--with-secrets and --backup-jobs do not apply to --format compose");
    }
    let text = read_input(&file)?;
    let settings = BuildSettings {
        prometheus_operator_crds: prometheus_operator,
        operator_image,
        ..Default::default()
    };
    // Every document is checked before anything is printed: invalid input prints
    // nothing (a pipe into `kubectl apply` never gets half a file).
    let options = RenderOptions {
        output: format,
        with_secrets,
        backup_jobs,
        threads: 0,
    };
    match Rendering::new(&text, options, &settings) {
        Ok(rendering) if matches!(output, OutputFormat::Compose) => {
            let [bs] = rendering.documents() else {
                eprintln!(
                    "error: {}: --format compose renders one BlockSight; the file has {}",
                    file.display(),
                    rendering.documents().len()
                );
                return Ok(1);
            };
            let dir = dir.unwrap_or_else(|| PathBuf::from(crate::compose::project_name(&bs.name)));
            let written = match crate::compose::write_project(bs, &settings, &dir) {
                Ok(written) => written,
                Err(e) => {
                    eprintln!("error: {}: {e:#}", file.display());
                    return Ok(1);
                }
            };
            let env = &written.env;
            println!(
                "wrote {dir}/{compose}, {files} configuration files in {dir}/{config}/ and {dir}/{env_file} \
                 ({generated} credentials generated, {kept} kept; mode 0600, never commit it)",
                dir = written.dir.display(),
                compose = crate::compose::COMPOSE_FILE,
                files = written.config_files,
                config = crate::compose::CONFIG_DIR,
                env_file = crate::compose::ENV_FILE,
                generated = env.generated,
                kept = env.kept,
            );
            if !env.missing.is_empty() {
                println!(
                    "set these in {}/{} (Secrets you manage in the cluster): {}",
                    written.dir.display(),
                    crate::compose::ENV_FILE,
                    env.missing.join(", ")
                );
            }
            println!(
                "start it: docker compose --project-directory {} up -d",
                written.dir.display()
            );
            Ok(0)
        }
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
