//! ID tokens: a JWS in compact form, verified with ring against one of the provider's JWKs.
//! Only RS256 (RSA PKCS#1 v1.5 with SHA-256) and ES256 (ECDSA on P-256 with SHA-256) are
//! accepted: `none`, the HMAC algorithms (which a forger would "sign" with the public key) and
//! everything else are refused before any key is looked at.

use ring::signature::{self, RsaPublicKeyComponents, UnparsedPublicKey};
use serde::Deserialize;
use serde_json::Value;

use crate::OidcError;

/// Clock skew allowed on `exp` and `iat`.
pub const LEEWAY_SECS: i64 = 60;

/// Longest ID token read: a few KiB in practice.
const MAX_TOKEN_BYTES: usize = 16 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Alg {
    Rs256,
    Es256,
}

/// One key of a JWKS, as published (`n`, `e` for RSA; `crv`, `x`, `y` for EC).
#[derive(Debug, Clone, Deserialize)]
pub(crate) struct Jwk {
    pub(crate) kty: String,
    #[serde(default)]
    pub(crate) kid: Option<String>,
    #[serde(default, rename = "use")]
    pub(crate) use_: Option<String>,
    #[serde(default)]
    pub(crate) alg: Option<String>,
    #[serde(default)]
    n: Option<String>,
    #[serde(default)]
    e: Option<String>,
    #[serde(default)]
    crv: Option<String>,
    #[serde(default)]
    x: Option<String>,
    #[serde(default)]
    y: Option<String>,
}

impl Jwk {
    /// Whether this key may check a signature of `alg` (its type, curve, use and algorithm).
    pub(crate) fn fits(&self, alg: Alg) -> bool {
        let type_fits = match alg {
            Alg::Rs256 => self.kty == "RSA",
            Alg::Es256 => self.kty == "EC" && self.crv.as_deref() == Some("P-256"),
        };
        let alg_name = match alg {
            Alg::Rs256 => "RS256",
            Alg::Es256 => "ES256",
        };
        type_fits
            && self.use_.as_deref().is_none_or(|use_| use_ == "sig")
            && self.alg.as_deref().is_none_or(|name| name == alg_name)
    }

    fn verify(&self, alg: Alg, message: &[u8], signature: &[u8]) -> bool {
        match alg {
            Alg::Rs256 => {
                let (Some(n), Some(e)) = (decode_opt(&self.n), decode_opt(&self.e)) else {
                    return false;
                };
                RsaPublicKeyComponents { n, e }
                    .verify(&signature::RSA_PKCS1_2048_8192_SHA256, message, signature)
                    .is_ok()
            }
            Alg::Es256 => {
                let (Some(x), Some(y)) = (decode_opt(&self.x), decode_opt(&self.y)) else {
                    return false;
                };
                if x.len() != 32 || y.len() != 32 {
                    return false;
                }
                let mut point = Vec::with_capacity(65);
                point.push(0x04);
                point.extend_from_slice(&x);
                point.extend_from_slice(&y);
                UnparsedPublicKey::new(&signature::ECDSA_P256_SHA256_FIXED, point)
                    .verify(message, signature)
                    .is_ok()
            }
        }
    }
}

fn decode_opt(part: &Option<String>) -> Option<Vec<u8>> {
    part.as_deref().and_then(|text| decode(text).ok())
}

pub(crate) fn decode(part: &str) -> Result<Vec<u8>, OidcError> {
    base64_simd::URL_SAFE_NO_PAD
        .decode_to_vec(part)
        .map_err(|_| OidcError::invalid("a part of the ID token is not base64url"))
}

#[derive(Debug, Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

/// A token split and its header read, before its signature is checked.
#[derive(Debug)]
pub(crate) struct Parsed<'a> {
    pub(crate) alg: Alg,
    pub(crate) kid: Option<String>,
    message: &'a [u8],
    signature: Vec<u8>,
    payload: Vec<u8>,
}

pub(crate) fn parse(token: &str) -> Result<Parsed<'_>, OidcError> {
    if token.len() > MAX_TOKEN_BYTES {
        return Err(OidcError::invalid("the ID token is too long"));
    }
    let mut parts = token.split('.');
    let (Some(header), Some(payload), Some(signature), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(OidcError::invalid("the ID token is not a compact JWS"));
    };
    let header: Header = serde_json::from_slice(&decode(header)?)
        .map_err(|_| OidcError::invalid("the ID token's header is not JSON"))?;
    let alg = match header.alg.as_str() {
        "RS256" => Alg::Rs256,
        "ES256" => Alg::Es256,
        other => {
            return Err(OidcError::invalid(format!(
                "the ID token's algorithm {other:?} is not RS256 or ES256"
            )));
        }
    };
    let message_len = token.len() - signature.len() - 1;
    Ok(Parsed {
        alg,
        kid: header.kid,
        message: &token.as_bytes()[..message_len],
        signature: decode(signature)?,
        payload: decode(payload)?,
    })
}

impl Parsed<'_> {
    /// The claims' JSON, to be read only once the signature is verified.
    pub(crate) fn payload(&self) -> &[u8] {
        &self.payload
    }

    /// True when one of `keys` that fits the algorithm (and the `kid`, when the token names
    /// one) verifies the signature.
    pub(crate) fn signed_by_any(&self, keys: &[Jwk]) -> bool {
        self.candidates(keys)
            .any(|key| key.verify(self.alg, self.message, &self.signature))
    }

    /// Whether `keys` hold a key this token could be signed with at all (an unknown `kid`
    /// means the provider rotated its keys since they were fetched).
    pub(crate) fn has_candidate(&self, keys: &[Jwk]) -> bool {
        self.candidates(keys).next().is_some()
    }

    fn candidates<'k>(&'k self, keys: &'k [Jwk]) -> impl Iterator<Item = &'k Jwk> {
        keys.iter().filter(move |key| {
            key.fits(self.alg)
                && match &self.kid {
                    Some(kid) => key.kid.as_deref() == Some(kid.as_str()),
                    None => true,
                }
        })
    }
}

/// What the claims must be.
#[derive(Debug)]
pub(crate) struct Expected<'a> {
    pub(crate) issuer: &'a str,
    pub(crate) client_id: &'a str,
    pub(crate) nonce: &'a str,
    /// Seconds since the Unix epoch.
    pub(crate) now: i64,
}

/// The claims of a verified token that identify the person.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Claims {
    pub(crate) subject: String,
    pub(crate) email: String,
}

/// Checks the claims of a token whose signature was verified: `iss`, `aud` (and `azp` when
/// there are several audiences), `exp` and `iat` within [`LEEWAY_SECS`], `nonce`, `sub`, and
/// last `email_verified` (so an unverified email is said only of an otherwise valid token).
pub(crate) fn check_claims(payload: &[u8], expected: &Expected<'_>) -> Result<Claims, OidcError> {
    let claims: Value = serde_json::from_slice(payload)
        .map_err(|_| OidcError::invalid("the ID token's claims are not JSON"))?;
    let issuer_ok = claims["iss"].as_str().is_some_and(|iss| {
        iss == expected.issuer
            // Google documents both spellings of its issuer in ID tokens.
            || (expected.issuer == crate::GOOGLE_ISSUER && iss == "accounts.google.com")
    });
    if !issuer_ok {
        return Err(OidcError::invalid(
            "the ID token's iss is not the provider's",
        ));
    }
    let audience_ok = match &claims["aud"] {
        Value::String(aud) => aud == expected.client_id,
        Value::Array(auds) => {
            auds.iter()
                .any(|aud| aud.as_str() == Some(expected.client_id))
                && (auds.len() == 1 || claims["azp"].as_str() == Some(expected.client_id))
        }
        _ => false,
    };
    if !audience_ok {
        return Err(OidcError::invalid("the ID token's aud is not this client"));
    }
    let Some(exp) = claims["exp"].as_i64() else {
        return Err(OidcError::invalid("the ID token has no exp"));
    };
    if expected.now >= exp.saturating_add(LEEWAY_SECS) {
        return Err(OidcError::invalid("the ID token has expired"));
    }
    let Some(iat) = claims["iat"].as_i64() else {
        return Err(OidcError::invalid("the ID token has no iat"));
    };
    if iat > expected.now.saturating_add(LEEWAY_SECS) {
        return Err(OidcError::invalid("the ID token was issued in the future"));
    }
    if claims["nonce"].as_str() != Some(expected.nonce) {
        return Err(OidcError::invalid(
            "the ID token's nonce is not this sign-in's",
        ));
    }
    let subject = match claims["sub"].as_str() {
        Some(sub) if !sub.is_empty() && sub.len() <= 255 => sub.to_owned(),
        _ => {
            return Err(OidcError::invalid(
                "the ID token's sub is missing or too long",
            ));
        }
    };
    let Some(email) = claims["email"].as_str().filter(|email| email.len() <= 254) else {
        return Err(OidcError::invalid(
            "the ID token has no email (scope email)",
        ));
    };
    // Some providers send the flag as a string.
    let verified = matches!(&claims["email_verified"], Value::Bool(true))
        || claims["email_verified"].as_str() == Some("true");
    if !verified {
        return Err(OidcError::EmailUnverified);
    }
    Ok(Claims {
        subject,
        email: email.trim().to_lowercase(),
    })
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    const NOW: i64 = 1_800_000_000;

    fn expected() -> Expected<'static> {
        Expected {
            issuer: "https://issuer.example",
            client_id: "client",
            nonce: "n-1",
            now: NOW,
        }
    }

    fn claims() -> Value {
        json!({
            "iss": "https://issuer.example", "aud": "client", "sub": "1234",
            "exp": NOW + 300, "iat": NOW - 10, "nonce": "n-1",
            "email": "Person@Example.com", "email_verified": true,
        })
    }

    fn check(claims: &Value) -> Result<Claims, OidcError> {
        check_claims(claims.to_string().as_bytes(), &expected())
    }

    fn refused(claims: &Value) -> bool {
        matches!(check(claims), Err(OidcError::Invalid(_)))
    }

    #[test]
    fn valid_claims_name_the_subject_and_the_lowercased_email() {
        assert_eq!(
            check(&claims()).unwrap(),
            Claims {
                subject: "1234".into(),
                email: "person@example.com".into()
            }
        );
    }

    #[test]
    fn each_claim_is_checked() {
        let with = |key: &str, value: Value| {
            let mut claims = claims();
            claims[key] = value;
            claims
        };
        assert!(refused(&with("iss", json!("https://other.example"))));
        assert!(refused(&with("iss", json!("accounts.google.com"))));
        assert!(refused(&with("aud", json!("other-client"))));
        assert!(refused(&with("aud", json!(["client", "other"]))));
        assert!(!refused(&with("aud", json!(["client"]))));
        let mut azp = with("aud", json!(["client", "other"]));
        azp["azp"] = json!("client");
        assert!(!refused(&azp));
        assert!(refused(&with("nonce", json!("n-2"))));
        assert!(refused(&with("sub", json!(""))));
        // Within the leeway, then past it.
        assert!(!refused(&with("exp", json!(NOW - 59))));
        assert!(refused(&with("exp", json!(NOW - 60))));
        assert!(!refused(&with("iat", json!(NOW + 60))));
        assert!(refused(&with("iat", json!(NOW + 61))));
        let mut no_exp = claims();
        no_exp.as_object_mut().unwrap().remove("exp");
        assert!(refused(&no_exp));
        assert!(matches!(
            check(&with("email_verified", json!(false))),
            Err(OidcError::EmailUnverified)
        ));
        assert!(matches!(
            check(&with("email_verified", Value::Null)),
            Err(OidcError::EmailUnverified)
        ));
        assert!(check(&with("email_verified", json!("true"))).is_ok());
    }

    #[test]
    fn googles_issuer_has_two_spellings() {
        let google = Expected {
            issuer: crate::GOOGLE_ISSUER,
            ..expected()
        };
        for iss in ["https://accounts.google.com", "accounts.google.com"] {
            let mut claims = claims();
            claims["iss"] = json!(iss);
            assert!(
                check_claims(claims.to_string().as_bytes(), &google).is_ok(),
                "{iss}"
            );
        }
        let mut claims = claims();
        claims["iss"] = json!("accounts.google.com.evil.example");
        assert!(check_claims(claims.to_string().as_bytes(), &google).is_err());
    }

    #[test]
    fn only_rs256_and_es256_are_read() {
        let token = |alg: &str| {
            let header = base64_simd::URL_SAFE_NO_PAD
                .encode_to_string(json!({"alg": alg, "kid": "k"}).to_string());
            format!("{header}.e30.c2ln")
        };
        for refused in ["none", "HS256", "RS512", "PS256", "ES384", "EdDSA"] {
            assert!(parse(&token(refused)).is_err(), "{refused} was read");
        }
        assert_eq!(parse(&token("RS256")).unwrap().alg, Alg::Rs256);
        assert_eq!(parse(&token("ES256")).unwrap().alg, Alg::Es256);
        assert!(parse("a.b").is_err());
        assert!(parse("a.b.c.d").is_err());
    }
}
