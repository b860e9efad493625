//! Where a delivery may go. An endpoint's URL must be `https`, and none of the addresses its host stands for may be
//! loopback, private, link-local (the cloud metadata address 169.254.169.254 among them), unique-local, CGNAT,
//! multicast, unspecified or otherwise not on the public internet. The URL is checked when the admin adds it
//! ([`check_url`]), and every connection is checked again after DNS ([`GuardedResolver`], the resolver the
//! delivery client uses), so a name that resolved to a public address at first and to an internal one later
//! (DNS rebinding) still reaches nothing inside.
//!
//! `vkhook demo` and the tests allow plain `http` to loopback through [`Policy::allow_loopback_http`]; `vkhook
//! serve` does not, unless told to.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::sync::Arc;

use url::{Host, Url};

/// What deliveries may reach.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Policy {
    /// `http://` to a loopback address (127.0.0.0/8, ::1, `localhost`) is allowed: the demo and tests only.
    pub allow_loopback_http: bool,
}

/// Why a URL or an address is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Refused {
    #[error("the address must start with https://")]
    NotHttps,
    #[error("the address has no host")]
    NoHost,
    #[error("the address may not carry a user name or password")]
    Credentials,
    #[error("{0} is not on the public internet (loopback, private, link-local or reserved)")]
    Internal(IpAddr),
    #[error("the host name does not resolve")]
    Unresolved,
}

/// True for an address a delivery must never reach under `serve` settings.
pub fn is_internal(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => is_internal_v4(v4),
        IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
            Some(v4) => is_internal_v4(v4),
            None => is_internal_v6(v6),
        },
    }
}

fn is_internal_v4(ip: Ipv4Addr) -> bool {
    let [a, b, ..] = ip.octets();
    ip.is_loopback()
        || ip.is_private()
        || ip.is_link_local()
        || ip.is_unspecified()
        || ip.is_broadcast()
        || ip.is_multicast()
        || ip.is_documentation()
        || a == 0
        || (a == 100 && (64..128).contains(&b)) // shared address space (CGNAT), RFC 6598
        || (a == 192 && b == 0 && ip.octets()[2] == 0) // IETF protocol assignments, RFC 6890
        || (a == 198 && (b == 18 || b == 19)) // benchmarking, RFC 2544
        || a >= 240 // reserved, RFC 1112
}

fn is_internal_v6(ip: Ipv6Addr) -> bool {
    let s = ip.segments();
    let last32 = Ipv4Addr::from((u32::from(s[6]) << 16) | u32::from(s[7]));
    // Forms that carry an IPv4 address, which a gateway or a tunnel then reaches: the IPv4 address decides.
    if s[..6] == [0x64, 0xff9b, 0, 0, 0, 0] {
        return is_internal_v4(last32); // NAT64 well-known prefix 64:ff9b::/96, RFC 6052
    }
    if s[..6] == [0, 0, 0, 0, 0xffff, 0] {
        return is_internal_v4(last32); // IPv4-translated ::ffff:0:a.b.c.d, RFC 2765
    }
    if s[0] == 0x2002 {
        return is_internal_v4(Ipv4Addr::from((u32::from(s[1]) << 16) | u32::from(s[2])));
        // 6to4 2002::/16, RFC 3056
    }
    // Local-use NAT64 (64:ff9b:1::/48, RFC 8215) translates into the operator's own networks; Teredo (2001::/32,
    // RFC 4380) tunnels to an IPv4 host behind a NAT; 100::/64 is discard-only (RFC 6666): none is a public host.
    if (s[0] == 0x64 && s[1] == 0xff9b && s[2] == 1) || (s[0] == 0x2001 && s[1] == 0) || s[..4] == [0x100, 0, 0, 0] {
        return true;
    }
    let first = s[0];
    ip.is_loopback()
        || ip.is_unspecified()
        || ip.is_multicast()
        || (first & 0xfe00) == 0xfc00 // unique local, RFC 4193
        || (first & 0xffc0) == 0xfe80 // link-local
        || (first & 0xffc0) == 0xfec0 // site-local (deprecated)
        || first == 0x2001 && ip.segments()[1] == 0x0db8 // documentation
        || ip.to_ipv4().is_some_and(|v4| ip.segments()[..6] == [0; 6] && is_internal_v4(v4))
    // IPv4-compatible
}

fn is_loopback_host(host: &Host<&str>) -> bool {
    match host {
        Host::Domain(d) => d.eq_ignore_ascii_case("localhost"),
        Host::Ipv4(ip) => ip.is_loopback(),
        Host::Ipv6(ip) => ip.is_loopback(),
    }
}

/// Checks a URL as the admin gives it: the scheme, no credentials, and a literal address's range. A host name is
/// checked again at every connection ([`GuardedResolver`]).
pub fn check_url(url: &Url, policy: Policy) -> Result<(), Refused> {
    let host = url.host().ok_or(Refused::NoHost)?;
    if !url.username().is_empty() || url.password().is_some() {
        return Err(Refused::Credentials);
    }
    let loopback_allowed = policy.allow_loopback_http && is_loopback_host(&host);
    match url.scheme() {
        "https" => {}
        "http" if loopback_allowed => {}
        _ => return Err(Refused::NotHttps),
    }
    let literal = match host {
        Host::Ipv4(ip) => Some(IpAddr::V4(ip)),
        Host::Ipv6(ip) => Some(IpAddr::V6(ip)),
        Host::Domain(_) => None,
    };
    match literal {
        Some(ip) if is_internal(ip) && !(loopback_allowed && ip.is_loopback()) => Err(Refused::Internal(ip)),
        _ => Ok(()),
    }
}

/// Checks a URL when the admin adds it: [`check_url`], then its host name resolved, every address checked (a name
/// with no allowed address is refused). Connections are checked again ([`GuardedResolver`]).
pub async fn check_target(url: &Url, policy: Policy) -> Result<(), Refused> {
    check_url(url, policy)?;
    if let Some(Host::Domain(name)) = url.host() {
        let port = url.port_or_known_default().unwrap_or(443);
        let found = tokio::net::lookup_host((name, port)).await.map_err(|_| Refused::Unresolved)?;
        GuardedResolver(policy).allowed(found)?;
    }
    Ok(())
}

/// The delivery client's DNS resolver: resolves with the system's resolver, then drops every internal address (all
/// of them but loopback when the policy allows loopback). A name left with no address fails to connect, and the
/// error says why. Since the client connects only to what this returns, a name that changes its answer between the
/// check and the connection (DNS rebinding) gets nowhere.
#[derive(Debug, Clone, Copy)]
pub struct GuardedResolver(pub Policy);

impl GuardedResolver {
    /// Keeps the addresses a delivery may reach.
    pub fn allowed(&self, addrs: impl IntoIterator<Item = SocketAddr>) -> Result<Vec<SocketAddr>, Refused> {
        let mut refused = None;
        let allowed: Vec<SocketAddr> = addrs
            .into_iter()
            .filter(|a| {
                let ok = !is_internal(a.ip()) || (self.0.allow_loopback_http && a.ip().is_loopback());
                if !ok {
                    refused.get_or_insert(a.ip());
                }
                ok
            })
            .collect();
        match (allowed.is_empty(), refused) {
            (false, _) => Ok(allowed),
            (true, Some(ip)) => Err(Refused::Internal(ip)),
            (true, None) => Err(Refused::Unresolved),
        }
    }
}

impl reqwest::dns::Resolve for GuardedResolver {
    fn resolve(&self, name: reqwest::dns::Name) -> reqwest::dns::Resolving {
        let guard = *self;
        Box::pin(async move {
            let host = format!("{}:0", name.as_str());
            let found = tokio::net::lookup_host(host).await.map_err(|e| Box::new(e) as Box<_>)?;
            let allowed = guard.allowed(found).map_err(|e| Box::new(e) as Box<dyn std::error::Error + Send + Sync>)?;
            Ok(Box::new(allowed.into_iter()) as reqwest::dns::Addrs)
        })
    }
}

/// The client deliveries go out with: the guarded resolver, no proxy (an `HTTPS_PROXY` in the environment would
/// resolve the name itself, past the guard), no redirects followed, a short connect timeout and the given overall
/// timeout.
pub fn delivery_client(
    policy: Policy,
    connect_timeout: std::time::Duration,
    timeout: std::time::Duration,
) -> reqwest::Result<reqwest::Client> {
    reqwest::Client::builder()
        .dns_resolver(Arc::new(GuardedResolver(policy)))
        .no_proxy()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(connect_timeout)
        .timeout(timeout)
        .build()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_internal_range_is_told_from_its_public_neighbours() {
        let internal = [
            "127.0.0.1",
            "10.0.0.1",
            "172.16.0.1",
            "192.168.1.1",
            "169.254.169.254",
            "0.0.0.0",
            "255.255.255.255",
            "224.0.0.1",
            "192.0.2.1",
            "198.51.100.1",
            "0.1.2.3",
            "100.64.0.1",
            "100.127.255.255",
            "192.0.0.8",
            "198.18.0.1",
            "198.19.255.1",
            "240.0.0.1",
            "::1",
            "::",
            "ff02::1",
            "fc00::1",
            "fd12::1",
            "fe80::1",
            "febf::1",
            "fec0::1",
            "2001:db8::1",
            "64:ff9b::a9fe:a9fe",
            "::ffff:0:7f00:1",
            "2002:7f00:1::",
            "2002:a00:1::",
            "64:ff9b:1::1",
            "2001:0:1::1",
            "100::1",
            "::7f00:1",
            "::ffff:127.0.0.1",
        ];
        let public = [
            "8.8.8.8",
            "1.1.1.1",
            "100.63.255.255",
            "100.128.0.1",
            "192.0.1.1",
            "192.1.0.1",
            "198.17.0.1",
            "198.20.0.1",
            "223.255.255.1",
            "2a00:1450::1",
            "64:ff9b::808:808",
            "::ffff:0:808:808",
            "2002:808:808::1",
            "2001:db9::1",
            "2001:1::1",
            "64:ff9b:2::1",
            "101::1",
            "::ffff:8.8.8.8",
            "fbff::1",
            "fe7f::1",
        ];
        for ip in internal {
            assert!(is_internal(ip.parse().unwrap()), "{ip} is internal");
        }
        for ip in public {
            assert!(!is_internal(ip.parse().unwrap()), "{ip} is public");
        }
    }

    const SERVE: Policy = Policy { allow_loopback_http: false };
    const DEMO: Policy = Policy { allow_loopback_http: true };

    fn check(url: &str, policy: Policy) -> Result<(), Refused> {
        check_url(&Url::parse(url).unwrap(), policy)
    }

    #[test]
    fn serve_refuses_internal_literals_and_plain_http() {
        assert_eq!(check("http://127.0.0.1/hook", SERVE), Err(Refused::NotHttps));
        let internal = |ip: &str| Err(Refused::Internal(ip.parse().unwrap()));
        assert_eq!(check("https://127.0.0.1/hook", SERVE), internal("127.0.0.1"));
        assert_eq!(check("https://10.1.2.3/hook", SERVE), internal("10.1.2.3"));
        assert_eq!(check("https://172.16.0.1/", SERVE), internal("172.16.0.1"));
        assert_eq!(check("https://192.168.1.1/", SERVE), internal("192.168.1.1"));
        assert_eq!(check("https://169.254.169.254/latest/meta-data/", SERVE), internal("169.254.169.254"));
        assert_eq!(check("https://[::1]/hook", SERVE), internal("::1"));
        assert_eq!(check("https://[::ffff:127.0.0.1]/hook", SERVE), internal("::ffff:127.0.0.1"));
        assert_eq!(check("https://[fd00::1]/hook", SERVE), internal("fd00::1"));
        assert_eq!(check("https://[fe80::1]/hook", SERVE), internal("fe80::1"));
        // IPv6 that carries an internal IPv4 address, and IPv6 that is no public host.
        for ip in [
            "64:ff9b::a9fe:a9fe",                   // NAT64 of 169.254.169.254
            "64:ff9b::7f00:1",                      // NAT64 of 127.0.0.1
            "64:ff9b:1::5db8:d70e",                 // local-use NAT64, whatever it carries
            "2002:a00:1::1",                        // 6to4 of 10.0.0.1
            "2002:7f00:1::",                        // 6to4 of 127.0.0.1
            "::ffff:0:a9fe:a9fe",                   // IPv4-translated 169.254.169.254
            "2001:0:4136:e378:8000:63bf:3fff:fdd2", // Teredo
            "100::1",                               // discard-only
        ] {
            assert_eq!(check(&format!("https://[{ip}]/"), SERVE), internal(ip), "{ip}");
        }
        // The same forms carrying a public address are public.
        assert_eq!(check("https://[64:ff9b::5db8:d70e]/", SERVE), Ok(()), "NAT64 of 93.184.215.14");
        assert_eq!(check("https://[2002:5db8:d70e::1]/", SERVE), Ok(()), "6to4 of 93.184.215.14");
        assert_eq!(check("https://100.64.0.1/", SERVE), internal("100.64.0.1"));
        assert_eq!(check("https://0.0.0.0/", SERVE), internal("0.0.0.0"));
        assert_eq!(check("ftp://example.com/", SERVE), Err(Refused::NotHttps));
        assert_eq!(check("https://user:pw@example.com/", SERVE), Err(Refused::Credentials));
        assert_eq!(check("https://example.com/hook", SERVE), Ok(()), "a name is checked at connect time");
        assert_eq!(check("https://93.184.215.14/hook", SERVE), Ok(()));
        assert_eq!(check("https://[2606:2800:21f:cb07:6820:80da:af6b:8b2c]/", SERVE), Ok(()));
    }

    #[test]
    fn the_demo_allows_plain_http_to_loopback_only() {
        assert_eq!(check("http://127.0.0.1:9000/hook", DEMO), Ok(()));
        assert_eq!(check("http://localhost:9000/hook", DEMO), Ok(()));
        assert_eq!(check("http://[::1]:9000/hook", DEMO), Ok(()));
        assert_eq!(check("http://10.0.0.1/hook", DEMO), Err(Refused::NotHttps));
        assert_eq!(check("https://10.0.0.1/hook", DEMO), Err(Refused::Internal("10.0.0.1".parse().unwrap())));
    }

    #[test]
    fn resolved_addresses_are_filtered() {
        let addr = |s: &str| -> SocketAddr { s.parse().unwrap() };
        let guard = GuardedResolver(SERVE);
        assert_eq!(
            guard.allowed([addr("127.0.0.1:443"), addr("93.184.215.14:443")]),
            Ok(vec![addr("93.184.215.14:443")]),
            "only the public one is dialled"
        );
        assert_eq!(guard.allowed([addr("10.0.0.7:443")]), Err(Refused::Internal("10.0.0.7".parse().unwrap())));
        assert_eq!(guard.allowed([]), Err(Refused::Unresolved));
        assert_eq!(GuardedResolver(DEMO).allowed([addr("127.0.0.1:80")]), Ok(vec![addr("127.0.0.1:80")]));
    }

    /// A name that resolves to loopback (`localhost`, from the system's resolver) is refused under `serve` settings
    /// when it is added and again at connect time: nothing is dialled. The same request under the
    /// demo's policy reaches a local server.
    #[tokio::test]
    async fn a_name_that_resolves_to_loopback_is_refused_at_connect_time() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let app = axum::Router::new().route("/hook", axum::routing::post(|| async { "ok" }));
        tokio::spawn(async move { axum::serve(listener, app).await });
        let timeout = std::time::Duration::from_secs(5);

        // A name (not a literal): the syntax passes, its address does not — neither when added nor when dialled
        // (as if it had resolved elsewhere when it was added).
        let url = format!("https://localhost:{port}/hook");
        assert_eq!(check(&url, SERVE), Ok(()));
        let loopback = check_target(&Url::parse(&url).unwrap(), SERVE).await.unwrap_err();
        assert!(matches!(loopback, Refused::Internal(ip) if ip.is_loopback()), "{loopback}");
        let client = delivery_client(SERVE, timeout, timeout).unwrap();
        let err = client.post(&url).body("{}").send().await.expect_err("refused before connecting");
        let chain = std::iter::successors(Some(&err as &dyn std::error::Error), |e| e.source())
            .map(|e| e.to_string())
            .collect::<Vec<_>>()
            .join(": ");
        assert!(chain.contains("not on the public internet"), "{chain}");

        let demo = delivery_client(DEMO, timeout, timeout).unwrap();
        let answer = demo.post(format!("http://localhost:{port}/hook")).body("{}").send().await.unwrap();
        assert_eq!(answer.text().await.unwrap(), "ok");
    }
}
