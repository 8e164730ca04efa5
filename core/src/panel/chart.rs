//! Revenue per month and currency as a small SVG bar chart, written by hand (no chart crate):
//! one row of bars per currency, months along the bottom. Answered base64-encoded for an
//! `<img src="data:...">`, so the page carries no markup of ours unescaped.

use base64::Engine as _;
use rust_decimal::Decimal;
use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write;

const PALETTE: &[&str] = &["#2f6fdf", "#1f9d72", "#c2741c", "#a03fb5", "#c0392b"];

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
        .replace('"', "&quot;")
}

/// The chart of `revenue` (by currency and `YYYY-MM` month), or an empty string when there is
/// nothing to draw.
pub fn revenue(revenue: &BTreeMap<(String, String), Decimal>) -> String {
    if revenue.is_empty() {
        return String::new();
    }
    let months: Vec<&String> = revenue
        .keys()
        .map(|(_, m)| m)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let currencies: Vec<&String> = revenue
        .keys()
        .map(|(c, _)| c)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let (band, bar_h, left, top) = (56.0_f64, 120.0_f64, 70.0_f64, 24.0_f64);
    let row_h = bar_h + 40.0;
    let width = left + band * months.len() as f64 + 20.0;
    let height = top + row_h * currencies.len() as f64 + 10.0;
    let mut svg = String::new();
    let _ = write!(
        svg,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"##
    );
    for (ci, cur) in currencies.iter().enumerate() {
        let color = PALETTE[ci % PALETTE.len()];
        let base = top + row_h * ci as f64 + bar_h;
        let max = months
            .iter()
            .filter_map(|m| revenue.get(&((*cur).clone(), (*m).clone())))
            .copied()
            .max()
            .unwrap_or_default();
        let _ = write!(
            svg,
            r##"<text x="4" y="{}" font-weight="bold" fill="{color}">{}</text><line x1="{left}" y1="{base}" x2="{}" y2="{base}" stroke="#999"/>"##,
            base - bar_h / 2.0,
            esc(cur),
            width - 10.0
        );
        for (mi, month) in months.iter().enumerate() {
            let x = left + band * mi as f64 + 8.0;
            let value = revenue
                .get(&((*cur).clone(), (*month).clone()))
                .copied()
                .unwrap_or_default();
            // Bar heights are a drawing, not money: the ratio as a float is fine here.
            let ratio = if max.is_zero() {
                0.0
            } else {
                (value / max).to_string().parse::<f64>().unwrap_or(0.0)
            };
            let h = (ratio * (bar_h - 16.0)).max(0.0);
            let _ = write!(
                svg,
                r##"<rect x="{x}" y="{}" width="{}" height="{h}" fill="{color}"><title>{} {} {}</title></rect>"##,
                base - h,
                band - 16.0,
                esc(month),
                value.normalize(),
                esc(cur)
            );
            if !value.is_zero() {
                let _ = write!(
                    svg,
                    r##"<text x="{}" y="{}" text-anchor="middle">{}</text>"##,
                    x + (band - 16.0) / 2.0,
                    base - h - 3.0,
                    value
                );
            }
            let _ = write!(
                svg,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#555">{}</text>"##,
                x + (band - 16.0) / 2.0,
                base + 14.0,
                esc(month)
            );
        }
    }
    svg.push_str("</svg>");
    base64::engine::general_purpose::STANDARD.encode(svg)
}
