//! Wall-clock time as the ledger writes it: UTC, `YYYY-MM-DD HH:MM:SS`, and strict parsing of
//! the dates and date-times callers send.

use crate::error::{FuncError, FuncResult};
use std::time::{SystemTime, UNIX_EPOCH};

pub fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

thread_local! {
    /// The last second formatted on this thread: every func call takes the time, and most
    /// calls of a busy thread fall in the same second.
    static LAST: std::cell::RefCell<(i64, String)> = const { std::cell::RefCell::new((0, String::new())) };
}

/// The current UTC time as `YYYY-MM-DD HH:MM:SS`.
pub fn now() -> String {
    let secs = unix_now();
    LAST.with(|last| {
        let Ok(mut last) = last.try_borrow_mut() else {
            return format_unix(secs);
        };
        if last.0 != secs || last.1.is_empty() {
            *last = (secs, format_unix(secs));
        }
        last.1.clone()
    })
}

pub fn format_unix(secs: i64) -> String {
    let days = secs.div_euclid(86_400);
    let rem = secs.rem_euclid(86_400);
    let (y, m, d) = civil_from_days(days);
    format!(
        "{y:04}-{m:02}-{d:02} {:02}:{:02}:{:02}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60
    )
}

/// Howard Hinnant's days-to-civil algorithm (proleptic Gregorian).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

/// Accepts `YYYY-MM-DD` or `YYYY-MM-DD HH:MM:SS` and returns it in the stored form (a date
/// alone stays a date).
pub fn parse_datetime(text: &str, object: &str) -> FuncResult<String> {
    let bad = || {
        FuncError::value(
            object,
            text,
            format!("'{text}' is not a date (YYYY-MM-DD [HH:MM:SS])"),
        )
    };
    let (date, time) = match text.split_once(' ') {
        Some((d, t)) => (d, Some(t)),
        None => (text, None),
    };
    let num = |s: &str, len: usize| -> Option<u32> {
        (s.len() == len && s.bytes().all(|b| b.is_ascii_digit()))
            .then(|| s.parse().ok())
            .flatten()
    };
    let mut parts = date.split('-');
    let (y, m, d) = match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(y), Some(m), Some(d), None) => (
            num(y, 4).ok_or_else(bad)?,
            num(m, 2).ok_or_else(bad)?,
            num(d, 2).ok_or_else(bad)?,
        ),
        _ => return Err(bad()),
    };
    if !(1..=12).contains(&m) || d == 0 || d > days_in_month(y as i64, m) || y < 1900 {
        return Err(bad());
    }
    if let Some(t) = time {
        let mut p = t.split(':');
        match (p.next(), p.next(), p.next(), p.next()) {
            (Some(h), Some(mi), Some(s), None) => {
                let (h, mi, s) = (
                    num(h, 2).ok_or_else(bad)?,
                    num(mi, 2).ok_or_else(bad)?,
                    num(s, 2).ok_or_else(bad)?,
                );
                if h > 23 || mi > 59 || s > 59 {
                    return Err(bad());
                }
            }
            _ => return Err(bad()),
        }
    }
    Ok(text.to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn now_is_the_formatted_current_second() {
        let before = unix_now();
        let a = now();
        let b = now();
        let after = unix_now();
        assert!(a == format_unix(before) || a == format_unix(after), "{a}");
        assert!(b >= a, "{b} < {a}");
    }

    #[test]
    fn formats_unix_time() {
        assert_eq!(format_unix(0), "1970-01-01 00:00:00");
        assert_eq!(format_unix(951_782_400), "2000-02-29 00:00:00");
        assert_eq!(format_unix(1_795_000_000), "2026-11-18 11:06:40");
    }

    #[test]
    fn parses_dates_strictly() {
        assert!(parse_datetime("2024-02-29", "d").is_ok());
        assert!(parse_datetime("2024-02-29 23:59:59", "d").is_ok());
        for bad in [
            "2023-02-29",
            "2024-13-01",
            "24-01-01",
            "2024-01-01T00:00:00",
            "2024-01-01 24:00:00",
            "",
        ] {
            assert!(parse_datetime(bad, "d").is_err(), "{bad}");
        }
    }
}
