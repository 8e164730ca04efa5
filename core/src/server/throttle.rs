//! The failed-login throttle: after `max_failures` failed logins within `window` for one login
//! or one client address, further logins for that login or from that address are refused,
//! before any password is checked, until the oldest of those failures leaves the window.
//!
//! A sliding window of the last `max_failures` failure times is kept per key; nothing is
//! written to the database, so a restart forgets it.

use std::collections::{HashMap, VecDeque};
use std::net::IpAddr;
use std::time::{Duration, Instant};

/// Keys tracked per kind before the stalest are dropped: bounds memory under a flood of
/// made-up logins.
const MAX_KEYS: usize = 100_000;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ThrottleConfig {
    /// Failures within `window` after which logins are refused.
    pub max_failures: usize,
    pub window: Duration,
}

impl Default for ThrottleConfig {
    fn default() -> Self {
        ThrottleConfig {
            max_failures: 10,
            window: Duration::from_secs(600),
        }
    }
}

/// Why a login is refused, and for how long.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub key: String,
    pub retry_after: Duration,
}

#[derive(Debug)]
pub struct Throttle {
    config: ThrottleConfig,
    logins: Failures<String>,
    addresses: Failures<IpAddr>,
}

impl Throttle {
    pub fn new(config: ThrottleConfig) -> Self {
        Throttle {
            config,
            logins: Failures::default(),
            addresses: Failures::default(),
        }
    }

    pub fn config(&self) -> ThrottleConfig {
        self.config
    }

    /// Whether a login for `login` (when known) from `ip` may be tried now.
    pub fn check(&self, login: Option<&str>, ip: IpAddr, now: Instant) -> Result<(), Refusal> {
        if let Some(wait) = self.addresses.blocked(&ip, self.config, now) {
            return Err(Refusal {
                key: format!("address {ip}"),
                retry_after: wait,
            });
        }
        if let Some(login) = login
            && let Some(wait) = self.logins.blocked(&login_key(login), self.config, now)
        {
            return Err(Refusal {
                key: format!("login '{login}'"),
                retry_after: wait,
            });
        }
        Ok(())
    }

    /// Records a failed login; answers the refusal it started, if this failure was the one
    /// that reached the limit (for the log).
    pub fn fail(&mut self, login: Option<&str>, ip: IpAddr, now: Instant) -> Option<Refusal> {
        let config = self.config;
        self.addresses.record(ip, config, now);
        if let Some(login) = login {
            self.logins.record(login_key(login), config, now);
        }
        self.check(login, ip, now).err()
    }

    /// Whether no failure is on record (nothing to check or clear).
    pub fn is_clear(&self) -> bool {
        self.logins.map.is_empty() && self.addresses.map.is_empty()
    }

    /// A successful login clears that login's failures (not the address's: one good account
    /// must not buy an address more guesses at others).
    pub fn succeed(&mut self, login: &str) {
        self.logins.map.remove(&login_key(login));
    }
}

/// Logins are emails, compared without case for the count.
fn login_key(login: &str) -> String {
    login.to_lowercase()
}

#[derive(Debug)]
struct Failures<K> {
    map: HashMap<K, VecDeque<Instant>>,
}

impl<K> Default for Failures<K> {
    fn default() -> Self {
        Failures {
            map: HashMap::new(),
        }
    }
}

impl<K: std::hash::Hash + Eq + Clone> Failures<K> {
    fn blocked(&self, key: &K, config: ThrottleConfig, now: Instant) -> Option<Duration> {
        let times = self.map.get(key)?;
        if config.max_failures == 0 || times.len() < config.max_failures {
            return None;
        }
        let oldest = *times.front()?;
        let age = now.saturating_duration_since(oldest);
        (age < config.window).then(|| config.window - age)
    }

    fn record(&mut self, key: K, config: ThrottleConfig, now: Instant) {
        if self.map.len() >= MAX_KEYS && !self.map.contains_key(&key) {
            self.prune(config, now);
        }
        let times = self.map.entry(key).or_default();
        times.push_back(now);
        while times.len() > config.max_failures.max(1) {
            times.pop_front();
        }
    }

    /// Drops keys whose failures have all left the window, then, if still full, the half with
    /// the oldest last failure.
    fn prune(&mut self, config: ThrottleConfig, now: Instant) {
        self.map.retain(|_, times| {
            times
                .back()
                .is_some_and(|t| now.saturating_duration_since(*t) < config.window)
        });
        if self.map.len() >= MAX_KEYS {
            let mut last: Vec<Instant> = self
                .map
                .values()
                .filter_map(|t| t.back().copied())
                .collect();
            let mid = last.len() / 2;
            let (_, cut, _) = last.select_nth_unstable(mid);
            let cut = *cut;
            self.map
                .retain(|_, times| times.back().is_some_and(|t| *t > cut));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ip(last: u8) -> IpAddr {
        IpAddr::from([10, 0, 0, last])
    }

    #[test]
    fn refuses_after_n_failures_in_the_window_then_forgets() {
        let config = ThrottleConfig {
            max_failures: 3,
            window: Duration::from_secs(60),
        };
        let mut t = Throttle::new(config);
        let start = Instant::now();
        assert!(t.fail(Some("ann@example.com"), ip(1), start).is_none());
        assert!(t.fail(Some("Ann@Example.com"), ip(2), start).is_none());
        let refusal = t
            .fail(
                Some("ann@example.com"),
                ip(3),
                start + Duration::from_secs(10),
            )
            .expect("third failure locks the login");
        assert_eq!(refusal.key, "login 'ann@example.com'");
        assert_eq!(refusal.retry_after, Duration::from_secs(50));
        // Another login from a fresh address is not affected; the locked login is, anywhere.
        assert!(t.check(Some("bob@example.com"), ip(4), start).is_ok());
        assert!(t.check(Some("ANN@example.com"), ip(9), start).is_err());
        // Once the first failure leaves the window, one more try is allowed.
        let later = start + Duration::from_secs(61);
        assert!(t.check(Some("ann@example.com"), ip(9), later).is_ok());
    }

    #[test]
    fn an_address_is_refused_for_every_login() {
        let config = ThrottleConfig {
            max_failures: 2,
            window: Duration::from_secs(60),
        };
        let mut t = Throttle::new(config);
        let now = Instant::now();
        t.fail(Some("a@example.com"), ip(1), now);
        let refusal = t.fail(Some("b@example.com"), ip(1), now).expect("locked");
        assert_eq!(refusal.key, "address 10.0.0.1");
        assert!(t.check(Some("c@example.com"), ip(1), now).is_err());
        assert!(t.check(None, ip(1), now).is_err());
        assert!(t.check(Some("c@example.com"), ip(2), now).is_ok());
    }

    #[test]
    fn success_clears_the_login_but_not_the_address() {
        let config = ThrottleConfig {
            max_failures: 2,
            window: Duration::from_secs(60),
        };
        let mut t = Throttle::new(config);
        let now = Instant::now();
        t.fail(Some("a@example.com"), ip(1), now);
        t.succeed("a@example.com");
        assert!(t.fail(Some("a@example.com"), ip(2), now).is_none());
        t.fail(Some("z@example.com"), ip(1), now);
        assert!(t.check(Some("a@example.com"), ip(1), now).is_err());
    }

    #[test]
    fn memory_stays_bounded() {
        let mut f = Failures::<u32>::default();
        let config = ThrottleConfig::default();
        let now = Instant::now();
        for k in 0..(MAX_KEYS as u32 + 10) {
            f.record(k, config, now + Duration::from_millis(k as u64));
        }
        assert!(f.map.len() <= MAX_KEYS);
        assert!(f.map.contains_key(&(MAX_KEYS as u32 + 9)));
    }
}
