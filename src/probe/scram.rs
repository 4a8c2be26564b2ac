//! SCRAM-SHA-256 password verifiers in PostgreSQL's stored form (RFC 5802, RFC 7677):
//! `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
//!
//! The bootstrap sends roles' passwords as verifiers, so the plain password never reaches
//! the server (nor its statement log, nor pg_stat_activity), and compares them with the
//! stored verifier to skip ALTER ROLE when the password already matches.

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, Mac};
use sha2::{Digest, Sha256};

/// PostgreSQL's default (scram_iterations).
pub const ITERATIONS: u32 = 4096;

type HmacSha256 = Hmac<Sha256>;

/// The verifier of `password` with `salt`. PostgreSQL normalises passwords with SASLprep,
/// which leaves ASCII unchanged: callers accept printable ASCII passwords only.
pub fn verifier(password: &str, salt: &[u8], iterations: u32) -> String {
    let salted = salted_password(password.as_bytes(), salt, iterations);
    let client_key = hmac(&salted, b"Client Key");
    let stored_key = Sha256::digest(client_key);
    let server_key = hmac(&salted, b"Server Key");
    format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        BASE64.encode(salt),
        BASE64.encode(stored_key),
        BASE64.encode(server_key)
    )
}

/// Whether `stored` (pg_authid.rolpassword) is a SCRAM verifier of `password`.
pub fn matches(stored: &str, password: &str) -> bool {
    let parse = || {
        let rest = stored.strip_prefix("SCRAM-SHA-256$")?;
        let (params, _keys) = rest.split_once('$')?;
        let (iterations, salt) = params.split_once(':')?;
        Some((iterations.parse::<u32>().ok()?, BASE64.decode(salt).ok()?))
    };
    match parse() {
        // Not secret-dependent timing worth guarding: both sides are known to the caller.
        Some((iterations, salt)) => verifier(password, &salt, iterations) == stored,
        None => false,
    }
}

/// PBKDF2-HMAC-SHA-256 with a 32-byte output: a single block.
fn salted_password(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(password).expect("HMAC takes any key length");
    mac.update(salt);
    mac.update(&1u32.to_be_bytes());
    let mut block: [u8; 32] = mac.finalize().into_bytes().into();
    let mut result = block;
    for _ in 1..iterations {
        block = hmac(password, &block);
        for (r, b) in result.iter_mut().zip(block) {
            *r ^= b;
        }
    }
    result
}

fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    let mut mac = HmacSha256::new_from_slice(key).expect("HMAC takes any key length");
    mac.update(data);
    mac.finalize().into_bytes().into()
}

#[cfg(test)]
mod tests {
    use super::*;

    // Made by PostgreSQL 15: CREATE ROLE r PASSWORD 'correct horse battery staple'.
    const FROM_POSTGRES: &str = "SCRAM-SHA-256$4096:G32yKlflLFr2xO7CIMUFNA==$/v1FK2JeRDoY5zEGpN/n0WyhuF5p4vWl7Q96LqTG4c8=:jxzUD0Jj2pSBejxPFkWAkYOlef8rtMurpjDw/DPlhuI=";

    #[test]
    fn verifier_equals_postgres_own() {
        let salt = BASE64.decode("G32yKlflLFr2xO7CIMUFNA==").unwrap();
        assert_eq!(
            verifier("correct horse battery staple", &salt, 4096),
            FROM_POSTGRES
        );
    }

    #[test]
    fn matches_only_the_right_password() {
        assert!(matches(FROM_POSTGRES, "correct horse battery staple"));
        assert!(!matches(FROM_POSTGRES, "correct horse battery stapler"));
        assert!(!matches("md5d41d8cd98f00b204e9800998ecf8427e", "x"));
        assert!(!matches("", "x"));
    }
}
