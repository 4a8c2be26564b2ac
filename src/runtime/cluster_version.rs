//! The oldest Kubernetes the operator runs on, checked against the API server at start.
//!
//! The CRDs' validation rules use CEL's Kubernetes quantity library (`isQuantity`,
//! `quantity(...).compareTo(...)`, for storage sizes), which API servers accept in new CRDs
//! from 1.29 (1.28 only evaluates rules already stored), and `fieldPath` on
//! `x-kubernetes-validations` (1.28). The supported range starts one release later, at 1.30,
//! the `kubeVersion` of the Helm chart and the oldest version the Terraform module accepts:
//! one range, stated in docs/deploy.md ("Supported Kubernetes versions").

/// Oldest supported Kubernetes (major, minor).
pub const MIN_KUBERNETES: (u32, u32) = (1, 30);

/// Whether a Kubernetes version, as `/version` reports it (`major` "1", `minor` "30" or, on
/// GKE and EKS, "30+"), is supported. Pure.
pub fn check(major: &str, minor: &str) -> Result<(), String> {
    let version = parse(major, minor).ok_or_else(|| {
        format!("cannot read the Kubernetes version (major {major:?}, minor {minor:?})")
    })?;
    if version >= MIN_KUBERNETES {
        return Ok(());
    }
    let (min_major, min_minor) = MIN_KUBERNETES;
    Err(format!(
        "Kubernetes {}.{} is not supported: BlockSight needs {min_major}.{min_minor} or newer \
         (its CRDs use CEL quantity functions, which older API servers refuse); see \
         docs/deploy.md, \"Supported Kubernetes versions\"",
        version.0, version.1
    ))
}

/// `("1", "30+")` -> (1, 30).
fn parse(major: &str, minor: &str) -> Option<(u32, u32)> {
    let number = |text: &str| -> Option<u32> {
        let digits = text.trim().trim_end_matches('+');
        if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        digits.parse().ok()
    };
    Some((number(major)?, number(minor)?))
}

/// `"v1.30.4-eks-a737599"` -> (1, 30): for servers whose major and minor are empty.
fn parse_git_version(git_version: &str) -> Option<(u32, u32)> {
    let mut parts = git_version.trim().trim_start_matches('v').splitn(3, '.');
    let major = parts.next()?;
    let minor: String = parts
        .next()?
        .chars()
        .take_while(char::is_ascii_digit)
        .collect();
    parse(major, &minor)
}

/// Ask the API server for its version and fail with a clear message when it is older than
/// [`MIN_KUBERNETES`]. A version that cannot be read at all (a server reporting neither
/// major/minor nor a `gitVersion` of the usual form) is logged, not fatal.
pub async fn ensure_supported(client: &kube::Client) -> anyhow::Result<()> {
    use anyhow::Context as _;
    let info = client
        .apiserver_version()
        .await
        .context("reading the Kubernetes version (GET /version)")?;
    match parse(&info.major, &info.minor).or_else(|| parse_git_version(&info.git_version)) {
        Some((major, minor)) => {
            check(&major.to_string(), &minor.to_string()).map_err(anyhow::Error::msg)
        }
        None => {
            tracing::warn!(
                major = %info.major,
                minor = %info.minor,
                git_version = %info.git_version,
                "cannot read the Kubernetes version; assuming a supported one"
            );
            Ok(())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn supported_versions_pass() {
        assert_eq!(check("1", "30"), Ok(()));
        assert_eq!(check("1", "33"), Ok(()));
        assert_eq!(check("1", "40"), Ok(()));
        assert_eq!(check("2", "0"), Ok(()));
    }

    #[test]
    fn gke_and_eks_minors_with_a_plus_are_read() {
        assert_eq!(check("1", "30+"), Ok(()));
        assert_eq!(check("1", "31+"), Ok(()));
        let error = check("1", "29+").unwrap_err();
        assert!(
            error.starts_with("Kubernetes 1.29 is not supported"),
            "{error}"
        );
    }

    #[test]
    fn older_versions_are_refused_with_the_minimum_and_the_reason() {
        let error = check("1", "28").unwrap_err();
        assert!(
            error.starts_with("Kubernetes 1.28 is not supported: BlockSight needs 1.30 or newer"),
            "{error}"
        );
        assert!(error.contains("CEL quantity"), "{error}");
        assert!(error.contains("docs/deploy.md"), "{error}");
        assert!(check("1", "29").is_err());
        assert!(check("0", "99").is_err());
    }

    #[test]
    fn unreadable_versions_are_errors_naming_what_was_read() {
        for (major, minor) in [("", ""), ("1", ""), ("1", "x"), ("one", "30"), ("1", "+")] {
            let error = check(major, minor).unwrap_err();
            assert!(
                error.starts_with("cannot read the Kubernetes version"),
                "{major:?} {minor:?}: {error}"
            );
        }
    }

    #[test]
    fn git_versions_are_read_when_major_and_minor_are_empty() {
        assert_eq!(parse_git_version("v1.30.4-eks-a737599"), Some((1, 30)));
        assert_eq!(parse_git_version("v1.28.15-gke.1020000"), Some((1, 28)));
        assert_eq!(parse_git_version("v1.31.0"), Some((1, 31)));
        assert_eq!(parse_git_version("v1.29"), Some((1, 29)));
        assert_eq!(parse_git_version("unknown"), None);
        assert_eq!(parse_git_version(""), None);
    }
}
