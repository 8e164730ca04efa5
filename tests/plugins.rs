//! Plugins end to end: the built `billhost` binary with the built plugin libraries. The tests
//! build the libraries themselves, once (`cargo test` does not build other members' cdylibs):
//! the shipped plugins into this profile's target folder, the faulty test plugins of
//! `plugins/testing` into `target/plugin-tests`, so that they never land in the default plugin
//! folders. Every test whose plugins (gateways, refund handlers, notifiers, funcs that fail)
//! reach the ledger runs on SQLite and on PostgreSQL (a database of its own in the binary's
//! cluster); the tests of loading and listing plugins run on SQLite.

mod common;
#[path = "support/host.rs"]
mod host;
#[macro_use]
#[path = "support/pg.rs"]
mod pg;

use billhost_plugin_sdk::crypto::{hex, hmac_sha256};
use common::TempDir;
use host::{Host, id_of, text};
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::{Mutex, OnceLock};

const SECRET: &str = "s3cret-shared-with-testpay";

fn workspace() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `target/<profile>` of this test build, and the profile's name.
fn profile_dir() -> (PathBuf, String) {
    let exe = PathBuf::from(env!("CARGO_BIN_EXE_billhost"));
    let dir = exe.parent().expect("profile dir").to_path_buf();
    let profile = dir
        .file_name()
        .and_then(|n| n.to_str())
        .unwrap_or("debug")
        .to_string();
    (dir, profile)
}

fn target_dir() -> PathBuf {
    profile_dir().0.parent().expect("target dir").to_path_buf()
}

/// Runs cargo build; cargo's own lock serialises this with any other build.
fn cargo_build(args: &[&str], target: &Path) {
    static ONE_AT_A_TIME: Mutex<()> = Mutex::new(());
    let _guard = ONE_AT_A_TIME.lock().unwrap_or_else(|e| e.into_inner());
    let (_, profile) = profile_dir();
    let mut cmd = Command::new(std::env::var("CARGO").unwrap_or_else(|_| "cargo".into()));
    cmd.arg("build").arg("--offline").args(args);
    cmd.arg("--target-dir").arg(target);
    if profile == "release" {
        cmd.arg("--release");
    }
    cmd.current_dir(workspace());
    let out = cmd.output().expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build {args:?} failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The folder holding the shipped plugins, built once.
fn shipped() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        cargo_build(
            &[
                "-p",
                "billhost-plugin-manual",
                "-p",
                "billhost-plugin-testpay",
                "-p",
                "billhost-plugin-smsfile",
                "-p",
                "billhost-plugin-echo",
                "-p",
                "billhost-plugin-stripe",
                "-p",
                "billhost-plugin-yookassa",
            ],
            &target_dir(),
        );
        profile_dir().0
    })
}

/// The folder holding the faulty test plugins, built once.
fn faulty() -> &'static Path {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let target = target_dir().join("plugin-tests");
        let manifest = workspace().join("plugins/testing/Cargo.toml");
        cargo_build(
            &["--manifest-path", manifest.to_str().unwrap(), "--workspace"],
            &target,
        );
        target.join(profile_dir().1)
    })
}

/// A provider in USD, a client, and a testpay method whose gateway records live in `state`.
fn testpay_setup(host: &Host, state: &Path) -> (i64, i64) {
    host.ok("project.edit", &["elid=1", "sok=ok", "currency=840"]);
    let settings = serde_json::json!({
        "secret": SECRET,
        "state_dir": state.to_str().unwrap(),
    })
    .to_string();
    let pm = id_of(&host.ok(
        "paymethod.edit",
        &[
            "sok=ok",
            "name=TestPay",
            "currency=840",
            "module=testpay",
            &format!("settings={settings}"),
        ],
    ));
    let account = id_of(&host.ok("account.edit", &["sok=ok", "email=ann@example.com"]));
    (pm, account)
}

fn add_payment(host: &Host, account: i64, pm: i64, amount: &str) -> (i64, String) {
    let doc = host.ok(
        "payment.add",
        &[
            &format!("plid={account}"),
            "sok=ok",
            &format!("paymethod={pm}"),
            &format!("amount={amount}"),
        ],
    );
    assert_eq!(text(&doc["status"]), "2", "{doc}");
    assert!(
        text(&doc["redirect_url"]).starts_with("https://testpay.invalid/pay/"),
        "{doc}"
    );
    (id_of(&doc), text(&doc["external_id"]))
}

/// A payment made through testpay and confirmed paid by its signed callback: its id and
/// external id.
fn paid_by_testpay(host: &Host, account: i64, pm: i64, amount: &str) -> (i64, String) {
    let (payment, external) = add_payment(host, account, pm, amount);
    let body = callback_body(payment, &external, amount, "paid");
    host.ok(
        "payment.callback",
        &refs(&callback_args(pm, &body, &sign(&body))),
    );
    (payment, external)
}

fn callback_body(payment: i64, external: &str, amount: &str, status: &str) -> String {
    serde_json::json!({
        "payment_id": payment,
        "external_id": external,
        "amount": amount,
        "status": status,
    })
    .to_string()
}

fn sign(body: &str) -> String {
    hex(&hmac_sha256(SECRET.as_bytes(), body.as_bytes()))
}

fn callback_args(pm: i64, body: &str, signature: &str) -> Vec<String> {
    vec![
        "module=testpay".into(),
        format!("paymethod={pm}"),
        format!("body={body}"),
        format!("signature={signature}"),
    ]
}

fn refs(v: &[String]) -> Vec<&str> {
    v.iter().map(String::as_str).collect()
}

/// Another empty database on the same backend as `backend`.
fn another(backend: &pg::Backend) -> pg::Backend {
    match backend {
        pg::Backend::Sqlite => pg::Backend::Sqlite,
        pg::Backend::Postgres(_) => {
            pg::Backend::postgres("plugins_more").expect("the shared cluster")
        }
    }
}

backends! {
fn testpay_payment_is_credited_once_however_often_the_callback_comes(backend) {
    let host = Host::on(&backend, "plugins-pay", vec![shipped().to_path_buf()]);
    let state = TempDir::new("testpay-state");
    let (pm, account) = testpay_setup(&host, state.path());
    let (payment, external) = add_payment(&host, account, pm, "10.00");
    assert_eq!(host.payment_status(payment), 2);
    assert_eq!(host.balance(account), 0);

    // Tampered: the amount changed after signing. Nothing changes; history says why.
    let body = callback_body(payment, &external, "10.00", "paid");
    let tampered = body.replace("10.00", "1000.00");
    let e = host.error(
        "payment.callback",
        &refs(&callback_args(pm, &tampered, &sign(&body))),
    );
    assert_eq!(e["$object"], "signature", "{e}");
    assert_eq!(host.payment_status(payment), 2);
    assert_eq!(host.history_count(payment, "signature does not verify"), 1);
    host.check_clean();

    // Signed but for another amount: nothing changes either.
    let wrong = callback_body(payment, &external, "9.99", "paid");
    let e = host.error(
        "payment.callback",
        &refs(&callback_args(pm, &wrong, &sign(&wrong))),
    );
    assert_eq!(e["$object"], "amount", "{e}");
    assert_eq!(host.payment_status(payment), 2);
    assert_eq!(host.balance(account), 0);
    assert_eq!(host.history_count(payment, "differs from the payment's"), 1);
    host.check_clean();

    // The genuine callback credits.
    let args = callback_args(pm, &body, &sign(&body));
    let doc = host.ok("payment.callback", &refs(&args));
    assert_eq!(text(&doc["status"]), "4", "{doc}");
    assert_eq!(host.payment_status(payment), 4);
    assert_eq!(host.balance(account), 1000);
    host.check_clean();

    // Replayed 100 times: still one credit.
    for _ in 0..100 {
        let doc = host.ok("payment.callback", &refs(&args));
        assert_eq!(text(&doc["status"]), "4");
    }
    assert_eq!(host.balance(account), 1000);
    host.check_clean();

    // A second payment, its callback sent 8 times at once from 8 processes: one credit.
    let (second, external2) = add_payment(&host, account, pm, "25.50");
    let body2 = callback_body(second, &external2, "25.50", "paid");
    let args2 = callback_args(pm, &body2, &sign(&body2));
    let mut args2_full = vec!["call".to_string(), "payment.callback".to_string()];
    args2_full.extend(args2.iter().cloned());
    let children: Vec<_> = (0..8)
        .map(|_| {
            host.command(&refs(&args2_full))
                .stdout(std::process::Stdio::piped())
                .stderr(std::process::Stdio::piped())
                .spawn()
                .expect("spawn")
        })
        .collect();
    for child in children {
        let out = child.wait_with_output().expect("wait");
        assert!(out.status.success(), "{out:?}");
    }
    assert_eq!(host.payment_status(second), 4);
    assert_eq!(host.balance(account), 1000 + 2550);
    assert_eq!(
        host.query_i64(&format!(
            "SELECT count(*) FROM history WHERE object_type = 'payment' AND object_id = {second} AND description LIKE 'paid:%'"
        )),
        1
    );
    host.check_clean();
}
}

backends! {
fn testpay_partial_then_full_refund_ends_refunded(backend) {
    let host = Host::on(&backend, "plugins-refund", vec![shipped().to_path_buf()]);
    let state = TempDir::new("testpay-state");
    let (pm, account) = testpay_setup(&host, state.path());
    let (payment, external) = paid_by_testpay(&host, account, pm, "10.00");
    assert_eq!(host.balance(account), 1000);

    // Partial refund: done at the gateway, the payment stays paid.
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=4.00"],
    );
    assert_eq!(text(&doc["status"]), "6", "{doc}");
    assert_eq!(host.payment_status(payment), 4);
    assert_eq!(host.balance(account), 600);
    host.check_clean();

    // The gateway is down: the refund of the rest stays pending (status 5) with the error.
    std::fs::write(state.path().join("fail-refunds"), "").unwrap();
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=6.00"],
    );
    assert_eq!(text(&doc["status"]), "5", "{doc}");
    assert!(text(&doc["refund_error"]).contains("unavailable"), "{doc}");
    assert_eq!(host.payment_status(payment), 5);
    assert_eq!(host.balance(account), 0);
    let refund = host.query_i64(&format!(
        "SELECT max(id) FROM refund WHERE payment_id = {payment}"
    ));
    assert_eq!(
        host.query_i64(&format!("SELECT status FROM refund WHERE id = {refund}")),
        5
    );
    host.check_clean();
    // Nothing more can be refunded meanwhile.
    host.error(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=0.01"],
    );

    // Staff ask again, still failing; then, once the retry is due and the gateway is back, the
    // retry job confirms it once.
    let doc = host.ok("payment.refund.retry", &[&format!("elid={refund}")]);
    assert_eq!(text(&doc["failed"]), "1", "{doc}");
    std::fs::remove_file(state.path().join("fail-refunds")).unwrap();
    host.refund_due(refund);
    let jobs = host.run(&["run-jobs"]);
    assert!(jobs.status.success(), "{jobs:?}");
    assert!(
        String::from_utf8_lossy(&jobs.stdout).contains("payment.refund.retry: done=1"),
        "{}",
        String::from_utf8_lossy(&jobs.stdout)
    );
    assert_eq!(host.payment_status(payment), 6);
    assert_eq!(host.balance(account), 0);
    assert_eq!(
        host.query_i64(&format!("SELECT attempts FROM refund WHERE id = {refund}")),
        3
    );
    // Asked again: nothing happens twice.
    let doc = host.ok("payment.refund.retry", &[&format!("elid={refund}")]);
    assert_eq!(text(&doc["done"]), "1", "{doc}");
    assert_eq!(
        host.query_i64(&format!(
            "SELECT count(*) FROM refund WHERE payment_id = {payment}"
        )),
        2
    );
    let gateway: Value = serde_json::from_slice(
        &std::fs::read(state.path().join(format!("{external}.json"))).unwrap(),
    )
    .unwrap();
    assert_eq!(
        gateway["refunds"].as_object().unwrap().len(),
        2,
        "{gateway}"
    );
    assert_eq!(host.balance(account), 0);
    host.check_clean();
}
}

backends! {
fn checkpay_resolves_payments_stuck_in_progress(backend) {
    let host = Host::on(&backend, "plugins-checkpay", vec![shipped().to_path_buf()]);
    let state = TempDir::new("testpay-state");
    let (pm, account) = testpay_setup(&host, state.path());
    let (paid, ext_paid) = add_payment(&host, account, pm, "7.00");
    let (failed, ext_failed) = add_payment(&host, account, pm, "8.00");
    let (waiting, _) = add_payment(&host, account, pm, "9.00");
    // What happened at the gateway, without a callback arriving.
    let mark = |ext: &str, status: &str| {
        let path = state.path().join(format!("{ext}.json"));
        let mut v: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        v["status"] = Value::from(status);
        std::fs::write(&path, v.to_string()).unwrap();
    };
    mark(&ext_paid, "paid");
    mark(&ext_failed, "failed");
    let jobs = host.run(&["run-jobs"]);
    let out = String::from_utf8_lossy(&jobs.stdout);
    assert!(
        out.contains("payment.checkpay: checked=3 paid=1 failed=1 pending=1"),
        "{out}"
    );
    assert_eq!(host.payment_status(paid), 4);
    assert_eq!(host.payment_status(failed), 9);
    assert_eq!(host.payment_status(waiting), 2);
    assert_eq!(host.balance(account), 700);
    // Run again: nothing is credited twice.
    host.ok("payment.checkpay", &[]);
    assert_eq!(host.balance(account), 700);
    host.check_clean();
}
}

backends! {
fn asynchronous_confirmations_of_payments_and_refunds(backend) {
    let host = Host::on(&backend, "plugins-async", vec![shipped().to_path_buf()]);
    let state = TempDir::new("testpay-state");
    let (pm, account) = testpay_setup(&host, state.path());
    let (payment, external) = add_payment(&host, account, pm, "20.00");
    // The gateway first says pending, then paid.
    let pending = callback_body(payment, &external, "20.00", "pending");
    let doc = host.ok(
        "payment.callback",
        &refs(&callback_args(pm, &pending, &sign(&pending))),
    );
    assert_eq!(text(&doc["status"]), "2", "{doc}");
    assert_eq!(host.balance(account), 0);
    let paid = callback_body(payment, &external, "20.00", "paid");
    host.ok(
        "payment.callback",
        &refs(&callback_args(pm, &paid, &sign(&paid))),
    );
    assert_eq!(host.balance(account), 2000);
    // A paid payment told "failed" later: nothing changes, staff see it in history.
    let failed = callback_body(payment, &external, "20.00", "failed");
    let e = host.error(
        "payment.callback",
        &refs(&callback_args(pm, &failed, &sign(&failed))),
    );
    assert_eq!(e["$object"], "status", "{e}");
    assert_eq!(host.balance(account), 2000);

    // The gateway accepts the refund but confirms it only when asked again.
    std::fs::write(state.path().join("pending-refunds"), "").unwrap();
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=20.00"],
    );
    assert_eq!(text(&doc["status"]), "5", "{doc}");
    assert!(doc.get("refund_error").is_none(), "{doc}");
    assert_eq!(host.payment_status(payment), 5);
    assert_eq!(host.balance(account), 0);
    host.check_clean();
    let doc = host.ok("payment.refund.retry", &[]);
    assert_eq!(text(&doc["done"]), "1", "{doc}");
    assert_eq!(host.payment_status(payment), 6);
    assert_eq!(host.balance(account), 0);
    host.check_clean();
}
}

backends! {
fn a_manual_refund_while_a_gateway_refund_is_pending_keeps_the_ledger_consistent(backend) {
    let host = Host::on(&backend, "plugins-mixed", vec![shipped().to_path_buf()]);
    let state = TempDir::new("testpay-state");
    let (pm, account) = testpay_setup(&host, state.path());
    let (payment, _) = paid_by_testpay(&host, account, pm, "10.00");
    std::fs::write(state.path().join("pending-refunds"), "").unwrap();
    host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=4.00"],
    );
    assert_eq!(host.payment_status(payment), 5);
    // The rest of the balance goes back by hand (subaccount.refund refunds at once).
    let sub = host.query_i64(&format!(
        "SELECT id FROM subaccount WHERE account_id = {account}"
    ));
    host.ok("subaccount.refund", &[&format!("elid={sub}"), "sok=ok"]);
    assert_eq!(host.balance(account), 0);
    assert_eq!(host.payment_status(payment), 5);
    host.check_clean();
    host.ok("payment.refund.retry", &[]);
    assert_eq!(host.payment_status(payment), 6);
    host.check_clean();
}
}

backends! {
fn manual_gives_instructions_and_staff_confirm(backend) {
    let host = Host::on(&backend, "plugins-manual", vec![shipped().to_path_buf()]);
    host.ok("project.edit", &["elid=1", "sok=ok", "currency=840"]);
    let pm = id_of(&host.ok(
        "paymethod.edit",
        &[
            "sok=ok",
            "name=Bank",
            "currency=840",
            "module=manual",
            r#"settings={"instructions":"Pay {amount} {currency}, reference {number}"}"#,
        ],
    ));
    let account = id_of(&host.ok("account.edit", &["sok=ok", "email=bob@example.com"]));
    let doc = host.ok(
        "payment.add",
        &[
            &format!("plid={account}"),
            "sok=ok",
            &format!("paymethod={pm}"),
            "amount=12.00",
        ],
    );
    assert!(
        text(&doc["instructions"]).starts_with("Pay 12.00 USD, reference "),
        "{doc}"
    );
    assert_eq!(text(&doc["status"]), "1");
    let id = id_of(&doc);
    host.ok("payment.setpaid", &[&format!("elid={id}")]);
    assert_eq!(host.balance(account), 1200);
    // Manual refunds complete at once.
    host.ok(
        "payment.refund",
        &[&format!("elid={id}"), "sok=ok", "amount=2.00"],
    );
    assert_eq!(host.balance(account), 1000);
    host.check_clean();

    // Settings are the plugin's to validate; unknown modules are refused.
    let e = host.error(
        "paymethod.edit",
        &[
            &format!("elid={pm}"),
            "sok=ok",
            "module=testpay",
            "settings={}",
        ],
    );
    assert!(e["msg"]["$"].as_str().unwrap().contains("secret"), "{e}");
    let e = host.error(
        "paymethod.edit",
        &[&format!("elid={pm}"), "sok=ok", "module=nope"],
    );
    assert_eq!(e["$object"], "module", "{e}");
}
}

backends! {
fn sms_goes_through_the_notifier_and_is_recorded(backend) {
    let host = Host::on(&backend, "plugins-sms", vec![shipped().to_path_buf()]);
    let account = id_of(&host.ok("account.edit", &["sok=ok", "email=sam@example.com"]));
    let form = host.ok("account.sms", &[&format!("elid={account}")]);
    assert!(form.get("message").is_some(), "{form}");
    let doc = host.ok(
        "account.sms",
        &[
            &format!("elid={account}"),
            "sok=ok",
            "phone=+1 555 0100",
            "message=Your invoice is ready",
        ],
    );
    assert_eq!(text(&doc["status"]), "sent", "{doc}");
    let log = std::fs::read_to_string(host.dir.path().join("sms.log")).expect("sms.log");
    assert!(log.contains("Your invoice is ready"), "{log}");
    assert_eq!(
        host.query_i64("SELECT count(*) FROM sms WHERE status = 'sent' AND notifier = 'smsfile'"),
        1
    );
    // Every field of the spec's form is used: `type` picks the client's number that is sent to
    // and recorded, `phone` and `message` are recorded as given.
    host.ok(
        "account.edit",
        &[
            &format!("elid={account}"),
            "sok=ok",
            "valid_phone=+1 555 0199",
            "try_phone=+1 555 0142",
        ],
    );
    for (kind, phone) in [("valid_phone", "+1 555 0199"), ("try_phone", "+1 555 0142")] {
        host.ok(
            "account.sms",
            &[
                &format!("elid={account}"),
                "sok=ok",
                &format!("type={kind}"),
                "message=Typed",
            ],
        );
        assert_eq!(
            host.query_i64(&format!(
                "SELECT count(*) FROM sms WHERE phone = '{phone}' AND message = 'Typed' AND status = 'sent'"
            )),
            1,
            "type={kind}"
        );
    }
    assert_eq!(
        host.query_i64(
            "SELECT count(*) FROM sms WHERE phone = '+1 555 0100' AND message = 'Your invoice is ready'"
        ),
        1
    );
    // A failing notifier: the message is recorded as failed with the error.
    std::fs::write(
        host.dir.path().join("plugins.json"),
        r#"{"smsfile": {"fail": true}}"#,
    )
    .unwrap();
    let doc = host.ok(
        "account.sms",
        &[
            &format!("elid={account}"),
            "sok=ok",
            "phone=+1 555 0100",
            "message=x",
        ],
    );
    assert_eq!(text(&doc["status"]), "failed", "{doc}");
    assert_eq!(
        host.query_i64("SELECT count(*) FROM sms WHERE status = 'failed' AND error <> ''"),
        1
    );
    host.error(
        "account.sms",
        &[
            &format!("elid={account}"),
            "sok=ok",
            "phone=abc",
            "message=x",
        ],
    );
}
}

#[test]
fn func_plugins_add_funcs_like_built_in_ones() {
    let host = Host::new("plugins-funcs", vec![shipped().to_path_buf()]);
    let doc = host.ok("plugin.sha256", &["text=abc"]);
    assert_eq!(
        text(&doc["sha256"]),
        "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
    );
    let e = host.error("plugin.sha256", &[]);
    assert_eq!(e["$type"], "missed", "{e}");
    let funcs = host.run(&["funcs"]);
    let listing = String::from_utf8_lossy(&funcs.stdout);
    assert!(listing.contains("plugin.echo"), "{listing}");
    assert!(listing.contains("payment.callback"), "{listing}");

    let list = host.run(&["plugins"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listing}");
    for name in ["manual", "testpay", "stripe", "yookassa", "smsfile", "echo"] {
        assert!(listing.contains(name), "{listing}");
    }
    assert!(
        listing.contains("callback,checkpay,refund,partial_refund"),
        "{listing}"
    );

    // The same plugins in a second folder: the first wins, the rest are skipped, no error.
    let twice = Host::new(
        "plugins-twice",
        vec![shipped().to_path_buf(), shipped().to_path_buf()],
    );
    let list = twice.run(&["plugins"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listing}");
    assert_eq!(listing.matches("skipped ").count(), 6, "{listing}");

    // Settings from the plugin configuration are the plugin's to validate, at load.
    std::fs::write(
        twice.dir.path().join("plugins.json"),
        r#"{"smsfile": {"path": 5}}"#,
    )
    .unwrap();
    let list = twice.run(&["plugins"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert_eq!(list.status.code(), Some(1), "{listing}");
    assert!(
        listing.contains("module 'smsfile': bad settings: path is a non-empty file name"),
        "{listing}"
    );
    // Without its notifier, account.sms says so; everything else goes on.
    let account = id_of(&twice.ok("account.edit", &["sok=ok", "email=zed@example.com"]));
    let e = twice.error(
        "account.sms",
        &[
            &format!("elid={account}"),
            "sok=ok",
            "phone=+1 555 0100",
            "message=x",
        ],
    );
    assert_eq!(e["$object"], "notifier", "{e}");
}

backends! {
fn faulty_plugins_give_clear_errors_and_the_host_keeps_serving(backend) {
    let host = Host::on(
        &backend,
        "plugins-faulty",
        vec![faulty().to_path_buf(), shipped().to_path_buf()],
    );
    let list = host.run(&["plugins"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert_eq!(list.status.code(), Some(1), "{listing}");
    assert!(
        listing.contains("speaks plugin ABI version 999, this billhost speaks version 1"),
        "{listing}"
    );
    assert!(
        listing.contains("no `billhost_plugin_entry` symbol"),
        "{listing}"
    );
    assert!(listing.contains("testpay"), "{listing}");

    let e = host.error("test.panic", &[]);
    assert_eq!(e["$type"], "internal", "{e}");
    assert!(
        e["msg"]["$"]
            .as_str()
            .unwrap()
            .contains("plugin 'panics' panicked in func.call: deliberate test panic"),
        "{e}"
    );
    let e = host.error("test.badjson", &[]);
    assert!(
        e["msg"]["$"]
            .as_str()
            .unwrap()
            .contains("plugin 'badjson' answered func.call with invalid JSON"),
        "{e}"
    );
    // The same process keeps answering after a panic: serve, and call around the faults.
    host.ok("plugin.sha256", &["text=abc"]);
    host.ok("account", &[]);

    // A missing plugin folder is an error of its own, not a stop.
    let gone = Host::on(
        &another(&backend),
        "plugins-gone",
        vec![PathBuf::from("/nonexistent/plugins")],
    );
    let list = gone.run(&["plugins"]);
    assert!(
        String::from_utf8_lossy(&list.stdout).contains("cannot read the plugin folder"),
        "{list:?}"
    );
    gone.ok("account", &[]);
}
}

backends! {
fn faults_inside_a_serving_process_leave_it_answering(backend) {
    // One process, many calls: the HTTP server with the faulty plugins loaded.
    let host = Host::on(
        &backend,
        "plugins-serve",
        vec![faulty().to_path_buf(), shipped().to_path_buf()],
    );
    let server = Server::start(&host);
    let get = |query: &str| server.request(&format!("GET /billmgr?{query} HTTP/1.1"), "");
    for _ in 0..3 {
        let r = get("func=test.panic&authinfo=admin:secret");
        assert!(r.contains("panicked in func.call"), "{r}");
        let r = get("func=test.badjson&authinfo=admin:secret");
        assert!(r.contains("invalid JSON"), "{r}");
        let r = get("func=plugin.sha256&text=abc");
        assert!(r.contains("ba7816bf"), "{r}");
    }
}
}

/// A running `billhost serve`, stopped when dropped.
struct Server {
    child: std::process::Child,
    addr: String,
}

impl Server {
    fn start(host: &Host) -> Server {
        let mut child = host
            .command(&["serve", "--listen", "127.0.0.1:0"])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("serve");
        let stdout = child.stdout.take().unwrap();
        let mut lines = std::io::BufRead::lines(std::io::BufReader::new(stdout));
        let addr = loop {
            let line = lines.next().expect("serve announces its address").unwrap();
            if let Some(rest) = line.strip_prefix("billhost serve: listening on http://") {
                break rest.trim_end_matches("/billmgr").to_string();
            }
        };
        Server { child, addr }
    }

    /// Sends a raw HTTP/1.1 request; answers the whole response text.
    fn request(&self, head: &str, body: &str) -> String {
        use std::io::{Read, Write};
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        write!(
            s,
            "{head}\r\nHost: x\r\nConnection: close\r\nContent-Length: {}\r\n\r\n{body}",
            body.len()
        )
        .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        out
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        unsafe_kill(self.child.id());
        let _ = self.child.wait();
    }
}

backends! {
fn gateways_post_raw_callbacks_over_http(backend) {
    let host = Host::on(&backend, "plugins-http", vec![shipped().to_path_buf()]);
    let state = TempDir::new("testpay-state");
    let (pm, account) = testpay_setup(&host, state.path());
    let (payment, external) = add_payment(&host, account, pm, "10.00");
    let server = Server::start(&host);
    let body = callback_body(payment, &external, "10.00", "paid");
    let post = |body: &str, signature: &str| {
        server.request(
            &format!(
                "POST /billmgr/callback/testpay?paymethod={pm} HTTP/1.1\r\nContent-Type: application/json\r\nX-Testpay-Signature: {signature}"
            ),
            body,
        )
    };
    let tampered = body.replace("10.00", "11.00");
    let r = post(&tampered, &sign(&body));
    assert!(r.starts_with("HTTP/1.1 400"), "{r}");
    assert!(r.contains("signature"), "{r}");
    assert_eq!(host.payment_status(payment), 2);
    for _ in 0..3 {
        let r = post(&body, &sign(&body));
        assert!(r.starts_with("HTTP/1.1 200"), "{r}");
        assert!(r.ends_with("OK"), "{r}");
    }
    assert_eq!(host.payment_status(payment), 4);
    assert_eq!(host.balance(account), 1000);
    drop(server);
    host.check_clean();
}
}

fn unsafe_kill(pid: u32) {
    let _ = Command::new("kill").arg(pid.to_string()).status();
}

/// The README's "Write a plugin" section, followed by an outsider: a new crate in a
/// temporary folder with a path dependency on the SDK, built offline, loaded, called.
#[test]
fn a_plugin_written_from_the_docs_builds_and_loads() {
    let docs = std::fs::read_to_string(workspace().join("README.md")).unwrap();
    let section = docs
        .split("## Write a plugin")
        .nth(1)
        .expect("a Write a plugin section");
    let blocks = code_blocks(section);
    let manifest = blocks
        .iter()
        .find(|(lang, _)| lang == "toml")
        .expect("a Cargo.toml block")
        .1
        .clone();
    let lib = blocks
        .iter()
        .find(|(lang, _)| lang == "rust")
        .expect("a lib.rs block")
        .1
        .clone();
    let dir = TempDir::new("outsider");
    let krate = dir.path().join("hello-plugin");
    std::fs::create_dir_all(krate.join("src")).unwrap();
    let sdk = workspace().join("plugins/sdk");
    let manifest = manifest.replace("/path/to/billhost/plugins/sdk", sdk.to_str().unwrap());
    std::fs::write(krate.join("Cargo.toml"), manifest).unwrap();
    std::fs::write(krate.join("src/lib.rs"), lib).unwrap();
    // The workspace's lockfile pins versions already in the local cache: offline works.
    std::fs::copy(workspace().join("Cargo.lock"), krate.join("Cargo.lock")).unwrap();
    let target = target_dir().join("plugin-tests");
    cargo_build(
        &[
            "--manifest-path",
            krate.join("Cargo.toml").to_str().unwrap(),
        ],
        &target,
    );
    let built = target.join(profile_dir().1);
    let lib_name = format!(
        "{}hello_plugin.{}",
        std::env::consts::DLL_PREFIX,
        std::env::consts::DLL_EXTENSION
    );
    let only = dir.path().join("plugins");
    std::fs::create_dir_all(&only).unwrap();
    std::fs::copy(built.join(&lib_name), only.join(&lib_name)).unwrap();
    let host = Host::new("outsider-host", vec![only]);
    let list = host.run(&["plugins"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    assert!(list.status.success(), "{listing}");
    assert!(listing.contains("hello"), "{listing}");
    let doc = host.ok("hello.greet", &["name=Ann"]);
    assert_eq!(text(&doc["greeting"]), "Hello, Ann!", "{doc}");
}

/// The fenced code blocks of a markdown text: (language, body).
fn code_blocks(md: &str) -> Vec<(String, String)> {
    let mut blocks = Vec::new();
    let mut current: Option<(String, String)> = None;
    for line in md.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("```") {
            match current.take() {
                Some(block) => blocks.push(block),
                None => current = Some((rest.trim().to_string(), String::new())),
            }
        } else if let Some((_, body)) = current.as_mut() {
            body.push_str(line);
            body.push('\n');
        }
    }
    blocks
}

backends! {
/// The in-process path (as `billhost serve` runs it): one engine, 8 threads delivering the same
/// callback at the same moment, 3 rounds.
fn concurrent_callbacks_from_threads_in_one_process_credit_once(backend) {
    use billhost::auth::Caller;
    use billhost::plugin::{self, PluginConfig, PluginHost};
    use billhost::{Engine, EngineConfig, Params};
    use std::sync::{Arc, Barrier};

    let dir = TempDir::new("plugins-threads");
    let state = TempDir::new("testpay-state");
    let mut engine = Engine::open(EngineConfig::new(backend.db(dir.path()))).expect("open");
    let host = PluginHost::load(&PluginConfig {
        dirs: vec![shipped().to_path_buf()],
        explicit: true,
        settings: Default::default(),
    });
    assert!(host.errors().is_empty(), "{:?}", host.errors());
    let _plugins = plugin::install(&mut engine, host);
    let engine = Arc::new(engine);
    let root = Caller::superuser();
    let call = |func: &str, params: &[(&str, &str)]| {
        let doc = engine.call(&root, func, Params::from_pairs(params.iter().copied()));
        assert!(!doc.is_error(), "{func}: {doc:?}");
        doc
    };
    call(
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "840")],
    );
    let settings =
        serde_json::json!({"secret": SECRET, "state_dir": state.path().to_str().unwrap()})
            .to_string();
    let pm = call(
        "paymethod.edit",
        &[
            ("sok", "ok"),
            ("name", "TestPay"),
            ("currency", "840"),
            ("module", "testpay"),
            ("settings", &settings),
        ],
    );
    let pm: i64 = pm.field("id").unwrap().parse().unwrap();
    let account = call(
        "account.edit",
        &[("sok", "ok"), ("email", "tia@example.com")],
    );
    let account: i64 = account.field("id").unwrap().parse().unwrap();
    for round in 1..=3 {
        let doc = call(
            "payment.add",
            &[
                ("plid", &account.to_string()),
                ("sok", "ok"),
                ("paymethod", &pm.to_string()),
                ("amount", "5.00"),
            ],
        );
        let payment: i64 = doc.field("id").unwrap().parse().unwrap();
        let external = doc.field("external_id").unwrap().to_string();
        let body = callback_body(payment, &external, "5.00", "paid");
        let signature = sign(&body);
        let barrier = Arc::new(Barrier::new(8));
        let threads: Vec<_> = (0..8)
            .map(|_| {
                let (engine, barrier) = (engine.clone(), barrier.clone());
                let (body, signature) = (body.clone(), signature.clone());
                std::thread::spawn(move || {
                    let params = Params::from_pairs([
                        ("module", "testpay".to_string()),
                        ("paymethod", pm.to_string()),
                        ("body", body),
                        ("signature", signature),
                    ]);
                    barrier.wait();
                    engine.call(&Caller::anonymous("192.0.2.1"), "payment.callback", params)
                })
            })
            .collect();
        for t in threads {
            let doc = t.join().expect("thread");
            assert_eq!(doc.field("status"), Some("4"), "{doc:?}");
        }
        let balance: i64 = engine
            .read(|c| {
                Ok(c.query_row(
                    "SELECT balance FROM subaccount WHERE account_id = ?1",
                    [account],
                    |r| r.get(0),
                )?)
            })
            .unwrap();
        assert_eq!(balance, 500 * round);
    }
    let violations = engine.read(billhost::ledger::check).expect("check");
    assert!(violations.is_empty(), "{violations:?}");
}
}

backends! {
/// A refund the gateway fails waits longer after each failure before the retry job asks again
/// (staff may ask at any time), and completes once the gateway is back.
fn a_failing_gateway_refund_is_retried_with_growing_delays(backend) {
    let host = Host::on(
        &backend,
        "plugins-refund-backoff",
        vec![shipped().to_path_buf()],
    );
    let state = TempDir::new("testpay-state");
    let (pm, account) = testpay_setup(&host, state.path());
    let (payment, _) = paid_by_testpay(&host, account, pm, "10.00");
    assert_eq!(host.balance(account), 1000);

    std::fs::write(state.path().join("fail-refunds"), "").unwrap();
    let doc = host.ok(
        "payment.refund",
        &[&format!("elid={payment}"), "sok=ok", "amount=10.00"],
    );
    assert!(doc.get("refund_error").is_some(), "{doc}");
    let refund: i64 = text(&doc["refund"]).parse().expect("a refund id");
    // Seconds from now until the refund's next attempt, and its attempts.
    let wait = |host: &Host| host.refund_wait(refund);
    let attempts =
        |host: &Host| host.query_i64(&format!("SELECT attempts FROM refund WHERE id = {refund}"));
    assert_eq!(attempts(&host), 1);
    assert!((295..=300).contains(&wait(&host)), "{}", wait(&host));

    // The job leaves it alone until it is due.
    let doc = host.ok("payment.refund.retry", &[]);
    assert_eq!(text(&doc["later"]), "1", "{doc}");
    assert_eq!(text(&doc["failed"]), "0", "{doc}");
    assert_eq!(attempts(&host), 1);

    // Staff ask now: it fails again and waits longer.
    let doc = host.ok("payment.refund.retry", &[&format!("elid={refund}")]);
    assert_eq!(text(&doc["failed"]), "1", "{doc}");
    assert_eq!(attempts(&host), 2);
    assert!((895..=900).contains(&wait(&host)), "{}", wait(&host));

    // Once due (as if 15 minutes had passed) and the gateway is back, the job completes it.
    host.refund_due(refund);
    std::fs::remove_file(state.path().join("fail-refunds")).unwrap();
    let doc = host.ok("payment.refund.retry", &[]);
    assert_eq!(text(&doc["done"]), "1", "{doc}");
    assert_eq!(text(&doc["later"]), "0", "{doc}");
    assert_eq!(host.payment_status(payment), 6);
    assert_eq!(host.balance(account), 0);
    host.check_clean();
}
}

backends! {
/// A gateway's secret settings are never shown: the view has a mask in their place, the mask
/// sent back with other changes keeps the stored secret, and a new value replaces it.
fn gateway_secrets_are_masked_in_views_and_kept_when_the_mask_comes_back(backend) {
    let host = Host::on(&backend, "plugins-secrets", vec![shipped().to_path_buf()]);
    let state = TempDir::new("testpay-state");
    let (pm, _account) = testpay_setup(&host, state.path());
    let stored = |host: &Host| -> Value {
        let text: String = host
            .db()
            .query_row("SELECT settings FROM paymethod WHERE id = ?1", [pm], |r| {
                r.get(0)
            })
            .expect("settings");
        serde_json::from_str(&text).expect("stored settings")
    };

    let view = host.ok("paymethod.edit", &[&format!("elid={pm}")]);
    assert!(!view.to_string().contains(SECRET), "{view}");
    let mut shown: Value = serde_json::from_str(&text(&view["settings"])).expect("settings");
    assert_eq!(shown["secret"], "********");
    assert_eq!(
        shown["state_dir"],
        state.path().to_str().unwrap(),
        "not a secret"
    );

    // The view's settings, edited and sent back: the other change is made, the secret kept.
    shown["base_url"] = "https://pay.example".into();
    host.ok(
        "paymethod.edit",
        &[
            &format!("elid={pm}"),
            "sok=ok",
            &format!("settings={shown}"),
        ],
    );
    assert_eq!(stored(&host)["secret"], SECRET);
    assert_eq!(stored(&host)["base_url"], "https://pay.example");

    // A new secret replaces it, and is not shown either.
    shown["secret"] = "n3w-secret".into();
    host.ok(
        "paymethod.edit",
        &[
            &format!("elid={pm}"),
            "sok=ok",
            &format!("settings={shown}"),
        ],
    );
    assert_eq!(stored(&host)["secret"], "n3w-secret");
    let view = host.ok("paymethod.edit", &[&format!("elid={pm}")]);
    assert!(!view.to_string().contains("n3w-secret"), "{view}");
    // A key named like a secret is masked too, whether or not the gateway declares it (a
    // gateway built before `secret_settings` declares none).
    shown["api_token"] = "t0ken-of-the-gateway".into();
    host.ok(
        "paymethod.edit",
        &[
            &format!("elid={pm}"),
            "sok=ok",
            &format!("settings={shown}"),
        ],
    );
    let view = host.ok("paymethod.edit", &[&format!("elid={pm}")]);
    assert!(!view.to_string().contains("t0ken-of-the-gateway"), "{view}");
    let again: Value = serde_json::from_str(&text(&view["settings"])).expect("settings");
    assert_eq!(again["api_token"], "********");
    assert_eq!(again["base_url"], "https://pay.example", "not a secret");
    assert_eq!(stored(&host)["api_token"], "t0ken-of-the-gateway");

    // Settings that are not JSON, or not an object, are refused without being echoed.
    for bad in ["{\"secret\": \"n3w-secret\"", "[\"n3w-secret\"]"] {
        let e = host.error(
            "paymethod.edit",
            &[&format!("elid={pm}"), "sok=ok", &format!("settings={bad}")],
        );
        assert!(!e.to_string().contains("n3w-secret"), "{e}");
        assert_eq!(e["$object"], "settings", "{e}");
    }
    assert_eq!(stored(&host)["secret"], "n3w-secret", "unchanged");

    // History says that the settings changed, never what they are.
    let leaked = host.query_i64(
        "SELECT count(*) FROM history WHERE description LIKE '%s3cret%' OR description LIKE '%n3w-secret%'",
    );
    assert_eq!(leaked, 0);
}
}

#[test]
fn listings_report_every_library_that_cannot_load_and_survive_huge_manifests() {
    let folder = TempDir::new("plugins-odd-files");
    let dir = folder.path().join("plugins");
    std::fs::create_dir(&dir).unwrap();
    let many = format!(
        "libbillhost_test_many_funcs.{}",
        std::env::consts::DLL_EXTENSION
    );
    std::fs::copy(faulty().join(&many), dir.join(&many)).unwrap();
    let so = |name: &str| dir.join(format!("{name}.{}", std::env::consts::DLL_EXTENSION));
    std::fs::write(so("empty"), b"").unwrap();
    std::fs::write(so("text"), b"#!/bin/sh\necho not a library\n").unwrap();
    std::fs::create_dir(so("folder")).unwrap();
    let fifo = Command::new("mkfifo").arg(so("pipe")).status().unwrap();
    assert!(fifo.success());
    let host = Host::new("plugins-odd", vec![dir.clone()]);

    let list = host.run(&["plugins"]);
    let listing = String::from_utf8_lossy(&list.stdout);
    // Exit 1 for the libraries that did not load, not 101 for a panic.
    assert_eq!(list.status.code(), Some(1), "{listing}\n{list:?}");
    for (file, why) in [
        ("empty", "the file is empty, not a shared library"),
        (
            "text",
            "not a shared library: the file does not start with the ELF header",
        ),
        ("folder", "not a library: a folder"),
        ("pipe", "not a library: not a regular file"),
    ] {
        let line = listing
            .lines()
            .find(|l| l.starts_with("error ") && l.contains(&format!("/{file}.")))
            .unwrap_or_else(|| panic!("no error line for {file}: {listing}"));
        assert!(line.contains(why), "{line}");
    }
    let row = listing
        .lines()
        .find(|l| l.starts_with("manyfuncs"))
        .unwrap_or_else(|| panic!("{listing}"));
    assert!(row.contains("many.func00000,"), "{row}");
    assert!(row.contains("(20000 funcs;"), "{row}");
    assert!(row.len() < 1000, "{row}");

    let funcs = host.run(&["funcs"]);
    assert!(funcs.status.success(), "{funcs:?}");
    let text = String::from_utf8_lossy(&funcs.stdout);
    assert!(
        text.contains("many.func19999"),
        "{}",
        &text[..200.min(text.len())]
    );
    assert_eq!(
        host.call("many.func12345", &[])["func"]["$"],
        "many.func12345"
    );
}
