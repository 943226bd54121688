//! The JWT signatures we use, HMAC (HS256, HS384, HS512), on ring, installed as jsonwebtoken's
//! crypto provider. jsonwebtoken's own providers bring every algorithm it knows (RSA, ECDSA,
//! EdDSA and their big-number and curve crates) into each binary that checks a token; access
//! tokens are only ever HMAC-signed (`AuthSettings::jwt_algorithm`), and ring is linked anyway
//! (rustls, adiuva-checksum).

use jsonwebtoken::crypto::{CryptoProvider, JwtSigner, JwtVerifier, KeyUtils};
use jsonwebtoken::errors::{ErrorKind, Result};
use jsonwebtoken::signature::{Error as SignatureError, Signer, Verifier};
use jsonwebtoken::{Algorithm, AlgorithmFamily, DecodingKey, EncodingKey};
use ring::hmac;

/// HMAC only: any other algorithm is refused as `InvalidAlgorithm` (and the validation accepts
/// only the configured one before a signature is checked).
static HMAC_ONLY: CryptoProvider = CryptoProvider {
    signer_factory: signer,
    verifier_factory: verifier,
    key_utils: KeyUtils::new_unimplemented(),
};

/// Makes [`HMAC_ONLY`] the process's provider, before the first token is signed or checked. A
/// provider installed earlier (jsonwebtoken's own, in the tests) stays: every provider does
/// HMAC.
pub(crate) fn install() {
    let _ = CryptoProvider::install_default(&HMAC_ONLY);
}

/// One HMAC key and the JWT algorithm it signs for.
struct HmacKey {
    algorithm: Algorithm,
    key: hmac::Key,
}

impl HmacKey {
    fn new(algorithm: Algorithm, family: AlgorithmFamily, secret: &[u8]) -> Result<Self> {
        if family != AlgorithmFamily::Hmac {
            return Err(ErrorKind::InvalidKeyFormat.into());
        }
        let ring_algorithm = match algorithm {
            Algorithm::HS256 => hmac::HMAC_SHA256,
            Algorithm::HS384 => hmac::HMAC_SHA384,
            Algorithm::HS512 => hmac::HMAC_SHA512,
            _ => return Err(ErrorKind::InvalidAlgorithm.into()),
        };
        Ok(Self {
            algorithm,
            key: hmac::Key::new(ring_algorithm, secret),
        })
    }
}

fn signer(algorithm: &Algorithm, key: &EncodingKey) -> Result<Box<dyn JwtSigner>> {
    Ok(Box::new(HmacKey::new(
        *algorithm,
        key.family(),
        key.as_bytes(),
    )?))
}

fn verifier(algorithm: &Algorithm, key: &DecodingKey) -> Result<Box<dyn JwtVerifier>> {
    Ok(Box::new(HmacKey::new(
        *algorithm,
        key.family(),
        key.try_get_as_bytes()?,
    )?))
}

impl Signer<Vec<u8>> for HmacKey {
    fn try_sign(&self, message: &[u8]) -> std::result::Result<Vec<u8>, SignatureError> {
        Ok(hmac::sign(&self.key, message).as_ref().to_vec())
    }
}

impl Verifier<Vec<u8>> for HmacKey {
    /// Constant time (ring's `hmac::verify`).
    fn verify(&self, message: &[u8], tag: &Vec<u8>) -> std::result::Result<(), SignatureError> {
        hmac::verify(&self.key, message, tag).map_err(|_| SignatureError::new())
    }
}

impl JwtSigner for HmacKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

impl JwtVerifier for HmacKey {
    fn algorithm(&self) -> Algorithm {
        self.algorithm
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sign(algorithm: Algorithm, secret: &[u8], message: &[u8]) -> Vec<u8> {
        signer(&algorithm, &EncodingKey::from_secret(secret))
            .unwrap()
            .try_sign(message)
            .unwrap()
    }

    fn verify(algorithm: Algorithm, secret: &[u8], message: &[u8], tag: &[u8]) -> bool {
        verifier(&algorithm, &DecodingKey::from_secret(secret))
            .unwrap()
            .verify(message, &tag.to_vec())
            .is_ok()
    }

    #[test]
    fn hs256_matches_rfc_4231() {
        // RFC 4231, test case 2.
        let tag = sign(Algorithm::HS256, b"Jefe", b"what do ya want for nothing?");
        assert_eq!(
            tag.iter().map(|b| format!("{b:02x}")).collect::<String>(),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }

    #[test]
    fn a_tag_verifies_only_with_its_key_algorithm_and_message() {
        for algorithm in [Algorithm::HS256, Algorithm::HS384, Algorithm::HS512] {
            let tag = sign(algorithm, b"secret", b"header.claims");
            assert!(verify(algorithm, b"secret", b"header.claims", &tag));
            assert!(!verify(algorithm, b"other", b"header.claims", &tag));
            assert!(!verify(algorithm, b"secret", b"header.claimz", &tag));
            assert!(!verify(algorithm, b"secret", b"header.claims", &tag[1..]));
        }
        let tag = sign(Algorithm::HS256, b"secret", b"header.claims");
        assert!(!verify(Algorithm::HS512, b"secret", b"header.claims", &tag));
    }

    #[test]
    fn jsonwebtoken_signs_and_checks_tokens_with_it() {
        install();
        let claims = serde_json::json!({"sub": "user", "exp": 4_102_444_800_u64});
        let header = jsonwebtoken::Header::new(Algorithm::HS384);
        let token =
            jsonwebtoken::encode(&header, &claims, &EncodingKey::from_secret(b"secret")).unwrap();
        let validation = jsonwebtoken::Validation::new(Algorithm::HS384);
        let decoded = jsonwebtoken::decode::<serde_json::Value>(
            token.as_bytes(),
            &DecodingKey::from_secret(b"secret"),
            &validation,
        )
        .unwrap();
        assert_eq!(decoded.claims, claims);
        assert!(
            jsonwebtoken::decode::<serde_json::Value>(
                token.as_bytes(),
                &DecodingKey::from_secret(b"other"),
                &validation,
            )
            .is_err()
        );
    }

    #[test]
    fn other_algorithms_are_refused() {
        for algorithm in [Algorithm::RS256, Algorithm::ES256, Algorithm::EdDSA] {
            assert!(signer(&algorithm, &EncodingKey::from_secret(b"secret")).is_err());
            assert!(verifier(&algorithm, &DecodingKey::from_secret(b"secret")).is_err());
        }
    }
}
