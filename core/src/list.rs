//! SQL-backed lists: a list func declares its table, columns, filters and ownership once; this
//! module turns a request (filters, `plid`, paging, sorting) into two bound-parameter queries,
//! one for the page and one for `p_elems`.

use crate::doc::{Fields, ListDoc};
use crate::error::{FuncError, FuncResult};
use crate::params::parse_int;
use crate::store::Connection;
use crate::store::{Lenient, Value, ValueRef};

/// A column of a list: the name on the wire and the SQL expression computing it.
#[derive(Debug, Clone, Copy)]
pub struct Column {
    pub name: &'static str,
    pub expr: &'static str,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FilterOp {
    /// Equal to an integer, or to any of a comma-separated list of them (`paymethod=3,4`).
    EqInt,
    /// Equal to a string, or to any of a comma-separated list of them (`status=new,open`).
    EqText,
    /// Contains the value, ASCII case-insensitively.
    Like,
    /// At or after the date.
    From,
    /// At or before the date (a date alone covers the whole day).
    To,
    /// An amount in minor units at least the decimal given; the expression is the currency's
    /// number of minor digits (0 to 6) for the row, so that `100` means 100.00 USD and 100 JPY.
    AmountFrom(&'static str),
    /// An amount in minor units at most the decimal given (see [`FilterOp::AmountFrom`]).
    AmountTo(&'static str),
}

/// The most minor digits a currency has (`currency.minor_units`).
const MAX_MINOR_DIGITS: u32 = 6;

/// The bound of an amount filter in minor units for each number of minor digits 0..=6: rounded
/// up for a lower bound, down for an upper one, and clamped to the amounts the ledger holds, so
/// that the comparison stays exact and in integers on both backends.
fn amount_bounds(field: &FilterField, raw: &str, lower: bool) -> FuncResult<Vec<Value>> {
    use rust_decimal::prelude::ToPrimitive;
    let amount = crate::money::parse_decimal(raw, field.name)?;
    let max = rust_decimal::Decimal::from(crate::money::MAX_BALANCE);
    // Beyond any balance the bound is the same as at the bound: clamp before scaling, so
    // that the multiplication cannot overflow.
    let amount = amount.clamp(-max, max);
    (0..=MAX_MINOR_DIGITS)
        .map(|scale| {
            let scaled = amount
                .checked_mul(rust_decimal::Decimal::from(10i64.pow(scale)))
                .ok_or_else(|| crate::money::too_large(field.name, raw))?;
            let bound = if lower { scaled.ceil() } else { scaled.floor() };
            let bound = bound.clamp(-max, max);
            Ok(Value::Integer(bound.to_i64().unwrap_or(0)))
        })
        .collect()
}

#[derive(Debug, Clone, Copy)]
pub struct FilterField {
    pub name: &'static str,
    pub expr: &'static str,
    pub op: FilterOp,
    /// When this field is set, the list's `base_where` no longer applies (e.g. filtering by
    /// status shows deleted clients).
    pub replaces_base: bool,
}

impl FilterField {
    pub const fn new(name: &'static str, expr: &'static str, op: FilterOp) -> Self {
        FilterField {
            name,
            expr,
            op,
            replaces_base: false,
        }
    }
}

#[derive(Debug, Clone)]
pub struct ListSpec {
    /// `table alias`; columns from other tables come as correlated subqueries so that counting
    /// never joins.
    pub from: &'static str,
    /// A unique, indexed key: the default order and the tie-breaker of every sort.
    pub key: &'static str,
    pub columns: Vec<Column>,
    pub base_where: Option<&'static str>,
    /// The expression giving the owning client, for user-level callers.
    pub owner: Option<&'static str>,
    /// The expression `plid` (or, for lists, `elid`) is compared with. The parent id is also
    /// bound as `?1` for column expressions.
    pub parent: Option<&'static str>,
    pub filters: Vec<FilterField>,
    /// Newest first by default (history-like lists).
    pub descending: bool,
}

impl ListSpec {
    pub fn new(
        from: &'static str,
        key: &'static str,
        columns: &[(&'static str, &'static str)],
    ) -> Self {
        ListSpec {
            from,
            key,
            columns: columns
                .iter()
                .map(|&(name, expr)| Column { name, expr })
                .collect(),
            base_where: None,
            owner: None,
            parent: None,
            filters: Vec::new(),
            descending: false,
        }
    }

    pub fn filter_field(&self, name: &str) -> Option<&FilterField> {
        self.filters.iter().find(|f| f.name == name)
    }
}

/// What a list request asks for, already resolved by the dispatcher.
#[derive(Debug, Default)]
pub struct ListQuery<'a> {
    pub filters: Vec<(&'a FilterField, String)>,
    pub parent: Option<i64>,
    /// The client a user-level caller is confined to.
    pub owner: Option<i64>,
    pub page: Option<(u64, u64)>,
    pub sort: Option<(&'a str, bool)>,
}

/// The longest text a filter field takes.
pub const MAX_FILTER_TEXT: usize = 1024;

/// The most values one multi-value filter field takes.
pub const MAX_FILTER_VALUES: usize = 100;

/// Checks a filter value against its field and returns what is bound: one value, or for the
/// equality fields BILLmanager's multi-value form (`3,4` or `3, 4`), each element checked
/// like a single value. An empty element (`3,,4`, `3,`) or more than [`MAX_FILTER_VALUES`]
/// elements is refused.
pub fn filter_values(field: &FilterField, raw: &str) -> FuncResult<Vec<Value>> {
    match field.op {
        FilterOp::AmountFrom(_) => return amount_bounds(field, raw, true),
        FilterOp::AmountTo(_) => return amount_bounds(field, raw, false),
        _ => {}
    }
    if !matches!(field.op, FilterOp::EqInt | FilterOp::EqText) || !raw.contains(',') {
        return Ok(vec![filter_value(field, raw)?]);
    }
    let parts: Vec<&str> = raw.split(',').map(str::trim).collect();
    if parts.len() > MAX_FILTER_VALUES {
        return Err(FuncError::value(
            field.name,
            raw,
            format!("At most {MAX_FILTER_VALUES} values are allowed"),
        ));
    }
    if parts.iter().any(|p| p.is_empty()) {
        return Err(FuncError::value(
            field.name,
            raw,
            "A list of values is comma-separated without empty elements",
        ));
    }
    parts.iter().map(|p| filter_value(field, p)).collect()
}

/// Checks one filter value against its field and returns what is bound.
pub fn filter_value(field: &FilterField, raw: &str) -> FuncResult<Value> {
    if matches!(field.op, FilterOp::EqText | FilterOp::Like) {
        // The same rule as every other text parameter (`func::Ty::Text`): a filter is stored
        // (`*.filter sok=ok`) and shown again, so it may not carry control characters.
        if raw.chars().any(char::is_control) {
            return Err(FuncError::value(
                field.name,
                raw,
                "Control characters are not allowed",
            ));
        }
        if raw.chars().count() > MAX_FILTER_TEXT {
            return Err(FuncError::value(
                field.name,
                raw,
                format!("At most {MAX_FILTER_TEXT} characters are allowed"),
            ));
        }
    }
    Ok(match field.op {
        FilterOp::EqInt => Value::Integer(parse_int(field.name, raw)?),
        FilterOp::EqText => Value::Text(raw.to_string()),
        FilterOp::Like => {
            let escaped = raw
                .replace('\\', "\\\\")
                .replace('%', "\\%")
                .replace('_', "\\_");
            Value::Text(format!("%{escaped}%"))
        }
        FilterOp::From => Value::Text(crate::clock::parse_datetime(raw, field.name)?),
        FilterOp::To => {
            let d = crate::clock::parse_datetime(raw, field.name)?;
            Value::Text(if d.len() == 10 {
                format!("{d} 23:59:59")
            } else {
                d
            })
        }
        // Bound as one value per number of minor digits (`filter_values`); this checks it.
        FilterOp::AmountFrom(_) | FilterOp::AmountTo(_) => {
            Value::Text(crate::money::parse_decimal(raw, field.name)?.to_string())
        }
    })
}

pub fn run(conn: &Connection, spec: &ListSpec, q: &ListQuery<'_>) -> FuncResult<ListDoc> {
    // Placeholders are numbered; ?1 is always the parent id, so that column expressions can
    // use it too (e.g. the client's status with each provider in `account.project`).
    let mut binds: Vec<Value> = vec![q.parent.map_or(Value::Null, Value::Integer)];
    let mut conds: Vec<String> = Vec::new();
    let mut bind = |v: Value| {
        binds.push(v);
        format!("?{}", binds.len())
    };
    let base_replaced = q.filters.iter().any(|(f, _)| f.replaces_base);
    if let (Some(base), false) = (spec.base_where, base_replaced) {
        conds.push(base.to_string());
    }
    if let Some(owner) = q.owner {
        let expr = spec
            .owner
            .ok_or_else(|| FuncError::access("list", "This list is for staff only"))?;
        conds.push(format!("{expr} = {}", bind(Value::Integer(owner))));
    }
    if let (Some(_), Some(expr)) = (q.parent, spec.parent) {
        conds.push(format!("{expr} = ?1"));
    }
    for (field, raw) in &q.filters {
        let op = match field.op {
            FilterOp::EqInt | FilterOp::EqText => "=",
            FilterOp::Like => "LIKE",
            FilterOp::From | FilterOp::AmountFrom(_) => ">=",
            FilterOp::To | FilterOp::AmountTo(_) => "<=",
        };
        let mut values = filter_values(field, raw)?;
        if let FilterOp::AmountFrom(digits) | FilterOp::AmountTo(digits) = field.op {
            // One comparison per number of digits, each with its own integer bound (a bound
            // inside a CASE would be typed as text by PostgreSQL).
            let cases: Vec<String> = values
                .drain(..)
                .enumerate()
                .map(|(scale, v)| {
                    format!("({digits} = {scale} AND {} {op} {})", field.expr, bind(v))
                })
                .collect();
            conds.push(format!("({})", cases.join(" OR ")));
            continue;
        }
        if values.len() > 1 {
            let placeholders: Vec<String> = values.drain(..).map(&mut bind).collect();
            conds.push(format!("{} IN ({})", field.expr, placeholders.join(", ")));
            continue;
        }
        let Some(value) = values.pop() else { continue };
        let placeholder = bind(value);
        let escape = if field.op == FilterOp::Like {
            " ESCAPE '\\'"
        } else {
            ""
        };
        conds.push(format!("{} {op} {placeholder}{escape}", field.expr));
    }
    let where_sql = if conds.is_empty() {
        String::new()
    } else {
        format!(" WHERE {}", conds.join(" AND "))
    };

    let count_sql = format!("SELECT count(*) FROM {}{where_sql}", spec.from);
    let p_elems: i64 = {
        // The count uses the first binds only (not the page's limit and offset).
        let mut stmt = conn.prepare_cached(&count_sql)?;
        let mut rows = stmt.query(Lenient(&binds))?;
        match rows.next()? {
            Some(row) => row.get(0)?,
            None => 0,
        }
    };

    let select: Vec<&str> = spec.columns.iter().map(|c| c.expr).collect();
    let order = match q.sort {
        Some((name, desc)) => {
            let col = spec
                .columns
                .iter()
                .find(|c| c.name == name)
                .ok_or_else(|| {
                    FuncError::value("p_sort", name, format!("The list has no column '{name}'"))
                })?;
            let dir = if desc { "DESC" } else { "ASC" };
            format!("{} {dir}, {} {dir}", col.expr, spec.key)
        }
        None => format!(
            "{} {}",
            spec.key,
            if spec.descending { "DESC" } else { "ASC" }
        ),
    };
    let mut sql = format!(
        "SELECT {} FROM {}{where_sql} ORDER BY {order}",
        select.join(", "),
        spec.from
    );
    let (p_num, p_cnt) = match q.page {
        Some((num, cnt)) => {
            let offset = (num - 1).saturating_mul(cnt).min(i64::MAX as u64) as i64;
            binds.push(Value::Integer(cnt.min(i64::MAX as u64) as i64));
            binds.push(Value::Integer(offset));
            sql.push_str(&format!(
                " LIMIT ?{} OFFSET ?{}",
                binds.len() - 1,
                binds.len()
            ));
            (num, cnt)
        }
        None => (1, p_elems as u64),
    };
    let mut stmt = conn.prepare_cached(&sql)?;
    let mut rows = stmt.query(Lenient(&binds))?;
    let mut elems = Vec::new();
    while let Some(row) = rows.next()? {
        let mut elem: Fields = Vec::with_capacity(spec.columns.len());
        for (i, col) in spec.columns.iter().enumerate() {
            if let Some(text) = value_text(row.get_ref(i)?) {
                elem.push((col.name.into(), text));
            }
        }
        elems.push(elem);
    }
    Ok(ListDoc {
        elems,
        p_num,
        p_cnt,
        p_elems: p_elems as u64,
    })
}

/// SQL values as wire text; NULL fields are left out of the element.
pub fn value_text(v: ValueRef<'_>) -> Option<String> {
    v.to_text()
}
