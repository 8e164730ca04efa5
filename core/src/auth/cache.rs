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
//!
//! Beside those, the cache knows *who* recently verified credentials are, as of an auth epoch
//! (migration 4: a counter that a trigger bumps in the same transaction as any change to a
//! user's login, password hash, level, client or enabled flag, to a client's status, or any
//! deletion of either). While the epoch a request's transaction reads is the one the caller
//! was known at, nothing that could change the answer has been committed since, by this
//! process or any other, so the user row need not be read again ([`CredentialCache::known`]).
//! Those entries are keyed by a tag over the login and password alone (the stored hash is what
//! they save reading) and expire with the verification they came from.

use crate::doc::Level;
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

/// Who verified credentials are, as of an auth epoch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Known {
    pub user_id: i64,
    /// The login as stored (a request may spell it in another case).
    pub login: String,
    pub level: Level,
    pub account_id: Option<i64>,
}

#[derive(Default)]
struct Entries {
    /// Verified against a stored hash: tag over (user id, login, password, hash) → when.
    verified: HashMap<Tag, Instant>,
    /// Known callers: tag over (login, password) → (epoch, caller, when verified).
    known: HashMap<Tag, (i64, Known, Instant)>,
}

pub struct CredentialCache {
    /// `None` disables the cache (no randomness for a key, or a zero lifetime).
    key: Option<[u8; 32]>,
    ttl: Duration,
    max_entries: usize,
    entries: Mutex<Entries>,
}

impl CredentialCache {
    pub fn new(ttl: Duration) -> Self {
        let mut key = [0u8; 32];
        let key = (getrandom::fill(&mut key).is_ok() && !ttl.is_zero()).then_some(key);
        CredentialCache {
            key,
            ttl,
            max_entries: DEFAULT_MAX_ENTRIES,
            entries: Mutex::default(),
        }
    }

    /// A cache that never remembers: every check pays argon2.
    pub fn disabled() -> Self {
        CredentialCache {
            key: None,
            ttl: Duration::ZERO,
            max_entries: 0,
            entries: Mutex::default(),
        }
    }

    /// The MAC of length-prefixed `fields` (no two different inputs feed the same bytes) and
    /// `user_id`; a known caller's tag has no user id and a different first field count.
    fn mac(&self, fields: &[&[u8]], user_id: Option<i64>) -> Option<Tag> {
        let mut mac = <Blake2bMac<U32> as KeyInit>::new_from_slice(self.key.as_ref()?).ok()?;
        mac.update(&(fields.len() as u64).to_le_bytes());
        for field in fields {
            mac.update(&(field.len() as u64).to_le_bytes());
            mac.update(field);
        }
        if let Some(id) = user_id {
            mac.update(&id.to_le_bytes());
        }
        Some(mac.finalize().into_bytes().into())
    }

    fn tag(&self, user_id: i64, login: &str, password: &str, stored_hash: &str) -> Option<Tag> {
        let fields = [
            login.as_bytes(),
            password.as_bytes(),
            stored_hash.as_bytes(),
        ];
        self.mac(&fields, Some(user_id))
    }

    fn known_tag(&self, login: &str, password: &str) -> Option<Tag> {
        self.mac(&[login.as_bytes(), password.as_bytes()], None)
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fresh(&self, at: Instant) -> bool {
        at.elapsed() < self.ttl
    }

    /// When these credentials were verified against this very stored hash, if within `ttl`.
    pub fn verified_at(
        &self,
        user_id: i64,
        login: &str,
        password: &str,
        stored_hash: &str,
    ) -> Option<Instant> {
        let tag = self.tag(user_id, login, password, stored_hash)?;
        let mut entries = self.lock();
        match entries.verified.get(&tag) {
            Some(&at) if self.fresh(at) => Some(at),
            Some(_) => {
                entries.verified.remove(&tag);
                None
            }
            None => None,
        }
    }

    /// Whether these credentials were verified against this very stored hash within `ttl`.
    pub fn verified(&self, user_id: i64, login: &str, password: &str, stored_hash: &str) -> bool {
        self.verified_at(user_id, login, password, stored_hash)
            .is_some()
    }

    /// Remembers credentials that argon2 has just accepted; answers the verification's time.
    pub fn remember(
        &self,
        user_id: i64,
        login: &str,
        password: &str,
        stored_hash: &str,
    ) -> Instant {
        let now = Instant::now();
        if let Some(tag) = self.tag(user_id, login, password, stored_hash) {
            let mut entries = self.lock();
            let verified = &mut entries.verified;
            self.make_room(verified, |at| *at);
            verified.insert(tag, now);
        }
        now
    }

    /// Keeps a map under `max_entries`: drops what expired, or everything if that is not
    /// enough.
    fn make_room<V>(&self, map: &mut HashMap<Tag, V>, at: impl Fn(&V) -> Instant) {
        if map.len() >= self.max_entries {
            map.retain(|_, v| self.fresh(at(v)));
            if map.len() >= self.max_entries {
                map.clear();
            }
        }
    }

    /// Who these credentials are, if they were verified within `ttl` and known at `epoch`, the
    /// auth epoch the caller's transaction reads.
    pub fn known(&self, login: &str, password: &str, epoch: i64) -> Option<Known> {
        let tag = self.known_tag(login, password)?;
        let mut entries = self.lock();
        match entries.known.get(&tag) {
            Some((at_epoch, known, at)) if *at_epoch == epoch && self.fresh(*at) => {
                Some(known.clone())
            }
            Some(_) => {
                entries.known.remove(&tag);
                None
            }
            None => None,
        }
    }

    /// Who these credentials are and the auth epoch they are known at, if they were verified
    /// within `ttl`: trusted only by a transaction that reads that same epoch (the server's
    /// writer checks it in the write's own transaction).
    pub fn known_at(&self, login: &str, password: &str) -> Option<(i64, Known)> {
        let tag = self.known_tag(login, password)?;
        let entries = self.lock();
        match entries.known.get(&tag) {
            Some((epoch, known, at)) if self.fresh(*at) => Some((*epoch, known.clone())),
            _ => None,
        }
    }

    /// Learns who credentials `verified` at that time (on the user row read at auth epoch
    /// `epoch`) are; they stay known as long as their verification does.
    pub fn learn(&self, login: &str, password: &str, epoch: i64, who: Known, verified: Instant) {
        let Some(tag) = self.known_tag(login, password) else {
            return;
        };
        let mut entries = self.lock();
        let known = &mut entries.known;
        self.make_room(known, |(_, _, at)| *at);
        known.insert(tag, (epoch, who, verified));
    }

    pub fn len(&self) -> usize {
        self.lock().verified.len()
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
