//! The cache of verified `authinfo` credentials against a real database: it answers instead of
//! argon2, and it never outlives the password row it was verified against.

mod common;

use billhost::auth::{self, CredentialCache};
use common::Fixture;
use std::time::Duration;

fn user_row(fx: &Fixture, login: &str) -> (i64, String) {
    let db = rusqlite::Connection::open(fx.dir.db()).expect("open db");
    db.query_row(
        "SELECT id, password_hash FROM users WHERE login = ?1",
        [login],
        |r| Ok((r.get(0)?, r.get(1)?)),
    )
    .expect("user row")
}

fn login(fx: &Fixture, cache: &CredentialCache, user: &str, password: &str) -> bool {
    fx.engine
        .read(|c| auth::login_cached(c, cache, user, password, "127.0.0.1"))
        .is_ok()
}

#[test]
fn a_cached_credential_skips_argon2_until_the_password_row_changes() {
    let fx = Fixture::new("credcache");
    let ann = fx.register("ann@example.com");
    let cache = CredentialCache::new(Duration::from_secs(60));

    assert!(!login(&fx, &cache, "ann@example.com", "wrong"));
    assert!(cache.is_empty(), "a failure is never remembered");
    assert!(login(&fx, &cache, "ann@example.com", "Secret123"));
    assert_eq!(cache.len(), 1);

    // Proof that the cache answers instead of argon2: a tag planted for a password argon2
    // would refuse is accepted, for that very stored hash only.
    let (id, hash) = user_row(&fx, "ann@example.com");
    cache.remember(id, "ann@example.com", "planted", &hash);
    assert!(login(&fx, &cache, "ann@example.com", "planted"));

    // A password change writes a new hash: every earlier tag stops matching at once.
    fx.ok(
        "account.edit",
        &[
            ("elid", &ann.to_string()),
            ("sok", "ok"),
            ("passwd", "NewSecret456"),
        ],
    );
    assert!(!login(&fx, &cache, "ann@example.com", "planted"));
    assert!(!login(&fx, &cache, "ann@example.com", "Secret123"));
    assert!(login(&fx, &cache, "ann@example.com", "NewSecret456"));

    // A disabled client is refused although its credentials are cached.
    fx.ok("account.delete", &[("elid", &ann.to_string())]);
    assert!(!login(&fx, &cache, "ann@example.com", "NewSecret456"));
}

#[test]
fn the_engine_answers_repeated_authinfo_from_the_cache() {
    let fx = Fixture::new("credcache-engine");
    fx.register("ann@example.com");
    let params = billhost::Params::from_pairs([("authinfo", "ann@example.com:Secret123")]);
    let first = std::time::Instant::now();
    fx.engine
        .authenticate(&params, None, "127.0.0.1")
        .expect("first");
    let argon2 = first.elapsed();
    let repeated = std::time::Instant::now();
    for _ in 0..20 {
        fx.engine
            .authenticate(&params, None, "127.0.0.1")
            .expect("repeated");
    }
    let per_call = repeated.elapsed() / 20;
    // Loose on purpose (shared CI machines): a cached check is far cheaper than argon2.
    assert!(
        per_call < argon2 / 2,
        "cached authinfo took {per_call:?}, argon2 {argon2:?}"
    );
}
