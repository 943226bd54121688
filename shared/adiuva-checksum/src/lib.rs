//! Integrity checks of end-to-end-encrypted blobs: the client sends the lowercase hex SHA-256
//! of the exact bytes it encrypted, and the server compares it with its own digest in constant
//! time. The server never decrypts anything; this is the only thing it checks.
//!
//! Also the service's MACs: HMAC-SHA256 signatures (Stripe's webhooks) and the signed tokens
//! of URLs the server hands out ([`Signer`]).

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
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

/// HMAC-SHA256 of `message` under `key`, lowercase hex (Stripe's webhook signatures).
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    let mut mac = Hmac::<Sha256>::new_from_slice(key).expect("HMAC accepts keys of any length");
    mac.update(message);
    hex::encode(mac.finalize().into_bytes())
}

/// Compares two strings in constant time (for signatures).
pub fn same_secret(a: &str, b: &str) -> bool {
    bool::from(a.as_bytes().ct_eq(b.as_bytes()))
}

/// Signed tokens for URLs the server hands out (local upload URLs, stub checkout pages):
/// `base64url(payload).base64url(hmac)`. The domain separates the uses of one secret, so a
/// token made for one purpose is never valid for another.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
    domain: &'static [u8],
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer")
            .field("domain", &String::from_utf8_lossy(self.domain))
            .finish_non_exhaustive()
    }
}

impl Signer {
    pub fn new(key: &[u8], domain: &'static [u8]) -> Self {
        Self {
            key: key.to_vec(),
            domain,
        }
    }

    fn mac(&self, payload: &[u8]) -> Hmac<Sha256> {
        let mut mac =
            Hmac::<Sha256>::new_from_slice(&self.key).expect("HMAC accepts keys of any length");
        mac.update(self.domain);
        mac.update(payload);
        mac
    }

    pub fn sign(&self, payload: &[u8]) -> String {
        let mac = self.mac(payload).finalize().into_bytes();
        format!(
            "{}.{}",
            URL_SAFE_NO_PAD.encode(payload),
            URL_SAFE_NO_PAD.encode(mac)
        )
    }

    /// The payload of a token this signer made; `None` for anything forged or altered. The MAC
    /// is checked in constant time before the payload is trusted.
    pub fn verify(&self, token: &str) -> Option<Vec<u8>> {
        let (payload, mac) = token.split_once('.')?;
        let payload = URL_SAFE_NO_PAD.decode(payload).ok()?;
        let mac = URL_SAFE_NO_PAD.decode(mac).ok()?;
        self.mac(&payload).verify_slice(&mac).ok()?;
        Some(payload)
    }
}

#[cfg(test)]
mod signer_tests {
    use super::*;

    #[test]
    fn tokens_verify_only_unaltered_and_within_their_domain() {
        let signer = Signer::new(b"secret", b"test/v1\0");
        let token = signer.sign(b"user-1\npro");
        assert_eq!(signer.verify(&token).as_deref(), Some(&b"user-1\npro"[..]));
        let (payload, mac) = token.split_once('.').unwrap();
        let forged = format!("{}.{mac}", URL_SAFE_NO_PAD.encode(b"user-2\npro"));
        assert_eq!(signer.verify(&forged), None);
        assert_eq!(signer.verify(payload), None);
        assert_eq!(Signer::new(b"secret", b"other/v1\0").verify(&token), None);
        assert_eq!(Signer::new(b"another", b"test/v1\0").verify(&token), None);
    }

    #[test]
    fn hmac_matches_a_known_vector() {
        // RFC 4231, test case 2.
        assert_eq!(
            hmac_sha256_hex(b"Jefe", b"what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        assert!(same_secret("abc", "abc"));
        assert!(!same_secret("abc", "abd"));
    }
}
