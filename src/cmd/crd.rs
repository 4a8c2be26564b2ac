//! `blocksight crd`: print the CRDs, or write crds/.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

use crate::render::{crd_files, crd_yaml};

#[derive(Debug, Args)]
pub struct CrdArgs {
    /// Instead of printing, write one file per CRD into this folder (how crds/ is made).
    #[arg(long)]
    dir: Option<PathBuf>,
}

/// Print every CRD, or write one file per CRD into `--dir`.
pub fn execute(args: CrdArgs) -> anyhow::Result<u8> {
    match args.dir {
        None => {
            print!("{}", crd_yaml());
            Ok(0)
        }
        Some(dir) => {
            for (file, yaml) in crd_files() {
                let path = dir.join(file);
                std::fs::write(&path, yaml)
                    .with_context(|| format!("writing {}", path.display()))?;
            }
            Ok(0)
        }
    }
}
