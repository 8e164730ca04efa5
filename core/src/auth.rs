//! Who is calling: staff and client users with argon2 password hashes, sessions that expire
//! after an hour idle, and the [`Caller`] every func runs as.

use crate::clock;
use crate::doc::Level;
use crate::error::{FuncError, FuncResult};
use crate::store::{Connection, OptionalExtension, params};
use argon2::Argon2;
use argon2::password_hash::{PasswordHash, PasswordHasher, PasswordVerifier, SaltString};

pub mod cache;
pub use cache::CredentialCache;

/// Sessions end after this long without a call.
pub const SESSION_IDLE_SECS: i64 = 3600;
/// `last_seen` is written at most this often, so that reads stay reads.
const SESSION_TOUCH_SECS: i64 = 60;

/// The identity a func runs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Caller {
    pub login: String,
    pub user_id: Option<i64>,
    pub level: Level,
    /// The client a user-level caller belongs to.
    pub account_id: Option<i64>,
    pub ip: String,
    /// The staff login behind an `su` or `account.su` identity.
    pub su_from: Option<String>,
    pub session: Option<String>,
}

impl Caller {
    /// The local operator of the CLI and REPL: staff rights, no user row.
    pub fn superuser() -> Caller {
        Caller {
            login: "root".into(),
            user_id: None,
            level: Level::Admin,
            account_id: None,
            ip: "local".into(),
            su_from: None,
            session: None,
        }
    }

    /// Not logged in: only public funcs.
    pub fn anonymous(ip: &str) -> Caller {
        Caller {
            login: String::new(),
            user_id: None,
            level: Level::Public,
            account_id: None,
            ip: ip.into(),
            su_from: None,
            session: None,
        }
    }

    /// The name history rows record.
    pub fn history_name(&self) -> String {
        match (&self.su_from, self.login.is_empty()) {
            (Some(staff), _) => format!("{staff} as {}", self.login),
            (None, true) => "guest".into(),
            (None, false) => self.login.clone(),
        }
    }

    /// The key stored filters are kept under.
    pub fn filter_key(&self) -> &str {
        &self.login
    }
}

thread_local! {
    /// Hashes of the passwords of the call this thread is about to run, made before it took the
    /// writer (see [`with_prehashed`]).
    static PREHASHED: std::cell::RefCell<Vec<(String, String)>> =
        const { std::cell::RefCell::new(Vec::new()) };
}

/// Runs `f` with argon2 hashes of `passwords` made beforehand, so that a func hashing one of
/// them inside its write transaction ([`hash_password`]) takes the ready hash instead of
/// holding the writer for tens of milliseconds. Each ready hash is used at most once (every
/// stored hash keeps a salt of its own); a password not made ready is hashed on the spot.
pub fn with_prehashed<T>(passwords: &[&str], f: impl FnOnce() -> T) -> T {
    let ready: Vec<(String, String)> = passwords
        .iter()
        .filter_map(|p| Some((p.to_string(), hash_fresh(p).ok()?)))
        .collect();
    PREHASHED.with(|h| *h.borrow_mut() = ready);
    let result = f();
    PREHASHED.with(|h| h.borrow_mut().clear());
    result
}

/// An argon2 hash of `password` with a fresh salt, ready if [`with_prehashed`] made one.
pub fn hash_password(password: &str) -> FuncResult<String> {
    let ready = PREHASHED.with(|h| {
        let mut h = h.borrow_mut();
        let i = h.iter().position(|(p, _)| p == password)?;
        Some(h.swap_remove(i).1)
    });
    match ready {
        Some(hash) => Ok(hash),
        None => hash_fresh(password),
    }
}

fn hash_fresh(password: &str) -> FuncResult<String> {
    let mut salt_bytes = [0u8; 16];
    getrandom::fill(&mut salt_bytes).map_err(|e| FuncError::internal(format!("random: {e}")))?;
    let salt = SaltString::encode_b64(&salt_bytes)
        .map_err(|e| FuncError::internal(format!("salt: {e}")))?;
    Argon2::default()
        .hash_password(password.as_bytes(), &salt)
        .map(|h| h.to_string())
        .map_err(|e| FuncError::internal(format!("password hash: {e}")))
}

/// A stored hash that never verifies: a client created without a password cannot log in until
/// one is set.
pub const NO_PASSWORD: &str = "!";

/// A well-formed argon2id hash (the default parameters) that no password matches: checked
/// instead of a hash that is missing, unusable or not to be trusted, so that every failed
/// login costs one argon2 verification and its time tells nothing of which logins exist.
const DECOY_HASH: &str = "$argon2id$v=19$m=19456,t=2,p=1$ZGVjb3ktc2FsdC1iaWxs$ZGVjb3kgaGFzaCB0aGF0IG1hdGNoZXMgbm8gcGFzc3c";

/// Whether `password` matches `stored`. Costs one argon2 verification whatever `stored` is:
/// a hash that does not parse (e.g. [`NO_PASSWORD`]) is answered false after the decoy's.
pub fn verify_password(password: &str, stored: &str) -> bool {
    match PasswordHash::new(stored) {
        Ok(parsed) => Argon2::default()
            .verify_password(password.as_bytes(), &parsed)
            .is_ok(),
        Err(_) => {
            refuse_slowly(password);
            false
        }
    }
}

/// Spends what a password check costs, for a login that is refused without one (an unknown
/// login, a disabled user), so that refusals take the same time.
fn refuse_slowly(password: &str) {
    if let Ok(decoy) = PasswordHash::new(DECOY_HASH) {
        let _ = Argon2::default().verify_password(password.as_bytes(), &decoy);
    }
}

pub fn random_token(bytes: usize) -> FuncResult<String> {
    let mut buf = vec![0u8; bytes];
    getrandom::fill(&mut buf).map_err(|e| FuncError::internal(format!("random: {e}")))?;
    Ok(buf.iter().map(|b| format!("{b:02x}")).collect())
}

struct UserRow {
    id: i64,
    login: String,
    hash: String,
    level: Level,
    account_id: Option<i64>,
    enabled: bool,
}

/// How [`user_by`] finds the user.
#[derive(Clone, Copy)]
enum By<'a> {
    Login(&'a str),
    Id(i64),
}

/// The columns [`user_row`] reads, of the user `u`.
macro_rules! user_columns {
    () => {
        "u.id, u.login, u.password_hash, u.level = 'admin', u.account_id, \
         (u.enabled = 1 AND coalesce((SELECT status <> 3 FROM account WHERE id = u.account_id), TRUE))"
    };
}

macro_rules! user_query {
    ($clause:literal) => {
        concat!("SELECT ", user_columns!(), " FROM users u WHERE ", $clause)
    };
}

/// A user from the first columns of a row (see [`user_columns`]).
fn user_row(r: &crate::store::Row<'_>) -> crate::store::Result<UserRow> {
    Ok(UserRow {
        id: r.get(0)?,
        login: r.get(1)?,
        hash: r.get(2)?,
        level: if r.get(3)? { Level::Admin } else { Level::User },
        account_id: r.get(4)?,
        enabled: r.get(5)?,
    })
}

fn user_by(conn: &Connection, by: By<'_>) -> FuncResult<Option<UserRow>> {
    // One static statement per key: the statement cache finds it without formatting SQL.
    let found = match by {
        // No login holds a NUL (`%00`), and PostgreSQL's text cannot even be compared with one.
        By::Login(login) if login.contains('\0') => return Ok(None),
        By::Login(login) => conn
            .prepare_cached(user_query!("u.login = ?1"))?
            .query_row([login], user_row),
        By::Id(id) => conn
            .prepare_cached(user_query!("u.id = ?1"))?
            .query_row([id], user_row),
    };
    Ok(found.optional()?)
}

fn caller_of(user: UserRow, ip: &str) -> Caller {
    caller_known(known_of(&user), ip)
}

fn known_of(user: &UserRow) -> cache::Known {
    cache::Known {
        user_id: user.id,
        login: user.login.clone(),
        level: user.level,
        account_id: user.account_id,
    }
}

/// Checks a login and password. Every failure answers the same `auth` error, so that it does
/// not tell which logins exist.
pub fn login(conn: &Connection, login: &str, password: &str, ip: &str) -> FuncResult<Caller> {
    verify_login(conn, login, password, ip).map(|v| v.caller)
}

/// A login and password that passed argon2, with the stored hash they were checked against.
pub struct Verified {
    pub caller: Caller,
    pub user_id: i64,
    hash: String,
}

/// [`login`], keeping what [`still_valid`] needs to tell, in a later transaction, that nothing
/// changed meanwhile: how `auth` checks the password on a read snapshot (argon2 is slow, and no
/// write must wait for it) before it opens the session in a write.
pub fn verify_login(
    conn: &Connection,
    login: &str,
    password: &str,
    ip: &str,
) -> FuncResult<Verified> {
    let Some(user) = user_by(conn, By::Login(login))?.filter(|u| u.enabled) else {
        refuse_slowly(password);
        return Err(wrong_login());
    };
    if !verify_password(password, &user.hash) {
        return Err(wrong_login());
    }
    let (user_id, hash) = (user.id, user.hash.clone());
    Ok(Verified {
        caller: caller_of(user, ip),
        user_id,
        hash,
    })
}

/// Whether the verified user is still enabled, with the very password hash it was verified
/// against (a password change or reset in between writes a new hash with a new salt).
pub fn still_valid(conn: &Connection, verified: &Verified) -> FuncResult<bool> {
    Ok(user_by(conn, By::Id(verified.user_id))?
        .is_some_and(|u| u.enabled && u.hash == verified.hash))
}

/// The one answer to every failed login.
pub fn wrong_login() -> FuncError {
    FuncError::auth("Wrong login or password")
}

/// [`login`] for credentials sent with every request (`authinfo`): argon2 runs only when
/// `cache` has not verified this login and password against this very stored hash lately, and
/// the user row is read again unless the cache knew the caller at the auth epoch this
/// transaction reads (so that a disabled user, a deleted client or a new password is seen at
/// once: each bumps the epoch).
pub fn login_cached(
    conn: &Connection,
    cache: &CredentialCache,
    login: &str,
    password: &str,
    ip: &str,
) -> FuncResult<Caller> {
    let epoch = auth_epoch(conn)?;
    if let Some(known) = cache.known(login, password, epoch) {
        return Ok(caller_known(known, ip));
    }
    let Some(user) = user_by(conn, By::Login(login))?.filter(|u| u.enabled) else {
        refuse_slowly(password);
        return Err(wrong_login());
    };
    let verified = match cache.verified_at(user.id, login, password, &user.hash) {
        Some(at) => at,
        None if verify_password(password, &user.hash) => {
            cache.remember(user.id, login, password, &user.hash)
        }
        None => return Err(wrong_login()),
    };
    cache.learn(login, password, epoch, known_of(&user), verified);
    Ok(caller_of(user, ip))
}

/// `authinfo` credentials checked without argon2: the caller when they were verified against
/// this user's stored hash within the cache's lifetime (and the user is enabled); `None` when
/// only the slow check can tell (a cache miss, an unknown or disabled user).
pub fn login_if_cached(
    conn: &Connection,
    cache: &CredentialCache,
    epoch: Option<i64>,
    login: &str,
    password: &str,
    ip: &str,
) -> FuncResult<Option<Caller>> {
    let epoch = match epoch {
        Some(epoch) => epoch,
        None => auth_epoch(conn)?,
    };
    if let Some(known) = cache.known(login, password, epoch) {
        return Ok(Some(caller_known(known, ip)));
    }
    let Some(user) = user_by(conn, By::Login(login))? else {
        return Ok(None);
    };
    if !user.enabled {
        return Ok(None);
    }
    let Some(verified) = cache.verified_at(user.id, login, password, &user.hash) else {
        return Ok(None);
    };
    cache.learn(login, password, epoch, known_of(&user), verified);
    Ok(Some(caller_of(user, ip)))
}

/// The caller these `authinfo` credentials are, as the credential cache knows them without
/// the database, with the auth epoch that answer holds at (see [`CredentialCache::known_at`]).
pub fn caller_known_at(
    cache: &CredentialCache,
    login: &str,
    password: &str,
    ip: &str,
) -> Option<(Caller, i64)> {
    let (epoch, known) = cache.known_at(login, password)?;
    Some((caller_known(known, ip), epoch))
}

/// The auth epoch (migration 4) as of this transaction: it moves whenever a user or client
/// changes in a way that could change who a login and password are.
pub fn auth_epoch(conn: &Connection) -> FuncResult<i64> {
    Ok(conn
        .prepare_cached(EPOCH_SQL)?
        .query_row([], |r| r.get(0))?)
}

/// The auth epoch's query.
pub const EPOCH_SQL: &str = "SELECT n FROM auth_epoch WHERE id = 1";

fn caller_known(known: cache::Known, ip: &str) -> Caller {
    Caller {
        login: known.login,
        user_id: Some(known.user_id),
        level: known.level,
        account_id: known.account_id,
        ip: ip.into(),
        su_from: None,
        session: None,
    }
}

/// Acts as another user (`su=LOGIN` or `--as LOGIN`); only staff may.
pub fn switch_user(conn: &Connection, staff: &Caller, login: &str) -> FuncResult<Caller> {
    if staff.level != Level::Admin {
        return Err(FuncError::access(
            "su",
            "Only staff may act as another user",
        ));
    }
    let user =
        user_by(conn, By::Login(login))?.ok_or_else(|| FuncError::missed_object("user", login))?;
    let mut caller = caller_of(user, &staff.ip);
    caller.su_from = Some(staff.login.clone());
    Ok(caller)
}

/// Opens a session for `user_id` (acting for `su_from` when staff drilled down).
pub fn create_session(
    conn: &Connection,
    user_id: i64,
    su_from: Option<i64>,
    ip: &str,
) -> FuncResult<String> {
    let id = random_token(16)?;
    conn.prepare_cached(
        "INSERT INTO session (id, user_id, su_from, created, last_seen, ip) VALUES (?1, ?2, ?3, ?4, ?5, ?6)",
    )?
    .execute(params![id, user_id, su_from, clock::now(), clock::unix_now(), ip])?;
    // Expired sessions are swept whenever a new one starts.
    conn.prepare_cached("DELETE FROM session WHERE last_seen < ?1")?
        .execute([clock::unix_now() - SESSION_IDLE_SECS])?;
    Ok(id)
}

/// The caller behind a session id. `None` when the session does not exist or expired; the
/// returned flag says whether `last_seen` is due to be written.
pub fn resolve_session(
    conn: &Connection,
    sid: &str,
    ip: &str,
) -> FuncResult<Option<(Caller, bool)>> {
    // The session, its user and the staff login behind an `su` session, in one statement: a
    // session sent with every request costs one lookup.
    const SESSION_SQL: &str = concat!(
        "SELECT ",
        user_columns!(),
        ", s.last_seen, (SELECT login FROM users WHERE id = s.su_from) \
         FROM session s JOIN users u ON u.id = s.user_id WHERE s.id = ?1"
    );
    // No session id holds a NUL (`%00`): an unknown session, on either backend.
    if sid.contains('\0') {
        return Ok(None);
    }
    let row = conn
        .prepare_cached(SESSION_SQL)?
        .query_row([sid], |r| {
            Ok((user_row(r)?, r.get::<i64>(6)?, r.get::<Option<String>>(7)?))
        })
        .optional()?;
    let Some((user, last_seen, su_from)) = row else {
        return Ok(None);
    };
    let now = clock::unix_now();
    if now - last_seen > SESSION_IDLE_SECS || !user.enabled {
        return Ok(None);
    }
    let mut caller = caller_of(user, ip);
    caller.su_from = su_from;
    caller.session = Some(sid.to_string());
    Ok(Some((caller, now - last_seen > SESSION_TOUCH_SECS)))
}

pub fn touch_session(conn: &Connection, sid: &str) -> FuncResult<()> {
    conn.prepare_cached("UPDATE session SET last_seen = ?2 WHERE id = ?1")?
        .execute(params![sid, clock::unix_now()])?;
    Ok(())
}

pub fn end_session(conn: &Connection, sid: &str) -> FuncResult<()> {
    conn.prepare_cached("DELETE FROM session WHERE id = ?1")?
        .execute([sid])?;
    Ok(())
}

/// Ends every session of a user (password change, client deleted).
pub fn end_user_sessions(conn: &Connection, user_id: i64) -> FuncResult<()> {
    conn.prepare_cached("DELETE FROM session WHERE user_id = ?1 OR su_from = ?1")?
        .execute([user_id])?;
    Ok(())
}

/// The id of the user with this login, if any.
pub fn user_id(conn: &Connection, login: &str) -> FuncResult<Option<i64>> {
    Ok(conn
        .prepare_cached("SELECT id FROM users WHERE login = ?1")?
        .query_row([login], |r| r.get(0))
        .optional()?)
}

/// What `billhost init` did about the staff user `admin`.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminSetup {
    Created { password: String, generated: bool },
    PasswordReset,
    Kept,
}

/// Creates the staff user `login` (with `password`, or a generated one), or resets its password
/// when it exists and a password is given.
pub fn ensure_staff(
    conn: &Connection,
    login: &str,
    password: Option<&str>,
) -> FuncResult<AdminSetup> {
    ensure_staff_with(conn, login, password, || random_token(9))
}

/// [`ensure_staff`], taking the password to generate from `generate` (called only when the
/// user is created without one).
pub fn ensure_staff_with(
    conn: &Connection,
    login: &str,
    password: Option<&str>,
    generate: impl FnOnce() -> FuncResult<String>,
) -> FuncResult<AdminSetup> {
    match (user_id(conn, login)?, password) {
        (Some(id), Some(pw)) => {
            conn.prepare_cached("UPDATE users SET password_hash = ?2, level = 'admin', account_id = NULL WHERE id = ?1")?
                .execute(params![id, hash_password(pw)?])?;
            end_user_sessions(conn, id)?;
            Ok(AdminSetup::PasswordReset)
        }
        (Some(_), None) => Ok(AdminSetup::Kept),
        (None, pw) => {
            let (password, generated) = match pw {
                Some(p) => (p.to_string(), false),
                None => (generate()?, true),
            };
            conn.prepare_cached(
                "INSERT INTO users (login, password_hash, level, created) VALUES (?1, ?2, 'admin', ?3)",
            )?
            .execute(params![login, hash_password(&password)?, clock::now()])?;
            Ok(AdminSetup::Created {
                password,
                generated,
            })
        }
    }
}

/// How long a one-time login key (`session.newkey`) stays usable, in seconds.
pub const LOGIN_KEY_SECS: i64 = 15 * 60;

/// The shortest key `session.newkey` takes from its caller.
pub const LOGIN_KEY_MIN_LEN: usize = 16;

/// Stores a one-time login key for the enabled user `login` (a new random one when `key` is
/// `None`) and answers it. Expired keys are swept here.
pub fn new_login_key(conn: &Connection, login: &str, key: Option<&str>) -> FuncResult<String> {
    let user = user_by(conn, By::Login(login))?
        .filter(|u| u.enabled)
        .ok_or_else(|| FuncError::missed_object("user", login))?;
    let key = match key {
        Some(k) => {
            if k.chars().count() < LOGIN_KEY_MIN_LEN || !k.chars().all(|c| c.is_ascii_graphic()) {
                return Err(FuncError::value(
                    "key",
                    "",
                    format!(
                        "A key is at least {LOGIN_KEY_MIN_LEN} printable ASCII characters without spaces"
                    ),
                ));
            }
            k.to_string()
        }
        None => random_token(16)?,
    };
    let now = clock::unix_now();
    conn.prepare_cached("DELETE FROM session_key WHERE expires < ?1")?
        .execute([now])?;
    let taken: bool = conn
        .prepare_cached("SELECT EXISTS (SELECT 1 FROM session_key WHERE token = ?1)")?
        .query_row([key.as_str()], |r| r.get(0))?;
    if taken {
        return Err(FuncError::exists("key", "", "The key is already in use"));
    }
    conn.prepare_cached(
        "INSERT INTO session_key (token, user_id, created, expires) VALUES (?1, ?2, ?3, ?4)",
    )?
    .execute(params![key, user.id, clock::now(), now + LOGIN_KEY_SECS])?;
    Ok(key)
}

/// Uses a one-time login key: the key is deleted in the transaction that opens the session, and
/// answers the user it logs in (with `login`, it must be that user's). An unknown, used or
/// expired key, or a user disabled since, is the one `auth` error.
pub fn use_login_key(
    conn: &Connection,
    key: &str,
    login: Option<&str>,
) -> FuncResult<(i64, Level)> {
    let row: Option<(i64, i64)> = conn
        .prepare_cached("DELETE FROM session_key WHERE token = ?1 RETURNING user_id, expires")?
        .query_row([key], |r| Ok((r.get(0)?, r.get(1)?)))
        .optional()?;
    let refused = || FuncError::auth("Wrong or expired key");
    let Some((user_id, expires)) = row else {
        return Err(refused());
    };
    if expires < clock::unix_now() {
        return Err(refused());
    }
    let user = user_by(conn, By::Id(user_id))?
        .filter(|u| u.enabled)
        .ok_or_else(refused)?;
    if login.is_some_and(|l| !l.eq_ignore_ascii_case(&user.login)) {
        return Err(refused());
    }
    Ok((user.id, user.level))
}

#[cfg(test)]
mod prehash_tests {
    use super::*;

    #[test]
    fn the_decoy_hash_is_a_real_argon2_hash_of_the_default_parameters() {
        let decoy = PasswordHash::new(DECOY_HASH).expect("parses");
        let real = hash_fresh("anything").expect("hash");
        let real = PasswordHash::new(&real).expect("parses");
        assert_eq!(decoy.algorithm, real.algorithm);
        assert_eq!(decoy.params, real.params);
        assert_eq!(
            decoy.hash.map(|h| h.len()),
            real.hash.map(|h| h.len()),
            "same output length, same cost"
        );
        assert!(!verify_password("", DECOY_HASH));
    }

    fn ready() -> usize {
        PREHASHED.with(|h| h.borrow().len())
    }

    #[test]
    fn a_ready_hash_is_used_once_and_the_rest_hashed_on_the_spot() {
        with_prehashed(&["Secret123", "Other4567"], || {
            assert_eq!(ready(), 2);
            let first = hash_password("Secret123").expect("hash");
            assert_eq!(ready(), 1, "the ready hash was taken");
            let second = hash_password("Secret123").expect("hash");
            assert_eq!(ready(), 1, "the second one was made on the spot");
            assert_ne!(first, second, "each stored hash has a salt of its own");
            assert!(verify_password("Secret123", &first));
            assert!(verify_password("Secret123", &second));
        });
        assert_eq!(ready(), 0, "nothing outlives the call");
    }
}
