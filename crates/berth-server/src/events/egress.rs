//! Where webhooks may connect: not to loopback, private, link-local, cloud
//! metadata or other non-public addresses unless the server runs with
//! `--webhook-allow-private`. The check is made on the addresses a name
//! resolves to, at every delivery (the HTTP client's resolver drops forbidden
//! ones, so DNS cannot rebind around a check made earlier), and on IP
//! literals in the URL. Also: URLs with their credentials redacted, for listings.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

/// What kind of non-public address `ip` is, or `None` for a public one.
pub fn forbidden(ip: IpAddr) -> Option<&'static str> {
    match ip {
        IpAddr::V4(v4) => forbidden_v4(v4),
        IpAddr::V6(v6) => forbidden_v6(v6),
    }
}

fn forbidden_v4(ip: Ipv4Addr) -> Option<&'static str> {
    let [a, b, c, _] = ip.octets();
    Some(match (a, b) {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() || a == 0 => "unspecified",
        _ if ip.is_private() => "private",
        (169, 254) => "link-local (cloud metadata)",
        (100, 64..=127) => "shared (carrier-grade NAT, cloud metadata)",
        (192, 0) if c == 0 => "IETF protocol assignment",
        (198, 18..=19) => "benchmarking",
        _ if ip.is_multicast() => "multicast",
        _ if a >= 240 => "reserved",
        _ => return None,
    })
}

fn forbidden_v6(ip: Ipv6Addr) -> Option<&'static str> {
    if let Some(v4) = ip.to_ipv4_mapped() {
        return forbidden_v4(v4);
    }
    let segments = ip.segments();
    // NAT64 (64:ff9b::/96) embeds an IPv4 address.
    if segments[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        let [a, b] = segments[6].to_be_bytes();
        let [c, d] = segments[7].to_be_bytes();
        return forbidden_v4(Ipv4Addr::new(a, b, c, d));
    }
    Some(match segments[0] {
        _ if ip.is_loopback() => "loopback",
        _ if ip.is_unspecified() => "unspecified",
        s if s & 0xfe00 == 0xfc00 => "unique local (private, cloud metadata)",
        s if s & 0xffc0 == 0xfe80 => "link-local",
        s if s & 0xff00 == 0xff00 => "multicast",
        // IPv4-compatible (deprecated) ::a.b.c.d
        0 if segments[1..6] == [0, 0, 0, 0, 0] => "IPv4-compatible",
        _ => return None,
    })
}

/// The refusal of one address, naming the flag that allows it.
pub fn refusal(host: &str, ip: IpAddr, kind: &str) -> String {
    format!(
        "webhook target `{host}` is {ip}, a {kind} address: webhooks reach only public addresses unless the server runs with `--webhook-allow-private`"
    )
}

/// Checks a URL's host when it is an IP literal or `localhost`; names are
/// checked on their resolved addresses at each delivery.
pub fn check_url(url: &reqwest::Url) -> Result<(), String> {
    let Some(host) = url.host_str() else {
        return Ok(());
    };
    let literal = host.trim_start_matches('[').trim_end_matches(']');
    let Ok(ip) = literal.parse::<IpAddr>() else {
        let name = host.trim_end_matches('.').to_ascii_lowercase();
        if name == "localhost" || name.ends_with(".localhost") {
            return Err(refusal(&name, IpAddr::V4(Ipv4Addr::LOCALHOST), "loopback"));
        }
        return Ok(());
    };
    match forbidden(ip) {
        Some(kind) => Err(refusal(&ip.to_string(), ip, kind)),
        None => Ok(()),
    }
}

/// A connection refused because every address of the target is non-public;
/// permanent, so a delivery is not retried.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct NotPublic(pub String);

/// Whether `err`'s chain holds a [`NotPublic`] refusal.
pub fn is_not_public(err: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(err);
    while let Some(e) = current {
        if e.is::<NotPublic>() {
            return true;
        }
        current = e.source();
    }
    false
}

/// A resolver that resolves with the system's and keeps only public
/// addresses; when none is left the connection fails with the reason.
#[derive(Debug, Default)]
pub struct PublicOnly;

impl reqwest::dns::Resolve for PublicOnly {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let resolved: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let mut refused = None;
            let allowed: Vec<SocketAddr> = resolved
                .into_iter()
                .filter(|addr| match forbidden(addr.ip()) {
                    Some(kind) => {
                        refused.get_or_insert_with(|| refusal(&host, addr.ip(), kind));
                        false
                    }
                    None => true,
                })
                .collect();
            if allowed.is_empty() {
                return Err(match refused {
                    Some(reason) => {
                        Box::new(NotPublic(reason)) as Box<dyn std::error::Error + Send + Sync>
                    }
                    None => format!("`{host}` has no address").into(),
                });
            }
            let addrs: reqwest::dns::Addrs = Box::new(allowed.into_iter());
            Ok(addrs)
        })
    }
}

/// `url` with its user name, password and query values replaced by `***`.
pub fn redact(url: &str) -> String {
    let Ok(mut parsed) = reqwest::Url::parse(url) else {
        return url.to_owned();
    };
    if !parsed.username().is_empty() {
        let _ = parsed.set_username("***");
    }
    if parsed.password().is_some() {
        let _ = parsed.set_password(Some("***"));
    }
    if parsed.query().is_some() {
        let pairs: Vec<String> = parsed
            .query_pairs()
            .map(|(k, _)| format!("{k}=***"))
            .collect();
        parsed.set_query(Some(&pairs.join("&")));
    }
    parsed.to_string()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn non_public_addresses_are_named() {
        for (ip, kind) in [
            ("127.0.0.1", "loopback"),
            ("10.1.2.3", "private"),
            ("172.16.0.1", "private"),
            ("192.168.1.1", "private"),
            ("169.254.169.254", "link-local (cloud metadata)"),
            (
                "100.100.100.200",
                "shared (carrier-grade NAT, cloud metadata)",
            ),
            ("0.0.0.0", "unspecified"),
            ("::1", "loopback"),
            ("::", "unspecified"),
            ("fd00:ec2::254", "unique local (private, cloud metadata)"),
            ("fe80::1", "link-local"),
            ("::ffff:127.0.0.1", "loopback"),
            ("::ffff:169.254.169.254", "link-local (cloud metadata)"),
            ("64:ff9b::a9fe:a9fe", "link-local (cloud metadata)"),
            ("224.0.0.1", "multicast"),
        ] {
            assert_eq!(forbidden(ip.parse().unwrap()), Some(kind), "{ip}");
        }
        for ip in ["93.184.216.34", "8.8.8.8", "2606:4700::1111", "172.32.0.1"] {
            assert_eq!(forbidden(ip.parse().unwrap()), None, "{ip}");
        }
    }

    #[test]
    fn literal_and_localhost_urls_are_checked() {
        for bad in [
            "http://127.0.0.1:9/h",
            "http://[::1]/h",
            "http://localhost:8080/",
            "http://169.254.169.254/latest/meta-data",
            "http://2130706433/",
        ] {
            let err = check_url(&reqwest::Url::parse(bad).unwrap()).unwrap_err();
            assert!(err.contains("--webhook-allow-private"), "{bad}: {err}");
        }
        assert!(check_url(&reqwest::Url::parse("https://example.com/h").unwrap()).is_ok());
    }

    #[test]
    fn credentials_are_redacted() {
        assert_eq!(
            redact("https://user:pa55@example.com/hook?token=abc&x=1"),
            "https://***:***@example.com/hook?token=***&x=***"
        );
        assert_eq!(
            redact("https://example.com/hook"),
            "https://example.com/hook"
        );
    }
}
