//! The rule for an OpenID issuer, wherever one is configured: the `GOOGLE_ISSUER` setting
//! (adiuva-oidc) or a team's SSO settings (adiuva-teams). One rule, so a team cannot set an
//! issuer the server's own settings would refuse.

use std::net::IpAddr;

use url::Url;

/// An issuer is an `https://` URL without query or fragment; `http://` only on a loopback
/// address (a provider on the developer's machine, the tests' fake one).
pub fn check_issuer(issuer: &str) -> Result<(), String> {
    let url = Url::parse(issuer).map_err(|err| format!("{issuer:?} is not a URL: {err}"))?;
    if url.query().is_some() || url.fragment().is_some() {
        return Err(format!("{issuer:?} has a query or fragment"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("{issuer:?} has user info"));
    }
    match url.scheme() {
        "https" => Ok(()),
        "http" if is_loopback_host(&url) => Ok(()),
        "http" => Err(format!(
            "{issuer:?}: http:// is accepted only on a loopback address"
        )),
        other => Err(format!("{issuer:?}: scheme {other} is not https")),
    }
}

/// `127.0.0.0/8`, `::1` or `localhost`.
pub fn is_loopback_host(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(name)) => name.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn issuers_are_https_or_loopback_http() {
        assert!(check_issuer("https://accounts.google.com").is_ok());
        assert!(check_issuer("http://127.0.0.1:9000").is_ok());
        assert!(check_issuer("http://[::1]:9000/tenant").is_ok());
        assert!(check_issuer("http://localhost:9000").is_ok());
        assert!(check_issuer("http://accounts.google.com").is_err());
        assert!(check_issuer("http://10.0.0.1:9000").is_err());
        assert!(check_issuer("ftp://example.com").is_err());
        assert!(check_issuer("https://example.com?x=1").is_err());
        assert!(check_issuer("https://user@example.com").is_err());
        assert!(check_issuer("not a url").is_err());
    }
}
