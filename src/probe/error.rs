//! Why a probe failed, and the redaction that keeps passwords out of error texts.

use std::io;

/// Why a probe failed. [`category`](Self::category) is a short stable name (metric label,
/// CLI output); the text says what happened. No variant ever holds a password.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProbeError {
    /// No complete answer within the probe's timeout (the server may be overloaded or a
    /// firewall drops packets).
    #[error("no answer within the timeout")]
    Timeout,
    /// Could not connect, or the connection broke (DNS, refused, reset).
    #[error("{0}")]
    Unreachable(String),
    /// The server refused the credentials.
    #[error("{0}")]
    Auth(String),
    /// The server answered something this client does not understand.
    #[error("{0}")]
    Protocol(String),
    /// The server understood and answered with an error (a JSON-RPC error code, a SQLSTATE,
    /// a Redis error prefix).
    #[error("server error {code}: {message}")]
    Server { code: String, message: String },
    /// The target itself is unusable (malformed URL, unsupported scheme).
    #[error("{0}")]
    InvalidTarget(String),
}

impl ProbeError {
    /// Short stable name of the failure class.
    pub fn category(&self) -> &'static str {
        match self {
            Self::Timeout => "timeout",
            Self::Unreachable(_) => "unreachable",
            Self::Auth(_) => "auth",
            Self::Protocol(_) => "protocol",
            Self::Server { .. } => "server",
            Self::InvalidTarget(_) => "config",
        }
    }

    /// Whether the server answered that it is still starting: bitcoind's RPC warm-up (-28,
    /// "Loading block index"), PostgreSQL's 57P03 ("the database system is starting up"),
    /// Redis' LOADING. Such a server is alive and needs time, not attention.
    pub fn is_starting(&self) -> bool {
        matches!(self, Self::Server { code, .. } if matches!(code.as_str(), "-28" | "57P03" | "LOADING"))
    }

    /// The same error with every secret and every URL password masked.
    pub(crate) fn redacted(self, secrets: &[String]) -> Self {
        let clean = |text: String| redact(&text, secrets);
        match self {
            Self::Timeout => Self::Timeout,
            Self::Unreachable(m) => Self::Unreachable(clean(m)),
            Self::Auth(m) => Self::Auth(clean(m)),
            Self::Protocol(m) => Self::Protocol(clean(m)),
            Self::Server { code, message } => Self::Server {
                code: clean(code),
                message: clean(message),
            },
            Self::InvalidTarget(m) => Self::InvalidTarget(clean(m)),
        }
    }
}

/// Classify an I/O error talking to `target` (a host:port or a redacted URL).
pub(crate) fn from_io(error: &io::Error, target: &str) -> ProbeError {
    match error.kind() {
        // Socket read/write timeouts surface as WouldBlock on Unix, TimedOut elsewhere.
        io::ErrorKind::TimedOut | io::ErrorKind::WouldBlock => ProbeError::Timeout,
        _ => ProbeError::Unreachable(format!("{target}: {error}")),
    }
}

/// `text` with every occurrence of each non-empty secret replaced by `***`, then every URL
/// password masked ([`redact_urls`]).
pub fn redact(text: &str, secrets: &[String]) -> String {
    let mut clean = text.to_owned();
    for secret in secrets.iter().filter(|s| !s.is_empty()) {
        clean = clean.replace(secret.as_str(), "***");
    }
    redact_urls(&clean)
}

/// `text` with the password of every `scheme://user:password@host` URL replaced by `***`.
pub fn redact_urls(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(index) = rest.find("://") {
        let (head, tail) = rest.split_at(index + 3);
        out.push_str(head);
        let end = tail
            .find(|c: char| c.is_whitespace() || matches!(c, '"' | '\'' | '`' | '<' | '>'))
            .unwrap_or(tail.len());
        let (url, after) = tail.split_at(end);
        match userinfo_password(url) {
            Some((start, stop)) => {
                out.push_str(&url[..start]);
                out.push_str("***");
                out.push_str(&url[stop..]);
            }
            None => out.push_str(url),
        }
        rest = after;
    }
    out.push_str(rest);
    out
}

/// Byte range of the password in `url_after_scheme` (`user:password@host...`), if any.
/// The userinfo ends at the last `@` before any query or fragment, so a password holding an
/// unescaped `/` or `@` is still masked whole.
fn userinfo_password(url_after_scheme: &str) -> Option<(usize, usize)> {
    let before_query = url_after_scheme
        .find(['?', '#'])
        .unwrap_or(url_after_scheme.len());
    let at = url_after_scheme[..before_query].rfind('@')?;
    let colon = url_after_scheme[..at].find(':')?;
    (colon + 1 < at).then_some((colon + 1, at))
}

/// The password in `url` (as written and percent-decoded), for [`redact`].
pub(crate) fn url_secrets(url: &str) -> Vec<String> {
    let Some(after_scheme) = url.find("://").map(|i| &url[i + 3..]) else {
        return Vec::new();
    };
    let Some((start, stop)) = userinfo_password(after_scheme) else {
        return Vec::new();
    };
    let raw = &after_scheme[start..stop];
    let decoded = percent_decode(raw);
    if decoded == raw {
        vec![raw.to_owned()]
    } else {
        vec![raw.to_owned(), decoded]
    }
}

fn percent_decode(text: &str) -> String {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = bytes
            .get(i + 1..i + 3)
            .and_then(|h| std::str::from_utf8(h).ok())
            .and_then(|h| u8::from_str_radix(h, 16).ok());
        match (bytes[i], hex) {
            (b'%', Some(byte)) => {
                out.push(byte);
                i += 3;
            }
            (byte, _) => {
                out.push(byte);
                i += 1;
            }
        }
    }
    String::from_utf8_lossy(&out).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_lose_their_password() {
        assert_eq!(
            redact_urls("connect postgres://app:s3cret@db:5432/x?sslmode=require failed"),
            "connect postgres://app:***@db:5432/x?sslmode=require failed"
        );
        assert_eq!(
            redact_urls("redis://:p@ss/w@redis:6379/0"),
            "redis://:***@redis:6379/0"
        );
        assert_eq!(
            redact_urls("\"http://u:p@h\" and http://h:8332/"),
            "\"http://u:***@h\" and http://h:8332/"
        );
        assert_eq!(redact_urls("no url, user@host"), "no url, user@host");
        assert_eq!(redact_urls("http://user@h/x"), "http://user@h/x");
    }

    #[test]
    fn secrets_are_masked_wherever_they_appear() {
        let secrets = url_secrets("postgres://app:a%2Fb@db/x");
        assert_eq!(secrets, ["a%2Fb", "a/b"]);
        assert_eq!(
            redact("password a/b rejected", &secrets),
            "password *** rejected"
        );
        assert_eq!(redact("nothing", &[String::new()]), "nothing");
    }

    #[test]
    fn categories_are_stable() {
        let server = ProbeError::Server {
            code: "-28".into(),
            message: "Loading block index…".into(),
        };
        assert_eq!(server.category(), "server");
        assert!(server.is_starting());
        assert!(!ProbeError::Timeout.is_starting());
        assert_eq!(ProbeError::Timeout.category(), "timeout");
        assert_eq!(ProbeError::Auth(String::new()).category(), "auth");
        assert_eq!(
            ProbeError::InvalidTarget(String::new()).category(),
            "config"
        );
    }
}
