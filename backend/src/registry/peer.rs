//! The registry's check that a registration names its caller's own
//! address: a `ServiceURL` on another host would aim the registry's probes
//! and patches at a target the caller chose (a port scan, or an existence
//! oracle read off `/services`).

use std::net::IpAddr;
use std::time::Duration;

use super::error::RegistryError;

/// Longest the registry waits to resolve a `ServiceURL`'s host name.
const RESOLVE_DEADLINE: Duration = Duration::from_secs(2);

/// Whether `service_url`'s host is `peer` (the TCP peer of the
/// registration): an IP address equal to it, or a name that resolves to it.
/// Loopback addresses count as one, since `localhost` may resolve to either
/// family.
pub(super) async fn own_address(service_url: &str, peer: IpAddr) -> Result<(), RegistryError> {
    let foreign = || RegistryError::ForeignUrl { url: service_url.to_owned(), peer };
    // A URL that does not parse is refused by the validation after this,
    // with an answer that says what is wrong with it.
    let Ok(u) = url::Url::parse(service_url) else { return Ok(()) };
    let port = u.port_or_known_default().unwrap_or(80);
    let peer = peer.to_canonical();
    let matches = |ip: IpAddr| {
        let ip = ip.to_canonical();
        ip == peer || (ip.is_loopback() && peer.is_loopback())
    };
    let resolved: Vec<IpAddr> = match u.host() {
        Some(url::Host::Ipv4(ip)) => vec![ip.into()],
        Some(url::Host::Ipv6(ip)) => vec![ip.into()],
        Some(url::Host::Domain(name)) => {
            match tokio::time::timeout(RESOLVE_DEADLINE, tokio::net::lookup_host((name, port))).await {
                Ok(Ok(addrs)) => addrs.map(|a| a.ip()).collect(),
                _ => vec![],
            }
        }
        None => return Ok(()),
    };
    if resolved.into_iter().any(matches) { Ok(()) } else { Err(foreign()) }
}

#[cfg(test)]
mod tests {
    use super::own_address;

    #[tokio::test]
    async fn the_callers_own_address_is_taken_and_any_other_refused() {
        let me = "127.0.0.1".parse().unwrap();
        assert!(own_address("http://127.0.0.1:8080", me).await.is_ok());
        assert!(own_address("http://localhost:8080", me).await.is_ok());
        assert!(own_address("http://[::1]:8080", me).await.is_ok());
        assert!(own_address("http://10.1.2.3:5432", me).await.is_err());
        let other = "10.0.0.7".parse().unwrap();
        assert!(own_address("http://127.0.0.1:5432", other).await.is_err());
        assert!(own_address("http://10.0.0.7:80/", other).await.is_ok());
    }
}
