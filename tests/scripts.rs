//! Business-rule scripts through the real engine: hooks, script funcs, `billing.call`, the
//! sandbox and its limits, exact money, jobs, and hot reload as editors save files. Every test
//! whose scripts reach funcs or the database runs on SQLite and on PostgreSQL (a database of its
//! own in the binary's cluster); the tests of the Lua sandbox alone, which never reach the
//! store, run on SQLite.

mod common;
#[macro_use]
#[path = "support/pg.rs"]
mod pg;

use billhost::auth::Caller;
use billhost::{Doc, Engine, EngineConfig, Params};
use common::{TempDir, column, dump, error_type};
use pg::Backend;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

struct Scripted {
    dir: TempDir,
    /// What the engine was opened on: a file in `dir`, or a PostgreSQL URL.
    db: PathBuf,
    engine: Engine,
    /// Keeps a PostgreSQL database alive as long as the engine.
    _backend: Backend,
}

fn scripted_with_on(
    backend: &Backend,
    files: &[(&str, &str)],
    tune: impl FnOnce(&mut EngineConfig),
) -> Scripted {
    let dir = TempDir::new("scripts");
    let scripts = dir.path().join("scripts");
    std::fs::create_dir_all(&scripts).expect("scripts dir");
    for (name, code) in files {
        std::fs::write(scripts.join(name), code).expect("write script");
    }
    let db = backend.db(dir.path());
    let mut config = EngineConfig::new(&db).with_scripts(&scripts);
    config.scripts.instruction_budget = 2_000_000;
    tune(&mut config);
    let engine = Engine::open(config).expect("engine");
    Scripted {
        dir,
        db,
        engine,
        _backend: backend.clone(),
    }
}

fn scripted_on(backend: &Backend, files: &[(&str, &str)]) -> Scripted {
    scripted_with_on(backend, files, |_| {})
}

/// On SQLite, for the tests of the sandbox alone.
fn scripted(files: &[(&str, &str)]) -> Scripted {
    scripted_on(&Backend::Sqlite, files)
}

/// Another empty database on the same backend as `backend`.
fn another(backend: &Backend) -> Backend {
    match backend {
        Backend::Sqlite => Backend::Sqlite,
        Backend::Postgres(_) => Backend::postgres("scripts_more").expect("the shared cluster"),
    }
}

impl Scripted {
    fn call(&self, func: &str, params: &[(&str, &str)]) -> Doc {
        self.engine.call(
            &Caller::superuser(),
            func,
            Params::from_pairs(params.iter().copied()),
        )
    }

    fn scripts_dir(&self) -> std::path::PathBuf {
        self.dir.path().join("scripts")
    }
}

fn msg(doc: &Doc) -> String {
    match doc {
        Doc::Error(e) => e.msg.clone(),
        other => panic!("expected an error, got {other:?}"),
    }
}

const REGISTER: &[(&str, &str)] = &[
    ("sok", "ok"),
    ("email", "ann@example.com"),
    ("passwd", "Secret123"),
];

backends! {
fn before_hooks_veto_and_rewrite_after_hooks_add_fields(backend) {
    let s = scripted_on(
        &backend,
        &[(
            "guard.lua",
            r#"
        billing.on("register", "before", function(req)
          if req.params.email:match("@spam%.test$") then
            billing.reject("value", "email", "no spam")
          end
          req.params.realname = "Checked " .. req.params.email
        end)
        billing.on("register", "after", function(req, res)
          res.greeting = "hello " .. req.user.level
        end)
        "#,
        )],
    );
    let before = dump(&s.db);
    let doc = s.call(
        "register",
        &[
            ("sok", "ok"),
            ("email", "x@spam.test"),
            ("passwd", "Secret123"),
        ],
    );
    assert_eq!(error_type(&doc), "value");
    assert_eq!(msg(&doc), "no spam");
    assert_eq!(dump(&s.db), before);

    let doc = s.call("register", REGISTER);
    assert_eq!(doc.field("id"), Some("1"));
    assert_eq!(doc.field("greeting"), Some("hello admin"));
    assert_eq!(
        column(&s.call("account", &[]), "name"),
        vec!["Checked ann@example.com"]
    );
}
}

backends! {
/// What `before` hooks do to `req.params` is what the func gets: a removed parameter is gone,
/// a replaced table replaces them all, a value they set crosses as text.
fn before_hooks_remove_and_replace_parameters(backend) {
    let s = scripted_on(
        &backend,
        &[(
            "params.lua",
            r#"
        billing.on("register", "before", function(req)
          if req.params.email == "ann@example.com" then
            req.params.realname = nil
          else
            req.params = {
              sok = "ok", email = req.params.email, passwd = req.params.passwd,
              realname = "Replaced", country = 276,
            }
          end
        end)
        "#,
        )],
    );
    let doc = s.call(
        "register",
        &[
            ("sok", "ok"),
            ("email", "ann@example.com"),
            ("passwd", "Secret123"),
            ("realname", "Ann"),
        ],
    );
    assert_eq!(doc.field("id"), Some("1"), "{doc:?}");
    let doc = s.call(
        "register",
        &[
            ("sok", "ok"),
            ("email", "bob@example.com"),
            ("passwd", "Secret123"),
            ("realname", "Bob"),
        ],
    );
    assert_eq!(doc.field("id"), Some("2"), "{doc:?}");
    let list = s.call("account", &[]);
    assert_eq!(column(&list, "name"), vec!["ann@example.com", "Replaced"]);
    let bob = s.call("account.edit", &[("elid", "2")]);
    assert_eq!(bob.field("country"), Some("276"));
}
}

backends! {
/// `after` hooks get the `req` table the `before` hooks left (their notes too) and a result
/// whose changed fields are kept in place, new ones after them in key order.
fn after_hooks_see_what_before_hooks_left_and_change_fields_in_place(backend) {
    let s = scripted_on(
        &backend,
        &[(
            "notes.lua",
            r#"
        billing.on("account.edit", "before", function(req)
          req.note = "seen by before"
          req.params.lang = "de"
        end)
        billing.on("account.edit", "after", function(req, res)
          res.email = string.upper(res.email)
          res.realname = res.realname
          res.zeta = req.note .. " in " .. req.params.lang
          res.count = 3
          res.flag = true
        end)
        billing.on("account.edit", "after", function(req, res)
          res.alpha = res.zeta .. "!"
        end)
        "#,
        )],
    );
    s.call("register", REGISTER);
    let plain = Engine::open(EngineConfig::new(&s.db)).expect("engine");
    let unhooked = plain.call(
        &Caller::superuser(),
        "account.edit",
        Params::from_pairs([("elid", "1")]),
    );
    let Doc::Form(before) = unhooked else {
        panic!("a form: {unhooked:?}")
    };
    let doc = s.call("account.edit", &[("elid", "1")]);
    let Doc::Form(fields) = doc else {
        panic!("a form: {doc:?}")
    };
    let names: Vec<&str> = fields.iter().map(|(k, _)| k.as_ref()).collect();
    let mut expected: Vec<&str> = before.iter().map(|(k, _)| k.as_ref()).collect();
    expected.extend(["alpha", "count", "flag", "zeta"]);
    assert_eq!(names, expected);
    let field = |name: &str| {
        fields
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str())
    };
    assert_eq!(field("email"), Some("ANN@EXAMPLE.COM"));
    assert_eq!(
        field("realname"),
        before
            .iter()
            .find(|(k, _)| k == "realname")
            .map(|(_, v)| v.as_str())
    );
    assert_eq!(field("zeta"), Some("seen by before in de"));
    assert_eq!(field("alpha"), Some("seen by before in de!"));
    assert_eq!(field("count"), Some("3"));
    assert_eq!(field("flag"), Some("on"));

    // A script that replaces library functions for everyone does not change how results
    // are read back.
    let s2 = scripted_on(
        &another(&backend),
        &[(
            "meddle.lua",
            r#"
        _G.next = function() return nil end
        _G.type = function() return "nil" end
        billing.on("account.edit", "after", function(req, res) res.kept = "yes" end)
        "#,
        )],
    );
    s2.call("register", REGISTER);
    assert_eq!(
        s2.call("account.edit", &[("elid", "1")]).field("kept"),
        Some("yes")
    );

    // Money crosses as its exact text; a float fails the call.
    let s = scripted_on(
        &another(&backend),
        &[(
            "values.lua",
            r#"
        billing.on("account.edit", "after", function(req, res)
          res.credit = billing.money("1.50")
          if req.params.elid == "2" then res.ratio = 0.5 end
        end)
        "#,
        )],
    );
    s.call("register", REGISTER);
    let doc = s.call("account.edit", &[("elid", "1")]);
    assert_eq!(doc.field("credit"), Some("1.50"));
    let second = [
        ("sok", "ok"),
        ("email", "bob@example.com"),
        ("passwd", "Secret123"),
    ];
    s.call("register", &second);
    let doc = s.call("account.edit", &[("elid", "2")]);
    assert_eq!(error_type(&doc), "script");
    assert!(
        msg(&doc).contains("'ratio' = 0.5 is a float"),
        "{}",
        msg(&doc)
    );
}
}

backends! {
fn a_failing_after_hook_rolls_the_func_back(backend) {
    let s = scripted_on(
        &backend,
        &[(
            "after.lua",
            r#"
        billing.on("accountgroup.edit", "after", function(req, res)
          -- the nested call happens in the same transaction, and is undone with it
          billing.call("project.edit", { sok = "ok", name = "side effect" })
          error("refusing " .. req.params.name)
        end)
        "#,
        )],
    );
    let before = dump(&s.db);
    let doc = s.call("accountgroup.edit", &[("sok", "ok"), ("name", "Main")]);
    assert_eq!(error_type(&doc), "script");
    assert!(msg(&doc).starts_with("after.lua:5:"), "{}", msg(&doc));
    assert!(msg(&doc).contains("refusing Main"), "{}", msg(&doc));
    assert_eq!(
        dump(&s.db),
        before,
        "the func and the hook's nested call must be rolled back"
    );
}
}

backends! {
fn script_funcs_call_other_funcs_and_keep_money_exact(backend) {
    let s = scripted_on(
        &backend,
        &[(
            "funcs.lua",
            r#"
        billing.func("sum", { access = "admin", kind = "view" }, function(req)
          local a, b = billing.money(req.params.a), billing.money(req.params.b)
          local total = a + b
          return { total = total, exact = total == billing.money("0.3"), rounded = (billing.money("2.345")):round(2),
                   product = billing.money("19.99") * 3, quotient = (billing.money("10") / 3):round(4) }
        end)
        billing.func("float", { kind = "view" }, function(req) return { x = billing.money(0.1) } end)
        billing.func("floatparam", { kind = "view" }, function(req)
          return billing.call("account", { p_cnt = 2.5 })
        end)
        billing.func("clients", { access = "user", kind = "list" }, function(req)
          local out = {}
          for _, e in ipairs(billing.call("account", {}).elem) do
            out[#out + 1] = { id = e.id, shout = string.upper(e.name) }
          end
          return { elem = out }
        end)
        billing.func("newgroup", { access = "admin" }, function(req)
          local r = billing.call("accountgroup.edit", { sok = "ok", name = req.params.name })
          return { ok = true, id = r.id }
        end)
        "#,
        )],
    );
    let doc = s.call("sum", &[("a", "0.1"), ("b", "0.2")]);
    assert_eq!(doc.field("total"), Some("0.3"));
    assert_eq!(doc.field("exact"), Some("on"));
    assert_eq!(doc.field("rounded"), Some("2.35"));
    assert_eq!(doc.field("product"), Some("59.97"));
    assert_eq!(doc.field("quotient"), Some("3.3333"));
    let doc = s.call("float", &[]);
    assert_eq!(error_type(&doc), "script");
    assert!(msg(&doc).contains("float"), "{}", msg(&doc));
    assert_eq!(error_type(&s.call("floatparam", &[])), "script");

    s.call("register", REGISTER);
    s.call(
        "register",
        &[
            ("sok", "ok"),
            ("email", "bob@example.com"),
            ("passwd", "Secret123"),
        ],
    );
    assert_eq!(
        column(&s.call("clients", &[]), "shout"),
        vec!["ANN@EXAMPLE.COM", "BOB@EXAMPLE.COM"]
    );
    // A client user calling it gets only what its own billing.call may see.
    let ann = s
        .engine
        .read(|c| billhost::auth::switch_user(c, &Caller::superuser(), "ann@example.com"))
        .expect("ann");
    let doc = s.engine.call(&ann, "clients", Params::new());
    assert_eq!(column(&doc, "id"), vec!["1"]);
    // A user-level caller cannot call an admin script func.
    assert_eq!(
        error_type(
            &s.engine
                .call(&ann, "newgroup", Params::from_pairs([("name", "x")]))
        ),
        "access"
    );
    let doc = s.call("newgroup", &[("name", "Made by a script")]);
    assert_eq!(doc.field("id"), Some("1"));
    assert!(s.engine.funcs().iter().any(|d| d.name == "clients"));
    // A failed billing.call keeps its own error type.
    let doc = s.call("newgroup", &[("name", "made by a script")]);
    assert_eq!(error_type(&doc), "exists");
}
}

#[test]
fn the_sandbox_refuses_what_scripts_must_not_reach() {
    let s = scripted(&[(
        "eval.lua",
        r#"
        billing.func("eval", { kind = "view" }, function(req)
          local f, err = load(req.params.code)
          if not f then return { outcome = "refused", why = err } end
          local ok, res = pcall(f)
          return { outcome = ok and "ran" or "refused", why = tostring(res) }
        end)
        "#,
    )]);
    let run = |code: &str| {
        let doc = s.call("eval", &[("code", code)]);
        (
            doc.field("outcome").unwrap_or("").to_string(),
            doc.field("why").unwrap_or("").to_string(),
        )
    };
    for code in [
        "return io.open('/etc/passwd')",
        "return os.execute('true')",
        "return os.getenv('HOME')",
        "return os.remove('x')",
        "return debug.getinfo(1)",
        "return package.loadlib('libc.so.6', 'system')",
        "return require('os')",
        "return dofile('/etc/passwd')",
        "return loadfile('/etc/passwd')",
        "return string.dump(function() end)",
        "return ('x'):dump()",
        "return collectgarbage('count')",
        "return load('\\27LuaT\\0\\25\\147\\r\\n\\26\\n')()",
    ] {
        let (outcome, why) = run(code);
        assert_eq!(outcome, "refused", "{code} ran: {why}");
    }
    // Binary chunks are refused by load itself, with a reason (a NUL byte, which a real chunk
    // holds, never reaches a script: the engine refuses it in any parameter).
    let doc = s.call("eval", &[("code", "\u{1b}LuaT\u{19}\u{93}")]);
    assert_eq!(doc.field("outcome"), Some("refused"));
    assert!(doc.field("why").unwrap_or("").contains("binary"), "{doc:?}");
    // An unnamed chunk's errors name it as Lua's own load does, not a line of billhost's source.
    assert_eq!(
        run("error('boom')"),
        ("refused".into(), "(load):1: boom".into())
    );
    // What is allowed works.
    assert_eq!(
        run("return string.format('%d', math.max(1, 2)) .. os.date():sub(1, 2)"),
        ("ran".into(), "220".into())
    );
}

backends! {
fn runaway_scripts_fail_their_call_only(backend) {
    let s = scripted_with_on(
        &backend,
        &[(
            "runaway.lua",
            r#"
            billing.func("spin", { kind = "view" }, function() while true do end end)
            billing.func("sneaky", { kind = "view" }, function()
              -- pcall must not swallow the budget
              while true do pcall(function() while true do end end) end
            end)
            billing.func("hog", { kind = "view" }, function()
              local t = {}
              for i = 1, 100000000 do t[i] = string.rep("x", 4096) .. i end
            end)
            billing.func("fine", { kind = "view" }, function() return { ok = true } end)
            "#,
        )],
        |c| {
            c.scripts.memory_limit = 32 << 20;
            c.scripts.instruction_budget = 5_000_000;
        },
    );
    for func in ["spin", "sneaky"] {
        let started = Instant::now();
        let doc = s.call(func, &[]);
        assert_eq!(error_type(&doc), "script", "{func}");
        assert!(
            msg(&doc).contains("instruction budget"),
            "{func}: {}",
            msg(&doc)
        );
        assert!(started.elapsed() < Duration::from_secs(30));
        assert!(
            !s.call("fine", &[]).is_error(),
            "the engine keeps serving after {func}"
        );
    }
    let doc = s.call("hog", &[]);
    assert_eq!(error_type(&doc), "script");
    assert!(msg(&doc).contains("memory"), "{}", msg(&doc));
    assert!(!s.call("fine", &[]).is_error());
    assert!(!s.call("account", &[]).is_error());
}
}

backends! {
fn jobs_run_as_the_system_in_their_own_transaction(backend) {
    let s = scripted_on(
        &backend,
        &[(
            "jobs.lua",
            r#"
        billing.every(3600, "make-group", function()
          billing.call("accountgroup.edit", { sok = "ok", name = "nightly" })
        end)
        billing.every(60, "broken", function() error("job failed") end)
        "#,
        )],
    );
    let outcomes = s.engine.run_jobs(|_| true);
    assert_eq!(outcomes.len(), 2);
    assert!(outcomes[0].1.is_ok(), "{outcomes:?}");
    assert!(
        outcomes[1]
            .1
            .as_ref()
            .is_err_and(|e| e.msg.contains("job failed"))
    );
    assert_eq!(
        column(&s.call("accountgroup", &[]), "name"),
        vec!["nightly"]
    );
    let who: String = s
        .engine
        .read(|c| {
            Ok(c.query_row(
                "SELECT user_login FROM history WHERE object_type = 'accountgroup'",
                [],
                |r| r.get(0),
            )?)
        })
        .expect("history");
    assert_eq!(who, "system");
}
}

/// Saves a file the way editors do: write a temporary file, then rename it over the target.
fn editor_save(dir: &Path, name: &str, code: &str) {
    let tmp = dir.join(format!(".{name}.swp"));
    std::fs::write(&tmp, code).expect("write temp");
    std::fs::rename(&tmp, dir.join(name)).expect("rename over");
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

backends! {
fn hot_reload_swaps_only_sets_that_load(backend) {
    let s = scripted_on(
        &backend,
        &[(
            "rule.lua",
            r#"billing.func("version", { kind = "view" }, function() return { v = "1" } end)"#,
        )],
    );
    let host = s.engine.scripts().clone();
    let _watcher = host.watch().expect("watch");
    let dir = s.scripts_dir();
    assert_eq!(s.call("version", &[]).field("v"), Some("1"));
    let first = host.current().id;

    editor_save(
        &dir,
        "rule.lua",
        r#"billing.func("version", { kind = "view" }, function() return { v = "2" } end)"#,
    );
    wait_for("generation after a valid change", || {
        host.current().id > first
    });
    assert_eq!(s.call("version", &[]).field("v"), Some("2"));
    let good = host.current().id;

    editor_save(
        &dir,
        "rule.lua",
        "billing.func(\"version\", { kind = \"view\" }, function()\n  return { v = \"3\" \nend)",
    );
    wait_for("the reload error", || host.status().last_error.is_some());
    let status = host.status();
    assert_eq!(
        status.generation, good,
        "a broken file must leave the last good set live"
    );
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.contains("rule.lua:")),
        "{status:?}"
    );
    assert_eq!(s.call("version", &[]).field("v"), Some("2"));

    editor_save(
        &dir,
        "rule.lua",
        r#"billing.func("version", { kind = "view" }, function() return { v = "4" } end)"#,
    );
    wait_for("the fixed set", || host.current().id > good);
    assert_eq!(s.call("version", &[]).field("v"), Some("4"));
    assert!(host.status().last_error.is_none());

    // A second file joins; removing it drops its func.
    editor_save(
        &dir,
        "zz-extra.lua",
        r#"billing.func("extra", { kind = "view" }, function() return { x = "1" } end)"#,
    );
    wait_for("the extra func", || {
        s.engine.funcs().iter().any(|d| d.name == "extra")
    });
    std::fs::remove_file(dir.join("zz-extra.lua")).expect("remove");
    wait_for("the extra func to go", || {
        !s.engine.funcs().iter().any(|d| d.name == "extra")
    });
}
}

backends! {
fn a_func_keeps_the_generation_it_started_with(backend) {
    let s = scripted_on(
        &backend,
        &[(
            "a.lua",
            r#"billing.func("gen", { kind = "view" }, function() return { v = "a" } end)"#,
        )],
    );
    let host = s.engine.scripts().clone();
    let old = host.current();
    std::fs::write(
        s.scripts_dir().join("a.lua"),
        r#"billing.func("gen", { kind = "view" }, function() return { v = "b" } end)"#,
    )
    .expect("write");
    host.reload().expect("reload");
    // The old generation is still usable by whoever holds it, and new calls see the new one.
    assert_eq!(old.funcs.len(), 1);
    assert!(host.current().id > old.id);
    assert_eq!(s.call("gen", &[]).field("v"), Some("b"));
}
}

backends! {
fn a_broken_set_at_start_runs_without_scripts_and_says_why(backend) {
    let s = scripted_on(&backend, &[("bad.lua", "this is not lua")]);
    let status = s.engine.scripts().status();
    assert!(
        status
            .last_error
            .as_deref()
            .is_some_and(|e| e.starts_with("bad.lua:1:")),
        "{status:?}"
    );
    assert!(status.files.is_empty());
    assert!(!s.call("account", &[]).is_error());
    // Declaring a built-in func is refused at load.
    let s = scripted_on(
        &backend,
        &[("dup.lua", r#"billing.func("account", {}, function() end)"#)],
    );
    assert!(
        s.engine
            .scripts()
            .status()
            .last_error
            .is_some_and(|e| e.contains("built-in"))
    );
}
}

backends! {
fn the_scheduler_runs_jobs_every_period_while_it_lives(backend) {
    let s = scripted_on(
        &backend,
        &[(
            "tick.lua",
            r#"
        local n = 0
        billing.every(1, "tick", function()
          n = n + 1
          billing.call("accountgroup.edit", { sok = "ok", name = "tick " .. n })
        end)
        "#,
        )],
    );
    let engine = std::sync::Arc::new(s.engine);
    let scheduler = billhost::script::Scheduler::spawn(engine.clone());
    let groups = || {
        column(
            &engine.call(&Caller::superuser(), "accountgroup", Params::new()),
            "name",
        )
        .len()
    };
    wait_for("two ticks", || groups() >= 2);
    drop(scheduler);
    let after_stop = groups();
    std::thread::sleep(Duration::from_millis(1500));
    assert_eq!(
        groups(),
        after_stop,
        "no job runs once the scheduler is dropped"
    );
}
}

backends! {
/// A call-out func with a hook holds the Lua state when its handler starts; the writer may
/// meanwhile be running a hooked func that waits for Lua. The call-out lets go of Lua before it
/// waits for the writer, so both finish (locks are taken database first, then Lua).
fn a_hooked_call_out_never_deadlocks_with_a_hooked_write(backend) {
    use billhost::func::{Access, ActionMode, FuncDecl};
    use std::sync::mpsc;

    let hooks = r#"
billing.on("test.callout", "before", function(req) end)
billing.on("accountgroup.edit", "before", function(req) end)
"#;
    let Scripted {
        dir: _dir,
        mut engine,
        _backend,
        ..
    } = scripted_on(&backend, &[("hooks.lua", hooks)]);
    let (in_handler, handler_started) = mpsc::channel::<()>();
    let in_handler = std::sync::Mutex::new(in_handler);
    engine.add_func(FuncDecl::action(
        "test.callout",
        "a call-out that writes after its hook ran",
        Access::ADMIN,
        ActionMode::CallOut,
        move |ctx, _| {
            let _ = in_handler.lock().expect("sender").send(());
            // Give the writer time to take the writer lock and reach its hook.
            std::thread::sleep(Duration::from_millis(200));
            ctx.write(|ctx| {
                ctx.db.execute(
                    "INSERT INTO accountgroup (name, created) VALUES ('by call-out', 'now')",
                    [],
                )?;
                Ok(Doc::Ok(Default::default()))
            })
        },
    ));
    let engine = std::sync::Arc::new(engine);
    let root = Caller::superuser();
    let (done, finished) = mpsc::channel::<&'static str>();
    let call_out = {
        let (engine, root, done) = (engine.clone(), root.clone(), done.clone());
        std::thread::spawn(move || {
            let doc = engine.call(&root, "test.callout", Params::new());
            assert!(!doc.is_error(), "{doc:?}");
            let _ = done.send("call-out");
        })
    };
    handler_started
        .recv_timeout(Duration::from_secs(10))
        .expect("the call-out's handler started");
    let writer = {
        let engine = engine.clone();
        std::thread::spawn(move || {
            let params = Params::from_pairs([("sok", "ok"), ("name", "by writer")]);
            let docs = engine.call_batch(&[(&root, "accountgroup.edit", &params)]);
            assert!(!docs[0].is_error(), "{:?}", docs[0]);
            let _ = done.send("writer");
        })
    };
    let mut finished_first = Vec::new();
    for _ in 0..2 {
        finished_first.push(
            finished
                .recv_timeout(Duration::from_secs(20))
                .expect("both calls finish (no deadlock)"),
        );
    }
    call_out.join().expect("call-out thread");
    writer.join().expect("writer thread");
    let mut names = column(
        &engine.call(&Caller::superuser(), "accountgroup", Params::new()),
        "name",
    );
    names.sort();
    assert_eq!(names, ["by call-out", "by writer"], "{finished_first:?}");
}
}

/// Calls `func` on a thread of its own and fails the test if no answer comes within a minute:
/// a call that escaped every limit never answers.
fn bounded(s: &std::sync::Arc<Scripted>, func: &str, params: &[(&str, &str)]) -> Doc {
    let (tx, rx) = std::sync::mpsc::channel();
    let (s2, f) = (s.clone(), func.to_string());
    let params: Vec<(String, String)> = params
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    std::thread::spawn(move || {
        let params: Vec<(&str, &str)> = params
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()))
            .collect();
        let _ = tx.send(s2.call(&f, &params));
    });
    rx.recv_timeout(Duration::from_secs(60))
        .unwrap_or_else(|_| panic!("{func} never answered: it escaped every limit"))
}

backends! {
/// Every way Lua code runs, and every C loop a script can start, is under the call's budget:
/// finalizers and message handlers (where Lua switches the hook off or retries errors),
/// metamethods, coroutines, loaded chunks, funcs and hooks reached by a nested `billing.call`,
/// the pattern functions, and C loops of the string and table libraries.
fn no_lua_path_escapes_the_instruction_budget(backend) {
    let s = std::sync::Arc::new(scripted_with_on(
        &backend,
        &[(
            "escapes.lua",
            r#"
            local function spin() while true do end end
            local function churn() for i = 1, 1e7 do local t = { i } end end
            local function long(n) return ("a"):rep(n) end
            local function liar() return setmetatable({}, { __len = function() return 1 << 60 end }) end
            local escapes = {
              gc = function() setmetatable({}, { __gc = spin }); churn() end,
              gc_marked_then_set = function()
                local mt = { __gc = false }
                setmetatable({}, mt)
                mt.__gc = spin
                churn()
              end,
              handler = function() return xpcall(error, spin) end,
              handler_loop = function() while true do xpcall(spin, function(e) return e end) end end,
              handler_retries = function() return xpcall(error, function() error("again") end) end,
              index = function() return setmetatable({}, { __index = function() spin() end }).x end,
              compare = function()
                local mt = { __lt = function() spin() end }
                return setmetatable({}, mt) < setmetatable({}, mt)
              end,
              tostring = function() return tostring(setmetatable({}, { __tostring = spin })) end,
              close = function() local x <close> = setmetatable({}, { __close = spin }) end,
              close_on_error = function() local x <close> = setmetatable({}, { __close = spin }); spin() end,
              coroutine = function() return coroutine.wrap(spin)() end,
              resume = function() while true do coroutine.resume(coroutine.create(spin)) end end,
              nested_coroutine = function() return coroutine.wrap(function() coroutine.wrap(spin)() end)() end,
              loaded = function() return load("while true do end")() end,
              -- Compiling a byte costs about eight instructions: 1 MB of source is more than
              -- the budget of 5 million, and a loop of such loads ran for seconds uncharged.
              load_big = function() return load(("x=1 "):rep(1 << 18)) end,
              error_object = function() error(setmetatable({}, { __tostring = spin })) end,
              sort = function() local t = {} for i = 1, 100 do t[i] = i end table.sort(t, spin) end,
              gsub_function = function() return ("aaa"):gsub("a", spin) end,
              find = function() return long(30000):find(".-b") end,
              find_method = function() return string.find(long(30000), "(.-)b") end,
              match_nested = function() return long(3000):match(("a*"):rep(12) .. "b") end,
              gmatch = function() for _ in long(30000):gmatch(".-b") do end end,
              gsub = function() return long(30000):gsub(".-b", "") end,
              move = function() return table.move({}, 1, math.maxinteger - 1, 2) end,
              insert = function() table.insert(liar(), 1, "x") end,
              remove = function() table.remove(liar(), 1) end,
              nested_call = function() return billing.call("spin", {}) end,
              -- Each coroutine runs fewer instructions than a hook period, and a new one
              -- counts from zero: a tree of them never met a hook.
              coroutine_tree = function()
                local function node(d) if d > 0 then for i = 1, 30 do coroutine.wrap(node)(d - 1) end end end
                node(8)
              end,
              -- coroutine.close catches what its __close handlers raise, the stop included.
              close_swallows = function()
                local co = coroutine.create(function()
                  local x <close> = setmetatable({}, { __close = spin })
                  coroutine.yield()
                end)
                coroutine.resume(co)
                coroutine.close(co)
                return { ok = true }
              end,
              -- C functions whose work grows with their input, a few VM instructions a call.
              upper_loop = function() local s = long(1 << 20) while true do local u = s:upper() end end,
              sort_loop = function()
                local t = {} for i = 1, 1e5 do t[i] = i end
                while true do table.sort(t) end
              end,
              sort_liar = function()
                table.sort(setmetatable({}, { __len = function() return 1 << 30 end, __index = rawlen }))
              end,
              nested_hook = function() return billing.call("whoami", {}) end,
            }
            billing.func("spin", { kind = "view" }, spin)
            billing.on("whoami", "before", spin)
            billing.func("escape", { kind = "view" }, function(req) return escapes[req.params.way]() end)
            billing.func("ways", { kind = "view" }, function()
              local names = {}
              for name in pairs(escapes) do names[#names + 1] = name end
              table.sort(names)
              return { ways = table.concat(names, ",") }
            end)
            billing.func("big", { kind = "view" }, function(req)
              if req.params.what == "rep_empty" then return { n = #string.rep("", math.maxinteger) } end
              if req.params.what == "rep_huge" then return { n = #string.rep("x", 1 << 40) } end
              if req.params.what == "concat_huge" then
                local t, s = {}, long(1 << 20)
                for i = 1, 1000 do t[i] = s end
                return { n = #table.concat(t) }
              end
              return { n = #(long(1000):gsub("a", long(1 << 20))) }
            end)
            billing.func("fine", { kind = "view" }, function() return { ok = true } end)
            "#,
        )],
        |c| {
            c.scripts.memory_limit = 32 << 20;
            c.scripts.instruction_budget = 5_000_000;
        },
    ));
    let ways = bounded(&s, "ways", &[]);
    let ways: Vec<String> = ways
        .field("ways")
        .unwrap_or_default()
        .split(',')
        .map(String::from)
        .collect();
    assert_eq!(ways.len(), 33, "{ways:?}");
    for way in &ways {
        let doc = bounded(&s, "escape", &[("way", way)]);
        assert_eq!(error_type(&doc), "script", "{way}: {doc:?}");
        let why = msg(&doc);
        let expected = if way.starts_with("gc") {
            "__gc"
        } else if way == "handler_retries" {
            "again"
        } else {
            "instruction budget"
        };
        assert!(why.contains(expected), "{way}: {why}");
        assert!(!bounded(&s, "fine", &[]).is_error(), "after {way}");
    }
    // An empty string repeated endlessly is empty, at once; a huge result is refused.
    assert_eq!(
        bounded(&s, "big", &[("what", "rep_empty")]).field("n"),
        Some("0")
    );
    for what in ["rep_huge", "concat_huge", "gsub_huge"] {
        let doc = bounded(&s, "big", &[("what", what)]);
        assert_eq!(error_type(&doc), "script", "{what}");
        assert!(
            msg(&doc).contains("memory") || msg(&doc).contains("too large"),
            "{what}: {}",
            msg(&doc)
        );
    }
}
}

/// A file's top-level code runs under the same limits while the set loads.
#[test]
fn a_runaway_file_does_not_load() {
    for code in [
        "while true do end",
        r#"local x = ("a"):rep(30000):find(".-b")"#,
        "setmetatable({}, { __gc = function() while true do end end })",
    ] {
        let (tx, rx) = std::sync::mpsc::channel();
        let code = code.to_string();
        std::thread::spawn(move || {
            let s = scripted(&[("runaway.lua", &code)]);
            let _ = tx.send(s.engine.scripts().status().last_error);
        });
        let error = rx
            .recv_timeout(Duration::from_secs(60))
            .unwrap_or_else(|_| panic!("loading never ended"));
        assert!(
            error
                .as_deref()
                .is_some_and(|e| e.starts_with("runaway.lua")
                    && (e.contains("budget") || e.contains("__gc"))),
            "{error:?}"
        );
    }
}

backends! {
/// A call whose scripts take longer than the time limit is abandoned (rolled back, a `script`
/// error) even when it runs few instructions, and the next write goes through.
fn a_call_past_its_time_limit_is_abandoned_and_rolled_back(backend) {
    let s = std::sync::Arc::new(scripted_with_on(
        &backend,
        &[(
            "slow.lua",
            r#"
            billing.func("groups", { kind = "action" }, function()
              for i = 1, 1e9 do billing.call("accountgroup.edit", { sok = "ok", name = "g" .. i }) end
            end)
            "#,
        )],
        |c| {
            c.scripts.instruction_budget = 1 << 40;
            c.scripts.timeout = Duration::from_secs(1);
        },
    ));
    let before = dump(&s.db);
    let started = Instant::now();
    let doc = bounded(&s, "groups", &[]);
    assert_eq!(error_type(&doc), "script", "{doc:?}");
    assert!(msg(&doc).contains("longer than 1 s"), "{}", msg(&doc));
    assert!(started.elapsed() < Duration::from_secs(30));
    assert_eq!(dump(&s.db), before, "the abandoned call changed nothing");
    let doc = bounded(&s, "accountgroup.edit", &[("sok", "ok"), ("name", "After")]);
    assert!(!doc.is_error(), "{doc:?}");
}
}

/// Each file has its own globals, and no file can change the shared libraries, the string
/// metatable or `billing` for the others.
#[test]
fn one_file_cannot_change_what_another_sees() {
    let s = scripted(&[
        (
            "a.lua",
            r#"
            x = 1; _G.y = 2; rawset(_G, "z", 3); load("w = 4")()
            local tried = {}
            local function try(name, f)
              local ok = pcall(f)
              tried[#tried + 1] = name .. "=" .. (ok and "ok" or "refused")
            end
            local pwned = function() return "pwned" end
            try("string", function() string.upper = pwned end)
            try("meta", function() getmetatable("").__index.upper = pwned end)
            try("unprotect", function() setmetatable(string, nil) end)
            try("billing", function() billing.money = pwned end)
            try("table", function() table.concat = pwned end)
            try("math", function() math.floor = pwned end)
            try("os", function() os.time = pwned end)
            try("coroutine", function() coroutine.wrap = pwned end)
            try("money", function() getmetatable(billing.money(1)).__add = pwned end)
            try("rawset", function() rawset(string, "lower", pwned) end)
            try("rawset billing", function() rawset(billing, "on", nil) end)
            try("rawset utf8", function() rawset(utf8, "char", pwned) end)
            local n = 0
            for k, v in pairs(string) do n = n + 1 end
            TRIED = table.concat(tried, " ")
            billing.func("a.seen", { kind = "view" }, function()
              return { tried = TRIED, x = x, y = y, z = z, w = w, lower = string.lower("A"), libs = n > 10 }
            end)
            "#,
        ),
        (
            "b.lua",
            r#"
            billing.func("b.seen", { kind = "view" }, function()
              return {
                globals = tostring(x) .. tostring(y) .. tostring(z) .. tostring(w),
                strings = string.upper("a") .. ("a"):upper() .. string.lower("A") .. ("A"):lower(),
                others = table.concat({ math.floor(1.5), utf8.char(65), tostring(billing.money(1) + billing.money(2)) }, ","),
                meta = tostring(getmetatable("")),
                own_g = _G == _ENV,
                on = type(billing.on),
              }
            end)
            "#,
        ),
    ]);
    let a = s.call("a.seen", &[]);
    assert_eq!(
        a.field("tried"),
        Some(
            "string=refused meta=refused unprotect=refused billing=refused table=refused \
             math=refused os=refused coroutine=refused money=refused rawset=refused \
             rawset billing=refused rawset utf8=refused"
        ),
        "{a:?}"
    );
    assert_eq!(
        (a.field("x"), a.field("y"), a.field("z"), a.field("w")),
        (Some("1"), Some("2"), Some("3"), Some("4"))
    );
    assert_eq!(a.field("lower"), Some("a"));
    assert_eq!(a.field("libs"), Some("on"));
    let b = s.call("b.seen", &[]);
    assert_eq!(b.field("globals"), Some("nilnilnilnil"), "{b:?}");
    assert_eq!(b.field("strings"), Some("AAaa"));
    assert_eq!(b.field("others"), Some("1,A,3"));
    assert_eq!(b.field("meta"), Some("false"));
    assert_eq!(b.field("own_g"), Some("on"));
    assert_eq!(b.field("on"), Some("function"));
}

/// An error raised with a table says something: its `__tostring`, else what it holds.
#[test]
fn an_error_object_is_shown_as_a_message() {
    let s = scripted(&[(
        "errors.lua",
        r#"
        billing.func("plain", { kind = "view" }, function() error({ code = 1 }) end)
        billing.func("named", { kind = "view" }, function()
          error(setmetatable({ code = 2 }, { __tostring = function(e) return "failure " .. e.code end }))
        end)
        billing.func("caught", { kind = "view" }, function()
          local ok, e = pcall(error, { code = 3 })
          return { code = e.code }
        end)
        "#,
    )]);
    let why = msg(&s.call("plain", &[]));
    assert!(why.contains("error object: {code=1}"), "{why}");
    assert!(!why.contains("table: 0x"), "{why}");
    assert_eq!(msg(&s.call("named", &[])), "failure 2");
    // Inside the script the object is still the table it raised.
    assert_eq!(s.call("caught", &[]).field("code"), Some("3"));
}

/// The budgeted pattern functions behave as Lua's own in a script: through the string
/// metatable too, and their errors are strings with the caller's position.
#[test]
fn pattern_functions_work_and_fail_as_lua_says() {
    let s = scripted(&[(
        "patterns.lua",
        r#"
        billing.func("patterns", { kind = "view" }, function()
          local ok, e = pcall(function() local r = ("abc"):find("[a") return r end)
          local words = {}
          for k, v in ("a=1, b=2"):gmatch("(%w+)=(%w+)") do words[#words + 1] = k .. v end
          return {
            found = table.concat({ ("hello world"):find("o (w)") }, ","),
            matched = string.match("key = value", "(%w+)%s*=%s*(%w+)"),
            words = table.concat(words, " "),
            replaced = (("$name is $age"):gsub("%$(%w+)", { name = "Ann", age = 7 })),
            error = e, kind = type(e),
          }
        end)
        "#,
    )]);
    let doc = s.call("patterns", &[]);
    assert_eq!(doc.field("found"), Some("5,7,w"), "{doc:?}");
    assert_eq!(doc.field("matched"), Some("key"));
    assert_eq!(doc.field("words"), Some("a1 b2"));
    assert_eq!(doc.field("replaced"), Some("Ann is 7"));
    assert_eq!(doc.field("kind"), Some("string"));
    assert_eq!(
        doc.field("error"),
        Some("patterns.lua:3: malformed pattern (missing ']')")
    );
}
