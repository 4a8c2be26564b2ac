//! Short, stable hex digests of bytes, for the hash annotations (spec hash, config hash,
//! asset digests). A leaf.

use sha2::{Digest, Sha256};

/// Short, stable hex digest of some bytes (hash annotations).
pub fn digest(bytes: &[u8]) -> String {
    hex::encode(&Sha256::digest(bytes)[..12])
}
