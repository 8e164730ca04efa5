//! `billhost migrate`: copies a SQLite installation into a new PostgreSQL database. The source
//! is read in one read snapshot (a running server may keep writing; what is copied is one
//! consistent state); the target gets this build's schema, then every table's rows with their
//! ids, in one transaction under the writers' lock, so that the target holds all of it or none
//! of it. Before the commit the row counts are compared table by table, each identity sequence
//! is set past the highest id and past what SQLite's `sqlite_sequence` had handed out (ids are
//! never reused, not even those of deleted rows), and the caller's check (the ledger's) runs on
//! the copy.

use super::value::{Params, Value, ValueRef};
use super::{Connection, Error, Result, SCHEMA_VERSION};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What was copied, table by table (in the order they were filled).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TableCopy {
    pub table: String,
    pub rows: i64,
    /// The id the table's sequence hands out next, for tables with one.
    pub next_id: Option<i64>,
}

/// Rows of one multi-row `INSERT` at most (PostgreSQL takes 65535 placeholders a statement).
const ROWS_PER_INSERT: usize = 256;

/// Copies the SQLite database at `from` into the empty PostgreSQL database at `to`, and runs
/// `verify` on the copy before committing: any line it answers is a problem, and the copy is
/// rolled back. Refuses a target that holds any table, and a source whose schema version is
/// not this build's.
pub fn sqlite_to_postgres(
    from: &Path,
    to: &str,
    verify: impl FnOnce(&Connection) -> std::result::Result<Vec<String>, String>,
) -> Result<Vec<TableCopy>> {
    if !from.is_file() {
        return Err(Error::other(format!(
            "there is no SQLite database at {}",
            from.display()
        )));
    }
    let source = Connection::sqlite(super::sqlite::connect_read_only(from)?);
    source.begin_read()?;
    let version = super::schema_version(&source)?;
    if version != SCHEMA_VERSION {
        return Err(Error::other(format!(
            "{} is at schema version {version}, this billhost's is {SCHEMA_VERSION}: {}",
            from.display(),
            if version < SCHEMA_VERSION {
                "open it once with this billhost (e.g. `billhost check --db FILE`) to bring it up to date, then migrate"
            } else {
                "migrate it with the billhost that wrote it"
            }
        )));
    }
    let target = super::connect(Path::new(to), super::Durability::Full)?;
    let existing: i64 = target.query_row(
        "SELECT count(*) FROM pg_catalog.pg_tables WHERE schemaname = current_schema()",
        [],
        |r| r.get(0),
    )?;
    if existing > 0 {
        return Err(Error::other(format!(
            "the target database is not empty ({existing} tables): migrate into a new database \
             (`CREATE DATABASE ...`)"
        )));
    }
    super::migrate(&target, SCHEMA_VERSION)?;
    target.begin_write()?;
    let copied = copy(&source, &target).and_then(|copied| {
        let problems = verify(&target).map_err(Error::other)?;
        if !problems.is_empty() {
            return Err(Error::other(format!(
                "the copy does not pass the check, nothing was written: {}",
                problems.join("; ")
            )));
        }
        Ok(copied)
    });
    let copied = match copied {
        Ok(c) => c,
        Err(e) => {
            let _ = target.rollback();
            let _ = source.rollback();
            return Err(e);
        }
    };
    target.commit()?;
    source.rollback()?;
    Ok(copied)
}

/// A run-time list of values bound in order.
struct Binds<'a>(&'a [Value]);

impl Params for Binds<'_> {
    fn count(&self) -> usize {
        self.0.len()
    }
    fn value(&self, i: usize) -> ValueRef<'_> {
        self.0[i].as_ref()
    }
}

fn owned(v: ValueRef<'_>) -> Value {
    match v {
        ValueRef::Null => Value::Null,
        ValueRef::Integer(i) => Value::Integer(i),
        ValueRef::Text(t) => Value::Text(t.to_owned()),
        ValueRef::Blob(b) => Value::Blob(b.to_vec()),
    }
}

fn strings(conn: &Connection, sql: &str, params: &[&str]) -> Result<Vec<String>> {
    let mut stmt = conn.prepare(sql)?;
    let binds: Vec<Value> = params.iter().map(|p| Value::Text((*p).into())).collect();
    stmt.query_map(Binds(&binds), |r| r.get::<String>(0))?
        .collect()
}

/// A name as an SQL identifier (the schema's names are plain, but a name is never trusted).
fn ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn copy(source: &Connection, target: &Connection) -> Result<Vec<TableCopy>> {
    let tables = strings(
        source,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        &[],
    )?;
    let pg_tables: BTreeSet<String> = strings(
        target,
        "SELECT tablename::text FROM pg_catalog.pg_tables WHERE schemaname = current_schema() AND tablename <> 'billhost_schema'",
        &[],
    )?
    .into_iter()
    .collect();
    let sqlite_tables: BTreeSet<String> = tables.iter().cloned().collect();
    if sqlite_tables != pg_tables {
        return Err(Error::other(format!(
            "the schemas differ: only in SQLite {:?}, only in PostgreSQL {:?}",
            sqlite_tables.difference(&pg_tables).collect::<Vec<_>>(),
            pg_tables.difference(&sqlite_tables).collect::<Vec<_>>()
        )));
    }
    // Foreign keys: (table, referenced table, column).
    let mut fks: Vec<(String, String, String)> = Vec::new();
    {
        let mut stmt = target.prepare(
            "SELECT c.conrelid::regclass::text, c.confrelid::regclass::text, a.attname::text
             FROM pg_catalog.pg_constraint c
             JOIN pg_catalog.pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = ANY (c.conkey)
             WHERE c.contype = 'f' AND c.connamespace = current_schema()::regnamespace",
        )?;
        for fk in stmt.query_map([], |r| r.try_into())? {
            fks.push(fk?);
        }
    }
    let order = fill_order(&tables, &fks)?;
    // A row may name a later row of its own table (a partner): such columns are filled once
    // every row is in.
    let self_refs: BTreeMap<&str, Vec<&str>> =
        fks.iter()
            .filter(|(t, r, _)| t == r)
            .fold(BTreeMap::new(), |mut m, (t, _, c)| {
                m.entry(t.as_str())
                    .or_insert_with(Vec::new)
                    .push(c.as_str());
                m
            });
    // Under the writers' lock: nothing has written here since the schema was made (another
    // `migrate` into the same database at the same time, a server started on it).
    let written: i64 = target.query_row(
        "SELECT (SELECT count(*) FROM history) + (SELECT count(*) FROM account) + (SELECT count(*) FROM users)",
        [],
        |r| r.get(0),
    )?;
    if written > 0 {
        return Err(Error::other(
            "the target database is not empty (it was written to while the schema was made)",
        ));
    }
    let list = order
        .iter()
        .map(|t| ident(t))
        .collect::<Vec<_>>()
        .join(", ");
    // The seed rows of the new schema make way for the source's (which hold them, as edited).
    target.execute_batch(&format!("TRUNCATE TABLE {list}"))?;
    for t in &order {
        target.execute_batch(&format!("ALTER TABLE {} DISABLE TRIGGER USER", ident(t)))?;
    }
    let mut copied = Vec::new();
    for table in &order {
        let rows = copy_table(source, target, table, self_refs.get(table.as_str()))?;
        copied.push(TableCopy {
            table: table.clone(),
            rows,
            next_id: None,
        });
    }
    for t in &order {
        target.execute_batch(&format!("ALTER TABLE {} ENABLE TRIGGER USER", ident(t)))?;
    }
    set_sequences(source, target, &mut copied)?;
    for c in &copied {
        let q = format!("SELECT count(*) FROM {}", ident(&c.table));
        let (in_source, in_target): (i64, i64) = (
            source.query_row(&q, [], |r| r.get(0))?,
            target.query_row(&q, [], |r| r.get(0))?,
        );
        if in_source != in_target || in_target != c.rows {
            return Err(Error::other(format!(
                "{}: {in_source} rows in the source, {in_target} in the copy",
                c.table
            )));
        }
    }
    Ok(copied)
}

/// The tables in an order where every table comes after those it references (a reference to
/// itself aside).
fn fill_order(tables: &[String], fks: &[(String, String, String)]) -> Result<Vec<String>> {
    let mut left: Vec<&String> = tables.iter().collect();
    let mut order: Vec<String> = Vec::new();
    while !left.is_empty() {
        let ready = left.iter().position(|t| {
            fks.iter()
                .filter(|(from, to, _)| from == *t && to != *t)
                .all(|(_, to, _)| order.contains(to))
        });
        match ready {
            Some(i) => order.push(left.remove(i).clone()),
            None => {
                return Err(Error::other(format!(
                    "the tables {left:?} reference each other: no order fills them"
                )));
            }
        }
    }
    Ok(order)
}

fn copy_table(
    source: &Connection,
    target: &Connection,
    table: &str,
    self_refs: Option<&Vec<&str>>,
) -> Result<i64> {
    let columns = strings(
        source,
        "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
        &[table],
    )?;
    let pg_columns: BTreeSet<String> = strings(
        target,
        "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ?1",
        &[table],
    )?
    .into_iter()
    .collect();
    let theirs: BTreeSet<String> = columns.iter().cloned().collect();
    if theirs != pg_columns {
        return Err(Error::other(format!(
            "{table}: the columns differ (SQLite {theirs:?}, PostgreSQL {pg_columns:?})"
        )));
    }
    let later: Vec<usize> = self_refs
        .map(|cols| {
            columns
                .iter()
                .enumerate()
                .filter(|(_, c)| cols.contains(&c.as_str()))
                .map(|(i, _)| i)
                .collect()
        })
        .unwrap_or_default();
    let id = columns.iter().position(|c| c == "id");
    if !later.is_empty() && id.is_none() {
        return Err(Error::other(format!(
            "{table} references itself without an id column"
        )));
    }
    let names = columns
        .iter()
        .map(|c| ident(c))
        .collect::<Vec<_>>()
        .join(", ");
    let mut select = source.prepare(&format!("SELECT {names} FROM {}", ident(table)))?;
    let mut rows = select.query([])?;
    let width = columns.len();
    let mut batch: Vec<Value> = Vec::with_capacity(ROWS_PER_INSERT * width);
    let mut deferred: Vec<(usize, Value, Value)> = Vec::new();
    let mut count = 0i64;
    let flush = |batch: &mut Vec<Value>| -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        let n = batch.len() / width;
        let mut sql = format!("INSERT INTO {} ({names}) VALUES ", ident(table));
        for r in 0..n {
            if r > 0 {
                sql.push_str(", ");
            }
            sql.push('(');
            for c in 0..width {
                if c > 0 {
                    sql.push_str(", ");
                }
                sql.push_str(&format!("?{}", r * width + c + 1));
            }
            sql.push(')');
        }
        target.execute(&sql, Binds(batch))?;
        batch.clear();
        Ok(())
    };
    while let Some(row) = rows.next()? {
        for c in 0..width {
            let v = owned(row.get_ref(c)?);
            if later.contains(&c) && v != Value::Null {
                let key = id.map(|i| owned(row.get_ref(i).unwrap_or(ValueRef::Null)));
                deferred.push((c, key.unwrap_or(Value::Null), v));
                batch.push(Value::Null);
            } else {
                batch.push(v);
            }
        }
        count += 1;
        if batch.len() >= ROWS_PER_INSERT * width {
            flush(&mut batch)?;
        }
    }
    flush(&mut batch)?;
    for (c, key, v) in deferred {
        target.execute(
            &format!(
                "UPDATE {} SET {} = ?1 WHERE id = ?2",
                ident(table),
                ident(&columns[c])
            ),
            Binds(&[v, key]),
        )?;
    }
    Ok(count)
}

/// Sets every identity sequence past the highest id copied and past SQLite's
/// `sqlite_sequence` (the highest id ever handed out, deleted rows included).
fn set_sequences(source: &Connection, target: &Connection, copied: &mut [TableCopy]) -> Result<()> {
    let mut handed_out: BTreeMap<String, i64> = BTreeMap::new();
    let has_sequence: i64 = source.query_row(
        "SELECT count(*) FROM sqlite_master WHERE type = 'table' AND name = 'sqlite_sequence'",
        [],
        |r| r.get(0),
    )?;
    if has_sequence > 0 {
        let mut stmt = source.prepare("SELECT name, seq FROM sqlite_sequence")?;
        for row in stmt.query_map([], |r| r.try_into())? {
            let (name, seq): (String, i64) = row?;
            handed_out.insert(name, seq);
        }
    }
    let mut identities: Vec<(String, String)> = Vec::new();
    {
        let mut stmt = target.prepare(
            "SELECT table_name::text, column_name::text FROM information_schema.columns
             WHERE table_schema = current_schema() AND is_identity = 'YES'",
        )?;
        for row in stmt.query_map([], |r| r.try_into())? {
            identities.push(row?);
        }
    }
    for (table, column) in identities {
        let highest: i64 = target.query_row(
            &format!(
                "SELECT coalesce(max({}), 0) FROM {}",
                ident(&column),
                ident(&table)
            ),
            [],
            |r| r.get(0),
        )?;
        let last = highest.max(handed_out.get(&table).copied().unwrap_or(0));
        let next: i64 = if last >= 1 {
            target.query_row(
                "SELECT setval(pg_get_serial_sequence(?1, ?2), ?3) + 1",
                super::params![ident(&table), column, last],
                |r| r.get(0),
            )?
        } else {
            target.query_row(
                "SELECT setval(pg_get_serial_sequence(?1, ?2), 1, false)",
                super::params![ident(&table), column],
                |r| r.get(0),
            )?
        };
        if let Some(c) = copied.iter_mut().find(|c| c.table == table) {
            c.next_id = Some(next);
        }
    }
    Ok(())
}

/// Copies one read snapshot of the PostgreSQL database at `from` into a new SQLite file `to`
/// (the REPL's `:dry` copy): this build's schema, every table's rows, and `sqlite_sequence` set
/// from each identity sequence, so that the copy hands out the ids the live database would
/// hand out next. Only a read transaction is held on the live database, never the writers'
/// lock.
pub fn postgres_to_sqlite(from: &str, to: &Path) -> Result<()> {
    let source = super::connect(Path::new(from), super::Durability::Full)?;
    let version = super::schema_version(&source)?;
    if version != SCHEMA_VERSION {
        return Err(Error::other(format!(
            "the database is at schema version {version}, this billhost's is {SCHEMA_VERSION}"
        )));
    }
    // The copy holds password hashes and money: readable by its owner only.
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        std::fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(to)
            .map_err(|e| Error::other(format!("{}: {e}", to.display())))?;
    }
    let target = super::open(to, super::Durability::Normal)?;
    source.begin_read()?;
    let copied = snapshot_into(&source, &target);
    let _ = source.rollback();
    copied
}

fn snapshot_into(source: &Connection, target: &Connection) -> Result<()> {
    let tables = strings(
        target,
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite\\_%' ESCAPE '\\' ORDER BY name",
        &[],
    )?;
    target.execute_batch("PRAGMA foreign_keys = OFF")?;
    target.begin_write()?;
    let filled = (|| -> Result<()> {
        for table in &tables {
            target.execute(&format!("DELETE FROM {}", ident(table)), [])?;
        }
        for table in &tables {
            let columns = strings(
                target,
                "SELECT name FROM pragma_table_info(?1) ORDER BY cid",
                &[table],
            )?;
            let names = columns
                .iter()
                .map(|c| ident(c))
                .collect::<Vec<_>>()
                .join(", ");
            let marks = (1..=columns.len())
                .map(|i| format!("?{i}"))
                .collect::<Vec<_>>()
                .join(", ");
            let insert = format!("INSERT INTO {} ({names}) VALUES ({marks})", ident(table));
            let mut select = source.prepare(&format!("SELECT {names} FROM {}", ident(table)))?;
            let mut rows = select.query([])?;
            while let Some(row) = rows.next()? {
                let values = (0..columns.len())
                    .map(|c| row.get_ref(c).map(owned))
                    .collect::<Result<Vec<_>>>()?;
                target.execute(&insert, Binds(&values))?;
            }
        }
        let mut identities: Vec<(String, String)> = Vec::new();
        {
            let mut stmt = source.prepare(
                "SELECT table_name::text, column_name::text FROM information_schema.columns
                 WHERE table_schema = current_schema() AND is_identity = 'YES'",
            )?;
            for row in stmt.query_map([], |r| r.try_into())? {
                identities.push(row?);
            }
        }
        target.execute("DELETE FROM sqlite_sequence", [])?;
        for (table, column) in identities {
            let handed_out: Option<i64> = source.query_row(
                "SELECT pg_sequence_last_value(pg_get_serial_sequence(?1, ?2)::regclass)",
                super::params![ident(&table), column],
                |r| r.get(0),
            )?;
            if let Some(seq) = handed_out {
                target.execute(
                    "INSERT INTO sqlite_sequence (name, seq) VALUES (?1, ?2)",
                    super::params![table, seq],
                )?;
            }
        }
        Ok(())
    })();
    let done = filled.and_then(|()| target.commit());
    if done.is_err() {
        let _ = target.rollback();
    }
    target.execute_batch("PRAGMA foreign_keys = ON")?;
    done
}
