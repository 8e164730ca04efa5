//! A short-lived memory of `authinfo=user:pass` credentials that passed argon2, so that an
//! integration sending them on every request pays the deliberately slow hash once a minute
//! rather than on every call.
//!
//! An entry is a tag, never the password: keyed BLAKE2b-256 (a MAC, from the `blake2` crate
//! argon2 already builds) over the user id, the login, the password and the *stored password
//! hash string*, under a random key drawn once per process. Keying on the stored hash means an
//! entry can only ever match the password row it was verified against: a password change (or
//! reset) writes a new hash with a new salt, so every tag made before it stops matching at
//! once, in every process sharing the database, without any invalidation call. Disabling a
//! user or deleting its client is checked on the fresh row before the cache is consulted.
//! Entries also expire `ttl` after verification, and the cache holds at most `max_entries`.

use blake2::Blake2bMac;
use blake2::digest::consts::U32;
use blake2::digest::{KeyInit, Mac};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// How long a verified credential is trusted without argon2.
pub const DEFAULT_TTL: Duration = Duration::from_secs(60);
const DEFAULT_MAX_ENTRIES: usize = 10_000;

type Tag = [u8; 32];

pub struct CredentialCache {
    /// `None` disables the cache (no randomness for a key, or a zero lifetime).
    key: Option<[u8; 32]>,
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<HashMap<Tag, Instant>>,
}

impl CredentialCache {
    pub fn new(ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        let key = (getrandom::fill(&mut key).is_ok() && !ttl.is_zero()).then_some(key);
        CredentialCache {
            key,
            ttl,
            max_entries: DEFAULT_MAX_ENTRIES,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// A cache that never remembers: every check pays argon2.
    pub fn disabled() -> Self {
        CredentialCache {
            key: None,
            ttl: Duration::ZERO,
            max_entries: 0,
            entries: Mutex::new(HashMap::new()),
        }
    }

    fn tag(&self, user_id: i64, login: &str, password: &str, stored_hash: &str) -> Option<Tag> {
        let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(self.key.as_ref()?).ok()?;
        // Length-prefixed fields: no two different inputs feed the same bytes.
        for field in [
            login.as_bytes(),
            password.as_bytes(),
            stored_hash.as_bytes(),
        ] {
            mac.update(&(field.len() as u64).to_le_bytes());
            mac.update(field);
        }
        mac.update(&user_id.to_le_bytes());
        Some(mac.finalize().into_bytes().into())
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Tag, Instant>> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Whether these credentials were verified against this very stored hash within `ttl`.
    pub fn verified(&self, user_id: i64, login: &str, password: &str, stored_hash: &str) -> bool {
        let Some(tag) = self.tag(user_id, login, password, stored_hash) else {
            return false;
        };
        let mut entries = self.lock();
        match entries.get(&tag) {
            Some(at) if at.elapsed() < self.ttl => true,
            Some(_) => {
                entries.remove(&tag);
                false
            }
            None => false,
        }
    }

    /// Remembers credentials that argon2 has just accepted.
    pub fn remember(&self, user_id: i64, login: &str, password: &str, stored_hash: &str) {
        let Some(tag) = self.tag(user_id, login, password, stored_hash) else {
            return;
        };
        let mut entries = self.lock();
        if entries.len() >= self.max_entries {
            let ttl = self.ttl;
            entries.retain(|_, at| at.elapsed() < ttl);
            if entries.len() >= self.max_entries {
                entries.clear();
            }
        }
        entries.insert(tag, Instant::now());
    }

    pub fn len(&self) -> usize {
        self.lock().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

impl Default for CredentialCache {
    fn default() -> Self {
        CredentialCache::new(DEFAULT_TTL)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matches_only_the_same_credentials_and_stored_hash() {
        let cache = CredentialCache::new(Duration::from_secs(60));
        cache.remember(1, "ann", "pw", "$argon2id$old");
        assert!(cache.verified(1, "ann", "pw", "$argon2id$old"));
        assert!(!cache.verified(1, "ann", "pw2", "$argon2id$old"));
        assert!(!cache.verified(1, "ann", "pw", "$argon2id$new"));
        assert!(!cache.verified(2, "ann", "pw", "$argon2id$old"));
        // Field boundaries matter: "ann"+"pw" is not "annp"+"w".
        assert!(!cache.verified(1, "annp", "w", "$argon2id$old"));
    }

    #[test]
    fn entries_expire_and_a_disabled_cache_forgets() {
        let cache = CredentialCache::new(Duration::from_millis(20));
        cache.remember(1, "ann", "pw", "h");
        std::thread::sleep(Duration::from_millis(40));
        assert!(!cache.verified(1, "ann", "pw", "h"));
        assert!(cache.is_empty());

        let off = CredentialCache::disabled();
        off.remember(1, "ann", "pw", "h");
        assert!(!off.verified(1, "ann", "pw", "h"));
    }

    #[test]
    fn stays_bounded() {
        let mut cache = CredentialCache::new(Duration::from_secs(60));
        cache.max_entries = 4;
        for i in 0..10 {
            cache.remember(i, "u", "p", "h");
        }
        assert!(cache.len() <= 4);
    }

    #[test]
    fn two_processes_do_not_share_tags() {
        let a = CredentialCache::new(Duration::from_secs(60));
        let b = CredentialCache::new(Duration::from_secs(60));
        assert_ne!(a.tag(1, "u", "p", "h"), b.tag(1, "u", "p", "h"));
    }
}
