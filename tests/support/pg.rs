//! A throwaway PostgreSQL 15 cluster for one test: `initdb` as the `postgres` user in a
//! temporary folder it owns, `pg_ctl start` on a free loopback port (and a socket in that
//! folder), stopped and removed when dropped. Without PostgreSQL installed the tests that want
//! one fail with a clear message when `CI=true`, and say so and pass otherwise.
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
        let port = free_port();
        let opts = format!(
            "-p {port} -k {} -c listen_addresses=127.0.0.1 -c max_connections=100",
            dir.display()
        );
        let log = dir.join("log");
        let ctl = Path::new(BIN).join("pg_ctl");
        run(
            as_postgres(
                ctl.to_str().expect("utf-8 path"),
                &[
                    "-D",
                    data,
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
        Some(Cluster { dir, port })
    }

    /// A new empty database of this cluster, as a URL.
    pub fn database(&self, name: &str) -> String {
        let mut admin = postgres::Client::connect(
            &format!(
                "host=127.0.0.1 port={} user=postgres dbname=postgres",
                self.port
            ),
            postgres::NoTls,
        )
        .expect("connect to the cluster");
        admin
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

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("a free port")
}
