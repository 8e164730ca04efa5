//! Countries and currencies by ISO alpha code (any case), by our ids (ISO numeric codes) and by
//! BILLmanager's directory ids (`country=182`, `currency=126`), and the aliases an operator adds;
//! a number that is ours never means anything else. On SQLite and on PostgreSQL.

mod common;
#[path = "support/pg.rs"]
mod pg;

use billhost::{Doc, Engine, EngineConfig};
use common::{Fixture, TempDir, id_of};

fn error_of(doc: &Doc) -> (String, String) {
    match doc {
        Doc::Error(e) => (format!("{:?}", e.kind).to_lowercase(), e.object.clone()),
        other => panic!("expected an error, got {other:?}"),
    }
}

fn country_of(fx: &Fixture, country: &str, n: usize) -> Doc {
    let email = format!("c{n}@example.com");
    let doc = fx.call(
        "register",
        &[
            ("sok", "ok"),
            ("email", &email),
            ("passwd", "Secret123"),
            ("country", country),
        ],
    );
    if doc.is_error() {
        return doc;
    }
    fx.ok("account.edit", &[("elid", &id_of(&doc).to_string())])
}

/// `sqlite`: the database is a file whose rows `common::dump` can compare.
fn walk(fx: &Fixture, sqlite: bool) {
    // Countries: our id, ISO alpha-2 in any case, BILLmanager's id.
    for (n, given) in ["643", "RU", "ru", "Ru", "182"].iter().enumerate() {
        let view = country_of(fx, given, n);
        assert_eq!(
            view.field("country"),
            Some("643"),
            "country={given}: {view:?}"
        );
    }
    assert_eq!(country_of(fx, "de", 10).field("country"), Some("276"));
    // Unknown codes are refused, naming the parameter; a number neither ours nor an alias is
    // a missing country.
    for (n, given) in ["XX", "RUS", "R"].iter().enumerate() {
        let doc = country_of(fx, given, 20 + n);
        assert_eq!(
            error_of(&doc),
            ("value".into(), "country".into()),
            "country={given}"
        );
    }
    let doc = country_of(fx, "999", 30);
    assert_eq!(error_of(&doc).1, "country", "{doc:?}");

    // List filters read countries the same way.
    for given in ["RU", "182", "643"] {
        let Doc::List(list) = fx.ok("account", &[("filter", "on"), ("country", given)]) else {
            panic!("account is a list");
        };
        assert_eq!(list.elems.len(), 5, "country={given}");
    }
    let doc = fx.call("account", &[("filter", "on"), ("country", "XX")]);
    assert_eq!(error_of(&doc), ("value".into(), "country".into()));

    // Currencies: ISO 4217 code in any case, BILLmanager's rouble, our id.
    for (n, given) in ["RUB", "rub", "126", "643"].iter().enumerate() {
        let name = format!("Method {n}");
        let id = id_of(&fx.ok(
            "paymethod.edit",
            &[
                ("sok", "ok"),
                ("name", &name),
                ("currency", given),
                ("project", "1"),
            ],
        ));
        let view = fx.ok("paymethod.edit", &[("elid", &id.to_string())]);
        assert_eq!(
            view.field("currency"),
            Some("643"),
            "currency={given}: {view:?}"
        );
    }
    fx.ok(
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "eur")],
    );
    assert_eq!(
        fx.ok("project.edit", &[("elid", "1")]).field("currency"),
        Some("978")
    );
    let doc = fx.call(
        "project.edit",
        &[("elid", "1"), ("sok", "ok"), ("currency", "EURO")],
    );
    assert_eq!(error_of(&doc), ("value".into(), "currency".into()));

    // The shipped aliases, listed with their source.
    let list = fx.ok("directory.alias", &[]);
    let text = common::render(&list, billhost::wire::Format::Text, "directory.alias");
    assert!(text.contains("kind=country alias=182 target=643"), "{text}");
    assert!(
        text.contains("kind=currency alias=126 target=643"),
        "{text}"
    );

    // An operator adds one; an id of ours cannot be an alias; nor can an alias be added twice.
    let dump = || sqlite.then(|| common::dump(&fx.dir.db()));
    let before = dump();
    let doc = fx.call(
        "directory.alias.edit",
        &[
            ("sok", "ok"),
            ("kind", "country"),
            ("alias", "276"),
            ("target", "RU"),
        ],
    );
    assert_eq!(error_of(&doc), ("value".into(), "alias".into()));
    let doc = fx.call(
        "directory.alias.edit",
        &[
            ("sok", "ok"),
            ("kind", "country"),
            ("alias", "182"),
            ("target", "DE"),
        ],
    );
    assert_eq!(error_of(&doc), ("exists".into(), "alias".into()));
    let doc = fx.call(
        "directory.alias.edit",
        &[
            ("sok", "ok"),
            ("kind", "currency"),
            ("alias", "5000"),
            ("target", "XYZ"),
        ],
    );
    assert_eq!(error_of(&doc).1, "target");
    assert_eq!(before, dump(), "a refused alias changed nothing");
    let alias = id_of(&fx.ok(
        "directory.alias.edit",
        &[
            ("sok", "ok"),
            ("kind", "country"),
            ("alias", "999"),
            ("target", "de"),
            ("source", "our CRM"),
        ],
    ));
    assert_eq!(country_of(fx, "999", 40).field("country"), Some("276"));
    fx.ok("directory.alias.delete", &[("elid", &alias.to_string())]);
    assert_eq!(error_of(&country_of(fx, "999", 41)).1, "country");
}

#[test]
fn countries_and_currencies_by_code_and_by_billmanager_id() {
    walk(&Fixture::new("directories"), true);
}

#[test]
fn countries_and_currencies_by_code_and_by_billmanager_id_on_postgres() {
    let Some(cluster) = pg::Cluster::start("directories") else {
        return;
    };
    let url = cluster.database("directories");
    let fx = Fixture {
        dir: TempDir::new("directories-pg"),
        engine: Engine::open(EngineConfig::new(&url)).expect("open on PostgreSQL"),
    };
    walk(&fx, false);
}
