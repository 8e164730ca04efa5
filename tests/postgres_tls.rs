//! TLS to PostgreSQL with libpq's `sslmode` and certificate parameters, against a real cluster
//! with `ssl=on`, certificates the test makes with the `openssl` CLI, and a `pg_hba.conf` that
//! lets TCP clients in only under TLS (`support/pg.rs`, `Cluster::start_tls`): through the
//! engine (`Engine::open` with the URL) and through the binary (`--db URL`). Whether a session
//! was encrypted is asked of the server (`pg_stat_ssl`, its connection log), not taken from the
//! client. And how the rest of a connection string is read: libpq's variables and password
//! file, and the bounds on connecting to a host that never answers.

mod common;
#[path = "support/pg.rs"]
mod pg;

use billhost::store::{self, Durability};
use billhost::{Engine, EngineConfig};
use std::path::Path;
use std::process::{Command, Output};

fn open(url: &str) -> Result<Engine, String> {
    Engine::open(EngineConfig::new(url)).map_err(|e| e.to_string())
}

fn refused(url: &str) -> String {
    match open(url) {
        Err(e) => e,
        Ok(_) => panic!("{url} was opened"),
    }
}

/// Whether the sessions of `application_name` on the server are encrypted, one entry each,
/// asked over the plain admin socket.
fn encrypted(cluster: &pg::Cluster, application: &str) -> Vec<bool> {
    cluster
        .socket_admin()
        .query(
            "SELECT s.ssl FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = $1",
            &[&application],
        )
        .expect("pg_stat_ssl")
        .iter()
        .map(|r| r.get::<_, bool>(0))
        .collect()
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}

#[test]
fn the_engine_connects_under_each_sslmode_as_libpq_would() {
    let Some((cluster, certs)) = pg::Cluster::start_tls("tls-engine") else {
        return;
    };
    let db = cluster.socket_database("billing");
    let port = cluster.port;
    let ca = certs.ca.display();
    let other = certs.other_ca.display();
    let url = |host: &str, query: &str| format!("postgres://postgres@{host}:{port}/{db}?{query}");

    // require: encrypted, with no root to check the certificate against.
    let engine = open(&url(
        "127.0.0.1",
        "sslmode=require&application_name=t_require",
    ))
    .expect("require without a root");
    let sessions = encrypted(&cluster, "t_require");
    assert!(
        !sessions.is_empty() && sessions.iter().all(|&s| s),
        "{sessions:?}"
    );
    drop(engine);

    // verify-full with the CA that signed the server's certificate, by address and by name.
    for host in ["127.0.0.1", "localhost"] {
        let app = format!("t_full_{}", host.replace('.', "_"));
        let engine = open(&url(
            host,
            &format!("sslmode=verify-full&sslrootcert={ca}&application_name={app}"),
        ))
        .unwrap_or_else(|e| panic!("verify-full to {host}: {e}"));
        let sessions = encrypted(&cluster, &app);
        assert!(
            !sessions.is_empty() && sessions.iter().all(|&s| s),
            "{sessions:?}"
        );
        drop(engine);
    }

    // verify-full with a CA that signed nothing of this server: refused, saying why and what
    // it checked against.
    let err = refused(&url(
        "127.0.0.1",
        &format!("sslmode=verify-full&sslrootcert={other}"),
    ));
    assert!(err.contains("could not be verified"), "{err}");
    assert!(err.contains(&other.to_string()), "{err}");
    assert!(err.contains("UnknownIssuer"), "{err}");
    // require with a root given checks the chain as verify-ca does (libpq's behaviour).
    let err = refused(&url(
        "127.0.0.1",
        &format!("sslmode=require&sslrootcert={other}"),
    ));
    assert!(err.contains("could not be verified"), "{err}");

    // A host name the certificate is not for (reached at 127.0.0.1 through hostaddr):
    // verify-full refuses it, verify-ca (the chain only) lets it in.
    let err = refused(&url(
        "db.example.test",
        &format!("hostaddr=127.0.0.1&sslmode=verify-full&sslrootcert={ca}"),
    ));
    assert!(err.contains("could not be verified"), "{err}");
    assert!(err.contains("db.example.test"), "{err}");
    let engine = open(&url(
        "db.example.test",
        &format!("hostaddr=127.0.0.1&sslmode=verify-ca&sslrootcert={ca}&application_name=t_ca"),
    ))
    .expect("verify-ca against another name");
    assert!(encrypted(&cluster, "t_ca").iter().all(|&s| s));
    drop(engine);

    // Several hosts: the name checked is the host connected to. The first host is reached but
    // its name is not in the certificate, the second (same server) is: libpq's key=value form.
    let engine = open(&format!(
        "host=db.example.test,localhost hostaddr=127.0.0.1,127.0.0.1 port={port},{port} \
         user=postgres dbname={db} target_session_attrs=read-write sslmode=verify-full \
         sslrootcert='{ca}' application_name=t_multi"
    ))
    .expect("verify-full on the second host");
    assert!(encrypted(&cluster, "t_multi").iter().all(|&s| s));
    drop(engine);
    // And in the URL form: a first host that does not answer, then localhost.
    let dead = free_port();
    let engine = open(&format!(
        "postgres://postgres@127.0.0.2:{dead},localhost:{port}/{db}?\
         target_session_attrs=read-write&sslmode=verify-full&sslrootcert={ca}&\
         application_name=t_multi_url"
    ))
    .expect("verify-full after a host that is down");
    assert!(encrypted(&cluster, "t_multi_url").iter().all(|&s| s));
    drop(engine);

    // Only an address (hostaddr): the certificate is checked against it.
    let engine = open(&format!(
        "hostaddr=127.0.0.1 port={port} user=postgres dbname={db} sslmode=verify-full \
         sslrootcert='{ca}' application_name=t_hostaddr"
    ))
    .expect("verify-full by address alone");
    assert!(encrypted(&cluster, "t_hostaddr").iter().all(|&s| s));
    drop(engine);
    // As in libpq, sslmode does not apply to a Unix socket (the server has no TLS there).
    let socket_dir: String = cluster
        .socket_admin()
        .query_one("SHOW unix_socket_directories", &[])
        .expect("socket dir")
        .get(0);
    let engine = open(&format!(
        "host={socket_dir} port={port} user=postgres dbname={db} sslmode=require \
         application_name=t_socket"
    ))
    .expect("require over the socket");
    assert_eq!(encrypted(&cluster, "t_socket").first(), Some(&false));
    drop(engine);

    // The server takes TCP clients only under TLS: disable is refused by pg_hba.conf...
    let err = refused(&url("127.0.0.1", "sslmode=disable"));
    assert!(err.contains("no encryption"), "{err}");
    // ...while prefer (libpq's default, so also no sslmode at all) and allow end up under TLS.
    for (query, app) in [
        ("sslmode=prefer&application_name=t_prefer", "t_prefer"),
        ("application_name=t_default", "t_default"),
        ("sslmode=allow&application_name=t_allow", "t_allow"),
    ] {
        let engine = open(&url("127.0.0.1", query)).unwrap_or_else(|e| panic!("{query}: {e}"));
        let sessions = encrypted(&cluster, app);
        assert!(
            !sessions.is_empty() && sessions.iter().all(|&s| s),
            "{app}: {sessions:?}"
        );
        drop(engine);
    }

    // What cannot be used is refused before anything is sent, naming the file and why.
    let err = refused(&url(
        "127.0.0.1",
        "sslmode=verify-full&sslrootcert=/nonexistent/root.crt",
    ));
    assert!(
        err.contains("sslrootcert /nonexistent/root.crt: cannot be read"),
        "{err}"
    );
    let err = refused(&url("127.0.0.1", "sslmode=verify-everything"));
    assert!(
        err.contains("sslmode=verify-everything is not one of"),
        "{err}"
    );
    let err = refused(&url(
        "127.0.0.1",
        &format!("sslmode=require&sslcert={ca}&sslkey=/nonexistent/key"),
    ));
    assert!(
        err.contains("sslkey /nonexistent/key: cannot be read"),
        "{err}"
    );
}

#[test]
fn a_client_certificate_and_channel_binding_are_presented() {
    let Some((cluster, certs)) = pg::Cluster::start_tls("tls-client") else {
        return;
    };
    let port = cluster.port;
    let ca = certs.ca.display();
    // `certdb` takes only a client certificate the CA signed (pg_hba.conf `cert`).
    let base =
        format!("postgres://postgres@localhost:{port}/certdb?sslmode=verify-full&sslrootcert={ca}");
    let err = match store::connect(Path::new(&base), Durability::Full) {
        Err(e) => e.to_string(),
        Ok(_) => panic!("certdb let a client without a certificate in"),
    };
    assert!(err.contains("certificate"), "{err}");
    let with_cert = format!(
        "{base}&sslcert={}&sslkey={}&application_name=t_cert",
        certs.client_cert.display(),
        certs.client_key.display()
    );
    let conn = store::connect(Path::new(&with_cert), Durability::Full)
        .unwrap_or_else(|e| panic!("with a client certificate: {e}"));
    let client_dn: Vec<String> = cluster
        .socket_admin()
        .query(
            "SELECT s.client_dn FROM pg_stat_ssl s JOIN pg_stat_activity a USING (pid)
             WHERE a.application_name = 't_cert' AND s.ssl",
            &[],
        )
        .expect("pg_stat_ssl")
        .iter()
        .map(|r| r.get(0))
        .collect();
    assert_eq!(client_dn, vec!["/CN=postgres".to_string()]);
    drop(conn);

    // SCRAM over TLS binds the password exchange to the server's certificate when asked to.
    let mut admin = cluster.socket_admin();
    admin
        .batch_execute("CREATE ROLE scram LOGIN PASSWORD 'pw-scram'")
        .expect("role");
    hba_first(
        &cluster,
        &mut admin,
        "hostssl all scram 127.0.0.1/32 scram-sha-256",
    );
    let scram = format!(
        "postgres://scram:pw-scram@127.0.0.1:{port}/postgres?sslmode=verify-full&\
         sslrootcert={ca}&channel_binding=require"
    );
    store::connect(Path::new(&scram), Durability::Full)
        .unwrap_or_else(|e| panic!("SCRAM-SHA-256-PLUS: {e}"));
}

/// Puts `rule` first in the cluster's `pg_hba.conf` and has the server read it again.
fn hba_first(cluster: &pg::Cluster, admin: &mut postgres::Client, rule: &str) {
    let hba = cluster_hba(cluster);
    let rules = std::fs::read_to_string(&hba).expect("pg_hba.conf");
    std::fs::write(&hba, format!("{rule}\n{rules}")).expect("pg_hba.conf");
    admin
        .batch_execute("SELECT pg_reload_conf()")
        .expect("reload");
    std::thread::sleep(std::time::Duration::from_millis(300));
}

fn cluster_hba(cluster: &pg::Cluster) -> std::path::PathBuf {
    let row = cluster
        .socket_admin()
        .query_one("SHOW hba_file", &[])
        .expect("hba_file");
    std::path::PathBuf::from(row.get::<_, String>(0))
}

fn billhost(db: &str, args: &[&str]) -> Output {
    billhost_env(db, &[], args)
}

#[test]
fn the_binary_takes_a_tls_url_in_db() {
    let Some((cluster, certs)) = pg::Cluster::start_tls("tls-binary") else {
        return;
    };
    let db = cluster.socket_database("clibilling");
    let port = cluster.port;
    let url = |query: &str| format!("postgres://postgres@localhost:{port}/{db}?{query}");
    let full = url(&format!(
        "sslmode=verify-full&sslrootcert={}&application_name=cli_tls",
        certs.ca.display()
    ));
    let out = billhost(&full, &["init", "--admin-password", "Secret123"]);
    assert!(out.status.success(), "init: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("ready"),
        "{out:?}"
    );
    let out = billhost(&full, &["call", "project", "--out", "text"]);
    assert!(out.status.success(), "call: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("id=1"),
        "{out:?}"
    );
    // The server logged those sessions as encrypted.
    let log = cluster.log();
    let sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection authorized") && l.contains("application_name=cli_tls"))
        .collect();
    assert!(!sessions.is_empty(), "{log}");
    assert!(
        sessions.iter().all(|l| l.contains("SSL enabled")),
        "{sessions:?}"
    );

    // A certificate that does not verify: the usage exit, the reason on stderr.
    let wrong = url(&format!(
        "sslmode=verify-full&sslrootcert={}",
        certs.other_ca.display()
    ));
    let out = billhost(&wrong, &["call", "project"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("could not be verified"), "{err}");
    // And without TLS the server refuses it.
    let out = billhost(&url("sslmode=disable"), &["call", "project"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no encryption"),
        "{out:?}"
    );
}

/// `sslmode=prefer` (the default) as libpq: a server that offers TLS but whose handshake fails
/// (here it speaks nothing newer than TLS 1.1, which rustls refuses) is connected to without
/// TLS where `pg_hba.conf` allows it, while `require` is refused.
#[test]
fn prefer_connects_without_tls_after_a_failed_handshake() {
    let Some((cluster, _certs)) = pg::Cluster::start_tls("tls-prefer") else {
        return;
    };
    let port = cluster.port;
    let mut admin = cluster.socket_admin();
    for setting in [
        "ALTER SYSTEM SET ssl_min_protocol_version = 'TLSv1'",
        "ALTER SYSTEM SET ssl_max_protocol_version = 'TLSv1.1'",
    ] {
        admin.batch_execute(setting).expect("tls versions");
    }
    hba_first(&cluster, &mut admin, "host all all 127.0.0.1/32 trust");
    let url = |query: &str| format!("postgres://postgres@127.0.0.1:{port}/postgres?{query}");
    let err = refused(&url("sslmode=require"));
    assert!(err.contains("127.0.0.1"), "{err}");
    let engine = open(&url("sslmode=prefer&application_name=t_prefer"))
        .unwrap_or_else(|e| panic!("prefer after a failed handshake: {e}"));
    let sessions = encrypted(&cluster, "t_prefer");
    assert!(!sessions.is_empty(), "no session of the engine");
    assert!(sessions.iter().all(|ssl| !ssl), "{sessions:?}");
    drop(engine);
}

/// `billhost` with `--db` and the `PG*` variables of `vars` (and no other `PG*` of this
/// process's environment).
fn billhost_env(db: &str, vars: &[(&str, &str)], args: &[&str]) -> Output {
    let scripts = common::TempDir::new("tls-scripts");
    billhost_command(db, vars, scripts.path())
        .args(args)
        .output()
        .expect("run billhost")
}

/// The binary on `db` with an empty scripts folder and, of the `PG*` variables, only `vars`.
fn billhost_command(db: &str, vars: &[(&str, &str)], scripts: &Path) -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_billhost"));
    for (k, _) in std::env::vars() {
        if k.starts_with("PG") {
            c.env_remove(k);
        }
    }
    c.envs(vars.iter().copied())
        .args(["--db", db, "--scripts"])
        .arg(scripts);
    c
}

/// What a connection string leaves out comes from libpq's variables and password file, as
/// for `psql`: the host, port, user and TLS settings from `PGHOST`, `PGPORT`, `PGUSER`,
/// `PGSSLMODE`, `PGSSLROOTCERT`, `PGAPPNAME` (the server logs the session as encrypted), the
/// password from `PGPASSWORD` or from the file `PGPASSFILE` names, which is not read while
/// others may read it; what the string gives wins over a variable.
#[test]
fn libpq_variables_and_the_password_file_fill_in_what_the_string_leaves_out() {
    let Some((cluster, certs)) = pg::Cluster::start_tls("tls-env") else {
        return;
    };
    let port = cluster.port.to_string();
    let ca = certs.ca.display().to_string();
    let mut admin = cluster.socket_admin();
    admin
        .batch_execute("CREATE ROLE biller LOGIN PASSWORD 'pw:bill\\er'")
        .expect("role");
    admin
        .batch_execute("CREATE DATABASE pwdb OWNER biller")
        .expect("database");
    hba_first(
        &cluster,
        &mut admin,
        "hostssl pwdb all 127.0.0.1/32 scram-sha-256",
    );
    let tls = [
        ("PGHOST", "localhost"),
        ("PGPORT", port.as_str()),
        ("PGSSLMODE", "verify-full"),
        ("PGSSLROOTCERT", ca.as_str()),
        ("PGAPPNAME", "env_tls"),
    ];

    // Host, port, user and TLS from the variables.
    let mut vars = tls.to_vec();
    vars.push(("PGUSER", "postgres"));
    let db = cluster.socket_database("envbilling");
    let out = billhost_env(
        &format!("dbname={db}"),
        &vars,
        &["init", "--admin-password", "Secret123"],
    );
    assert!(out.status.success(), "init: {out:?}");
    let log = cluster.log();
    let sessions: Vec<&str> = log
        .lines()
        .filter(|l| l.contains("connection authorized") && l.contains("application_name=env_tls"))
        .collect();
    assert!(!sessions.is_empty(), "{log}");
    assert!(
        sessions.iter().all(|l| l.contains("SSL enabled")),
        "{sessions:?}"
    );
    // The string's sslmode wins over PGSSLMODE: without TLS the server refuses it.
    let out = billhost_env(
        &format!("dbname={db} sslmode=disable"),
        &vars,
        &["call", "project"],
    );
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("no encryption"),
        "{out:?}"
    );

    // The password: wrong in PGPASSWORD, right in it, then from the password file.
    let url = "postgres:///pwdb?user=biller";
    let mut wrong = tls.to_vec();
    wrong.push(("PGPASSWORD", "nope"));
    let out = billhost_env(url, &wrong, &["call", "project"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("password authentication failed"),
        "{out:?}"
    );
    let mut right = tls.to_vec();
    right.push(("PGPASSWORD", "pw:bill\\er"));
    let out = billhost_env(url, &right, &["init", "--admin-password", "Secret123"]);
    assert!(out.status.success(), "PGPASSWORD: {out:?}");

    let dir = common::TempDir::new("pgpass");
    let file = dir.path().join("pgpass");
    std::fs::write(
        &file,
        format!(
            "# billing\nlocalhost:{port}:other:biller:wrong\nlocalhost:{port}:pwdb:biller:pw\\:bill\\\\er\n"
        ),
    )
    .expect("pgpass");
    let passfile = file.display().to_string();
    let mut from_file = tls.to_vec();
    from_file.push(("PGPASSFILE", passfile.as_str()));
    use std::os::unix::fs::PermissionsExt;
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o600)).expect("chmod");
    let out = billhost_env(url, &from_file, &["call", "project", "--out", "text"]);
    assert!(out.status.success(), "PGPASSFILE: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("id=1"),
        "{out:?}"
    );
    std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
    let out = billhost_env(url, &from_file, &["call", "project"]);
    assert_eq!(out.status.code(), Some(2), "{out:?}");
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("may be read by others"), "{err}");
}

/// A host that takes the TCP connection and never answers a byte (a server stuck in start-up,
/// a proxy whose backend is gone), as the first of a URL's hosts.
struct Silent {
    port: u16,
    _keep: std::thread::JoinHandle<()>,
}

fn silent_host() -> Silent {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let keep = std::thread::spawn(move || {
        let mut held = Vec::new();
        for conn in listener.incoming().flatten() {
            held.push(conn);
        }
    });
    Silent { port, _keep: keep }
}

/// Runs billhost (without the process's `PG*` variables) and answers its output and how long
/// it took; one still running after `limit` is killed and fails the test.
fn billhost_within(db: &str, args: &[&str], limit: std::time::Duration) -> (Output, f64) {
    let scripts = common::TempDir::new("bound-scripts");
    let started = std::time::Instant::now();
    let mut child = billhost_command(db, &[], scripts.path())
        .args(args)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run billhost");
    while child.try_wait().expect("wait").is_none() {
        if started.elapsed() > limit {
            let _ = child.kill();
            let out = child.wait_with_output().expect("output");
            panic!(
                "billhost {args:?} was still connecting after {limit:?}: {}",
                String::from_utf8_lossy(&out.stderr)
            );
        }
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    let out = child.wait_with_output().expect("output");
    (out, started.elapsed().as_secs_f64())
}

/// Each host's whole connection attempt is bounded (`connect_timeout`, 10 s when the string
/// says nothing), not only its TCP connect: a first host that takes the connection and never
/// answers is given up on, and the next host of the URL serves; alone, it fails with a
/// message that says so, in bounded time.
#[test]
fn a_host_that_never_answers_is_given_up_after_connect_timeout() {
    let Some(cluster) = pg::Cluster::start("connect-bound") else {
        return;
    };
    cluster.database("bounded");
    let silent = silent_host();
    let minute = std::time::Duration::from_secs(60);
    let both = format!(
        "postgres://postgres@127.0.0.1:{},127.0.0.1:{}/bounded?connect_timeout=2",
        silent.port, cluster.port
    );
    let (out, took) = billhost_within(&both, &["init", "--admin-password", "Secret123"], minute);
    assert!(out.status.success(), "init past a silent host: {out:?}");
    assert!(
        took >= 2.0,
        "the silent host was not waited for ({took:.1} s)"
    );
    let (out, _) = billhost_within(&both, &["call", "project"], minute);
    assert!(out.status.success(), "call past a silent host: {out:?}");
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("<id>1</id>"),
        "{out:?}"
    );

    let alone = |query: &str| {
        format!(
            "postgres://postgres@127.0.0.1:{}/bounded{query}",
            silent.port
        )
    };
    let fails_alone = |query: &str, bound: &str, within: std::ops::Range<f64>| {
        let (out, took) = billhost_within(&alone(query), &["call", "project"], minute);
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{stderr}");
        let said = format!("no answer within connect_timeout ({bound})");
        assert!(stderr.contains(&said), "{stderr}");
        assert!(within.contains(&took), "{query:?} took {took:.1} s");
    };
    fails_alone("?connect_timeout=2", "2 s", 0.0..10.0);
    // The default bound, where the string gives none (libpq would wait for ever).
    fails_alone("", "10 s", 10.0..30.0);
}
