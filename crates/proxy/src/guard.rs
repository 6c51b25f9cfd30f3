//! Where an upstream's client may connect besides the upstream itself. A redirect (to a blob
//! CDN) or a token realm on another host is only followed to public addresses: an upstream on
//! the internet must not be able to point Berth at its own loopback, the LAN, or a cloud
//! metadata service (169.254.169.254) and have the answer streamed back to a client.
//!
//! The rule is off when the upstream itself is local (its configured host is `localhost` or a
//! loopback, private or link-local address: a test or in-house registry whose CDN is in-house
//! too), or when the operator sets `allowprivateredirects` for the upstream. The upstream's own
//! host and the outbound proxies' hosts are always trusted: the operator named them.
//!
//! Two places enforce it. [`Guard::check_url`] runs before a redirect or realm is requested:
//! it resolves the host and refuses it (a clear, logged, non-retried error) when any address is
//! not public; it is the only check for IP literals, which are never resolved by the client.
//! [`GuardedResolver`] is the client's DNS resolver: it checks the addresses again and hands
//! exactly the checked ones to the connector, so the connection is pinned to what was checked
//! and a DNS answer that changes between the two looks (rebinding) gains nothing. Through an
//! outbound proxy the proxy resolves the target itself; there only the first check applies.

use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use reqwest::dns::{Addrs, Name, Resolve, Resolving};
use reqwest::Url;

use crate::UpstreamError;

/// Environment variables whose proxy hosts reqwest uses (and which are therefore trusted).
const PROXY_ENV: &[&str] = &[
    "HTTP_PROXY",
    "http_proxy",
    "HTTPS_PROXY",
    "https_proxy",
    "ALL_PROXY",
    "all_proxy",
];

/// Whether `ip` is a public internet address. Not public: unspecified and "this network"
/// (0/8), loopback (127/8), private (10/8, 172.16/12, 192.168/16), link-local (169.254/16, cloud
/// metadata included), CGNAT (100.64/10), IETF protocol assignments (192.0.0/24), benchmarking
/// (198.18/15), multicast, reserved and broadcast (240/4); IPv6 `::`, `::1`, unique local
/// (fc00::/7), link-local (fe80::/10), site-local (fec0::/10), multicast; and IPv6 forms that
/// embed an IPv4 address (mapped `::ffff:a.b.c.d`, compatible `::a.b.c.d`, NAT64 `64:ff9b::/96`,
/// 6to4 `2002::/16`) are judged by that IPv4 address.
pub fn is_public(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_public_v4(v4),
        IpAddr::V6(v6) => is_public_v6(v6),
    }
}

fn is_public_v4(ip: Ipv4Addr) -> bool {
    let [a, b, c, _] = ip.octets();
    let special = a == 0
        || ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || (a == 100 && (b & 0xc0) == 64)
        || (a == 192 && b == 0 && c == 0)
        || (a == 198 && (b & 0xfe) == 18)
        || ip.is_multicast()
        || a >= 240;
    !special
}

fn is_public_v6(ip: Ipv6Addr) -> bool {
    if let Some(v4) = embedded_v4(ip) {
        return is_public_v4(v4);
    }
    let s = ip.segments();
    let special = ip.is_unspecified()
        || ip.is_loopback()
        || (s[0] & 0xfe00) == 0xfc00
        || (s[0] & 0xffc0) == 0xfe80
        || (s[0] & 0xffc0) == 0xfec0
        || (s[0] & 0xff00) == 0xff00;
    !special
}

/// The IPv4 address an IPv6 address stands for, in the forms a connection would reach it by.
fn embedded_v4(ip: Ipv6Addr) -> Option<Ipv4Addr> {
    let s = ip.segments();
    let low = Ipv4Addr::new((s[6] >> 8) as u8, s[6] as u8, (s[7] >> 8) as u8, s[7] as u8);
    match s {
        // `::ffff:a.b.c.d` (mapped) and `::a.b.c.d` (compatible; `::` and `::1` land in 0/8).
        [0, 0, 0, 0, 0, 0xffff, _, _] | [0, 0, 0, 0, 0, 0, _, _] => Some(low),
        // NAT64 well-known prefix.
        [0x64, 0xff9b, 0, 0, 0, 0, _, _] => Some(low),
        // 6to4: the IPv4 address follows the prefix.
        [0x2002, hi, lo, ..] => Some(Ipv4Addr::new(
            (hi >> 8) as u8,
            hi as u8,
            (lo >> 8) as u8,
            lo as u8,
        )),
        _ => None,
    }
}

/// `host` as an IP address, when it is one (URL hosts put IPv6 in brackets).
fn host_ip(host: &str) -> Option<IpAddr> {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .parse()
        .ok()
}

/// Whether a configured host names this machine or a private network: `localhost` (and
/// `*.localhost`), or a non-public IP address.
pub fn is_local_host(host: &str) -> bool {
    let host = host.to_ascii_lowercase();
    let host = host.trim_end_matches('.');
    host == "localhost"
        || host.ends_with(".localhost")
        || host_ip(host).is_some_and(|ip| !is_public(ip))
}

/// One upstream's rule for hosts other than its own.
#[derive(Debug)]
pub struct Guard {
    /// The upstream's own host, lower case, IPv6 without brackets.
    own: String,
    /// Outbound proxies' hosts: trusted like the upstream.
    proxies: HashSet<String>,
    /// The upstream is local (see [`is_local_host`]): other hosts are not checked.
    local: bool,
    /// The operator allows private targets (`allowprivateredirects`).
    allow_private: bool,
}

fn normal(host: &str) -> String {
    host.trim_start_matches('[')
        .trim_end_matches(']')
        .trim_end_matches('.')
        .to_ascii_lowercase()
}

impl Guard {
    /// The rule for an upstream at `base`, with `proxy` (its outbound proxy, if any; the
    /// `*_PROXY` environment's proxies are trusted too) and the operator's `allow_private`.
    pub fn new(base: &Url, proxy: Option<&str>, allow_private: bool) -> Guard {
        let own = normal(base.host_str().unwrap_or_default());
        let env: Vec<String> = PROXY_ENV
            .iter()
            .filter_map(|k| std::env::var(k).ok())
            .collect();
        let proxies = proxy
            .into_iter()
            .chain(env.iter().map(String::as_str))
            .filter_map(|p| Url::parse(p).ok())
            .filter_map(|u| u.host_str().map(normal))
            .collect();
        Guard {
            local: is_local_host(&own),
            own,
            proxies,
            allow_private,
        }
    }

    /// Treats the upstream as public whatever its address: tests run local upstreams only.
    #[cfg(test)]
    pub fn pretend_public(&mut self) {
        self.local = false;
    }

    /// Whether no other host is checked (local upstream, or allowed by the operator).
    pub fn open(&self) -> bool {
        self.local || self.allow_private
    }

    /// Whether `host` is the upstream's own host.
    pub fn is_own_host(&self, host: &str) -> bool {
        normal(host) == self.own
    }

    /// Whether `host`'s addresses are not checked: the upstream's own host or a proxy's.
    fn trusted(&self, host: &str) -> bool {
        let host = normal(host);
        host == self.own || self.proxies.contains(&host)
    }

    /// The decision for `host`, which resolved to `addrs`: `Err` with the reason when the host
    /// is another one than the upstream's and one of its addresses is not public.
    pub fn check(&self, host: &str, addrs: &[IpAddr]) -> Result<(), String> {
        if self.open() || self.trusted(host) {
            return Ok(());
        }
        match addrs.iter().find(|ip| !is_public(**ip)) {
            Some(ip) => Err(format!(
                "{host} is {ip}, not a public address, and the upstream {} is not local (set allowprivateredirects to allow it)",
                self.own
            )),
            None => Ok(()),
        }
    }

    /// Checks the host of `url` before it is requested: an IP literal as it is, a name after
    /// resolving it (within `timeout`). A refusal is [`UpstreamError::Refused`].
    pub async fn check_url(&self, url: &Url, timeout: Duration) -> Result<(), UpstreamError> {
        let host = url
            .host_str()
            .ok_or_else(|| UpstreamError::Invalid(format!("{url} has no host")))?;
        if self.open() || self.trusted(host) {
            return Ok(());
        }
        let addrs = match host_ip(host) {
            Some(ip) => vec![ip],
            None => {
                let port = url.port_or_known_default().unwrap_or(443);
                let resolved =
                    tokio::time::timeout(timeout, tokio::net::lookup_host((host.to_owned(), port)))
                        .await
                        .map_err(|_| UpstreamError::Timeout(timeout))?
                        .map_err(|e| {
                            UpstreamError::Unreachable(format!("resolving {host}: {e}"))
                        })?;
                resolved.map(|a| a.ip()).collect()
            }
        };
        self.check(host, &addrs).map_err(UpstreamError::Refused)
    }
}

/// A connection refused by the [`GuardedResolver`], found again in the client's error chain.
#[derive(Debug)]
pub struct RefusedAddress(pub String);

impl std::fmt::Display for RefusedAddress {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "refused: {}", self.0)
    }
}

impl std::error::Error for RefusedAddress {}

/// The refusal in `e`'s chain of causes, if the resolver refused the connection.
pub fn refusal(e: &(dyn std::error::Error + 'static)) -> Option<String> {
    let mut source = Some(e);
    while let Some(s) = source {
        if let Some(r) = s.downcast_ref::<RefusedAddress>() {
            return Some(r.0.clone());
        }
        source = s.source();
    }
    None
}

/// The client's DNS resolver: resolves with the system resolver, applies the [`Guard`] to
/// every address, and returns exactly the addresses it checked (the connection is pinned to
/// them).
pub struct GuardedResolver(pub Arc<Guard>);

impl Resolve for GuardedResolver {
    fn resolve(&self, name: Name) -> Resolving {
        let guard = self.0.clone();
        let host = name.as_str().to_owned();
        Box::pin(async move {
            let addrs: Vec<SocketAddr> =
                tokio::net::lookup_host((host.as_str(), 0)).await?.collect();
            let ips: Vec<IpAddr> = addrs.iter().map(SocketAddr::ip).collect();
            guard.check(&host, &ips).map_err(RefusedAddress)?;
            Ok(Box::new(addrs.into_iter()) as Addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn private_and_special_addresses_are_not_public() {
        for s in [
            "127.0.0.1",
            "127.1.2.3",
            "10.0.0.1",
            "172.16.0.1",
            "172.31.255.255",
            "192.168.1.1",
            "169.254.169.254",
            "169.254.0.1",
            "0.0.0.0",
            "0.1.2.3",
            "100.64.0.1",
            "100.100.100.200",
            "100.127.255.255",
            "192.0.0.192",
            "198.18.0.1",
            "224.0.0.1",
            "255.255.255.255",
            "::",
            "::1",
            "fc00::1",
            "fd00:ec2::254",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "ff02::1",
            "::ffff:127.0.0.1",
            "::ffff:169.254.169.254",
            "::ffff:10.1.2.3",
            "::127.0.0.1",
            "64:ff9b::7f00:1",
            "2002:7f00:1::",
            "2002:a9fe:a9fe::1",
        ] {
            assert!(!is_public(ip(s)), "{s} must not count as public");
        }
    }

    #[test]
    fn internet_addresses_are_public() {
        for s in [
            "1.1.1.1",
            "8.8.8.8",
            "172.15.255.255",
            "172.32.0.1",
            "100.63.255.255",
            "100.128.0.1",
            "169.253.1.1",
            "192.169.0.1",
            "2606:4700::1111",
            "2a00:1450:4001::1",
            "::ffff:8.8.8.8",
            "64:ff9b::808:808",
            "2002:808:808::1",
        ] {
            assert!(is_public(ip(s)), "{s} is public");
        }
    }

    #[test]
    fn local_hosts() {
        for h in [
            "localhost",
            "LOCALHOST",
            "localhost.",
            "registry.localhost",
            "127.0.0.1",
            "10.1.2.3",
            "[::1]",
            "[fd00::5]",
            "169.254.1.1",
        ] {
            assert!(is_local_host(h), "{h}");
        }
        for h in [
            "registry-1.docker.io",
            "ghcr.io",
            "8.8.8.8",
            "[2606:4700::1111]",
            "localhost.example.com",
        ] {
            assert!(!is_local_host(h), "{h}");
        }
    }

    fn guard(base: &str, allow: bool) -> Guard {
        Guard::new(&Url::parse(base).expect("url"), None, allow)
    }

    #[test]
    fn a_public_upstream_may_not_redirect_to_private_addresses() {
        let g = guard("https://registry-1.docker.io", false);
        assert!(!g.open());
        for target in [
            "127.0.0.1",
            "10.0.0.8",
            "169.254.169.254",
            "::1",
            "::ffff:127.0.0.1",
        ] {
            let err = g.check("cdn.example", &[ip(target)]).expect_err("refused");
            assert!(err.contains(target), "{err}");
        }
        // Every address counts: one private address among public ones is refused.
        assert!(g
            .check("cdn.example", &[ip("104.16.1.1"), ip("192.168.0.9")])
            .is_err());
        assert_eq!(g.check("cdn.example", &[ip("104.16.1.1")]), Ok(()));
        // Its own host may be anywhere (an in-house name on a private network).
        assert_eq!(g.check("REGISTRY-1.docker.io", &[ip("10.0.0.8")]), Ok(()));
    }

    #[test]
    fn a_local_upstream_or_the_operator_allows_private_targets() {
        for base in [
            "http://127.0.0.1:5000",
            "http://localhost:5000",
            "http://[::1]:5000",
            "http://192.168.1.20",
        ] {
            let g = guard(base, false);
            assert!(g.open(), "{base}");
            assert_eq!(g.check("minio", &[ip("10.0.0.8")]), Ok(()), "{base}");
        }
        let g = guard("https://registry.example.com", true);
        assert_eq!(g.check("minio", &[ip("127.0.0.1")]), Ok(()));
    }

    #[test]
    fn the_outbound_proxy_is_trusted() {
        let g = Guard::new(
            &Url::parse("https://ghcr.io").expect("url"),
            Some("http://squid.internal:3128"),
            false,
        );
        assert_eq!(g.check("squid.internal", &[ip("10.9.9.9")]), Ok(()));
        assert!(g.check("other.internal", &[ip("10.9.9.9")]).is_err());
    }

    #[tokio::test]
    async fn urls_are_checked_by_literal_or_by_resolving() {
        let g = guard("https://registry.example.com", false);
        let t = Duration::from_secs(5);
        for url in [
            "http://127.0.0.1:9/x",
            "http://[::1]:9/x",
            "http://169.254.169.254/latest/meta-data",
            "http://localhost:9/x",
        ] {
            let err = g
                .check_url(&Url::parse(url).expect("url"), t)
                .await
                .expect_err("refused");
            assert!(matches!(err, UpstreamError::Refused(_)), "{url}: {err}");
        }
        let open = guard("http://127.0.0.1:5000", false);
        assert!(open
            .check_url(&Url::parse("http://localhost:9/x").expect("url"), t)
            .await
            .is_ok());
    }

    #[tokio::test]
    async fn the_resolver_refuses_and_the_refusal_is_found_in_the_chain() {
        let g = Arc::new(guard("https://registry.example.com", false));
        let resolver = GuardedResolver(g);
        let name: Name = "localhost".parse().expect("name");
        let err = match resolver.resolve(name).await {
            Ok(_) => panic!("localhost must be refused"),
            Err(e) => e,
        };
        assert!(refusal(err.as_ref()).is_some(), "{err}");
        // Through a real client: the connection is refused before it is made.
        let client = reqwest::Client::builder()
            .dns_resolver(Arc::new(GuardedResolver(Arc::new(guard(
                "https://registry.example.com",
                false,
            )))))
            .no_proxy()
            .build()
            .expect("client");
        let err = client
            .get("http://localhost:9/")
            .send()
            .await
            .expect_err("refused");
        assert!(refusal(&err).is_some(), "{err:?}");
    }
}
