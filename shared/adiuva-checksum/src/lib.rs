//! Integrity checks of end-to-end-encrypted blobs: the client sends the lowercase hex SHA-256
//! of the exact bytes it encrypted, and the server compares it with its own digest in constant
//! time. The server never decrypts anything; this is the only thing it checks.

use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// Why a checksum was not accepted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChecksumError {
    /// Not 64 lowercase hex digits.
    Malformed,
    /// Well-formed, but not the SHA-256 of the bytes.
    Mismatch,
}

impl std::fmt::Display for ChecksumError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            ChecksumError::Malformed => "checksum must be 64 lowercase hex digits (SHA-256)",
            ChecksumError::Mismatch => "checksum does not match the SHA-256 of the blob",
        })
    }
}

impl std::error::Error for ChecksumError {}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(Sha256::digest(bytes))
}

/// Parses a client checksum: exactly 64 lowercase hex digits.
pub fn parse(checksum: &str) -> Result<[u8; 32], ChecksumError> {
    if checksum.len() != 64
        || !checksum
            .bytes()
            .all(|b| matches!(b, b'0'..=b'9' | b'a'..=b'f'))
    {
        return Err(ChecksumError::Malformed);
    }
    let mut digest = [0u8; 32];
    hex::decode_to_slice(checksum, &mut digest).map_err(|_| ChecksumError::Malformed)?;
    Ok(digest)
}

/// Checks that `checksum` is the SHA-256 of `bytes`, comparing in constant time.
pub fn verify(bytes: &[u8], checksum: &str) -> Result<(), ChecksumError> {
    let claimed = parse(checksum)?;
    let actual: [u8; 32] = Sha256::digest(bytes).into();
    if bool::from(actual.ct_eq(&claimed)) {
        Ok(())
    } else {
        Err(ChecksumError::Mismatch)
    }
}

/// Compares two hex digests in constant time (for digests computed by the blob store).
pub fn same_digest(computed_hex: &str, checksum: &str) -> Result<(), ChecksumError> {
    let claimed = parse(checksum)?;
    let computed = parse(computed_hex).map_err(|_| ChecksumError::Mismatch)?;
    if bool::from(computed.ct_eq(&claimed)) {
        Ok(())
    } else {
        Err(ChecksumError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const HELLO: &str = "2cf24dba5fb0a30e26e83b2ac5b9e29e1b161e5c1fa7425e73043362938b9824";

    #[test]
    fn verifies_the_sha256_of_the_exact_bytes() {
        assert_eq!(sha256_hex(b"hello"), HELLO);
        assert_eq!(verify(b"hello", HELLO), Ok(()));
        assert_eq!(verify(b"hello!", HELLO), Err(ChecksumError::Mismatch));
        assert_eq!(verify(b"", &sha256_hex(b"")), Ok(()));
    }

    #[test]
    fn only_lowercase_hex_sha256_is_well_formed() {
        assert_eq!(
            verify(b"hello", &HELLO.to_uppercase()),
            Err(ChecksumError::Malformed)
        );
        assert_eq!(
            verify(b"hello", &HELLO[..63]),
            Err(ChecksumError::Malformed)
        );
        assert_eq!(
            verify(b"hello", &format!("{HELLO}0")),
            Err(ChecksumError::Malformed)
        );
        assert_eq!(
            verify(b"hello", &HELLO.replace('2', "g")),
            Err(ChecksumError::Malformed)
        );
        assert_eq!(same_digest(HELLO, HELLO), Ok(()));
        assert_eq!(
            same_digest(&sha256_hex(b"x"), HELLO),
            Err(ChecksumError::Mismatch)
        );
    }
}
