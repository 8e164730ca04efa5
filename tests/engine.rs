//! The dispatcher's promises, asserted directly: atomic group operations, access between
//! clients, stored filters, paging totals, sessions, `su`, panics fenced, migrations. Every
//! test runs on SQLite and on PostgreSQL (`backends!`, a database of its own in the binary's
//! cluster), but the upgrade through SQLite's migration 6 (its tables rebuilt), which is
//! SQLite's alone.

mod common;
#[macro_use]
#[path = "support/pg.rs"]
mod pg;

use billhost::auth::Caller;
use billhost::func::{Access, ActionMode, FuncDecl};
use billhost::store::{self, Durability, ErrorKind, SCHEMA_VERSION};
use billhost::{Doc, Engine, EngineConfig, Params};
use common::{Fixture, TempDir, column, error_type, list_len};
use pg::Backend;

/// Another empty database on the backend of `backend` (a file of the caller's folder on SQLite).
fn another(backend: &Backend, tag: &str) -> Backend {
    match backend {
        Backend::Sqlite => Backend::Sqlite,
        Backend::Postgres(_) => Backend::postgres(tag).expect("the shared cluster"),
    }
}

backends! {
fn group_operation_is_all_or_nothing(backend) {
    let fx = Fixture::at("group", |d| backend.db(d));
    let a = fx.register("a@example.com");
    let b = fx.register("b@example.com");
    let before = fx.dump();
    let doc = fx.call("account.delete", &[("elid", &format!("{a}, {b}, 999"))]);
    assert_eq!(error_type(&doc), "missed");
    match &doc {
        Doc::Error(e) => assert!(e.msg.starts_with("element 999:"), "{}", e.msg),
        _ => unreachable!(),
    }
    assert_eq!(fx.dump(), before, "a failed group operation changed data");

    // A failure in the middle (an already deleted client) also undoes the elements before it.
    fx.ok("account.delete", &[("elid", &b.to_string())]);
    let before = fx.dump();
    assert_eq!(
        error_type(&fx.call("account.delete", &[("elid", &format!("{a},{b}"))])),
        "value"
    );
    assert_eq!(fx.dump(), before);

    // Both separators work, and duplicates count once.
    let c = fx.register("c@example.com");
    fx.ok("account.delete", &[("elid", &format!("{a}, {c},{c}"))]);
    assert_eq!(list_len(&fx.call("account", &[])), 0);
}
}

backends! {
fn a_client_user_sees_and_changes_only_its_own_client(backend) {
    let fx = Fixture::at("access", |d| backend.db(d));
    let ann = fx.register("ann@example.com");
    let bob = fx.register("bob@example.com");
    fx.ok(
        "ticket.write.account",
        &[
            ("elid", &bob.to_string()),
            ("sok", "ok"),
            ("subject", "s"),
            ("message", "m"),
        ],
    );
    let as_ann =
        |func: &str, params: &[(&str, &str)]| fx.call_as(Some("ann@example.com"), func, params);

    assert_eq!(column(&as_ann("account", &[]), "id"), vec![ann.to_string()]);
    assert_eq!(list_len(&as_ann("ticket", &[])), 0);
    assert_eq!(
        list_len(&as_ann(
            "account",
            &[("filter", "on"), ("id", &bob.to_string())]
        )),
        0
    );
    let before = fx.dump();
    assert_eq!(
        error_type(&as_ann("account.edit", &[("elid", &bob.to_string())])),
        "access"
    );
    assert_eq!(
        error_type(&as_ann(
            "account.edit",
            &[("elid", &bob.to_string()), ("sok", "ok"), ("name", "x")]
        )),
        "access"
    );
    assert_eq!(
        error_type(&as_ann("ticket.message", &[("plid", "1")])),
        "access"
    );
    assert_eq!(
        error_type(&as_ann("account.delete", &[("elid", &ann.to_string())])),
        "access"
    );
    assert_eq!(
        error_type(&as_ann(
            "account.edit",
            &[("sok", "ok"), ("email", "new@example.com")]
        )),
        "access"
    );
    assert_eq!(
        error_type(&as_ann("account.su", &[("elid", &bob.to_string())])),
        "access"
    );
    assert_eq!(error_type(&as_ann("project", &[])), "access");
    // su is for staff only
    assert_eq!(
        error_type(&as_ann("account", &[("su", "bob@example.com")])),
        "access"
    );
    assert_eq!(fx.dump(), before);

    fx.ok(
        "account.edit",
        &[
            ("elid", &ann.to_string()),
            ("sok", "ok"),
            ("name", "Ann Own"),
        ],
    );
    let own = as_ann(
        "account.edit",
        &[
            ("elid", &ann.to_string()),
            ("sok", "ok"),
            ("realname", "Ann R"),
        ],
    );
    assert!(!own.is_error(), "{own:?}");

    // Anonymous callers reach only public funcs.
    let anon = Caller::anonymous("127.0.0.1");
    let doc = fx.engine.call(&anon, "account", Params::new());
    assert_eq!(error_type(&doc), "auth");
    assert!(
        !fx.engine
            .call(&anon, "country", Params::from_pairs([("p_cnt", "5")]))
            .is_error()
    );
}
}

backends! {
fn stored_filters_are_per_user_and_list(backend) {
    let fx = Fixture::at("filters", |d| backend.db(d));
    fx.register("ann@example.com");
    fx.register("bob@example.com");
    fx.ok("account.filter", &[("sok", "ok"), ("email", "bob")]);
    assert_eq!(
        column(&fx.call("account", &[]), "email"),
        vec!["bob@example.com"]
    );
    // An inline filter replaces the stored one for that call only.
    assert_eq!(
        column(
            &fx.call("account", &[("filter", "on"), ("email", "ann")]),
            "email"
        ),
        vec!["ann@example.com"]
    );
    assert_eq!(list_len(&fx.call("account", &[])), 1);
    // Another staff user has its own filters.
    fx.engine
        .write(|c| billhost::auth::ensure_staff(c, "clerk", Some("Secret123")))
        .expect("staff");
    assert_eq!(list_len(&fx.call_as(Some("clerk"), "account", &[])), 2);
    // A bad filter value is refused and the stored filter stays.
    assert_eq!(
        error_type(&fx.call("account.filter", &[("sok", "ok"), ("project", "one")])),
        "value"
    );
    assert_eq!(list_len(&fx.call("account", &[])), 1);
    fx.ok("account.filter", &[("sok", "ok")]);
    assert_eq!(list_len(&fx.call("account", &[])), 2);
}
}

backends! {
fn paging_totals_and_order(backend) {
    let fx = Fixture::at("paging", |d| backend.db(d));
    fx.engine
        .write(|c| {
            let mut stmt = c.prepare("INSERT INTO account (project_id, name, email, registration_date) VALUES (1, ?1, ?2, '2026-01-01')")?;
            for i in 0..250 {
                stmt.execute([format!("client {i:03}"), format!("c{i}@example.com")])?;
            }
            Ok(())
        })
        .expect("seed");
    let page = |num: &str, cnt: &str| match fx.call("account", &[("p_num", num), ("p_cnt", cnt)]) {
        Doc::List(l) => l,
        other => panic!("{other:?}"),
    };
    let p = page("3", "100");
    assert_eq!(
        (p.p_num, p.p_cnt, p.p_elems, p.elems.len()),
        (3, 100, 250, 50)
    );
    let p = page("4", "100");
    assert_eq!((p.p_elems, p.elems.len()), (250, 0));
    let Doc::List(p) = fx.call("account", &[("p_num", "2")]) else {
        panic!()
    };
    assert_eq!((p.p_cnt, p.elems.len()), (100, 100));
    let names = column(
        &fx.call(
            "account",
            &[("p_sort", "name"), ("p_order", "desc"), ("p_cnt", "2")],
        ),
        "name",
    );
    assert_eq!(names, vec!["client 249", "client 248"]);
    let Doc::List(p) = fx.call(
        "account",
        &[("filter", "on"), ("name", "client 1"), ("p_cnt", "7")],
    ) else {
        panic!()
    };
    assert_eq!((p.p_elems, p.elems.len()), (100, 7));
    // LIKE wildcards in a filter value are literal.
    assert_eq!(
        list_len(&fx.call("account", &[("filter", "on"), ("name", "client_%")])),
        0
    );
}
}

backends! {
fn sessions_authinfo_and_su(backend) {
    let fx = Fixture::at("sessions", |d| backend.db(d));
    fx.register("ann@example.com");
    let ip = "192.0.2.1";
    let sid = match fx.engine.handle(
        "auth",
        Params::from_pairs([("username", "ann@example.com"), ("password", "Secret123")]),
        None,
        ip,
    ) {
        Doc::Auth { id, .. } => id,
        other => panic!("{other:?}"),
    };
    let whoami =
        |params: Params, cookie: Option<&str>| fx.engine.handle("whoami", params, cookie, ip);
    assert_eq!(
        whoami(Params::from_pairs([("auth", sid.as_str())]), None).field("login"),
        Some("ann@example.com")
    );
    assert_eq!(
        whoami(Params::new(), Some(&sid)).field("login"),
        Some("ann@example.com")
    );
    assert_eq!(
        whoami(
            Params::from_pairs([("authinfo", "ann@example.com:Secret123")]),
            None
        )
        .field("level"),
        Some("user")
    );
    assert_eq!(
        error_type(&whoami(
            Params::from_pairs([("authinfo", "ann@example.com:nope")]),
            None
        )),
        "auth"
    );
    assert_eq!(
        error_type(&whoami(Params::from_pairs([("auth", "deadbeef")]), None)),
        "auth"
    );

    // An hour idle ends the session.
    fx.engine
        .write(|c| Ok(c.execute("UPDATE session SET last_seen = last_seen - 3601", [])?))
        .expect("age");
    assert_eq!(
        error_type(&whoami(Params::from_pairs([("auth", sid.as_str())]), None)),
        "auth"
    );
    // A public func still answers with stale credentials.
    assert!(
        !fx.engine
            .handle(
                "country",
                Params::from_pairs([("auth", sid.as_str()), ("p_cnt", "1")]),
                None,
                ip
            )
            .is_error()
    );

    // Logout ends a session.
    let Doc::Auth { id: sid2, .. } = fx.engine.handle(
        "auth",
        Params::from_pairs([("username", "ann@example.com"), ("password", "Secret123")]),
        None,
        ip,
    ) else {
        panic!()
    };
    assert!(
        !fx.engine
            .handle(
                "logout",
                Params::from_pairs([("auth", sid2.as_str())]),
                None,
                ip
            )
            .is_error()
    );
    assert_eq!(
        error_type(&whoami(Params::from_pairs([("auth", sid2.as_str())]), None)),
        "auth"
    );

    // Staff acts as a client with su=, and account.su grants a client session recorded in history.
    fx.engine
        .write(|c| billhost::auth::ensure_staff(c, "admin", Some("Staff1234")))
        .expect("admin");
    let doc = whoami(
        Params::from_pairs([("authinfo", "admin:Staff1234"), ("su", "ann@example.com")]),
        None,
    );
    assert_eq!(
        (doc.field("login"), doc.field("su_from")),
        (Some("ann@example.com"), Some("admin"))
    );
    let Doc::Auth { id: su_sid, level } = fx.engine.handle(
        "account.su",
        Params::from_pairs([("authinfo", "admin:Staff1234"), ("elid", "1")]),
        None,
        ip,
    ) else {
        panic!()
    };
    assert_eq!(level, billhost::Level::User);
    let doc = whoami(Params::from_pairs([("auth", su_sid.as_str())]), None);
    assert_eq!(
        (doc.field("login"), doc.field("su_from")),
        (Some("ann@example.com"), Some("admin"))
    );
    let history: String = fx
        .engine
        .read(|c| {
            Ok(c.query_row(
                "SELECT user_login || '|' || action FROM history WHERE action = 'account.su'",
                [],
                |r| r.get(0),
            )?)
        })
        .expect("history");
    assert_eq!(history, "admin|account.su");

    // A password change ends the user's sessions.
    let Doc::Auth { id: sid3, .. } = fx.engine.handle(
        "auth",
        Params::from_pairs([("username", "ann@example.com"), ("password", "Secret123")]),
        None,
        ip,
    ) else {
        panic!()
    };
    fx.ok(
        "account.edit",
        &[
            ("elid", "1"),
            ("sok", "ok"),
            ("passwd", "NewSecret9"),
            ("confirm", "NewSecret9"),
        ],
    );
    assert_eq!(
        error_type(&whoami(Params::from_pairs([("auth", sid3.as_str())]), None)),
        "auth"
    );
    assert_eq!(
        whoami(
            Params::from_pairs([("authinfo", "ann@example.com:NewSecret9")]),
            None
        )
        .field("level"),
        Some("user")
    );

    // A session of a user disabled meanwhile (by any connection) is refused, and works again
    // once the user is enabled.
    let Doc::Auth { id: sid4, .. } = fx.engine.handle(
        "auth",
        Params::from_pairs([("username", "ann@example.com"), ("password", "NewSecret9")]),
        None,
        ip,
    ) else {
        panic!()
    };
    let enabled = |on: bool| {
        store::connect(fx.db(), Durability::Full)
            .and_then(|db| {
                db.execute(
                    "UPDATE users SET enabled = ?1 WHERE login = 'ann@example.com'",
                    [i64::from(on)],
                )
            })
            .expect("enabled");
    };
    enabled(false);
    assert_eq!(
        error_type(&whoami(Params::from_pairs([("auth", sid4.as_str())]), None)),
        "auth"
    );
    enabled(true);
    assert_eq!(
        whoami(Params::from_pairs([("auth", sid4.as_str())]), None).field("login"),
        Some("ann@example.com")
    );
}
}

backends! {
fn passwords_are_stored_as_argon2_hashes(backend) {
    let fx = Fixture::at("hash", |d| backend.db(d));
    fx.register("ann@example.com");
    let hash: String = fx
        .engine
        .read(|c| Ok(c.query_row("SELECT password_hash FROM users", [], |r| r.get(0))?))
        .expect("hash");
    assert!(hash.starts_with("$argon2id$"), "{hash}");
    assert!(!hash.contains("Secret123"));
}
}

backends! {
fn a_panicking_func_changes_nothing_and_the_engine_keeps_serving(backend) {
    let dir = TempDir::new("panic");
    let mut engine = Engine::open(EngineConfig::new(backend.db(dir.path()))).expect("open");
    engine.add_func(FuncDecl::action(
        "test.panic",
        "panics halfway",
        Access::ADMIN,
        ActionMode::Write,
        |ctx, _| {
            ctx.db.execute(
                "INSERT INTO accountgroup (name, created) VALUES ('half', 'now')",
                [],
            )?;
            panic!("boom");
        },
    ));
    let root = Caller::superuser();
    match engine.call(&root, "test.panic", Params::new()) {
        Doc::Error(e) => {
            assert_eq!(e.kind.as_str(), "internal");
            assert!(e.msg.contains("boom"), "{}", e.msg);
        }
        other => panic!("{other:?}"),
    }
    let groups: i64 = engine
        .read(|c| Ok(c.query_row("SELECT count(*) FROM accountgroup", [], |r| r.get(0))?))
        .expect("count");
    assert_eq!(groups, 0);
    assert!(
        !engine
            .call(
                &root,
                "accountgroup.edit",
                Params::from_pairs([("sok", "ok"), ("name", "after")])
            )
            .is_error()
    );
}
}

backends! {
fn nested_calls_share_the_transaction(backend) {
    let dir = TempDir::new("nested");
    let mut engine = Engine::open(EngineConfig::new(backend.db(dir.path()))).expect("open");
    engine.add_func(FuncDecl::action(
        "test.two",
        "two groups, then fail",
        Access::ADMIN,
        ActionMode::Write,
        |ctx, _| {
            ctx.call(
                "accountgroup.edit",
                Params::from_pairs([("sok", "ok"), ("name", "one")]),
            )?;
            // A failing nested call undoes only itself...
            assert!(
                ctx.call(
                    "accountgroup.edit",
                    Params::from_pairs([("sok", "ok"), ("name", "ONE")])
                )
                .is_err()
            );
            ctx.call(
                "accountgroup.edit",
                Params::from_pairs([("sok", "ok"), ("name", "two")]),
            )?;
            // ...and a failing outer func undoes everything.
            Err(billhost::FuncError::value("test", "", "changed my mind"))
        },
    ));
    let root = Caller::superuser();
    assert!(engine.call(&root, "test.two", Params::new()).is_error());
    let groups: i64 = engine
        .read(|c| Ok(c.query_row("SELECT count(*) FROM accountgroup", [], |r| r.get(0))?))
        .expect("count");
    assert_eq!(groups, 0);
}
}

backends! {
fn older_databases_are_upgraded_and_newer_ones_refused(backend) {
    for from in 0..SCHEMA_VERSION {
        let dir = TempDir::new("migrate");
        let on = another(&backend, "older");
        let db = on.db(dir.path());
        {
            let conn = store::connect(&db, Durability::Full).expect("connect");
            store::migrate(&conn, from).expect("partial migration");
            assert_eq!(store::schema_version(&conn).expect("version"), from);
            if from >= 1 {
                conn.execute("INSERT INTO account (project_id, name, registration_date) VALUES (1, 'kept', '2020-01-01')", [])
                    .expect("old data");
            }
        }
        let engine = Engine::open(EngineConfig::new(&db)).expect("upgrade");
        let version = engine
            .read(|c| Ok(store::schema_version(c)?))
            .expect("version");
        assert_eq!(version, SCHEMA_VERSION);
        let names = column(
            &engine.call(&Caller::superuser(), "account", Params::new()),
            "name",
        );
        assert_eq!(
            names,
            if from >= 1 {
                vec!["kept".to_string()]
            } else {
                vec![]
            }
        );
    }

    let dir = TempDir::new("too-new");
    let db = backend.db(dir.path());
    {
        let conn = store::open(&db, Durability::Full).expect("open");
        store::set_schema_version(&conn, SCHEMA_VERSION + 1).expect("bump");
    }
    match Engine::open(EngineConfig::new(&db)) {
        Err(e) if matches!(e.kind(), ErrorKind::TooNew { .. }) => {
            assert_eq!(
                e.kind(),
                ErrorKind::TooNew {
                    found: SCHEMA_VERSION + 1,
                    supported: SCHEMA_VERSION
                }
            );
            assert!(e.to_string().contains("newer than"), "{e}");
        }
        Err(other) => panic!("wrong error: {other}"),
        Ok(_) => panic!("a newer database was opened"),
    }
}
}

#[test]
fn migration_6_keeps_rows_ids_and_triggers_and_never_reuses_a_deleted_id() {
    let dir = TempDir::new("migrate-6");
    {
        let conn = store::connect(&dir.db(), Durability::Full).expect("connect");
        store::migrate(&conn, 5).expect("version 5");
        conn.execute_batch(
            "INSERT INTO account (id, project_id, name, registration_date) VALUES (7, 1, 'kept', '2020-01-01');
             INSERT INTO users (login, password_hash, level, account_id, created)
                 VALUES ('ann@example.com', 'x', 'user', 7, '2020-01-01');
             INSERT INTO subaccount (id, account_id, project_id, currency_id, balance, created)
                 VALUES (3, 7, 1, 840, 1000, '2020-01-01');
             INSERT INTO paymethod (id, name, project_id, currency_id, created) VALUES (1, 'm', 1, 840, '2020-01-01');
             INSERT INTO payment (id, number, project_id, account_id, subaccount_id, paymethod_id, currency_id, status,
                                  createdate, paydate, subaccountamount, paymethodamount)
                 VALUES (5, '5', 1, 7, 3, 1, 840, 4, '2020-01-01', '2020-01-01', 1000, 1000);
             INSERT INTO discount (id, name, project_id, created) VALUES (1, 'one', 1, '2020-01-01'), (2, 'two', 1, '2020-01-01');
             -- discount 3 existed and was deleted before the upgrade: only its history is left
             INSERT INTO history (changedate, object_type, object_id, description, user_login, ip, action)
                 VALUES ('2020-01-01', 'discount', 3, 'deleted', 'root', 'local', 'account.discount.delete');",
        )
        .expect("old data");
    }
    let engine = Engine::open(EngineConfig::new(dir.db())).expect("upgrade");
    let root = Caller::superuser();
    let call = |func: &str, params: &[(&str, &str)]| {
        engine.call(&root, func, Params::from_pairs(params.iter().copied()))
    };
    // Rows and ids are kept, and the ledger still adds up.
    assert_eq!(column(&call("account", &[]), "id"), vec!["7".to_string()]);
    assert_eq!(
        call("payment.edit", &[("elid", "5")]).field("subaccountamount"),
        Some("10.00")
    );
    assert!(
        engine
            .read(billhost::ledger::check)
            .expect("check")
            .is_empty()
    );
    // The next discount is 4: neither 3 (named by history) nor anything below.
    let doc = call(
        "account.discount.edit",
        &[("sok", "ok"), ("name", "new"), ("percentage", "5")],
    );
    assert_eq!(doc.field("id"), Some("4"), "{doc:?}");
    // The auth epoch triggers came back with their tables.
    let epoch = || {
        engine
            .read(|c| Ok(c.query_row("SELECT n FROM auth_epoch", [], |r| r.get::<i64>(0))?))
            .expect("epoch")
    };
    let before = epoch();
    engine
        .write(|c| {
            c.execute(
                "UPDATE users SET enabled = 0 WHERE login = 'ann@example.com'",
                [],
            )?;
            Ok(())
        })
        .expect("disable");
    assert_eq!(epoch(), before + 1);
    // Foreign keys are enforced again after the migration.
    let orphan = engine.write(|c| {
        c.execute(
            "INSERT INTO expense (subaccount_id, account_id, amount, notpayd, realdate, created)
             VALUES (999, 7, 1, 1, '2020-01-01', '2020-01-01')",
            [],
        )?;
        Ok(())
    });
    assert!(
        orphan.is_err(),
        "an expense of a missing subaccount was stored"
    );
}

backends! {
fn concurrent_writes_commit_together_and_fail_alone(backend) {
    let fx = std::sync::Arc::new(Fixture::at("group-commit", |d| backend.db(d)));
    let threads: Vec<_> = (0..16)
        .map(|t| {
            let fx = fx.clone();
            std::thread::spawn(move || {
                let mut ok = Vec::new();
                for i in 0..25 {
                    // Every fifth name is shared by all threads: only one of them may create it.
                    let name = if i % 5 == 0 {
                        format!("shared {i}")
                    } else {
                        format!("t{t} g{i}")
                    };
                    let doc = fx.call("accountgroup.edit", &[("sok", "ok"), ("name", &name)]);
                    match &doc {
                        Doc::Ok(_) => ok.push(name),
                        Doc::Error(e) => assert_eq!(e.kind.as_str(), "exists", "{name}: {e:?}"),
                        other => panic!("{other:?}"),
                    }
                }
                ok
            })
        })
        .collect();
    let mut created: Vec<String> = threads
        .into_iter()
        .flat_map(|t| t.join().expect("thread"))
        .collect();
    created.sort();
    assert_eq!(
        created.len(),
        16 * 20 + 5,
        "each thread's own names plus one of each shared name"
    );
    let mut listed = column(&fx.call("accountgroup", &[]), "name");
    listed.sort();
    assert_eq!(
        listed, created,
        "every answered create is there, and nothing else"
    );
    let history = group_history(&fx);
    assert_eq!(history, created.len());
}
}

backends! {
fn a_batch_of_calls_commits_together_and_each_fails_alone(backend) {
    let fx = Fixture::at("call-batch", |d| backend.db(d));
    let root = Caller::superuser();
    let anonymous = Caller::anonymous("127.0.0.1");
    let p = |pairs: &[(&str, &str)]| Params::from_pairs(pairs.iter().copied());
    let first = p(&[("sok", "ok"), ("name", "first")]);
    let again = p(&[("sok", "ok"), ("name", "first")]);
    let denied = p(&[("sok", "ok"), ("name", "by nobody")]);
    let bad = p(&[("sok", "ok"), ("name", "")]);
    let second = p(&[("sok", "ok"), ("name", "second")]);
    let docs = fx.engine.call_batch(&[
        (&root, "accountgroup.edit", &first),
        (&root, "accountgroup.edit", &again),
        (&anonymous, "accountgroup.edit", &denied),
        (&root, "accountgroup.edit", &bad),
        (&root, "no.such.func", &second),
        (&root, "accountgroup.edit", &second),
    ]);
    let kinds = outcomes(&docs);
    assert_eq!(kinds, ["ok", "exists", "auth", "missed", "unknown", "ok"]);
    let mut listed = column(&fx.call("accountgroup", &[]), "name");
    listed.sort();
    assert_eq!(listed, ["first", "second"]);
    let history = group_history(&fx);
    assert_eq!(history, 2, "only the calls that succeeded left history");

    // Inside a write on the same thread, a batch is refused instead of waiting on itself.
    let nested = fx
        .engine
        .write(|_| {
            Ok(fx
                .engine
                .call_batch(&[(&root, "accountgroup.edit", &second)]))
        })
        .expect("outer write");
    assert_eq!(error_type(&nested[0]), "internal");
}
}

backends! {
fn a_batch_member_known_at_an_old_auth_epoch_is_not_run(backend) {
    // The server's writer runs a write whose caller the credential cache knows only while the
    // batch's transaction reads the auth epoch the caller was known at; a member before it
    // that moves the epoch (here: deleting a client) sends it back (`None`) to be
    // authenticated again.
    let fx = Fixture::at("call-batch-epoch", |d| backend.db(d));
    let ann = fx.register("ann@example.com").to_string();
    let root = Caller::superuser();
    let epoch = || {
        fx.engine
            .read(|c| Ok(c.query_row("SELECT n FROM auth_epoch", [], |r| r.get::<i64>(0))?))
            .expect("epoch")
    };
    let at = epoch();
    let p = |pairs: &[(&str, &str)]| Params::from_pairs(pairs.iter().copied());
    let group = |name: &str| p(&[("sok", "ok"), ("name", name)]);
    let (a, b, c, d, e) = (group("a"), group("b"), group("c"), group("d"), group("e"));
    let delete = p(&[("elid", ann.as_str())]);
    let calls = [
        (&root, "accountgroup.edit", &a, Some(at - 1)),
        (&root, "accountgroup.edit", &b, Some(at)),
        (&root, "account.delete", &delete, None),
        (&root, "accountgroup.edit", &c, Some(at)),
        (&root, "accountgroup.edit", &d, Some(at + 1)),
        (&root, "accountgroup.edit", &e, None),
    ];
    let (ran, _) = pulled_batch(&fx, &calls);
    assert_eq!(ran, [None, Some("ok"), Some("ok"), None, Some("ok"), Some("ok")]);
    assert_eq!(epoch(), at + 1);
    let mut listed = column(&fx.call("accountgroup", &[]), "name");
    listed.sort();
    assert_eq!(listed, ["b", "d", "e"]);
}
}

backends! {
fn a_member_whose_history_row_is_refused_fails_alone_wherever_it_is_in_the_batch(backend) {
    // On PostgreSQL a func's history row is sent with the next statement, which for a batch
    // member is the next member's savepoint or the batch's flush before its commit: a refusal
    // found there is still the member's own failure, and undoes only that member.
    let fx = Fixture::at("call-batch-deferred", |d| backend.db(d));
    fx.engine
        .write(|c| {
            let refuse = if c.backend_name() == "sqlite" {
                "CREATE TRIGGER poison BEFORE INSERT ON history WHEN NEW.description LIKE '%poison%'
                 BEGIN SELECT RAISE(ABORT, 'poisoned history row'); END"
            } else {
                "ALTER TABLE history ADD CONSTRAINT poison CHECK (description NOT LIKE '%poison%')"
            };
            c.execute(refuse, [])?;
            Ok(())
        })
        .expect("the refusing rule");
    let root = Caller::superuser();
    let group = |name: &str| Params::from_pairs([("sok", "ok"), ("name", name)]);
    let batch = |names: &[&str]| {
        let params: Vec<Params> = names.iter().map(|n| group(n)).collect();
        let calls: Vec<(&Caller, &str, &Params)> =
            params.iter().map(|p| (&root, "accountgroup.edit", p)).collect();
        outcomes(&fx.engine.call_batch(&calls))
    };
    assert_eq!(batch(&["poison1", "a", "b"]), ["internal", "ok", "ok"]);
    assert_eq!(batch(&["c", "poison2", "d"]), ["ok", "internal", "ok"]);
    assert_eq!(batch(&["e", "poison3"]), ["ok", "internal"]);
    let mut listed = column(&fx.call("accountgroup", &[]), "name");
    listed.sort();
    assert_eq!(listed, ["a", "b", "c", "d", "e"]);
    assert_eq!(group_history(&fx), 5);

    // Callers known from the credential cache: on PostgreSQL the member after the refused one
    // sends its savepoint and the epoch's read with its first statement, with the refused
    // row; it learns of the failure there and is sent back unrun (`None`: the server runs it
    // the slow way), and the refused member alone is undone.
    let at: i64 = fx
        .engine
        .read(|c| Ok(c.query_row("SELECT n FROM auth_epoch", [], |r| r.get(0))?))
        .expect("epoch");
    let params: Vec<Params> = ["f", "poison5", "g", "h"].iter().map(|n| group(n)).collect();
    let calls: Vec<(&Caller, &str, &Params, Option<i64>)> = params
        .iter()
        .map(|p| (&root, "accountgroup.edit", p, Some(at)))
        .collect();
    let (ran, done) = pulled_batch(&fx, &calls);
    let after_refused = if backend.is_postgres() { None } else { Some("ok") };
    assert_eq!(ran, [Some("ok"), Some("internal"), after_refused, Some("ok")], "{:?}", done);
    let mut listed = column(&fx.call("accountgroup", &[]), "name");
    listed.sort();
    let mut expected = vec!["a", "b", "c", "d", "e", "f", "h"];
    if !backend.is_postgres() {
        expected.push("g");
        expected.sort();
    }
    assert_eq!(listed, expected);
    assert_eq!(group_history(&fx), expected.len());

    // A write of its own (a call-out's) whose deferred row is refused fails, and keeps nothing.
    let written = fx.engine.write(|c| {
        c.prepare_cached(
            "INSERT INTO accountgroup (name, created) VALUES ('kept only with its history', '2026-01-01 00:00:00')",
        )?
        .execute([])?;
        c.prepare_cached(
            "INSERT INTO history (changedate, object_type, object_id, description, user_login, ip, action)
             VALUES ('2026-01-01 00:00:00', 'accountgroup', 0, 'poison4', 'root', '', 'test')",
        )?
        .execute_deferred([])?;
        Ok(())
    });
    assert!(written.is_err(), "{written:?}");
    assert_eq!(column(&fx.call("accountgroup", &[]), "name").len(), expected.len());
}
}

/// One batch of `calls` through `Engine::call_batch_pulled`, waited until durable: each
/// member's error type, `ok`, or `None` for a member sent back unrun; and the documents.
fn pulled_batch(
    fx: &Fixture,
    calls: &[(&Caller, &str, &Params, Option<i64>)],
) -> (Vec<Option<&'static str>>, Vec<Option<Doc>>) {
    let mut pending = calls.iter();
    let (done, durable) = fx.engine.call_batch_pulled(|_| pending.next(), |c| **c);
    if let Some(durable) = durable {
        durable.wait().expect("durable");
    }
    let docs: Vec<Option<Doc>> = done.into_iter().map(|(_, doc)| doc).collect();
    let ran = docs
        .iter()
        .map(|doc| {
            doc.as_ref()
                .map(|d| if d.is_error() { error_type(d) } else { "ok" })
        })
        .collect();
    (ran, docs)
}

/// Each document's error type, or `ok`.
fn outcomes(docs: &[Doc]) -> Vec<&'static str> {
    docs.iter()
        .map(|d| match d {
            Doc::Error(_) => error_type(d),
            _ => "ok",
        })
        .collect()
}

/// A batch's first member runs without a savepoint of its own: when it fails, having written
/// part of its work, the whole transaction is undone and the next call opens a new batch; the
/// members after it still fail alone.
#[test]
fn a_failing_first_member_leaves_nothing_and_the_batch_goes_on() {
    let fx = Fixture::new("call-batch-first");
    let root = Caller::superuser();
    let p = |pairs: &[(&str, &str)]| Params::from_pairs(pairs.iter().copied());
    let keep = fx.call("accountgroup.edit", &[("sok", "ok"), ("name", "kept")]);
    assert!(!keep.is_error(), "{keep:?}");
    let kept = column(&fx.call("accountgroup", &[]), "id")[0].clone();
    // Deletes the kept group, then fails on a group that does not exist: nothing is deleted.
    let half = p(&[("elid", &format!("{kept},9999"))]);
    let bad = p(&[("sok", "ok"), ("name", "")]);
    let first = p(&[("sok", "ok"), ("name", "first")]);
    let second = p(&[("sok", "ok"), ("name", "second")]);
    let docs = fx.engine.call_batch(&[
        (&root, "accountgroup.delete", &half),
        (&root, "accountgroup.edit", &bad),
        (&root, "accountgroup.edit", &first),
        (&root, "accountgroup.delete", &half),
        (&root, "accountgroup.edit", &second),
    ]);
    let kinds = outcomes(&docs);
    assert_eq!(kinds, ["missed", "missed", "ok", "missed", "ok"]);
    let mut listed = column(&fx.call("accountgroup", &[]), "name");
    listed.sort();
    assert_eq!(listed, ["first", "kept", "second"]);
    assert_eq!(
        group_history(&fx),
        3,
        "the kept group's, first's and second's"
    );
    // One write at a time, failing alone, then succeeding.
    let doc = fx.call("accountgroup.delete", &[("elid", &format!("{kept},9999"))]);
    assert_eq!(error_type(&doc), "missed");
    let doc = fx.call("accountgroup.edit", &[("sok", "ok"), ("name", "third")]);
    assert!(!doc.is_error(), "{doc:?}");
    assert_eq!(column(&fx.call("accountgroup", &[]), "name").len(), 4);
}

backends! {
/// `auth` checks the password on a read snapshot and opens the session in a later write: the
/// session is refused if the password changed (or the user was disabled) in between.
fn a_login_verified_before_a_password_change_opens_no_session(backend) {
    let fx = Fixture::at("login-race", |d| backend.db(d));
    fx.engine
        .write(|c| billhost::auth::ensure_staff(c, "boss", Some("FirstPass1")))
        .expect("staff");
    let verified = fx
        .engine
        .read(|c| billhost::auth::verify_login(c, "boss", "FirstPass1", "127.0.0.1"))
        .expect("the password is right");
    let valid = |fx: &Fixture| {
        fx.engine
            .read(|c| billhost::auth::still_valid(c, &verified))
            .expect("check")
    };
    assert!(valid(&fx), "nothing changed yet");
    fx.engine
        .write(|c| billhost::auth::ensure_staff(c, "boss", Some("SecondPass2")))
        .expect("password reset");
    assert!(!valid(&fx), "the password changed since it was verified");

    // Through the func: a wrong password, then the right one.
    let login = |password: &str| {
        fx.engine.call(
            &Caller::anonymous("127.0.0.1"),
            "auth",
            Params::from_pairs([("username", "boss"), ("password", password)]),
        )
    };
    assert_eq!(error_type(&login("FirstPass1")), "auth");
    assert!(matches!(login("SecondPass2"), Doc::Auth { .. }));
}
}

/// History rows about client groups.
fn group_history(fx: &Fixture) -> usize {
    let n: i64 = fx
        .engine
        .read(|c| {
            Ok(c.query_row(
                "SELECT count(*) FROM history WHERE object_type = 'accountgroup'",
                [],
                |r| r.get(0),
            )?)
        })
        .expect("history");
    n as usize
}

backends! {
/// `billhost init` and the first `serve`: the staff user is created with a generated password
/// that works, kept when it exists, and reset when a password is given.
fn staff_setup_creates_keeps_and_resets(backend) {
    use billhost::auth::AdminSetup;
    let fx = Fixture::at("staff-setup", |d| backend.db(d));
    let login_as = |login: &str, password: &str| {
        fx.engine
            .read(|c| billhost::auth::login(c, login, password, "127.0.0.1"))
            .is_ok()
    };
    let Ok(AdminSetup::Created {
        password,
        generated: true,
    }) = fx.engine.ensure_staff("chief", None)
    else {
        panic!("a new staff user with a generated password");
    };
    assert!(login_as("chief", &password), "the generated password works");
    assert_eq!(fx.engine.ensure_staff("chief", None), Ok(AdminSetup::Kept));
    assert!(login_as("chief", &password), "kept as it was");
    assert_eq!(
        fx.engine.ensure_staff("chief", Some("Replaced99")),
        Ok(AdminSetup::PasswordReset)
    );
    assert!(!login_as("chief", &password));
    assert!(login_as("chief", "Replaced99"));
    assert_eq!(
        fx.engine.ensure_staff("deputy", Some("Given12345")),
        Ok(AdminSetup::Created {
            password: "Given12345".into(),
            generated: false
        })
    );
    assert!(login_as("deputy", "Given12345"));
}
}

backends! {
/// A view answered inline sees every write committed before it, and leaves no read transaction
/// open behind it: a checkpoint from another connection can still take every frame.
fn inline_views_see_the_latest_commit_and_hold_no_snapshot(backend) {
    let fx = Fixture::at("inline-snapshot", |d| backend.db(d));
    let ann = fx.register("ann@example.com").to_string();
    let params = Params::from_pairs([
        ("authinfo", "ann@example.com:Secret123"),
        ("elid", ann.as_str()),
    ]);
    // The first call verifies the password (argon2); the inline lane then knows the caller.
    assert!(
        !fx.engine
            .handle("account.edit", params.clone(), None, "127.0.0.1")
            .is_error()
    );
    for i in 0..3 {
        let name = format!("Ann {i}");
        fx.ok(
            "account.edit",
            &[("elid", &ann), ("sok", "ok"), ("name", &name)],
        );
        let doc = fx
            .engine
            .handle_inline("account.edit", &params, None, "127.0.0.1")
            .expect("the inline lane");
        assert_eq!(doc.field("name"), Some(name.as_str()));
    }
    match &backend {
        Backend::Sqlite => {
            let db = rusqlite::Connection::open(fx.db()).expect("open");
            let busy: i64 = db
                .query_row("PRAGMA wal_checkpoint(TRUNCATE)", [], |r| r.get(0))
                .expect("checkpoint");
            assert_eq!(busy, 0, "a reader still holds a snapshot");
        }
        Backend::Postgres(db) => {
            // No connection of the engine is left inside a transaction.
            let mut raw = postgres::Client::connect(&db.url, postgres::NoTls).expect("connect");
            let open: i64 = raw
                .query_one(
                    "SELECT count(*) FROM pg_stat_activity
                     WHERE datname = current_database() AND pid <> pg_backend_pid()
                       AND backend_type = 'client backend'
                       AND (state LIKE 'idle in transaction%' OR backend_xmin IS NOT NULL)",
                    &[],
                )
                .expect("activity")
                .get(0);
            assert_eq!(open, 0, "a reader still holds a snapshot");
        }
    }
}
}

backends! {
fn id_lists_refuse_empty_elements_and_more_than_the_group_bound(backend) {
    let fx = Fixture::at("elid-lists", |d| backend.db(d));
    let a = fx.register("a@example.com");
    let b = fx.register("b@example.com");
    let before = fx.dump();
    for func in [
        "account.delete",
        "account.project.suspend",
        "accountgroup.delete",
    ] {
        for elid in [
            format!("{a},,{b}"),
            format!("{a},"),
            format!(",{a}"),
            format!("{a}, , {b}"),
        ] {
            let doc = fx.call(func, &[("elid", &elid), ("plid", &a.to_string())]);
            match &doc {
                Doc::Error(e) => {
                    assert_eq!(
                        (error_type(&doc), e.object.as_str()),
                        ("value", "elid"),
                        "{func} {elid}"
                    )
                }
                other => panic!("{func} elid={elid} accepted: {other:?}"),
            }
        }
    }
    assert_eq!(fx.dump(), before);
    // The bound: 1000 elements are one group, 1001 are refused before any runs.
    let ids = |n: usize| {
        (1..=n)
            .map(|i| (i + 1000).to_string())
            .collect::<Vec<_>>()
            .join(", ")
    };
    let doc = fx.call("account.delete", &[("elid", &ids(1001))]);
    match &doc {
        Doc::Error(e) => {
            assert_eq!((error_type(&doc), e.object.as_str()), ("value", "elid"));
            assert!(e.msg.contains("1000"), "{}", e.msg);
        }
        other => panic!("1001 elements accepted: {other:?}"),
    }
    // 1000 get as far as the elements themselves (none of these clients exists).
    assert_eq!(
        error_type(&fx.call("account.delete", &[("elid", &ids(1000))])),
        "missed"
    );
    assert_eq!(fx.dump(), before);
}
}

backends! {
fn stored_filters_refuse_control_characters_like_every_text_parameter(backend) {
    let fx = Fixture::at("filter-control", |d| backend.db(d));
    fx.register("a@example.com");
    for field in ["name", "email", "label"] {
        for bad in ["a\u{1}b", "line\nbreak", "tab\there", "esc\u{1b}[31m"] {
            let doc = fx.call("account.filter", &[("sok", "ok"), (field, bad)]);
            match &doc {
                Doc::Error(e) => {
                    assert_eq!(
                        (error_type(&doc), e.object.as_str()),
                        ("value", field),
                        "{bad:?}"
                    )
                }
                other => panic!("{field}={bad:?} stored: {other:?}"),
            }
        }
    }
    // Nothing was stored: the filter form is blank, and the list shows every client.
    let form = fx.call("account.filter", &[]);
    for field in ["name", "email", "label"] {
        assert_eq!(form.field(field), Some(""), "{field}");
    }
    assert_eq!(list_len(&fx.call("account", &[])), 1);
    // A plain value is stored as before.
    fx.ok("account.filter", &[("sok", "ok"), ("name", "a@")]);
    assert_eq!(fx.call("account.filter", &[]).field("name"), Some("a@"));
}
}

backends! {
/// A func name with a control character is refused as such: echoed back as an unknown func it
/// would not read as what was sent (XML drops a NUL, `whoami\0` showed as `whoami`).
fn a_func_name_with_control_characters_is_a_value_error(backend) {
    let fx = Fixture::at("funcname", |d| backend.db(d));
    for name in ["whoami\0", "x\nforged", "account\u{1b}[2J"] {
        let doc = fx.call(name, &[]);
        assert_eq!(error_type(&doc), "value", "{name:?}: {doc:?}");
        match &doc {
            Doc::Error(e) => {
                assert_eq!(e.object, "func");
                assert!(!e.msg.contains(name), "{}", e.msg);
            }
            _ => unreachable!(),
        }
    }
    assert_eq!(error_type(&fx.call("nosuch", &[])), "unknown");
}
}
