//! The cost of a plugin call: host → plugin → host through the C ABI (encode the input, call,
//! copy and free the answer's buffer, decode it), against an in-process Rust call doing the
//! same JSON work (encode, decode on the "plugin" side, answer, encode, decode), in the same run.
//!
//! The plugin is the shipped `echo` func handler (`plugin.echo`), built here with cargo into
//! this profile's target folder (`cargo bench` does not build other members' cdylibs).
//!
//! Run: `cargo bench --bench plugins`.

use billhost::plugin::{PluginConfig, PluginHost};
use billhost_plugin_sdk::{
    Access, CallerInfo, Dispatch, FuncAnswer, FuncCall, FuncHandler, FuncSpec, FuncsAdapter,
    ParamSpec, Result,
};
use std::hint::black_box;
use std::path::PathBuf;
use std::process::Command;
use std::time::{Duration, Instant};

/// The same answer `plugin.echo` gives, compiled into the bench.
#[derive(Default)]
struct InProcessEcho;

impl FuncHandler for InProcessEcho {
    fn name(&self) -> &str {
        "echo"
    }
    fn funcs(&self) -> Vec<FuncSpec> {
        vec![FuncSpec {
            name: "plugin.echo".into(),
            title: "Answer the parameters back".into(),
            access: Access::User,
            params: vec![ParamSpec::new("text")],
        }]
    }
    fn call(&self, call: FuncCall) -> Result<FuncAnswer> {
        let mut fields: Vec<(String, String)> = call
            .params
            .into_iter()
            .filter(|(k, _)| !matches!(k.as_str(), "func" | "out" | "authinfo" | "auth"))
            .collect();
        fields.push(("caller".into(), call.caller.login));
        Ok(FuncAnswer { ok: false, fields })
    }
}

fn profile_dir() -> PathBuf {
    // target/<profile>/deps/plugins-HASH
    let exe = std::env::current_exe().expect("bench path");
    exe.parent()
        .and_then(|d| d.parent())
        .expect("profile dir")
        .to_path_buf()
}

fn build_echo() -> PathBuf {
    let dir = profile_dir();
    let target = dir.parent().expect("target dir");
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.args([
        "build",
        "--offline",
        "-p",
        "billhost-plugin-echo",
        "--target-dir",
    ])
    .arg(target)
    .current_dir(env!("CARGO_MANIFEST_DIR"));
    if dir.file_name().is_some_and(|n| n != "debug") {
        cmd.arg("--release");
    }
    let status = cmd.status().expect("run cargo");
    assert!(status.success(), "building the echo plugin failed");
    dir
}

fn input() -> FuncCall {
    FuncCall {
        settings: serde_json::Value::Null,
        func: "plugin.echo".into(),
        params: [
            ("func", "plugin.echo"),
            ("text", "hello from the bench, a few dozen bytes of text"),
            ("elid", "42"),
            ("lang", "en"),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect(),
        caller: CallerInfo {
            login: "root".into(),
            level: "admin".into(),
            account_id: None,
        },
    }
}

/// Runs `f` `n` times after a warm-up; answers the time per call.
fn time(n: u32, mut f: impl FnMut()) -> Duration {
    for _ in 0..n / 10 {
        f();
    }
    let start = Instant::now();
    for _ in 0..n {
        f();
    }
    start.elapsed() / n
}

fn main() {
    let dir = build_echo();
    let host = PluginHost::load(&PluginConfig {
        dirs: vec![dir.clone()],
        explicit: true,
        settings: Default::default(),
    });
    let plugin = host
        .get("echo")
        .unwrap_or_else(|| panic!("no echo plugin in {}: {:?}", dir.display(), host.errors()))
        .clone();
    let call = input();
    let adapter = FuncsAdapter(InProcessEcho);

    // Same answer both ways.
    let a: FuncAnswer = plugin.call("func.call", &call).expect("plugin call");
    let bytes = serde_json::to_vec(&call).unwrap();
    let b: FuncAnswer = serde_json::from_slice(&adapter.dispatch("func.call", &bytes).unwrap())
        .expect("in-process call");
    assert_eq!(a, b);

    let n = 200_000;
    let mut ratios = Vec::new();
    for round in 1..=5 {
        let via_plugin = time(n, || {
            let answer: FuncAnswer = plugin.call("func.call", black_box(&call)).unwrap();
            black_box(answer);
        });
        let in_process = time(n, || {
            let bytes = serde_json::to_vec(black_box(&call)).unwrap();
            let out = adapter.dispatch("func.call", &bytes).unwrap();
            let answer: FuncAnswer = serde_json::from_slice(&out).unwrap();
            black_box(answer);
        });
        let ratio = via_plugin.as_secs_f64() / in_process.as_secs_f64();
        ratios.push(ratio);
        println!(
            "round {round}: plugin round trip {:.3} µs/call, in-process same JSON work {:.3} µs/call, ratio {ratio:.2}x, \
             boundary overhead {:.3} µs/call",
            via_plugin.as_secs_f64() * 1e6,
            in_process.as_secs_f64() * 1e6,
            (via_plugin.as_secs_f64() - in_process.as_secs_f64()) * 1e6,
        );
    }
    ratios.sort_by(f64::total_cmp);
    println!(
        "plugins: median ratio plugin / in-process = {:.2}x over {n} calls per side per round",
        ratios[2]
    );
}
