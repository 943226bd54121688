//! What the server knows of the device behind a request: its address and its `User-Agent`.
//! Sessions and the security log keep only the address's network prefix (an IPv4 /24, an IPv6
//! /48), enough for a person to tell "my home" from "another country" without the server
//! keeping where each device was.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

/// The longest `User-Agent` kept, in characters: a real browser's is about 150; more is noise
/// someone chose to store in our database.
pub const MAX_USER_AGENT_CHARS: usize = 256;

/// The client of a sign-in or an account change.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    /// The TCP peer or API Gateway's `sourceIp` (`adiuva_http::ClientAddr`): what the
    /// brute-force limits count. Never stored; see [`Device::ip_prefix`].
    pub address: IpAddr,
    /// The `User-Agent` header, truncated to [`MAX_USER_AGENT_CHARS`]; `None` when absent or
    /// empty.
    pub user_agent: Option<String>,
}

impl Device {
    pub fn new(address: IpAddr, user_agent: Option<&str>) -> Self {
        let user_agent = user_agent
            .map(str::trim)
            .filter(|agent| !agent.is_empty())
            .map(|agent| agent.chars().take(MAX_USER_AGENT_CHARS).collect());
        Self {
            address,
            user_agent,
        }
    }

    /// The address's network, as `203.0.113.0/24` or `2001:db8:1::/48`.
    pub fn ip_prefix(&self) -> String {
        ip_prefix(self.address)
    }
}

/// The IPv4 /24 or IPv6 /48 that holds `address`; an IPv4-mapped IPv6 address (what a
/// dual-stack socket reports for an IPv4 peer) is its IPv4 address.
pub fn ip_prefix(address: IpAddr) -> String {
    match address.to_canonical() {
        IpAddr::V4(v4) => {
            let [a, b, c, _] = v4.octets();
            format!("{}/24", Ipv4Addr::new(a, b, c, 0))
        }
        IpAddr::V6(v6) => {
            let [a, b, c, ..] = v6.segments();
            format!("{}/48", Ipv6Addr::new(a, b, c, 0, 0, 0, 0, 0))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prefixes_hide_the_host() {
        let prefix = |text: &str| ip_prefix(text.parse().unwrap());
        assert_eq!(prefix("203.0.113.57"), "203.0.113.0/24");
        assert_eq!(prefix("127.0.0.1"), "127.0.0.0/24");
        assert_eq!(prefix("2001:db8:1:2:3:4:5:6"), "2001:db8:1::/48");
        assert_eq!(prefix("2001:db8::1"), "2001:db8::/48");
        assert_eq!(prefix("::ffff:198.51.100.7"), "198.51.100.0/24");
    }

    #[test]
    fn user_agents_are_trimmed_and_truncated() {
        let address: IpAddr = "127.0.0.1".parse().unwrap();
        assert_eq!(Device::new(address, Some("  ")).user_agent, None);
        assert_eq!(Device::new(address, None).user_agent, None);
        let long = "é".repeat(300);
        let kept = Device::new(address, Some(&long)).user_agent.unwrap();
        assert_eq!(kept.chars().count(), MAX_USER_AGENT_CHARS);
    }
}
