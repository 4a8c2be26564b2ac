//! `blocksight assets`: write this release's Prometheus rules or Grafana dashboards.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

#[derive(Debug, Args)]
pub struct AssetsArgs {
    #[arg(value_enum)]
    set: crate::assets::AssetSet,
    #[arg(long)]
    dir: PathBuf,
}

/// Write the set into `--dir`; print the path of each file written.
pub fn execute(args: AssetsArgs) -> anyhow::Result<u8> {
    let AssetsArgs { set, dir } = args;
    for path in set
        .write(&dir)
        .with_context(|| format!("writing {set:?} into {}", dir.display()))?
    {
        println!("{}", path.display());
    }
    Ok(0)
}
