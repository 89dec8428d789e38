//! Name resolution that checks what it found: only addresses the policy
//! allows are handed to the connector, so the connection goes to an address
//! that was checked (no second lookup a rebinding DNS server could answer
//! differently).

use std::net::{IpAddr, SocketAddr};

use reqwest::dns::{Addrs, Name, Resolve, Resolving};

use super::address;

type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// The resolver of the guarded client.
pub(super) struct Guarded {
    pub(super) allow_private: bool,
}

/// Every address a name resolved to is one the policy refuses.
#[derive(Debug)]
pub(super) struct Refusal {
    pub(super) host: String,
    pub(super) ip: IpAddr,
    pub(super) why: &'static str,
}

impl std::fmt::Display for Refusal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} resolves to {}, a {} address", self.host, self.ip, self.why)
    }
}

impl std::error::Error for Refusal {}

/// The name did not resolve.
#[derive(Debug)]
pub(super) struct Unresolved {
    pub(super) host: String,
}

impl std::fmt::Display for Unresolved {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "could not resolve {}", self.host)
    }
}

impl std::error::Error for Unresolved {}

/// Keeps the addresses the policy allows; `Err` names the first refused one
/// when none is left.
pub(super) fn checked(host: &str, found: Vec<SocketAddr>, allow_private: bool) -> Result<Vec<SocketAddr>, BoxError> {
    if found.is_empty() {
        return Err(Box::new(Unresolved { host: host.to_owned() }));
    }
    if allow_private {
        return Ok(found);
    }
    let mut refusal = None;
    let allowed: Vec<SocketAddr> = found
        .into_iter()
        .filter(|a| match address::refused(a.ip()) {
            None => true,
            Some(why) => {
                refusal.get_or_insert(Refusal { host: host.to_owned(), ip: a.ip(), why });
                false
            }
        })
        .collect();
    match refusal {
        Some(r) if allowed.is_empty() => Err(Box::new(r)),
        _ => Ok(allowed),
    }
}

impl Resolve for Guarded {
    fn resolve(&self, name: Name) -> Resolving {
        let allow_private = self.allow_private;
        let host = name.as_str().to_owned();
        Box::pin(async move {
            // A failed lookup is an empty one: `checked` answers `Unresolved`.
            let found: Vec<SocketAddr> = match tokio::net::lookup_host((host.as_str(), 0)).await {
                Ok(addrs) => addrs.collect(),
                Err(_) => Vec::new(),
            };
            let addrs: Addrs = Box::new(checked(&host, found, allow_private)?.into_iter());
            Ok(addrs)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn addrs(list: &[&str]) -> Vec<SocketAddr> {
        list.iter().map(|a| SocketAddr::new(a.parse().unwrap(), 0)).collect()
    }

    #[test]
    fn only_checked_addresses_are_handed_on() {
        let mixed = addrs(&["127.0.0.1", "93.184.216.34", "::1"]);
        assert_eq!(checked("h", mixed.clone(), false).unwrap(), addrs(&["93.184.216.34"]));
        assert_eq!(checked("h", mixed, true).unwrap().len(), 3);
        let err = checked("localhost", addrs(&["::1", "127.0.0.1"]), false).unwrap_err();
        assert_eq!(err.to_string(), "localhost resolves to ::1, a loopback address");
        assert!(err.downcast_ref::<Refusal>().is_some());
        assert!(checked("nowhere", vec![], true).unwrap_err().downcast_ref::<Unresolved>().is_some());
    }
}
