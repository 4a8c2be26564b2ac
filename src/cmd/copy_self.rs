//! `blocksight copy-self` (hidden): install this binary where the backup pods' PostgreSQL
//! container can run it.

use std::path::PathBuf;

use anyhow::Context as _;
use clap::Args;

#[derive(Debug, Args)]
pub struct CopySelfArgs {
    #[arg(long)]
    to: PathBuf,
}

/// Copy the running executable to `--to`.
pub fn execute(args: CopySelfArgs) -> anyhow::Result<u8> {
    copy_self(&args.to)?;
    Ok(0)
}

/// Copy the running executable to `to`, executable by everyone (the backup container runs
/// as another user than the init container on some images).
pub fn copy_self(to: &std::path::Path) -> anyhow::Result<()> {
    let me = std::env::current_exe().context("locating the running executable")?;
    std::fs::copy(&me, to)
        .with_context(|| format!("copying {} to {}", me.display(), to.display()))?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(to, std::fs::Permissions::from_mode(0o755))
            .with_context(|| format!("making {} executable", to.display()))?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn copy_self_installs_an_executable_copy_of_the_running_binary() {
        let dir = tempfile::tempdir().unwrap();
        let to = dir.path().join("blocksight");
        super::copy_self(&to).unwrap();
        let me = std::env::current_exe().unwrap();
        assert_eq!(
            std::fs::metadata(&to).unwrap().len(),
            std::fs::metadata(&me).unwrap().len()
        );
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(
                std::fs::metadata(&to).unwrap().permissions().mode() & 0o777,
                0o755
            );
        }
        let missing = dir.path().join("no/such/dir/blocksight");
        assert!(super::copy_self(&missing).is_err());
    }
}
