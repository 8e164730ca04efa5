//! Golden documents for every func of the engine core, in XML and JSON (and all four formats
//! for one document of each kind). The steps run in order on one database, so each document
//! also shows the state the earlier steps left. `BLESS=1 cargo test --test golden_core`
//! rewrites the files after a deliberate change; review the diff.

mod common;
#[path = "support/pg.rs"]
mod pg;

use billhost::wire::Format;
use billhost::{Engine, EngineConfig};
use common::{Fixture, TempDir, golden, normalize, render};
use std::path::PathBuf;

type Step = (
    &'static str,
    Option<&'static str>,
    &'static str,
    &'static [(&'static str, &'static str)],
);

const ANN: Option<&str> = Some("ann@example.com");
const BOB: Option<&str> = Some("bob@example.com");

const STEPS: &[Step] = &[
    ("register-form", None, "register", &[]),
    (
        "register-ann",
        None,
        "register",
        &[
            ("sok", "ok"),
            ("email", "ann@example.com"),
            ("passwd", "Secret123"),
            ("realname", "Ann"),
            ("conditions_agree", "on"),
        ],
    ),
    (
        "register-bob",
        None,
        "register",
        &[
            ("sok", "ok"),
            ("email", "bob@example.com"),
            ("passwd", "Secret123"),
            ("realname", "Bob <&> \"Builder\""),
            ("country", "276"),
        ],
    ),
    (
        "register-duplicate",
        None,
        "register",
        &[
            ("sok", "ok"),
            ("email", "ANN@Example.com"),
            ("passwd", "Secret123"),
        ],
    ),
    (
        "register-no-email",
        None,
        "register",
        &[("sok", "ok"), ("passwd", "Secret123")],
    ),
    (
        "register-short-password",
        None,
        "register",
        &[
            ("sok", "ok"),
            ("email", "cat@example.com"),
            ("passwd", "short"),
        ],
    ),
    (
        "register-bad-email",
        None,
        "register",
        &[
            ("sok", "ok"),
            ("email", "not an email"),
            ("passwd", "Secret123"),
        ],
    ),
    (
        "register-bad-country",
        None,
        "register",
        &[
            ("sok", "ok"),
            ("email", "cat@example.com"),
            ("passwd", "Secret123"),
            ("country", "9999"),
        ],
    ),
    (
        "register-bad-project",
        None,
        "register",
        &[
            ("sok", "ok"),
            ("email", "cat@example.com"),
            ("passwd", "Secret123"),
            ("project", "7"),
        ],
    ),
    ("account", None, "account", &[]),
    ("account-view", None, "account.edit", &[("elid", "1")]),
    ("account-blank", None, "account.edit", &[]),
    (
        "account-create",
        None,
        "account.edit",
        &[
            ("sok", "ok"),
            ("email", "carol@example.com"),
            ("name", "Carol Ltd"),
            ("passwd", "Secret123"),
            ("confirm", "Secret123"),
            ("note", "key client"),
        ],
    ),
    (
        "account-create-mismatch",
        None,
        "account.edit",
        &[
            ("sok", "ok"),
            ("email", "dan@example.com"),
            ("passwd", "Secret123"),
            ("confirm", "Other1234"),
        ],
    ),
    (
        "account-change",
        None,
        "account.edit",
        &[
            ("sok", "ok"),
            ("elid", "1"),
            ("name", "Ann Smith"),
            ("label", "vip"),
            ("country", "250"),
        ],
    ),
    (
        "account-change-unknown",
        None,
        "account.edit",
        &[("sok", "ok"), ("elid", "42"), ("name", "Nobody")],
    ),
    (
        "account-user-view-own",
        ANN,
        "account.edit",
        &[("elid", "1")],
    ),
    (
        "account-user-change-own",
        ANN,
        "account.edit",
        &[
            ("sok", "ok"),
            ("elid", "1"),
            ("try_phone", "+49 30 1234567"),
        ],
    ),
    (
        "account-user-staff-field",
        ANN,
        "account.edit",
        &[("sok", "ok"), ("elid", "1"), ("label", "self-promoted")],
    ),
    (
        "account-user-view-other",
        ANN,
        "account.edit",
        &[("elid", "2")],
    ),
    ("account-user-list", ANN, "account", &[]),
    (
        "account-user-delete",
        ANN,
        "account.delete",
        &[("elid", "1")],
    ),
    (
        "account-filter-set",
        None,
        "account.filter",
        &[("sok", "ok"), ("name", "bob")],
    ),
    ("account-filter-form", None, "account.filter", &[]),
    ("account-filtered", None, "account", &[]),
    (
        "account-filter-clear",
        None,
        "account.filter",
        &[("sok", "ok")],
    ),
    (
        "account-inline-filter",
        None,
        "account",
        &[("filter", "on"), ("email", "carol")],
    ),
    (
        "account-page-2",
        None,
        "account",
        &[("p_num", "2"), ("p_cnt", "1")],
    ),
    (
        "account-sorted",
        None,
        "account",
        &[("p_sort", "name"), ("p_order", "desc")],
    ),
    (
        "account-bad-sort",
        None,
        "account",
        &[("p_sort", "password")],
    ),
    ("account-bad-page", None, "account", &[("p_num", "0")]),
    (
        "project-create",
        None,
        "project.edit",
        &[
            ("sok", "ok"),
            ("name", "Second Provider"),
            ("currency", "978"),
        ],
    ),
    ("project-list", None, "project", &[]),
    ("project-view", None, "project.edit", &[("elid", "2")]),
    ("account-project", None, "account.project", &[("plid", "1")]),
    (
        "account-project-suspend",
        None,
        "account.project.suspend",
        &[("plid", "1"), ("elid", "1")],
    ),
    (
        "account-project-resume",
        None,
        "account.project.resume",
        &[("plid", "1"), ("elid", "2")],
    ),
    (
        "account-project-after",
        None,
        "account.project",
        &[("plid", "1")],
    ),
    ("account-project-no-plid", None, "account.project", &[]),
    (
        "group-create",
        None,
        "accountgroup.edit",
        &[("sok", "ok"), ("name", "Resellers")],
    ),
    (
        "group-duplicate",
        None,
        "accountgroup.edit",
        &[("sok", "ok"), ("name", "resellers")],
    ),
    (
        "account-group-join",
        None,
        "account.group.resume",
        &[("plid", "1"), ("elid", "1")],
    ),
    ("account-group", None, "account.group", &[("plid", "1")]),
    (
        "account-group-leave",
        None,
        "account.group.suspend",
        &[("plid", "1"), ("elid", "1")],
    ),
    ("group-list", None, "accountgroup", &[]),
    ("group-view", None, "accountgroup.edit", &[("elid", "1")]),
    (
        "group-rename",
        None,
        "accountgroup.edit",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("name", "Partners"),
            ("note", "resellers and agents"),
        ],
    ),
    (
        "group-second",
        None,
        "accountgroup.edit",
        &[("sok", "ok"), ("name", "Doomed")],
    ),
    (
        "account-group-join-second",
        None,
        "account.group.resume",
        &[("plid", "3"), ("elid", "2")],
    ),
    (
        "group-delete-busy",
        None,
        "accountgroup.delete",
        &[("elid", "1, 2")],
    ),
    (
        "account-group-leave-second",
        None,
        "account.group.suspend",
        &[("plid", "3"), ("elid", "2")],
    ),
    (
        "group-delete",
        None,
        "accountgroup.delete",
        &[("elid", "2")],
    ),
    ("group-list-after", None, "accountgroup", &[]),
    ("setfilter", None, "account.setfilter", &[("elid", "2")]),
    ("payment-filter-form", None, "account.payment.filter", &[]),
    (
        "ticket-form",
        None,
        "ticket.write.account",
        &[("elid", "1")],
    ),
    (
        "ticket-write",
        None,
        "ticket.write.account",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("subject", "Welcome"),
            ("message", "Hello Ann,\nwelcome aboard."),
        ],
    ),
    (
        "ticket-write-no-subject",
        None,
        "ticket.write.account",
        &[("elid", "1"), ("sok", "ok"), ("message", "Hi")],
    ),
    ("ticket-list", None, "ticket", &[]),
    ("ticket-list-ann", ANN, "ticket", &[]),
    ("ticket-list-bob", BOB, "ticket", &[]),
    ("ticket-messages", ANN, "ticket.message", &[("plid", "1")]),
    (
        "ticket-messages-bob",
        BOB,
        "ticket.message",
        &[("plid", "1")],
    ),
    (
        "delete-atomic",
        None,
        "account.delete",
        &[("elid", "2, 99")],
    ),
    ("delete", None, "account.delete", &[("elid", "2")]),
    ("delete-again", None, "account.delete", &[("elid", "2")]),
    ("account-after-delete", None, "account", &[]),
    (
        "account-deleted",
        None,
        "account",
        &[("filter", "on"), ("account_status", "3")],
    ),
    ("su", None, "account.su", &[("elid", "1")]),
    ("su-deleted", None, "account.su", &[("elid", "2")]),
    (
        "auth-wrong",
        None,
        "auth",
        &[("username", "ann@example.com"), ("password", "wrong")],
    ),
    (
        "auth",
        None,
        "auth",
        &[("username", "ann@example.com"), ("password", "Secret123")],
    ),
    (
        "auth-deleted-client",
        None,
        "auth",
        &[("username", "bob@example.com"), ("password", "Secret123")],
    ),
    ("whoami", ANN, "whoami", &[]),
    (
        "country",
        None,
        "country",
        &[("filter", "on"), ("iso2", "DE")],
    ),
    (
        "currency",
        None,
        "currency",
        &[("filter", "on"), ("iso", "EUR")],
    ),
    ("unknown-func", None, "account.frobnicate", &[]),
    (
        "bad-elid",
        None,
        "account.edit",
        &[("elid", "1; DROP TABLE account")],
    ),
    // account.edit's view checks its object itself (`EditOps::view_checks_object`): the same
    // answers as the dispatcher's check.
    (
        "account-view-missing",
        None,
        "account.edit",
        &[("elid", "999")],
    ),
    (
        "account-user-view-missing",
        BOB,
        "account.edit",
        &[("elid", "999")],
    ),
    (
        "account-user-view-own-again",
        BOB,
        "account.edit",
        &[("elid", "2")],
    ),
    // A client's logins (`user`, `user.edit`, `user.suspend`).
    ("user", None, "user", &[]),
    (
        "user-by-email",
        None,
        "user",
        &[("filter", "on"), ("email", "ann@")],
    ),
    (
        "user-create",
        None,
        "user.edit",
        &[
            ("sok", "ok"),
            ("plid", "1"),
            ("name", "ann.two@example.com"),
            ("passwd", "Secret456"),
            ("realname", "Ann Two"),
        ],
    ),
    (
        "user-create-own",
        ANN,
        "user.edit",
        &[
            ("sok", "ok"),
            ("name", "ann.three@example.com"),
            ("passwd", "Secret789"),
        ],
    ),
    (
        "user-create-taken",
        ANN,
        "user.edit",
        &[
            ("sok", "ok"),
            ("name", "ANN.two@example.com"),
            ("passwd", "Secret789"),
        ],
    ),
    (
        "user-create-other-client",
        ANN,
        "user.edit",
        &[
            ("sok", "ok"),
            ("plid", "2"),
            ("name", "intruder@example.com"),
            ("passwd", "Secret789"),
        ],
    ),
    ("user-own-list", ANN, "user", &[]),
    ("user-view", ANN, "user.edit", &[("elid", "4")]),
    (
        "user-suspend-by-edit",
        None,
        "user.edit",
        &[("sok", "ok"), ("elid", "5"), ("enabled", "off")],
    ),
    (
        "user-rename-first-login",
        None,
        "user.edit",
        &[
            ("sok", "ok"),
            ("elid", "2"),
            ("name", "ann.new@example.com"),
        ],
    ),
    ("user-suspend-self", ANN, "user.suspend", &[("elid", "1")]),
    ("user-resume", ANN, "user.resume", &[("elid", "5")]),
    ("user-view-missing", None, "user.edit", &[("elid", "999")]),
    // One-time login keys and keepalive.
    (
        "session-newkey",
        None,
        "session.newkey",
        &[
            ("username", "ann@example.com"),
            ("key", "key-for-ann-0123456789"),
        ],
    ),
    (
        "auth-key",
        None,
        "auth",
        &[("key", "key-for-ann-0123456789")],
    ),
    (
        "auth-key-again",
        None,
        "auth",
        &[("key", "key-for-ann-0123456789")],
    ),
    (
        "session-newkey-generated",
        None,
        "session.newkey",
        &[("username", "ann@example.com")],
    ),
    (
        "session-newkey-short",
        None,
        "session.newkey",
        &[("username", "ann@example.com"), ("key", "short")],
    ),
    (
        "session-newkey-unknown",
        None,
        "session.newkey",
        &[("username", "nobody@example.com")],
    ),
    (
        "session-newkey-by-client",
        ANN,
        "session.newkey",
        &[("username", "ann@example.com")],
    ),
    ("keepalive", ANN, "keepalive", &[]),
];

/// Steps whose documents are also kept in `sjson` and `text`: one of each kind.
const ALL_FORMATS: &[&str] = &[
    "register-ann",
    "register-duplicate",
    "account",
    "account-view",
    "auth",
];

#[test]
fn golden_documents() {
    goldens(&Fixture::new("golden"));
}

/// The same documents from the same steps on PostgreSQL.
#[test]
fn golden_documents_on_postgres() {
    let Some(cluster) = pg::Cluster::start("golden") else {
        return;
    };
    let url = cluster.database("golden");
    let fx = Fixture {
        dir: TempDir::new("golden-pg"),
        engine: Engine::open(EngineConfig::new(&url)).expect("open on PostgreSQL"),
    };
    goldens(&fx);
}

fn goldens(fx: &Fixture) {
    let dir = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/golden/core");
    let mut failures = Vec::new();
    for (i, (label, login, func, params)) in STEPS.iter().enumerate() {
        let doc = fx.call_as(*login, func, params);
        let mut formats = vec![(Format::Xml, "xml"), (Format::Json, "json")];
        if ALL_FORMATS.contains(label) {
            formats.extend([(Format::Sjson, "sjson"), (Format::Text, "txt")]);
        }
        for (format, ext) in formats {
            let path = dir.join(format!("{:02}-{label}.{ext}", i + 1));
            if let Err(e) = golden(&path, &normalize(&render(&doc, format, func))) {
                failures.push(e);
            }
        }
    }
    assert!(
        failures.is_empty(),
        "{} golden documents differ:\n{}",
        failures.len(),
        failures.join("\n")
    );
}
