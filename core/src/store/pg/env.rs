//! libpq's defaults for what a connection string leaves out, so that an operator's `PG*`
//! variables and password file work as they do for `psql`:
//!
//! | left out | taken from | then |
//! |---|---|---|
//! | host | `PGHOST` (a list, `/dir` a socket folder), `PGHOSTADDR` | the socket folder `/var/run/postgresql` if there is one, else `localhost` |
//! | port | `PGPORT` (a list) | 5432 |
//! | user | `PGUSER` | the user running billhost |
//! | dbname | `PGDATABASE` | the user name |
//! | password | `PGPASSWORD`, then the password file (`PGPASSFILE`, else `~/.pgpass`) | none |
//! | `sslmode`, `sslrootcert`, `sslcert`, `sslkey` | `PGSSLMODE`, `PGSSLROOTCERT`, `PGSSLCERT`, `PGSSLKEY` | `prefer`, `~/.postgresql/…` |
//! | `target_session_attrs`, `application_name`, `connect_timeout`, `options`, `channel_binding`, `load_balance_hosts` | `PGTARGETSESSIONATTRS`, `PGAPPNAME`, `PGCONNECT_TIMEOUT`, `PGOPTIONS`, `PGCHANNELBINDING`, `PGLOADBALANCEHOSTS` | the client's defaults |
//!
//! A variable set to the empty string counts as unset. The password file is read as libpq
//! reads it (`host:port:database:user:password` lines, `*` matching anything, `\:` and `\\`
//! escapes, `#` comments; a socket in the default folder matches `localhost`), and is skipped
//! with a warning when it is not a plain file or others than its owner may read it. The client
//! keeps one password for all the hosts of a connection string: the first host with a matching
//! line gives it.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use tokio_postgres::Config;
use tokio_postgres::config::Host;

/// Reads one variable (the process environment, or a test's map).
pub(super) type Lookup<'a> = &'a dyn Fn(&str) -> Option<String>;

/// The process environment, an empty value counting as unset.
pub(super) fn process(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.is_empty())
}

/// The parameters written as `key=value` (in a URL's query or libpq's keyword form) that a
/// variable stands in for, in the order they are added.
pub(super) const PARAMETERS: &[(&str, &str)] = &[
    ("sslmode", "PGSSLMODE"),
    ("sslrootcert", "PGSSLROOTCERT"),
    ("sslcert", "PGSSLCERT"),
    ("sslkey", "PGSSLKEY"),
    ("target_session_attrs", "PGTARGETSESSIONATTRS"),
    ("application_name", "PGAPPNAME"),
    ("connect_timeout", "PGCONNECT_TIMEOUT"),
    ("options", "PGOPTIONS"),
    ("channel_binding", "PGCHANNELBINDING"),
    ("load_balance_hosts", "PGLOADBALANCEHOSTS"),
];

/// libpq's default socket folder on Debian.
const SOCKET_DIR: &str = "/var/run/postgresql";
const DEFAULT_PORT: u16 = 5432;

/// Fills in the host, port, user, database and password that `config` (parsed from the
/// connection string) lacks, from `env` and the password file. Warnings about the password
/// file go to stderr, once per process.
pub(super) fn fill(config: &mut Config, env: Lookup<'_>) -> Result<(), String> {
    if config.get_hosts().is_empty() && config.get_hostaddrs().is_empty() {
        if let Some(hosts) = env("PGHOST") {
            for host in hosts.split(',') {
                config.host(if host.is_empty() {
                    default_host()
                } else {
                    host
                });
            }
        } else if let Some(addrs) = env("PGHOSTADDR") {
            for addr in addrs.split(',') {
                let ip = addr
                    .trim()
                    .parse()
                    .map_err(|_| format!("PGHOSTADDR={addrs}: {addr:?} is not an IP address"))?;
                config.hostaddr(ip);
            }
        } else {
            config.host(default_host());
        }
    }
    if config.get_ports().is_empty()
        && let Some(ports) = env("PGPORT")
    {
        for port in ports.split(',') {
            let port = match port.trim() {
                "" => DEFAULT_PORT,
                p => p
                    .parse()
                    .map_err(|_| format!("PGPORT={ports}: {p:?} is not a port number"))?,
            };
            config.port(port);
        }
    }
    if config.get_user().is_none()
        && let Some(user) = env("PGUSER")
    {
        config.user(user);
    }
    if config.get_dbname().is_none()
        && let Some(dbname) = env("PGDATABASE")
    {
        config.dbname(dbname);
    }
    if config.get_password().is_none() {
        if let Some(password) = env("PGPASSWORD") {
            config.password(password);
        } else if let Some(password) = from_file(config, env) {
            config.password(password);
        }
    }
    Ok(())
}

fn default_host() -> &'static str {
    if Path::new(SOCKET_DIR).is_dir() {
        SOCKET_DIR
    } else {
        "localhost"
    }
}

/// The password file's password for the first of `config`'s hosts that has a line.
fn from_file(config: &Config, env: Lookup<'_>) -> Option<String> {
    let path = match env("PGPASSFILE") {
        Some(p) => PathBuf::from(p),
        None => PathBuf::from(env("HOME")?).join(".pgpass"),
    };
    let text = readable(&path)?;
    let user = config
        .get_user()
        .map(str::to_string)
        .or_else(|| whoami::username().ok())
        .unwrap_or_default();
    let dbname = config.get_dbname().unwrap_or(&user).to_string();
    let ports = config.get_ports();
    let hosts: Vec<String> = if config.get_hosts().is_empty() {
        config
            .get_hostaddrs()
            .iter()
            .map(|a| a.to_string())
            .collect()
    } else {
        config
            .get_hosts()
            .iter()
            .map(|h| match h {
                Host::Tcp(name) => name.clone(),
                #[cfg(unix)]
                Host::Unix(dir) if dir == Path::new(SOCKET_DIR) => "localhost".to_string(),
                #[cfg(unix)]
                Host::Unix(dir) => dir.display().to_string(),
            })
            .collect()
    };
    hosts.iter().enumerate().find_map(|(i, host)| {
        let port = match ports {
            [] => DEFAULT_PORT,
            [one] => *one,
            many => many.get(i).copied().unwrap_or(DEFAULT_PORT),
        };
        lookup(&text, host, &port.to_string(), &dbname, &user)
    })
}

/// The password file's text, or `None` (with a warning where it exists but may not be used).
fn readable(path: &Path) -> Option<String> {
    static WARNED: AtomicBool = AtomicBool::new(false);
    let warn = |why: &str| {
        if !WARNED.swap(true, Ordering::Relaxed) {
            eprintln!("billhost: the password file {} {why}", path.display());
        }
    };
    let meta = std::fs::metadata(path).ok()?;
    if !meta.is_file() {
        warn("is not a plain file; it is not read");
        return None;
    }
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if meta.permissions().mode() & 0o077 != 0 {
            warn("may be read by others than its owner; it is not read (chmod 600 it)");
            return None;
        }
    }
    match std::fs::read_to_string(path) {
        Ok(text) => Some(text),
        Err(e) => {
            warn(&format!("cannot be read ({e})"));
            None
        }
    }
}

/// The password of the first line of a password file that matches.
pub(super) fn lookup(
    text: &str,
    host: &str,
    port: &str,
    dbname: &str,
    user: &str,
) -> Option<String> {
    let wanted = [host, port, dbname, user];
    text.lines()
        .map(|l| l.strip_suffix('\r').unwrap_or(l))
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .find_map(|line| {
            let fields = fields(line)?;
            fields
                .iter()
                .zip(wanted)
                .all(|(field, want)| field == "*" || field == want)
                .then(|| fields[4].clone())
        })
}

/// A line's five fields, unescaped: four up to a `:` each, the password the rest of the line.
fn fields(line: &str) -> Option<[String; 5]> {
    let mut out: [String; 5] = Default::default();
    let mut field = 0;
    let mut chars = line.chars();
    while let Some(c) = chars.next() {
        match c {
            '\\' => out[field].push(chars.next().unwrap_or('\\')),
            ':' if field < 4 => field += 1,
            c => out[field].push(c),
        }
    }
    (field == 4).then_some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::str::FromStr;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| map.get(k).cloned()
    }

    #[test]
    fn password_file_lines_match_as_libpq_reads_them() {
        let text = "# comment\n\
                    db1:5432:billing:bill:first\n\
                    *:*:billing:bill:sec\\:ret\\\\x:y\n\
                    weird\\:host:*:*:*:escaped\n\
                    short:line\n";
        assert_eq!(
            lookup(text, "db1", "5432", "billing", "bill").as_deref(),
            Some("first")
        );
        // The first line that matches wins; `*` matches anything; the password keeps its
        // unescaped colons and backslashes.
        assert_eq!(
            lookup(text, "db2", "6432", "billing", "bill").as_deref(),
            Some("sec:ret\\x:y")
        );
        assert_eq!(
            lookup(text, "weird:host", "1", "d", "u").as_deref(),
            Some("escaped")
        );
        assert_eq!(lookup(text, "db1", "5432", "other", "bill"), None);
        assert_eq!(lookup(text, "short", "line", "", ""), None);
    }

    #[test]
    fn variables_fill_only_what_the_string_leaves_out() {
        let vars = env(&[
            ("PGHOST", "h1,,/tmp/sock"),
            ("PGPORT", "6000,,6002"),
            ("PGUSER", "envuser"),
            ("PGDATABASE", "envdb"),
            ("PGPASSWORD", "envpass"),
        ]);
        let mut c = Config::from_str("dbname=given").expect("parse");
        fill(&mut c, &vars).expect("fill");
        assert_eq!(c.get_hosts().len(), 3);
        assert_eq!(c.get_hosts()[0], Host::Tcp("h1".into()));
        #[cfg(unix)]
        assert_eq!(c.get_hosts()[2], Host::Unix("/tmp/sock".into()));
        assert_eq!(c.get_ports(), &[6000, 5432, 6002]);
        assert_eq!(c.get_user(), Some("envuser"));
        assert_eq!(c.get_dbname(), Some("given"));
        assert_eq!(c.get_password(), Some(&b"envpass"[..]));

        let mut c = Config::from_str("postgres://u:p@db:7000/d").expect("parse");
        fill(&mut c, &vars).expect("fill");
        assert_eq!(c.get_hosts(), &[Host::Tcp("db".into())]);
        assert_eq!(c.get_ports(), &[7000]);
        assert_eq!(c.get_user(), Some("u"));
        assert_eq!(c.get_password(), Some(&b"p"[..]));

        let err = fill(
            &mut Config::from_str("dbname=x").expect("parse"),
            &env(&[("PGHOST", "h"), ("PGPORT", "54x")]),
        )
        .unwrap_err();
        assert!(err.contains("PGPORT=54x"), "{err}");
    }

    #[test]
    fn the_password_file_is_read_for_the_first_host_with_a_line_and_only_when_private() {
        let dir = std::env::temp_dir().join(format!("billhost-pgpass-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let file = dir.join("pgpass");
        std::fs::write(&file, "h2:5433:d:u:second\n*:*:*:other:x\n").expect("write");
        let passfile = file.display().to_string();
        let vars = env(&[("PGPASSFILE", passfile.as_str())]);
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
            let mut c = Config::from_str("host=h1,h2 port=5432,5433 user=u dbname=d").expect("c");
            fill(&mut c, &vars).expect("fill");
            assert_eq!(c.get_password(), None, "a file others may read is not used");
            std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
        }
        let mut c = Config::from_str("host=h1,h2 port=5432,5433 user=u dbname=d").expect("c");
        fill(&mut c, &vars).expect("fill");
        assert_eq!(c.get_password(), Some(&b"second"[..]));
        let _ = std::fs::remove_dir_all(&dir);
    }
}
