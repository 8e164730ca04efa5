//! `ActionMode::CallOut` funcs: they run on a read connection and write in transactions of their
//! own through `Ctx::write`, so that a plugin is never called while the writer is held.

mod common;

use billhost::auth::Caller;
use billhost::func::{Access, ActionMode, FuncDecl};
use billhost::{Doc, Engine, EngineConfig, Params};
use common::TempDir;

fn engine(dir: &TempDir) -> Engine {
    let mut engine = Engine::open(EngineConfig::new(dir.db())).expect("open");
    // Two steps, each committed on its own; the second fails when asked to.
    engine.add_func(FuncDecl::action(
        "test.steps",
        "Two steps",
        Access::ADMIN,
        ActionMode::CallOut,
        |ctx, p| {
            ctx.write(|w| w.history("project", 1, "step one"))?;
            if p.has("fail") {
                return Err(billhost::FuncError::value(
                    "fail",
                    "on",
                    "the second step failed",
                ));
            }
            ctx.write(|w| w.history("project", 1, "step two"))?;
            Ok(Doc::ok())
        },
    ));
    // A write func that calls the CallOut func inside its own transaction.
    engine.add_func(FuncDecl::action(
        "test.nested",
        "Nested",
        Access::ADMIN,
        ActionMode::Write,
        |ctx, _| ctx.call("test.steps", Params::new()),
    ));
    engine
}

fn steps(dir: &TempDir) -> i64 {
    let conn = rusqlite::Connection::open(dir.db()).unwrap();
    conn.query_row(
        "SELECT count(*) FROM history WHERE description LIKE 'step %'",
        [],
        |r| r.get(0),
    )
    .unwrap()
}

#[test]
fn each_step_commits_on_its_own() {
    let dir = TempDir::new("callout");
    let engine = engine(&dir);
    let root = Caller::superuser();
    assert_eq!(engine.call(&root, "test.steps", Params::new()), Doc::ok());
    assert_eq!(steps(&dir), 2);
    // A failure after the first step leaves that step committed (the func's own choice).
    let doc = engine.call(&root, "test.steps", Params::from_pairs([("fail", "on")]));
    assert!(doc.is_error());
    assert_eq!(steps(&dir), 3);
}

#[test]
fn a_callout_inside_a_write_transaction_is_refused_not_deadlocked() {
    let dir = TempDir::new("callout-nested");
    let engine = engine(&dir);
    let doc = engine.call(&Caller::superuser(), "test.nested", Params::new());
    match doc {
        Doc::Error(e) => assert!(e.msg.contains("inside another one"), "{e:?}"),
        other => panic!("expected an error, got {other:?}"),
    }
    assert_eq!(steps(&dir), 0);
    // The engine still writes afterwards.
    assert_eq!(
        engine.call(&Caller::superuser(), "test.steps", Params::new()),
        Doc::ok()
    );
}
