//! Keyed rate limits that forget idle keys, and the key a client address is
//! limited under.

use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use governor::clock::{Clock, DefaultClock};
use governor::{DefaultKeyedRateLimiter, Quota, RateLimiter};

/// How many checks pass between two sweeps of keys whose allowance is whole again.
const SWEEP_EVERY: u64 = 4096;

pub struct Throttle {
    limiter: DefaultKeyedRateLimiter<String>,
    checks: AtomicU64,
}

impl Throttle {
    pub fn per_minute(n: u32) -> Self {
        let quota = Quota::per_minute(NonZeroU32::new(n.max(1)).expect("nonzero"));
        Throttle { limiter: RateLimiter::keyed(quota), checks: AtomicU64::new(0) }
    }

    /// `Err(wait)` when `key` is over its rate. Now and then the keys that
    /// are back to a full allowance are dropped: without that the limiter
    /// keeps one entry for every key it ever saw (every client address that
    /// tried to sign up), and memory grows for as long as the server runs.
    // `&String`: governor looks keys up by `&K`, and a `&str` would cost every
    // authenticated request an allocation.
    #[allow(clippy::ptr_arg)]
    pub fn check(&self, key: &String) -> Result<(), Duration> {
        if self.checks.fetch_add(1, Ordering::Relaxed) % SWEEP_EVERY == SWEEP_EVERY - 1 {
            self.limiter.retain_recent();
            self.limiter.shrink_to_fit();
        }
        self.limiter.check_key(key).map_err(|not_until| not_until.wait_time_from(DefaultClock::default().now()))
    }
}

/// The key a client address is limited under. An IPv6 client counts by its
/// /64: one host usually holds a whole /64, and limiting single addresses
/// would let it sign up without end. An IPv4-mapped address counts as the
/// IPv4 one. Anything unparsable counts as itself.
pub fn client_key(ip: &str) -> String {
    match ip.parse::<IpAddr>() {
        Ok(IpAddr::V6(v6)) => match v6.to_ipv4_mapped() {
            Some(v4) => v4.to_string(),
            None => {
                let s = v6.segments();
                format!("{:x}:{:x}:{:x}:{:x}::/64", s[0], s[1], s[2], s[3])
            }
        },
        Ok(IpAddr::V4(v4)) => v4.to_string(),
        Err(_) => ip.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_ipv6_client_counts_by_its_64() {
        assert_eq!(client_key("2001:db8:1:2::1"), client_key("2001:db8:1:2:ffff:ffff:ffff:fffe"));
        assert_ne!(client_key("2001:db8:1:2::1"), client_key("2001:db8:1:3::1"));
        assert_eq!(client_key("::ffff:192.0.2.7"), "192.0.2.7");
        assert_eq!(client_key("192.0.2.7"), "192.0.2.7");
        assert_ne!(client_key("192.0.2.7"), client_key("192.0.2.8"));
        assert_eq!(client_key("not an address"), "not an address");
    }

    #[test]
    fn a_throttle_limits_each_key_and_forgets_idle_ones() {
        let t = Throttle::per_minute(2);
        assert!(t.check(&"a".into()).is_ok() && t.check(&"a".into()).is_ok());
        let wait = t.check(&"a".into()).expect_err("a third call within the minute");
        assert!(wait > Duration::ZERO && wait <= Duration::from_secs(60), "{wait:?}");
        assert!(t.check(&"b".into()).is_ok(), "another key has its own allowance");

        // At a million a minute a used allowance is whole again after 60 µs.
        let t = Throttle::per_minute(1_000_000);
        for i in 0..2000 {
            t.check(&format!("client-{i}")).unwrap();
        }
        assert_eq!(t.limiter.len(), 2000);
        std::thread::sleep(Duration::from_millis(50));
        for _ in 0..SWEEP_EVERY {
            t.check(&"busy".into()).unwrap();
        }
        assert!(t.limiter.len() < 10, "idle keys are kept: {}", t.limiter.len());
    }
}
