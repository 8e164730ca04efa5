//! Invoices: the provider's numbering format, what an invoice shows ([`Invoice`], read in one
//! place, no format), and its two renderings: HTML from a template the operator can edit
//! ([`html`]) and PDF with an embedded font ([`pdf`]). No transport here: `payment.send`
//! queues the PDF in the outbox and `mail` delivers it.

pub mod html;
pub mod pdf;

use crate::error::{FuncError, FuncResult};
use crate::ledger::{self, status};
use crate::money;
use crate::store::{Connection, OptionalExtension};
use serde::Serialize;
use std::path::Path;

/// Where the operator's templates live: `invoice.html` (the HTML invoice) and
/// `invoice-font.ttf` (the PDF's font) in that folder replace the shipped ones.
#[derive(Debug, Clone, Default)]
pub struct Templates {
    pub dir: Option<std::path::PathBuf>,
}

impl Templates {
    /// The operator's file `name`, if the folder has it.
    pub fn file(&self, name: &str) -> Option<std::path::PathBuf> {
        let path = self.dir.as_deref()?.join(name);
        path.is_file().then_some(path)
    }
}

// ---------------------------------------------------------------- numbering

/// One piece of an invoice number format.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Piece {
    Text(String),
    Year,
    Month,
    Day,
    /// The sequence number, zero-padded to this width (0: no padding).
    Seq(usize),
}

fn parse_format(format: &str) -> Result<Vec<Piece>, String> {
    let mut pieces = Vec::new();
    let mut text = String::new();
    let mut rest = format;
    while let Some(open) = rest.find('{') {
        text.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        let close = after
            .find('}')
            .ok_or_else(|| format!("'{{' without '}}' in '{format}'"))?;
        let token = &after[..close];
        let piece = match token {
            "year" => Piece::Year,
            "month" => Piece::Month,
            "day" => Piece::Day,
            "seq" => Piece::Seq(0),
            t => match t.strip_prefix("seq:0") {
                Some(w) if !w.is_empty() && w.chars().all(|c| c.is_ascii_digit()) => {
                    let width: usize = w.parse().map_err(|_| format!("bad width in {{{t}}}"))?;
                    if !(1..=20).contains(&width) {
                        return Err(format!("the width in {{{t}}} must be 1 to 20"));
                    }
                    Piece::Seq(width)
                }
                _ => {
                    return Err(format!(
                        "unknown placeholder {{{t}}}: use {{year}}, {{month}}, {{day}}, {{seq}} or {{seq:06}}"
                    ));
                }
            },
        };
        if !text.is_empty() {
            pieces.push(Piece::Text(std::mem::take(&mut text)));
        }
        pieces.push(piece);
        rest = &after[close + 1..];
    }
    if rest.contains('}') {
        return Err(format!("'}}' without '{{' in '{format}'"));
    }
    text.push_str(rest);
    if !text.is_empty() {
        pieces.push(Piece::Text(text));
    }
    if !pieces.iter().any(|p| matches!(p, Piece::Seq(_))) {
        // Formats from before placeholders: the number follows the text.
        pieces.push(Piece::Seq(0));
    }
    if pieces.iter().filter(|p| matches!(p, Piece::Seq(_))).count() > 1 {
        return Err(format!("'{format}' has more than one {{seq}}"));
    }
    Ok(pieces)
}

/// Checks a provider's `invoice_format` (for `project.edit`).
pub fn check_format(format: &str) -> FuncResult<()> {
    parse_format(format)
        .map(|_| ())
        .map_err(|msg| FuncError::value("invoice_format", format, msg))
}

/// The invoice number for sequence value `seq` at `now` (`YYYY-MM-DD HH:MM:SS`, UTC):
/// `INV-{year}-{seq:06}` with seq 42 in 2026 is `INV-2026-000042`. A format without `{seq}`
/// gets the number appended.
pub fn format_number(format: &str, seq: i64, now: &str) -> FuncResult<String> {
    let pieces =
        parse_format(format).map_err(|msg| FuncError::value("invoice_format", format, msg))?;
    let date = |from: usize, to: usize| now.get(from..to).unwrap_or("");
    let mut out = String::new();
    for piece in pieces {
        match piece {
            Piece::Text(t) => out.push_str(&t),
            Piece::Year => out.push_str(date(0, 4)),
            Piece::Month => out.push_str(date(5, 7)),
            Piece::Day => out.push_str(date(8, 10)),
            Piece::Seq(width) => out.push_str(&format!("{seq:0width$}")),
        }
    }
    Ok(out)
}

// ---------------------------------------------------------------- the invoice's data

/// One side of the invoice.
#[derive(Debug, Clone, Serialize)]
pub struct Party {
    pub name: String,
    pub address: String,
    pub taxid: String,
    pub email: String,
    pub country: String,
}

#[derive(Debug, Clone, Serialize)]
pub struct Line {
    /// From 1.
    pub number: usize,
    pub description: String,
    /// Formatted in the invoice's currency (`1234.50`).
    pub amount: String,
}

/// Everything an invoice shows, amounts already formatted for the currency's minor units. This
/// is the context of the HTML template (see `templates/invoice.html`).
#[derive(Debug, Clone, Serialize)]
pub struct Invoice {
    pub id: i64,
    pub number: String,
    pub status: String,
    pub paid: bool,
    /// `YYYY-MM-DD`.
    pub date: String,
    /// `YYYY-MM-DD`, empty while unpaid.
    pub paydate: String,
    pub description: String,
    pub provider: Party,
    pub payer: Party,
    pub lines: Vec<Line>,
    /// `total` minus the sum of the `payment.orderinfo` lines when they do not add up (the last
    /// of `lines` then shows it), else empty.
    pub difference: String,
    /// Tax included in the total.
    pub tax: String,
    /// The total without the tax.
    pub net: String,
    pub total: String,
    /// ISO code of the invoice's currency (the subaccount's).
    pub currency: String,
    pub currency_symbol: String,
    /// What is paid through the payment method when its currency differs (`1500.00 RUB`), else
    /// empty.
    pub payable: String,
    /// The recipient of emails about this invoice (the client's email).
    #[serde(skip)]
    pub account: i64,
}

impl Invoice {
    /// A file name for this invoice: `invoice-NUMBER.EXT`, the number reduced to safe characters.
    pub fn file_name(&self, ext: &str) -> String {
        let safe: String = self
            .number
            .chars()
            .map(|c| {
                if c.is_alphanumeric() || c == '-' || c == '_' {
                    c
                } else {
                    '-'
                }
            })
            .collect();
        let safe = if safe.is_empty() {
            self.id.to_string()
        } else {
            safe
        };
        format!("invoice-{safe}.{ext}")
    }
}

/// Reads the invoice of payment `id`.
pub fn load(conn: &Connection, id: i64) -> FuncResult<Invoice> {
    let p = ledger::payment(conn, id)?;
    let sub = ledger::subaccount_currency(conn, p.subaccount)?;
    let pm_cur = ledger::currency(conn, p.currency)?;
    let row = conn
        .prepare_cached(
            "SELECT y.createdate, y.paydate, y.description, y.taxamount,
                    coalesce(nullif(j.company, ''), j.name), j.company_address, j.company_taxid,
                    a.name, a.email, coalesce((SELECT name FROM country WHERE id = a.country_id), ''),
                    (SELECT symbol FROM currency WHERE id = ?2)
             FROM payment y JOIN project j ON j.id = y.project_id JOIN account a ON a.id = y.account_id
             WHERE y.id = ?1",
        )?
        .query_row(crate::store::params![id, sub.id], |r| {
            Ok((
                r.get::<String>(0)?,
                r.get::<Option<String>>(1)?,
                r.get::<String>(2)?,
                r.get::<i64>(3)?,
                r.get::<String>(4)?,
                r.get::<String>(5)?,
                r.get::<String>(6)?,
                r.get::<String>(7)?,
                r.get::<String>(8)?,
                r.get::<String>(9)?,
                r.get::<Option<String>>(10)?,
            ))
        })
        .optional()?
        .ok_or_else(|| FuncError::missed_object("payment", id))?;
    let fmt = |m: i64| money::format_minor(m, sub.scale);
    let mut lines = Vec::new();
    {
        let mut stmt = conn
            .prepare_cached("SELECT name, cost FROM orderinfo WHERE payment_id = ?1 ORDER BY id")?;
        let rows = stmt.query_map([id], |r| Ok((r.get::<String>(0)?, r.get::<i64>(1)?)))?;
        for (i, row) in rows.enumerate() {
            let (description, cost) = row?;
            lines.push(Line {
                number: i + 1,
                description,
                amount: fmt(cost),
            });
        }
    }
    // Lines that do not add up to the payment's total get one more line showing the difference,
    // so that an invoice always adds up to what is paid.
    let mut difference = String::new();
    if !lines.is_empty() {
        let costs: i128 = conn
            .prepare_cached("SELECT cost FROM orderinfo WHERE payment_id = ?1")?
            .query_map([id], |r| r.get::<i64>(0))?
            .try_fold(0i128, |sum, c| c.map(|c| sum + i128::from(c)))?;
        let diff = i128::from(p.subaccountamount) - costs;
        if diff != 0 {
            difference = rust_decimal::Decimal::try_from_i128_with_scale(diff, sub.scale)
                .map(|d| d.to_string())
                .unwrap_or_else(|_| diff.to_string());
            let description = if diff > 0 {
                "Not itemised: the lines above add up to less than the total"
            } else {
                "Correction: the lines above add up to more than the total"
            };
            lines.push(Line {
                number: lines.len() + 1,
                description: description.to_string(),
                amount: difference.clone(),
            });
        }
    }
    if lines.is_empty() {
        let description = if row.2.trim().is_empty() {
            format!("Payment {}", p.number)
        } else {
            row.2.clone()
        };
        lines.push(Line {
            number: 1,
            description,
            amount: fmt(p.subaccountamount),
        });
    }
    let day = |s: &str| s.get(..10).unwrap_or(s).to_string();
    let paid = matches!(
        p.status,
        status::PAID | status::REFUND_PENDING | status::REFUNDED
    );
    Ok(Invoice {
        id,
        number: p.number.clone(),
        status: status::name(p.status).to_string(),
        paid,
        date: day(&row.0),
        paydate: row.1.as_deref().map(day).unwrap_or_default(),
        description: row.2,
        provider: Party {
            name: row.4,
            address: row.5,
            taxid: row.6,
            email: String::new(),
            country: String::new(),
        },
        payer: Party {
            name: row.7,
            address: String::new(),
            taxid: String::new(),
            email: row.8,
            country: row.9,
        },
        lines,
        difference,
        tax: fmt(row.3),
        net: fmt(p.subaccountamount - row.3),
        total: fmt(p.subaccountamount),
        currency: sub.iso.clone(),
        currency_symbol: row.10.unwrap_or_default(),
        payable: if pm_cur.id != sub.id {
            format!(
                "{} {}",
                money::format_minor(p.paymethodamount, pm_cur.scale),
                pm_cur.iso
            )
        } else {
            String::new()
        },
        account: p.account,
    })
}

/// Reads a whole file the operator provides, as an error document when it cannot be read.
pub(crate) fn read_operator_file(path: &Path) -> FuncResult<Vec<u8>> {
    std::fs::read(path)
        .map_err(|e| FuncError::internal(format!("cannot read {}: {e}", path.display())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers() {
        let now = "2026-03-07 10:11:12";
        for (format, seq, want) in [
            ("{seq}", 7, "7"),
            ("INV-", 7, "INV-7"),
            ("INV-{year}-{seq:06}", 42, "INV-2026-000042"),
            ("{year}/{month}/{day}-{seq:03}", 1234, "2026/03/07-1234"),
        ] {
            assert_eq!(format_number(format, seq, now).unwrap(), want, "{format}");
        }
        for bad in [
            "{seq",
            "x}",
            "{nope}",
            "{seq}{seq}",
            "{seq:6}",
            "{seq:00}",
            "{seq:021}",
        ] {
            assert!(check_format(bad).is_err(), "{bad}");
        }
    }
}
