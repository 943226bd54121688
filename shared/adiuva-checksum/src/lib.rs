//! Integrity checks of end-to-end-encrypted blobs: the client sends the lowercase hex SHA-256
//! of the exact bytes it encrypted, and the server compares it with its own digest in constant
//! time. The server never decrypts anything; this is the only thing it checks.
//!
//! Also the service's MACs: HMAC-SHA256 signatures (Stripe's webhooks) and the signed tokens
//! of URLs the server hands out ([`Signer`]).
//!
//! SHA-256 and HMAC are ring's (BoringSSL's assembly, with the SHA extensions where the CPU has
//! them; ring is linked anyway, through rustls), and base64 is base64-simd's (SIMD, chosen at
//! run time; linked anyway, through the AWS SDK). An inline blob is decoded and hashed a slice
//! at a time ([`Digested::decode_base64`]), so each slice is hashed while it is still in the
//! cache, and its digest is computed once for the whole request.

use bytes::Bytes;
use ring::{digest, hmac};
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

/// Text that is not standard base64 with padding (canonical: the unused bits are zero).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct InvalidBase64;

impl std::fmt::Display for InvalidBase64 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("expected standard base64 with padding")
    }
}

impl std::error::Error for InvalidBase64 {}

/// SHA-256 of bytes that arrive in pieces.
pub struct Sha256(digest::Context);

impl Sha256 {
    pub fn new() -> Self {
        Self(digest::Context::new(&digest::SHA256))
    }

    pub fn update(&mut self, bytes: &[u8]) {
        self.0.update(bytes);
    }

    pub fn finish(self) -> [u8; 32] {
        let mut out = [0u8; 32];
        out.copy_from_slice(self.0.finish().as_ref());
        out
    }
}

impl Default for Sha256 {
    fn default() -> Self {
        Self::new()
    }
}

impl std::fmt::Debug for Sha256 {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Sha256")
    }
}

/// SHA-256 of `bytes`.
pub fn sha256(bytes: &[u8]) -> [u8; 32] {
    let mut hasher = Sha256::new();
    hasher.update(bytes);
    hasher.finish()
}

/// Lowercase hex SHA-256 of `bytes`.
pub fn sha256_hex(bytes: &[u8]) -> String {
    hex::encode(sha256(bytes))
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
    matches(&sha256(bytes), checksum)
}

/// Checks a computed digest against a client checksum, in constant time.
fn matches(actual: &[u8; 32], checksum: &str) -> Result<(), ChecksumError> {
    let claimed = parse(checksum)?;
    if bool::from(actual.ct_eq(&claimed)) {
        Ok(())
    } else {
        Err(ChecksumError::Mismatch)
    }
}

/// Compares two hex digests in constant time (for digests computed by the blob store).
pub fn same_digest(computed_hex: &str, checksum: &str) -> Result<(), ChecksumError> {
    let computed = parse(computed_hex).map_err(|_| ChecksumError::Mismatch)?;
    matches(&computed, checksum)
}

/// Bytes with their SHA-256, computed once: while they were decoded, or on arrival.
#[derive(Clone)]
pub struct Digested {
    bytes: Bytes,
    sha256: [u8; 32],
}

impl std::fmt::Debug for Digested {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Encrypted payloads are opaque and may be large: their size only.
        write!(f, "Digested({} bytes)", self.bytes.len())
    }
}

/// Base64 characters decoded per step: 48 KiB of text, 36 KiB of bytes, which are hashed
/// while they are still in the cache. A multiple of 4, so only the last step may be padded.
const DECODE_STEP: usize = 48 * 1024;

impl Digested {
    pub fn new(bytes: Bytes) -> Self {
        let sha256 = sha256(&bytes);
        Self { bytes, sha256 }
    }

    /// Decodes standard base64 with padding (canonical only), hashing each decoded slice.
    pub fn decode_base64(text: &[u8]) -> Result<Self, InvalidBase64> {
        let engine = base64_simd::STANDARD;
        let total = engine.decoded_length(text).map_err(|_| InvalidBase64)?;
        // Capacity without zeroing: each step's bytes are appended as they are decoded.
        let mut out = Vec::with_capacity(total);
        let mut hasher = Sha256::new();
        let mut steps = text.chunks(DECODE_STEP).peekable();
        while let Some(step) = steps.next() {
            // Padding ends the text: a padded group inside it is not base64.
            if steps.peek().is_some() && step.ends_with(b"=") {
                return Err(InvalidBase64);
            }
            let written = out.len();
            engine
                .decode_append(step, &mut out)
                .map_err(|_| InvalidBase64)?;
            hasher.update(&out[written..]);
        }
        if out.len() != total {
            return Err(InvalidBase64);
        }
        Ok(Self {
            bytes: Bytes::from(out),
            sha256: hasher.finish(),
        })
    }

    pub fn bytes(&self) -> &Bytes {
        &self.bytes
    }

    pub fn into_bytes(self) -> Bytes {
        self.bytes
    }

    pub fn len(&self) -> usize {
        self.bytes.len()
    }

    pub fn is_empty(&self) -> bool {
        self.bytes.is_empty()
    }

    /// Checks that `checksum` is the SHA-256 of the bytes, in constant time.
    pub fn verify(&self, checksum: &str) -> Result<(), ChecksumError> {
        matches(&self.sha256, checksum)
    }
}

/// Standard base64 with padding of `bytes` (what [`Digested::decode_base64`] reads).
pub fn encode_base64(bytes: &[u8]) -> String {
    base64_simd::STANDARD.encode_to_string(bytes)
}

/// Decodes standard base64 with padding (canonical only).
pub fn decode_base64(text: &[u8]) -> Result<Vec<u8>, InvalidBase64> {
    base64_simd::STANDARD
        .decode_to_vec(text)
        .map_err(|_| InvalidBase64)
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

    #[test]
    fn decodes_and_hashes_base64_in_steps() {
        for size in [
            0usize,
            1,
            2,
            3,
            4,
            1000,
            DECODE_STEP / 4 * 3,
            DECODE_STEP / 4 * 3 + 1,
            1 << 20,
            (3 << 20) + 2,
        ] {
            let bytes: Vec<u8> = (0..size).map(|n| (n * 7 % 256) as u8).collect();
            let text = encode_base64(&bytes);
            let digested = Digested::decode_base64(text.as_bytes()).unwrap();
            assert_eq!(digested.bytes().as_ref(), &bytes[..], "{size}");
            assert_eq!(digested.verify(&sha256_hex(&bytes)), Ok(()), "{size}");
            assert_eq!(decode_base64(text.as_bytes()).unwrap(), bytes);
        }
        let long = encode_base64(&vec![1u8; DECODE_STEP]);
        for bad in [
            "aGVsbG8".to_owned(),
            "aGVsbG8=aGVs".to_owned(),
            "a*b=".to_owned(),
            "aGVsbG9=".to_owned(),
            "aGVsbG8==".to_owned(),
            // A padded group where a step ends, inside the text.
            format!("{}QQ==QUJD", &long[..DECODE_STEP - 4]),
        ] {
            assert_eq!(
                Digested::decode_base64(bad.as_bytes()).err(),
                Some(InvalidBase64),
                "{bad:.20}"
            );
        }
    }

    #[test]
    fn the_streaming_digest_is_the_one_shot_digest() {
        let bytes: Vec<u8> = (0..100_000u32).map(|n| n as u8).collect();
        let mut hasher = Sha256::new();
        for piece in bytes.chunks(777) {
            hasher.update(piece);
        }
        assert_eq!(hasher.finish(), sha256(&bytes));
        assert_eq!(
            Digested::new(Bytes::from(bytes.clone())).verify(&sha256_hex(&bytes)),
            Ok(())
        );
    }
}

/// HMAC-SHA256 of `message` under `key`, lowercase hex (Stripe's webhook signatures).
pub fn hmac_sha256_hex(key: &[u8], message: &[u8]) -> String {
    hex::encode(hmac::sign(&hmac::Key::new(hmac::HMAC_SHA256, key), message))
}

/// The purposes keys are derived for ([`derive_key`]), in one list so no two uses share one.
pub mod purpose {
    /// The local blob store's upload and download URLs (adiuva-blob).
    pub const BLOB_URLS: &str = "blob-urls";
    /// Sync cursors, sealed per user (adiuva-storage).
    pub const SYNC_CURSORS: &str = "sync-cursors";
    /// Billing's stub checkout, purchase and onboarding links (adiuva-billing).
    pub const BILLING_STUB_LINKS: &str = "billing-stub-links";
    /// Teams' SSO client secrets, sealed per team (adiuva-teams), from `SSO_SECRET_KEY`.
    pub const SSO_CLIENT_SECRETS: &str = "sso-client-secrets";
}

/// Label of [`derive_key`]: a key derived for a purpose is the HMAC of this and the purpose, so
/// it can never equal a MAC the server's secret makes for anything else (JWTs, tokens signed
/// with the secret itself).
const DERIVE_LABEL: &[u8] = b"adiuva/derive-key/v1\0";

/// The key of one purpose (one of [`purpose`]),
/// derived from the server's secret: HMAC-SHA256(secret, label || purpose), a PRF of the
/// purpose under the secret (HKDF-Expand's first block in all but name). One secret to
/// configure, and a key per use: knowing or misusing one purpose's key (a signed URL
/// checked by other code, a key logged by mistake) gives nothing of the secret or of the
/// other purposes' keys, and a token made for one purpose never verifies for another.
pub fn derive_key(secret: &[u8], purpose: &str) -> [u8; 32] {
    let mut mac = hmac::Context::with_key(&hmac::Key::new(hmac::HMAC_SHA256, secret));
    mac.update(DERIVE_LABEL);
    mac.update(purpose.as_bytes());
    let mut key = [0u8; 32];
    key.copy_from_slice(mac.sign().as_ref());
    key
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
    /// Boxed: a key holds two digest states.
    key: std::sync::Arc<hmac::Key>,
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
            key: std::sync::Arc::new(hmac::Key::new(hmac::HMAC_SHA256, key)),
            domain,
        }
    }

    fn mac(&self, payload: &[u8]) -> hmac::Tag {
        let mut mac = hmac::Context::with_key(&self.key);
        mac.update(self.domain);
        mac.update(payload);
        mac.sign()
    }

    pub fn sign(&self, payload: &[u8]) -> String {
        let engine = base64_simd::URL_SAFE_NO_PAD;
        format!(
            "{}.{}",
            engine.encode_to_string(payload),
            engine.encode_to_string(self.mac(payload))
        )
    }

    /// The payload of a token this signer made; `None` for anything forged or altered. The MAC
    /// is checked in constant time before the payload is trusted.
    pub fn verify(&self, token: &str) -> Option<Vec<u8>> {
        let engine = base64_simd::URL_SAFE_NO_PAD;
        let (payload, mac) = token.split_once('.')?;
        let payload = engine.decode_to_vec(payload).ok()?;
        let mac = engine.decode_to_vec(mac).ok()?;
        bool::from(self.mac(&payload).as_ref().ct_eq(&mac)).then_some(payload)
    }
}

/// Sealed tokens: the payload encrypted and authenticated (AES-256-GCM, ring's), bound to a
/// context (whose token it is), as `base64url(nonce || ciphertext || tag)`. For values the
/// client must hand back but not read, such as sync cursors holding a global counter; a
/// [`Signer`] token shows its payload.
///
/// Each context seals under a key of its own, derived from the sealer's key and the context
/// ([`derive_key`]), and the context is also the associated data, so a token opens only for
/// the context it was sealed for. Sealing is deterministic (the SIV construction): the nonce is
/// a PRF (HMAC-SHA256 under a key of its own) of the context and the payload, so a nonce
/// repeats only with the same payload, and then the token is the same. It shows only whether
/// two tokens hold the same payload (a client that syncs twice with nothing new gets the same
/// cursor back, as before), never the payload.
#[derive(Clone)]
pub struct Sealer {
    key: [u8; 32],
}

impl std::fmt::Debug for Sealer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sealer").finish_non_exhaustive()
    }
}

impl Sealer {
    pub fn new(key: [u8; 32]) -> Self {
        Self { key }
    }

    fn key_of(&self, context: &str) -> ring::aead::LessSafeKey {
        let key = derive_key(&self.key, &format!("seal\0{context}"));
        let unbound = ring::aead::UnboundKey::new(&ring::aead::AES_256_GCM, &key)
            .expect("a 32-byte key is an AES-256 key");
        ring::aead::LessSafeKey::new(unbound)
    }

    fn nonce_of(&self, context: &str, payload: &[u8]) -> [u8; ring::aead::NONCE_LEN] {
        let key = hmac::Key::new(hmac::HMAC_SHA256, &derive_key(&self.key, "nonce"));
        let mut mac = hmac::Context::with_key(&key);
        // Length-prefixed, so no context and payload pair reads as another.
        mac.update(&(context.len() as u64).to_be_bytes());
        mac.update(context.as_bytes());
        mac.update(payload);
        let mut nonce = [0u8; ring::aead::NONCE_LEN];
        nonce.copy_from_slice(&mac.sign().as_ref()[..ring::aead::NONCE_LEN]);
        nonce
    }

    /// The payload, encrypted for `context` only.
    pub fn seal(&self, context: &str, payload: &[u8]) -> String {
        let nonce = self.nonce_of(context, payload);
        let mut sealed = payload.to_vec();
        let tag = self
            .key_of(context)
            .seal_in_place_separate_tag(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(context.as_bytes()),
                &mut sealed,
            )
            .expect("AES-GCM seals any payload under 64 GiB");
        let mut token = Vec::with_capacity(nonce.len() + sealed.len() + tag.as_ref().len());
        token.extend_from_slice(&nonce);
        token.extend_from_slice(&sealed);
        token.extend_from_slice(tag.as_ref());
        base64_simd::URL_SAFE_NO_PAD.encode_to_string(token)
    }

    /// The payload of a token sealed for `context`; `None` for anything else (altered, forged,
    /// sealed for another context or under another key).
    pub fn open(&self, context: &str, token: &str) -> Option<Vec<u8>> {
        let mut bytes = base64_simd::URL_SAFE_NO_PAD
            .decode_to_vec(token.as_bytes())
            .ok()?;
        if bytes.len() < ring::aead::NONCE_LEN + ring::aead::AES_256_GCM.tag_len() {
            return None;
        }
        let mut nonce = [0u8; ring::aead::NONCE_LEN];
        nonce.copy_from_slice(&bytes[..ring::aead::NONCE_LEN]);
        let opened = self
            .key_of(context)
            .open_in_place(
                ring::aead::Nonce::assume_unique_for_key(nonce),
                ring::aead::Aad::from(context.as_bytes()),
                &mut bytes[ring::aead::NONCE_LEN..],
            )
            .ok()?;
        Some(opened.to_vec())
    }
}

#[cfg(test)]
mod sealer_tests {
    use super::*;

    #[test]
    fn sealed_tokens_hide_their_payload_and_open_only_for_their_context() {
        let sealer = Sealer::new(derive_key(b"secret", purpose::SYNC_CURSORS));
        let payload = 123_456_789_i64.to_be_bytes();
        let token = sealer.seal("user-a", &payload);
        assert_eq!(sealer.open("user-a", &token).as_deref(), Some(&payload[..]));
        // Deterministic: the same payload seals the same; another payload or another
        // context seals to something unrelated (another nonce).
        assert_eq!(sealer.seal("user-a", &payload), token);
        let next = sealer.seal("user-a", &123_456_790_i64.to_be_bytes());
        assert_ne!(next[..16], token[..16]);
        assert_ne!(sealer.seal("user-b", &payload)[..16], token[..16]);
        // Neither the number nor its bytes show.
        let raw = base64_simd::URL_SAFE_NO_PAD
            .decode_to_vec(token.as_bytes())
            .unwrap();
        assert!(!raw.windows(payload.len()).any(|w| w == payload));
        assert!(!token.contains("123456789"));
        // Another context, another key, an altered token: nothing.
        assert_eq!(sealer.open("user-b", &token), None);
        let other = Sealer::new(derive_key(b"secret", purpose::BLOB_URLS));
        assert_eq!(other.open("user-a", &token), None);
        let mut altered = raw.clone();
        altered[14] ^= 1;
        let altered = base64_simd::URL_SAFE_NO_PAD.encode_to_string(&altered);
        assert_eq!(sealer.open("user-a", &altered), None);
        for junk in ["", "AAAA", "!!", &token[..token.len() - 2]] {
            assert_eq!(sealer.open("user-a", junk), None, "{junk}");
        }
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
        let forged = format!(
            "{}.{mac}",
            base64_simd::URL_SAFE_NO_PAD.encode_to_string(b"user-2\npro")
        );
        assert_eq!(signer.verify(&forged), None);
        assert_eq!(signer.verify(payload), None);
        assert_eq!(Signer::new(b"secret", b"other/v1\0").verify(&token), None);
        assert_eq!(Signer::new(b"another", b"test/v1\0").verify(&token), None);
    }

    #[test]
    fn derived_keys_differ_by_purpose_and_secret() {
        let blob = derive_key(b"secret", purpose::BLOB_URLS);
        assert_eq!(blob, derive_key(b"secret", purpose::BLOB_URLS));
        assert_ne!(blob, derive_key(b"secret", purpose::BILLING_STUB_LINKS));
        assert_ne!(blob, derive_key(b"secret", purpose::SYNC_CURSORS));
        assert_ne!(blob, derive_key(b"another", "blob-urls"));
        // Not the secret, and not a plain HMAC of the purpose under it.
        assert_ne!(&blob[..6], b"secret");
        assert_ne!(hex::encode(blob), hmac_sha256_hex(b"secret", b"blob-urls"));
        // A token made with one purpose's key fails verification with another's, even in
        // the same domain.
        let signer = Signer::new(&blob, b"test/v1\0");
        let token = signer.sign(b"user-1\nkey");
        assert!(signer.verify(&token).is_some());
        let other = Signer::new(&derive_key(b"secret", "billing-stub-links"), b"test/v1\0");
        assert_eq!(other.verify(&token), None);
        assert_eq!(Signer::new(b"secret", b"test/v1\0").verify(&token), None);
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
