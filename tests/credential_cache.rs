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

fn if_cached(fx: &Fixture, cache: &CredentialCache, user: &str, password: &str) -> bool {
    fx.engine
        .read(|c| auth::login_if_cached(c, cache, None, user, password, "127.0.0.1"))
        .expect("read")
        .is_some()
}

fn epoch(db: &rusqlite::Connection) -> i64 {
    db.query_row("SELECT n FROM auth_epoch", [], |r| r.get(0))
        .expect("epoch")
}

#[test]
fn a_known_caller_skips_the_user_row_until_the_auth_epoch_moves() {
    let fx = Fixture::new("credcache-epoch");
    let ann = fx.register("ann@example.com");
    let cache = CredentialCache::new(Duration::from_secs(60));
    // Another connection, as another process (`billhost call`, the sqlite3 shell) would write.
    let db = rusqlite::Connection::open(fx.dir.db()).expect("open db");
    let (login_, pass) = ("ann@example.com", "Secret123");
    assert!(login(&fx, &cache, login_, pass), "argon2, then known");

    // Changes that cannot change who ann is leave the epoch, and the known caller, alone.
    let before = epoch(&db);
    db.execute_batch(&format!(
        "UPDATE users SET realname = 'Ann' WHERE login = '{login_}';
         UPDATE account SET name = 'Ann Ltd' WHERE id = {ann};"
    ))
    .expect("unrelated changes");
    assert_eq!(epoch(&db), before);
    assert!(if_cached(&fx, &cache, login_, pass));

    // Each change that could is seen by the very next request, made by whichever connection.
    let changes = [
        (
            "UPDATE users SET enabled = 0 WHERE login = ?1",
            "UPDATE users SET enabled = 1 WHERE login = ?1",
        ),
        (
            "UPDATE account SET status = 3 WHERE id = (SELECT account_id FROM users WHERE login = ?1)",
            "UPDATE account SET status = 1 WHERE id = (SELECT account_id FROM users WHERE login = ?1)",
        ),
        ("UPDATE users SET password_hash = '!' WHERE login = ?1", ""),
    ];
    for (change, undo) in changes {
        let hash: String = db
            .query_row(
                "SELECT password_hash FROM users WHERE login = ?1",
                [login_],
                |r| r.get(0),
            )
            .expect("hash");
        let at = epoch(&db);
        db.execute(change, [login_]).expect(change);
        assert!(epoch(&db) > at, "{change} moves the epoch");
        assert!(!if_cached(&fx, &cache, login_, pass), "{change} is seen");
        assert!(!login(&fx, &cache, login_, pass), "{change} is seen");
        if !undo.is_empty() {
            db.execute(undo, [login_]).expect(undo);
        }
        db.execute(
            "UPDATE users SET password_hash = ?2 WHERE login = ?1",
            [login_, hash.as_str()],
        )
        .expect("restore");
        assert!(login(&fx, &cache, login_, pass), "after {change} is undone");
    }

    // What stands between a known caller and a stale row is the epoch: with its trigger gone,
    // a disabled user would still be let in. (This is why every change goes through SQL that
    // the triggers see; nothing in billhost writes users or clients around them.)
    db.execute_batch("DROP TRIGGER users_auth_epoch_update")
        .expect("drop trigger");
    db.execute("UPDATE users SET enabled = 0 WHERE login = ?1", [login_])
        .expect("disable");
    assert!(if_cached(&fx, &cache, login_, pass));

    // Deleting the user moves it too.
    let at = epoch(&db);
    db.execute_batch(&format!(
        "DELETE FROM session; DELETE FROM users WHERE login = '{login_}';"
    ))
    .expect("delete user");
    assert!(epoch(&db) > at);
    assert!(!if_cached(&fx, &cache, login_, pass));
}
