//! `GOOGLE_CLIENT_ID`, `GOOGLE_CLIENT_SECRET`, `GOOGLE_ISSUER` and `OIDC_REDIRECT_URIS`.

pub use adiuva_config::check_issuer;
use adiuva_config::{ConfigError, Secret, Source, is_loopback_host};
use url::Url;

/// Google's issuer, the default of `GOOGLE_ISSUER`.
pub const GOOGLE_ISSUER: &str = "https://accounts.google.com";

/// The sign-in settings. Unset `GOOGLE_CLIENT_ID`: no Google sign-in (`GET /auth/oidc/providers`
/// lists none).
#[derive(Debug, Clone, Default)]
pub struct OidcSettings {
    pub google: Option<ProviderConfig>,
    /// Redirect URIs allowed besides loopback ones, compared exactly.
    pub redirect_uris: Vec<String>,
}

/// One OpenID provider as this service is registered with it: the configured Google, or (team
/// SSO) a team's issuer with its own client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProviderConfig {
    /// `iss` of its ID tokens, and where `/.well-known/openid-configuration` is found.
    pub issuer: String,
    pub client_id: String,
    pub client_secret: Secret,
}

impl OidcSettings {
    pub fn from_source(source: &Source) -> Result<Self, ConfigError> {
        let google = match source.optional("GOOGLE_CLIENT_ID") {
            None => None,
            Some(client_id) => {
                let client_secret = source.secret("GOOGLE_CLIENT_SECRET").ok_or_else(|| {
                    ConfigError::invalid(
                        "GOOGLE_CLIENT_SECRET",
                        "required when GOOGLE_CLIENT_ID is set",
                    )
                })?;
                let issuer = source
                    .url("GOOGLE_ISSUER")
                    .unwrap_or_else(|| GOOGLE_ISSUER.to_owned());
                check_issuer(&issuer)
                    .map_err(|reason| ConfigError::invalid("GOOGLE_ISSUER", reason))?;
                Some(ProviderConfig {
                    issuer,
                    client_id,
                    client_secret,
                })
            }
        };
        let redirect_uris = source.list("OIDC_REDIRECT_URIS", "");
        for uri in &redirect_uris {
            let parsed = Url::parse(uri).map_err(|err| {
                ConfigError::invalid("OIDC_REDIRECT_URIS", format!("{uri:?}: {err}"))
            })?;
            if parsed.fragment().is_some() {
                return Err(ConfigError::invalid(
                    "OIDC_REDIRECT_URIS",
                    format!("{uri:?}: a redirect URI has no fragment"),
                ));
            }
        }
        Ok(Self {
            google,
            redirect_uris,
        })
    }
}

/// A URL of the provider's (from its discovery document) is held to the issuer's rule.
pub(crate) fn check_endpoint(url: &str) -> Result<Url, String> {
    let parsed = Url::parse(url).map_err(|err| format!("{url:?} is not a URL: {err}"))?;
    match parsed.scheme() {
        "https" => Ok(parsed),
        "http" if is_loopback_host(&parsed) => Ok(parsed),
        _ => Err(format!(
            "{url:?} is neither https nor http on a loopback address"
        )),
    }
}

/// RFC 8252's loopback redirect for native apps: `http://127.0.0.1:<port>/...` or
/// `http://[::1]:<port>/...`, with an explicit port and no fragment (nor user info). Or one of
/// `allowed`, exactly.
pub fn redirect_allowed(redirect_uri: &str, allowed: &[String]) -> bool {
    if allowed.iter().any(|uri| uri == redirect_uri) {
        return true;
    }
    let Ok(url) = Url::parse(redirect_uri) else {
        return false;
    };
    let loopback_ip = match url.host() {
        Some(url::Host::Ipv4(ip)) => ip == std::net::Ipv4Addr::LOCALHOST,
        Some(url::Host::Ipv6(ip)) => ip == std::net::Ipv6Addr::LOCALHOST,
        _ => false,
    };
    url.scheme() == "http"
        && loopback_ip
        && url.port().is_some()
        && url.fragment().is_none()
        && url.username().is_empty()
        && url.password().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn redirects_are_loopback_or_listed() {
        let listed = vec!["https://app.adiuva.example/oidc".to_owned()];
        for ok in [
            "http://127.0.0.1:53682/callback",
            "http://127.0.0.1:1/",
            "http://[::1]:8080/cb?x=1",
            "https://app.adiuva.example/oidc",
        ] {
            assert!(redirect_allowed(ok, &listed), "{ok} was refused");
        }
        for bad in [
            "http://127.0.0.1/callback",
            "https://127.0.0.1:443/callback",
            "http://localhost:8080/callback",
            "http://127.0.0.2:8080/callback",
            "http://127.0.0.1.evil.example:8080/callback",
            "http://evil.example:8080/callback",
            "http://user@127.0.0.1:8080/callback",
            "http://127.0.0.1:8080/callback#frag",
            "https://app.adiuva.example/oidc/other",
            "not a url",
        ] {
            assert!(!redirect_allowed(bad, &listed), "{bad} was allowed");
        }
    }

    #[test]
    fn google_needs_its_secret_and_a_safe_issuer() {
        let settings =
            |pairs: &[(&str, &str)]| OidcSettings::from_source(&Source::from_pairs(pairs.to_vec()));
        assert!(settings(&[]).unwrap().google.is_none());
        let google = settings(&[("GOOGLE_CLIENT_ID", "id"), ("GOOGLE_CLIENT_SECRET", "s")])
            .unwrap()
            .google
            .unwrap();
        assert_eq!(google.issuer, GOOGLE_ISSUER);
        assert!(matches!(
            settings(&[("GOOGLE_CLIENT_ID", "id")]),
            Err(ConfigError::Invalid {
                key: "GOOGLE_CLIENT_SECRET",
                ..
            })
        ));
        assert!(matches!(
            settings(&[
                ("GOOGLE_CLIENT_ID", "id"),
                ("GOOGLE_CLIENT_SECRET", "s"),
                ("GOOGLE_ISSUER", "http://issuer.example"),
            ]),
            Err(ConfigError::Invalid {
                key: "GOOGLE_ISSUER",
                ..
            })
        ));
        assert!(matches!(
            settings(&[("OIDC_REDIRECT_URIS", "nope")]),
            Err(ConfigError::Invalid {
                key: "OIDC_REDIRECT_URIS",
                ..
            })
        ));
    }
}
