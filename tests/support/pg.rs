//! A throwaway PostgreSQL 15 cluster for one test: `initdb` as the `postgres` user in a
//! temporary folder it owns, `pg_ctl start` on a free loopback port (and a socket in that
//! folder), stopped and removed when dropped. Without PostgreSQL installed the tests that want
//! one fail with a clear message when `CI=true`, and say so and pass otherwise.
//!
//! For the failover test: a primary that commits only once a synchronous standby has the WAL
//! ([`Cluster::start_primary`]), its standby made with `pg_basebackup -R`
//! ([`Cluster::standby_of`]), `kill -9` of a server ([`Cluster::kill_9`]) and `pg_ctl promote`
//! ([`Cluster::promote`]).
//!
//! For suites that run on both backends: [`shared`] is one cluster per test binary (stopped by
//! a watchdog once the binary exits, since statics are never dropped), [`Backend`] says where a
//! test's database lives, and [`backends!`] turns one test body into a `sqlite` and a
//! `postgres` test (`#[macro_use]` on the `mod pg;` line).
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

const BIN: &str = "/usr/lib/postgresql/15/bin";

pub struct Cluster {
    dir: PathBuf,
    pub port: u16,
}

/// Runs `program args` as the `postgres` user when this process is root (`initdb` refuses root).
fn as_postgres(program: &str, args: &[&str]) -> Command {
    let root = std::env::var("USER").map(|u| u == "root").unwrap_or(false)
        || Command::new("id")
            .arg("-u")
            .output()
            .map(|o| o.stdout.starts_with(b"0"))
            .unwrap_or(false);
    if root {
        let mut c = Command::new("runuser");
        c.args(["-u", "postgres", "--", program]).args(args);
        c
    } else {
        let mut c = Command::new(program);
        c.args(args);
        c
    }
}

fn run(mut c: Command, what: &str) {
    let out = c.output().unwrap_or_else(|e| panic!("{what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

impl Cluster {
    /// A new cluster, or `None` (after saying so) where PostgreSQL is not installed and this is
    /// not CI.
    pub fn start(tag: &str) -> Option<Cluster> {
        Self::start_with(tag, "")
    }

    /// A primary whose commits wait for a synchronous standby named `standby` (see
    /// [`Cluster::standby_of`]), with a replication user `replicator` that `pg_hba.conf` lets
    /// in from 127.0.0.1. Its commits wait for the standby only once [`Cluster::standby_of`]
    /// has made one (before, they would wait for ever), and the setting is made after the
    /// copy, so that the standby does not inherit it (a promoted standby waiting for a standby
    /// of its own would never commit).
    pub fn start_primary(tag: &str) -> Option<Cluster> {
        let cluster = Self::start_with(tag, " -c wal_level=replica -c max_wal_senders=4")?;
        let hba = cluster.data().join("pg_hba.conf");
        let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
        std::fs::write(
            &hba,
            format!("host replication replicator 127.0.0.1/32 trust\n{rules}"),
        )
        .expect("pg_hba.conf");
        cluster
            .admin()
            .batch_execute("CREATE ROLE replicator WITH REPLICATION LOGIN; SELECT pg_reload_conf()")
            .expect("replication user");
        Some(cluster)
    }

    fn start_with(tag: &str, options: &str) -> Option<Cluster> {
        let initdb = Path::new(BIN).join("initdb");
        if !initdb.exists() {
            let msg = format!(
                "PostgreSQL 15 is not installed ({} is missing): `apt-get install postgresql`",
                initdb.display()
            );
            if std::env::var("CI").is_ok_and(|v| v == "true") {
                panic!("{msg}");
            }
            eprintln!("skipping the PostgreSQL part of this test: {msg}");
            return None;
        }
        let dir = cluster_dir(tag);
        let data = dir.join("data");
        let data = data.to_str().expect("utf-8 dir");
        let mut init = as_postgres(
            initdb.to_str().expect("utf-8 path"),
            &[
                "-D",
                data,
                "-A",
                "trust",
                "-U",
                "postgres",
                "-E",
                "UTF8",
                "--no-sync",
            ],
        );
        init.env("LC_ALL", "C");
        run(init, "initdb");
        let cluster = Cluster {
            dir,
            port: free_port(),
        };
        cluster.pg_ctl_start(options);
        Some(cluster)
    }

    /// A synchronous streaming standby of this primary (made with [`Cluster::start_primary`]):
    /// `pg_basebackup -R` into a folder of its own, started on another port, and waited for
    /// until the primary reports it `sync`.
    pub fn standby_of(&self, tag: &str) -> Cluster {
        let dir = cluster_dir(tag);
        let data = dir.join("data");
        let basebackup = Path::new(BIN).join("pg_basebackup");
        let source = format!(
            "host=127.0.0.1 port={} user=replicator application_name=standby",
            self.port
        );
        run(
            as_postgres(
                basebackup.to_str().expect("utf-8 path"),
                &[
                    "-D",
                    data.to_str().expect("utf-8 dir"),
                    "-d",
                    &source,
                    "-R",
                    "-X",
                    "stream",
                    "-c",
                    "fast",
                    "--no-sync",
                ],
            ),
            "pg_basebackup",
        );
        let standby = Cluster {
            dir,
            port: free_port(),
        };
        standby.pg_ctl_start("");
        let mut admin = self.admin();
        admin
            .batch_execute("ALTER SYSTEM SET synchronous_standby_names = 'standby'")
            .expect("synchronous standby");
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .expect("reload");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        loop {
            let sync: i64 = self
                .admin()
                .query_one(
                    "SELECT count(*) FROM pg_stat_replication
                     WHERE application_name = 'standby' AND sync_state = 'sync'",
                    &[],
                )
                .expect("replication state")
                .get(0);
            if sync == 1 {
                return standby;
            }
            assert!(
                std::time::Instant::now() < deadline,
                "the standby never became synchronous"
            );
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    /// Kills the server with SIGKILL, as a machine that dies would stop it: the postmaster and
    /// every process it started, by their ids, without a shutdown checkpoint. The postmaster is
    /// stopped (SIGSTOP) before its children are listed, so that none is forked after the list
    /// and outlives it: a backend left behind by its postmaster can hang for ever on a lock
    /// that a killed process held, and a client connecting at that moment with it.
    pub fn kill_9(&self) {
        let pidfile =
            std::fs::read_to_string(self.data().join("postmaster.pid")).expect("postmaster.pid");
        let postmaster = pidfile.lines().next().expect("pid line").trim().to_string();
        let stopped = Command::new("kill")
            .args(["-STOP", &postmaster])
            .status()
            .expect("kill -STOP");
        assert!(stopped.success(), "kill -STOP {postmaster}");
        let mut pids = vec![postmaster.clone()];
        for entry in std::fs::read_dir("/proc").expect("/proc").flatten() {
            let stat = std::fs::read_to_string(entry.path().join("stat")).unwrap_or_default();
            // pid (comm) state ppid ...: the fields after the command's closing parenthesis.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().nth(1));
            if ppid == Some(postmaster.as_str()) {
                pids.push(entry.file_name().to_string_lossy().into_owned());
            }
        }
        // A child may have exited since it was listed (kill then fails for it alone): what
        // counts is that none is left, below.
        Command::new("kill")
            .arg("-9")
            .args(&pids)
            .status()
            .expect("kill -9");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while pids
            .iter()
            .any(|p| Path::new("/proc").join(p).join("stat").exists() && !zombie(p))
        {
            assert!(
                std::time::Instant::now() < deadline,
                "{pids:?} outlived kill -9"
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Promotes this standby to a primary (`pg_ctl promote`) and waits until it takes writes.
    pub fn promote(&self) {
        let ctl = Path::new(BIN).join("pg_ctl");
        run(
            as_postgres(
                ctl.to_str().expect("utf-8 path"),
                &["-D", self.data().to_str().expect("utf-8"), "-w", "promote"],
            ),
            "pg_ctl promote",
        );
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
        while self
            .admin()
            .query_one("SELECT pg_is_in_recovery()", &[])
            .expect("recovery state")
            .get::<_, bool>(0)
        {
            assert!(std::time::Instant::now() < deadline, "never promoted");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
    }

    fn data(&self) -> PathBuf {
        self.dir.join("data")
    }

    fn pg_ctl_start(&self, options: &str) {
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100{options}",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        let ctl = Path::new(BIN).join("pg_ctl");
        run(
            as_postgres(
                ctl.to_str().expect("utf-8 path"),
                &[
                    "-D",
                    self.data().to_str().expect("utf-8 dir"),
                    "-o",
                    &opts,
                    "-l",
                    log.to_str().expect("utf-8"),
                    "-w",
                    "start",
                ],
            ),
            "pg_ctl start",
        );
    }

    /// What every session of the cluster is doing (`pg_stat_activity`), and its synchronous
    /// standby setting, one line each: for a test's failure message.
    pub fn activity(&self) -> String {
        let mut admin = match postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres connect_timeout=5",
                self.port
            ),
            postgres::NoTls,
        ) {
            Ok(c) => c,
            Err(e) => return format!("(no connection to the cluster: {e})"),
        };
        let rows = admin.query(
            "SELECT concat_ws(' | ', pid::text, application_name, backend_type, state,
                    wait_event_type, wait_event, now() - xact_start, left(query, 120))
             FROM pg_stat_activity ORDER BY pid",
            &[],
        );
        let standbys = admin
            .query_one("SHOW synchronous_standby_names", &[])
            .map(|r| r.get::<_, String>(0))
            .unwrap_or_default();
        match rows {
            Ok(rows) => format!(
                "synchronous_standby_names = '{standbys}'\n{}",
                rows.iter()
                    .map(|r| r.get::<_, String>(0))
                    .collect::<Vec<_>>()
                    .join("\n")
            ),
            Err(e) => format!("(pg_stat_activity: {e})"),
        }
    }

    /// A connection to the cluster's `postgres` database as the superuser.
    fn admin(&self) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            postgres::NoTls,
        )
        .expect("connect to the cluster")
    }

    /// A new empty database of this cluster, as a URL.
    pub fn database(&self, name: &str) -> String {
        self.admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        self.url(name)
    }

    pub fn url(&self, name: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{name}", self.port)
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let ctl = Path::new(BIN).join("pg_ctl");
        let _ = as_postgres(
            ctl.to_str().unwrap_or_default(),
            &[
                "-D",
                data.to_str().unwrap_or_default(),
                "-m",
                "immediate",
                "-w",
                "stop",
            ],
        )
        .output();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A new folder for a cluster, owned by the `postgres` user.
fn cluster_dir(tag: &str) -> PathBuf {
    static N: AtomicU32 = AtomicU32::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = std::env::temp_dir().join(format!(
        "billhost-pgcluster-{tag}-{}-{n}",
        std::process::id()
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("cluster dir");
    let _ = Command::new("chown")
        .args(["postgres:postgres", dir.to_str().expect("utf-8 dir")])
        .status();
    dir
}

/// Whether process `pid` is a zombie (dead, waiting for its parent to reap it).
fn zombie(pid: &str) -> bool {
    std::fs::read_to_string(Path::new("/proc").join(pid).join("stat"))
        .ok()
        .and_then(|s| {
            s.rsplit_once(')')
                .and_then(|(_, rest)| rest.split_whitespace().next().map(|st| st == "Z"))
        })
        .unwrap_or(true)
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

/// The backend a test runs on: SQLite in a file of the test's own folder, or a database of its
/// own in the binary's shared PostgreSQL cluster.
#[derive(Clone, Debug)]
pub enum Backend {
    Sqlite,
    Postgres(std::sync::Arc<Database>),
}

/// A database of the shared cluster, dropped (`WITH (FORCE)`, closing what is still connected)
/// when the last test holding it is done.
#[derive(Debug)]
pub struct Database {
    pub url: String,
    name: String,
}

impl Drop for Database {
    fn drop(&mut self) {
        if let Some(cluster) = shared() {
            let _ = cluster.admin().batch_execute(&format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                self.name
            ));
        }
    }
}

impl Backend {
    /// A new empty database of the shared cluster, or `None` (after saying so) where
    /// PostgreSQL is not installed and this is not CI.
    pub fn postgres(tag: &str) -> Option<Backend> {
        let cluster = shared()?;
        static N: AtomicU32 = AtomicU32::new(0);
        let n = N.fetch_add(1, Ordering::Relaxed);
        let name: String = format!("{tag}_{n}")
            .chars()
            .map(|c| {
                if c.is_ascii_alphanumeric() {
                    c.to_ascii_lowercase()
                } else {
                    '_'
                }
            })
            .collect();
        let url = cluster.database(&name);
        Some(Backend::Postgres(std::sync::Arc::new(Database {
            url,
            name,
        })))
    }

    /// What `--db` and `EngineConfig::new` take: `dir/billhost.db` for SQLite, the database's
    /// URL for PostgreSQL (the same URL on every call, so that a test can reopen it).
    pub fn db(&self, dir: &Path) -> PathBuf {
        match self {
            Backend::Sqlite => dir.join("billhost.db"),
            Backend::Postgres(db) => PathBuf::from(&db.url),
        }
    }

    pub fn is_postgres(&self) -> bool {
        matches!(self, Backend::Postgres(_))
    }
}

/// One cluster for the whole test binary, started on first use. A watchdog shell stops it
/// (`pg_ctl stop -m immediate`) and removes its folder once this process has exited, however
/// it exits.
pub fn shared() -> Option<&'static Cluster> {
    static SHARED: std::sync::OnceLock<Option<Cluster>> = std::sync::OnceLock::new();
    SHARED
        .get_or_init(|| {
            let cluster = Cluster::start_with("shared", " -c max_connections=300 -c fsync=off")?;
            let ctl = Path::new(BIN).join("pg_ctl");
            let watchdog = format!(
                "while kill -0 {pid} 2>/dev/null; do sleep 0.5; done; \
                 runuser -u postgres -- {ctl} -D {data} -m immediate -w stop >/dev/null 2>&1 \
                 || {ctl} -D {data} -m immediate -w stop >/dev/null 2>&1; rm -rf {dir}",
                pid = std::process::id(),
                ctl = ctl.display(),
                data = cluster.data().display(),
                dir = cluster.dir.display(),
            );
            // Nobody waits for the watchdog: it outlives this process by design.
            #[allow(clippy::zombie_processes)]
            let _watchdog = Command::new("sh")
                .args(["-c", &watchdog])
                .stdin(std::process::Stdio::null())
                .stdout(std::process::Stdio::null())
                .stderr(std::process::Stdio::null())
                .spawn()
                .expect("cluster watchdog");
            Some(cluster)
        })
        .as_ref()
}

/// `backends! { fn name(backend) { ... } }` defines the module `name` with two tests,
/// `name::sqlite` and `name::postgres`, each running the body with its [`Backend`]. Attributes
/// before `fn` (`#[ignore]`, `#[should_panic]`) go on both.
#[macro_export]
macro_rules! backends {
    ($( $(#[$meta:meta])* fn $name:ident($backend:ident) $body:block )*) => {$(
        mod $name {
            #[allow(unused_imports)]
            use super::*;
            fn run($backend: $crate::pg::Backend) $body
            $(#[$meta])*
            #[test]
            fn sqlite() {
                run($crate::pg::Backend::Sqlite)
            }
            $(#[$meta])*
            #[test]
            fn postgres() {
                if let Some(backend) = $crate::pg::Backend::postgres(stringify!($name)) {
                    run(backend)
                }
            }
        }
    )*};
}

/// The certificates of a TLS cluster ([`Cluster::start_tls`]), made with the `openssl` CLI: a
/// CA, the server's certificate for `localhost` and `127.0.0.1` signed by it, a client
/// certificate for the user `postgres` signed by it, and a second CA that signed nothing here.
pub struct Certs {
    pub ca: PathBuf,
    pub other_ca: PathBuf,
    pub client_cert: PathBuf,
    pub client_key: PathBuf,
}

fn openssl(dir: &Path, args: &[&str]) {
    let mut c = Command::new("openssl");
    c.current_dir(dir).args(args);
    run(c, &format!("openssl {}", args.join(" ")));
}

/// A self-signed CA `name.crt` (and `name.key`) in `dir`.
fn make_ca(dir: &Path, name: &str, cn: &str) {
    let (key, crt) = (format!("{name}.key"), format!("{name}.crt"));
    openssl(
        dir,
        &[
            "req",
            "-x509",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &crt,
            "-days",
            "2",
            "-subj",
            &format!("/CN={cn}"),
            "-addext",
            "basicConstraints=critical,CA:TRUE",
            "-addext",
            "keyUsage=critical,keyCertSign,cRLSign",
        ],
    );
}

/// `name.crt` (and `name.key`) in `dir` for `cn`, signed by `ca`, with the extensions `ext`.
fn make_signed(dir: &Path, name: &str, cn: &str, ca: &str, ext: &str) {
    let (key, csr, crt, extfile) = (
        format!("{name}.key"),
        format!("{name}.csr"),
        format!("{name}.crt"),
        format!("{name}.ext"),
    );
    openssl(
        dir,
        &[
            "req",
            "-newkey",
            "ec",
            "-pkeyopt",
            "ec_paramgen_curve:prime256v1",
            "-nodes",
            "-keyout",
            &key,
            "-out",
            &csr,
            "-subj",
            &format!("/CN={cn}"),
        ],
    );
    std::fs::write(dir.join(&extfile), ext).expect("extensions file");
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            &csr,
            "-CA",
            &format!("{ca}.crt"),
            "-CAkey",
            &format!("{ca}.key"),
            "-CAcreateserial",
            "-days",
            "2",
            "-out",
            &crt,
            "-extfile",
            &extfile,
        ],
    );
}

impl Cluster {
    /// A cluster with `ssl=on` and certificates made for it ([`Certs`]), whose `pg_hba.conf`
    /// lets TCP clients in only under TLS (`hostssl` lines only: the database `certdb` only
    /// with a client certificate the CA signed, whose name is the user's; others on trust),
    /// and the superuser without TLS over its Unix socket ([`Cluster::socket_admin`]). It logs
    /// every connection ([`Cluster::log`]: whether it was under TLS).
    pub fn start_tls(tag: &str) -> Option<(Cluster, Certs)> {
        let cluster = Self::start_with(tag, " -c log_connections=on")?;
        let tls = cluster.dir.join("tls");
        std::fs::create_dir_all(&tls).expect("tls dir");
        make_ca(&tls, "ca", "billhost test CA");
        make_ca(&tls, "other-ca", "an unrelated CA");
        make_signed(
            &tls,
            "server",
            "localhost",
            "ca",
            "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n\
             extendedKeyUsage=serverAuth\n",
        );
        make_signed(
            &tls,
            "client",
            "postgres",
            "ca",
            "basicConstraints=CA:FALSE\nextendedKeyUsage=clientAuth\n",
        );
        // The server reads its key as the `postgres` user and wants no one else to.
        let _ = Command::new("chown")
            .args(["-R", "postgres:postgres", tls.to_str().expect("utf-8 dir")])
            .status();
        for key in ["server.key", "client.key"] {
            let _ = Command::new("chmod").arg("600").arg(tls.join(key)).status();
        }
        std::fs::write(
            cluster.data().join("pg_hba.conf"),
            "local all all trust\n\
             hostssl certdb all 127.0.0.1/32 cert\n\
             hostssl all all 127.0.0.1/32 trust\n\
             hostssl all all ::1/128 trust\n",
        )
        .expect("pg_hba.conf");
        let path = |f: &str| tls.join(f).display().to_string();
        let mut admin = cluster.socket_admin();
        for (name, value) in [
            ("ssl", "on".to_string()),
            ("ssl_cert_file", path("server.crt")),
            ("ssl_key_file", path("server.key")),
            ("ssl_ca_file", path("ca.crt")),
        ] {
            admin
                .batch_execute(&format!("ALTER SYSTEM SET {name} = '{value}'"))
                .expect("ssl settings");
        }
        admin
            .batch_execute("SELECT pg_reload_conf()")
            .expect("reload");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while cluster
            .socket_admin()
            .query_one("SHOW ssl", &[])
            .expect("show ssl")
            .get::<_, String>(0)
            != "on"
        {
            assert!(std::time::Instant::now() < deadline, "ssl never turned on");
            std::thread::sleep(std::time::Duration::from_millis(50));
        }
        cluster
            .socket_admin()
            .batch_execute("CREATE DATABASE certdb")
            .expect("certdb");
        let certs = Certs {
            ca: tls.join("ca.crt"),
            other_ca: tls.join("other-ca.crt"),
            client_cert: tls.join("client.crt"),
            client_key: tls.join("client.key"),
        };
        Some((cluster, certs))
    }

    /// A connection to the `postgres` database as the superuser over the Unix socket (no TLS
    /// there, whatever `pg_hba.conf` asks of TCP clients).
    pub fn socket_admin(&self) -> postgres::Client {
        self.socket_client("postgres")
    }

    /// The superuser on database `dbname`, over the Unix socket (which `pg_hba.conf` rules for
    /// TCP do not touch).
    pub fn socket_client(&self, dbname: &str) -> postgres::Client {
        postgres::Client::connect(
            &format!(
                "host={} port={} user=postgres dbname={dbname}",
                self.dir.display(),
                self.port
            ),
            postgres::NoTls,
        )
        .expect("connect over the socket")
    }

    /// A new empty database, made over the Unix socket; its name.
    pub fn socket_database(&self, name: &str) -> String {
        self.socket_admin()
            .batch_execute(&format!("CREATE DATABASE {name}"))
            .expect("create database");
        name.to_string()
    }

    /// What the server has logged so far.
    pub fn log(&self) -> String {
        std::fs::read_to_string(self.dir.join("log")).unwrap_or_default()
    }
}
