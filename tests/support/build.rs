//! Shipped plugins built for a test: `cargo test` builds the workspace's libraries as test
//! harnesses, not the plugins' shared libraries, so a test that loads one builds it first,
//! into the same target folder and profile as the `billhost` binary under test.
#![allow(dead_code)]

use std::path::PathBuf;
use std::process::Command;

/// Builds `packages` (offline) and answers the folder their libraries land in: the binary's
/// own profile folder.
pub fn plugins(packages: &[&str]) -> PathBuf {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_billhost"));
    let profile_dir = exe.parent().expect("profile").to_path_buf();
    let target = profile_dir.parent().expect("target").to_path_buf();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args(["build", "--offline"]);
    for p in packages {
        cmd.args(["-p", p]);
    }
    cmd.arg("--target-dir")
        .arg(&target)
        .current_dir(env!("CARGO_MANIFEST_DIR"));
    if profile_dir.file_name().is_some_and(|n| n == "release") {
        cmd.arg("--release");
    }
    let out = cmd.output().expect("cargo build");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    profile_dir
}
