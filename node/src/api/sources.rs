//! Who may connect to the service API.
//!
//! The service API must listen beyond loopback (containers reach it through their
//! network's gateway, whose address Docker picks per instance network), so by default it
//! listens on every interface. Its calls need an instance token, but a stranger on the
//! network could still open connections and make the node parse requests. So a
//! connection is served only when it comes from loopback or from the subnet of one of
//! this node's instance networks (asked of Docker, cached, asked again at most once per
//! [`REFRESH_EVERY`] when an unknown address connects); any other is closed unanswered.

use crate::runtime::Runtime;
use std::net::IpAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// How often an unknown source address may make the node list its networks again (a new
/// instance network appears; a stranger cannot make the node ask Docker more often).
pub const REFRESH_EVERY: Duration = Duration::from_secs(1);

/// An IP subnet, `addr/prefix`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Subnet {
    addr: IpAddr,
    prefix: u8,
}

impl Subnet {
    /// Parse `172.18.0.0/16` or `fd00::/64`; `None` when malformed.
    pub fn parse(s: &str) -> Option<Subnet> {
        let (addr, prefix) = s.split_once('/')?;
        let addr: IpAddr = addr.trim().parse().ok()?;
        let prefix: u8 = prefix.trim().parse().ok()?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        (prefix <= max).then_some(Subnet { addr, prefix })
    }

    pub fn contains(&self, ip: IpAddr) -> bool {
        let ip = match ip {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
            v4 => v4,
        };
        match (self.addr, ip) {
            (IpAddr::V4(net), IpAddr::V4(ip)) => {
                let mask = u32::MAX
                    .checked_shl(32 - u32::from(self.prefix))
                    .unwrap_or(0);
                u32::from(net) & mask == u32::from(ip) & mask
            }
            (IpAddr::V6(net), IpAddr::V6(ip)) => {
                let mask = u128::MAX
                    .checked_shl(128 - u32::from(self.prefix))
                    .unwrap_or(0);
                u128::from(net) & mask == u128::from(ip) & mask
            }
            _ => false,
        }
    }
}

/// The addresses allowed to connect to the service API.
pub struct ServiceApiSources {
    runtime: Arc<dyn Runtime>,
    known: tokio::sync::Mutex<(Vec<Subnet>, Option<Instant>)>,
}

impl std::fmt::Debug for ServiceApiSources {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceApiSources").finish_non_exhaustive()
    }
}

impl ServiceApiSources {
    pub fn new(runtime: Arc<dyn Runtime>) -> ServiceApiSources {
        ServiceApiSources {
            runtime,
            known: tokio::sync::Mutex::new((Vec::new(), None)),
        }
    }

    /// Whether a connection from `ip` may be served.
    pub async fn allows(&self, ip: IpAddr) -> bool {
        if ip.is_loopback() || ip_v4_mapped_loopback(ip) {
            return true;
        }
        let mut known = self.known.lock().await;
        if known.0.iter().any(|s| s.contains(ip)) {
            return true;
        }
        if known.1.is_some_and(|at| at.elapsed() < REFRESH_EVERY) {
            return false;
        }
        match self.runtime.instance_subnets().await {
            Ok(subnets) => known.0 = subnets.iter().filter_map(|s| Subnet::parse(s)).collect(),
            Err(e) => tracing::warn!("service API sources: {e}"),
        }
        known.1 = Some(Instant::now());
        known.0.iter().any(|s| s.contains(ip))
    }
}

fn ip_v4_mapped_loopback(ip: IpAddr) -> bool {
    matches!(ip, IpAddr::V6(v6) if v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn subnets_contain_their_addresses_only() {
        let s = Subnet::parse("172.18.0.0/16").unwrap();
        assert!(s.contains("172.18.3.4".parse().unwrap()));
        assert!(s.contains("::ffff:172.18.0.2".parse().unwrap()));
        assert!(!s.contains("172.19.0.1".parse().unwrap()));
        assert!(!s.contains("192.0.2.2".parse().unwrap()));
        let v6 = Subnet::parse("fd00:1::/64").unwrap();
        assert!(v6.contains("fd00:1::5".parse().unwrap()));
        assert!(!v6.contains("fd00:2::5".parse().unwrap()));
        assert!(
            Subnet::parse("0.0.0.0/0")
                .unwrap()
                .contains("8.8.8.8".parse().unwrap())
        );
        assert_eq!(Subnet::parse("10.0.0.0/33"), None);
        assert_eq!(Subnet::parse("nonsense"), None);
    }
}
