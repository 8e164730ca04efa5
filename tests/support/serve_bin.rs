//! `billhost serve` as a child process for the tests that need the real binary: started on a
//! free loopback port, found by the address it prints, killed when dropped.
#![allow(dead_code)]

use super::common::TempDir;
use std::fs::File;
use std::net::SocketAddr;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// A running `billhost serve`, killed when dropped.
pub struct Server {
    pub child: Child,
    pub addr: SocketAddr,
    pub stderr: std::path::PathBuf,
}

impl Drop for Server {
    fn drop(&mut self) {
        if let Ok(None) = self.child.try_wait() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// Starts `billhost serve` on a free loopback port over `dir`'s database and its `scripts`
/// folder, with `args` before `serve` and `envs` set; waits until it announces its address.
pub fn serve(dir: &TempDir, run: &str, args: &[&str], envs: &[(&str, &str)]) -> Server {
    serve_on(dir, dir.db().as_os_str(), run, args, envs)
}

/// [`serve`] over the database `db` (a SQLite path or a PostgreSQL URL); its output files and
/// `scripts` folder are in `dir`.
pub fn serve_on(
    dir: &TempDir,
    db: &std::ffi::OsStr,
    run: &str,
    args: &[&str],
    envs: &[(&str, &str)],
) -> Server {
    let out = dir.path().join(format!("{run}.out"));
    let err = dir.path().join(format!("{run}.err"));
    let child = Command::new(env!("CARGO_BIN_EXE_billhost"))
        .arg("--db")
        .arg(db)
        .arg("--scripts")
        .arg(dir.path().join("scripts"))
        .args(args)
        .args(["serve", "--listen", "127.0.0.1:0"])
        .env_remove("BILLHOST_DB")
        .env_remove("BILLHOST_LISTEN")
        .env_remove("BILLHOST_SCRIPTS")
        .envs(envs.iter().copied())
        .stdin(Stdio::null())
        .stdout(File::create(&out).expect("stdout file"))
        .stderr(File::create(&err).expect("stderr file"))
        .spawn()
        .expect("spawn billhost serve");
    let mut server = Server {
        child,
        addr: "127.0.0.1:1".parse().expect("placeholder"),
        stderr: err,
    };
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let text = std::fs::read_to_string(&out).unwrap_or_default();
        if let Some(addr) = text
            .lines()
            .find_map(|l| l.strip_prefix("billhost serve: listening on http://"))
        {
            server.addr = addr.trim_end_matches("/billmgr").parse().expect("address");
            return server;
        }
        assert!(
            server.child.try_wait().expect("wait").is_none(),
            "serve exited: {}",
            std::fs::read_to_string(&server.stderr).unwrap_or_default()
        );
        assert!(Instant::now() < deadline, "serve never printed its address");
        std::thread::sleep(Duration::from_millis(20));
    }
}
