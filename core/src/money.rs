//! Exact money. Amounts are `rust_decimal::Decimal` in code and integer minor units of their
//! currency in the database. Input is parsed strictly (no exponents, no significant fraction
//! digits beyond the currency's: an amount is never rounded silently; zeros past them are
//! accepted, `10.010` USD is `10.01`). Computed amounts (conversions, tax, discounts,
//! commissions) are rounded to the currency's minor units with one mode, half away from zero,
//! at the point where they are computed, per line; sums add rounded lines.
//!
//! # Bounds
//! Every amount the ledger accepts or computes is at most [`MAX_AMOUNT`] minor units in
//! magnitude, and every balance at most [`MAX_BALANCE`]: so each single amount, each
//! `balance ± amount` and `balance + creditlimit` stay far inside `i64`, and the sums that are
//! not bounded by construction (a subaccount's credited payments, refunds and expenses) are
//! added with checks (`ledger`) or in `i128` (`ledger::check`).

use crate::error::{FuncError, FuncResult};
use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;

/// The one rounding mode of the ledger.
pub const ROUNDING: RoundingStrategy = RoundingStrategy::MidpointAwayFromZero;

/// Renders integer minor units with `scale` fraction digits: `format_minor(-5, 2)` is `-0.05`.
pub fn format_minor(minor: i64, scale: u32) -> String {
    Decimal::new(minor, scale).to_string()
}

/// The largest amount, in minor units of its currency, that is accepted or computed:
/// 99 999 999 999 999 999 (999 999 999 999 999.99 USD, 99 999 999 999 999 999 JPY,
/// 99 999 999 999 999.999 BHD).
pub const MAX_AMOUNT: i64 = 99_999_999_999_999_999;

/// The largest balance (or debt), in minor units: ten times [`MAX_AMOUNT`] and a bit.
pub const MAX_BALANCE: i64 = 999_999_999_999_999_999;

/// The most fraction digits a decimal may carry (what `Decimal` holds exactly).
pub const MAX_FRACTION_DIGITS: usize = 28;

/// The `value` error for an amount or a sum beyond the bounds.
pub fn too_large(object: &str, value: impl Into<String>) -> FuncError {
    FuncError::value(
        object,
        value,
        format!(
            "The amount is too large: at most {MAX_AMOUNT} minor units per amount and {MAX_BALANCE} per balance"
        ),
    )
}

/// `amount` when it is within [`MAX_AMOUNT`], else the "too large" error.
pub fn bounded(amount: i64, object: &str) -> FuncResult<i64> {
    if amount.checked_abs().is_some_and(|a| a <= MAX_AMOUNT) {
        Ok(amount)
    } else {
        Err(too_large(object, amount.to_string()))
    }
}

/// `balance + delta`, refused with the "too large" error (naming `object` and `value`) when it
/// would leave `-MAX_BALANCE..=MAX_BALANCE`.
pub fn add_to_balance(balance: i64, delta: i64, object: &str, value: &str) -> FuncResult<i64> {
    balance
        .checked_add(delta)
        .filter(|b| b.checked_abs().is_some_and(|a| a <= MAX_BALANCE))
        .ok_or_else(|| too_large(object, value))
}

pub fn from_minor(minor: i64, scale: u32) -> Decimal {
    Decimal::new(minor, scale)
}

/// Converts an amount that already has at most `scale` fraction digits to minor units.
pub fn to_minor(amount: Decimal, scale: u32, object: &str) -> FuncResult<i64> {
    if amount.scale() > scale && amount.round_dp_with_strategy(scale, ROUNDING) != amount {
        return Err(FuncError::value(
            object,
            amount.to_string(),
            format!("At most {scale} digits after the decimal point are allowed"),
        ));
    }
    let mut a = amount;
    a.rescale(scale);
    i64::try_from(a.mantissa())
        .ok()
        .filter(|m| m.checked_abs().is_some_and(|m| m <= MAX_AMOUNT))
        .ok_or_else(|| too_large(object, amount.to_string()))
}

/// Rounds a computed amount to `scale` digits with the ledger's rounding mode.
pub fn round(amount: Decimal, scale: u32) -> Decimal {
    amount.round_dp_with_strategy(scale, ROUNDING)
}

/// Parses a decimal written as BILLmanager sends it: optional `-`, digits, optional `.` and
/// digits. Anything else (exponents, spaces, `NaN`, a second point) is a `value` error, and so
/// is a number `Decimal` cannot hold exactly (more than 28 significant fraction digits, or more
/// digits in all than its 96 bits keep): it is never rounded. Zeros after the last significant
/// fraction digit are accepted, however many.
pub fn parse_decimal(text: &str, object: &str) -> FuncResult<Decimal> {
    let bad = || FuncError::value(object, text, format!("'{text}' is not a decimal number"));
    let negative = text.starts_with('-');
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || frac.is_some_and(|f| f.is_empty() || !all_digits(f)) {
        return Err(bad());
    }
    let significant = frac.unwrap_or("").trim_end_matches('0');
    let inexact = || {
        FuncError::value(
            object,
            text,
            format!(
                "'{text}' has more digits than can be kept exactly (at most {MAX_FRACTION_DIGITS} after the decimal point, 28 in all)"
            ),
        )
    };
    if significant.len() > MAX_FRACTION_DIGITS {
        return Err(inexact());
    }
    let int = int.trim_start_matches('0');
    let int = if int.is_empty() { "0" } else { int };
    let canonical = if significant.is_empty() {
        int.to_string()
    } else {
        format!("{int}.{significant}")
    };
    let d = Decimal::from_str(&canonical).map_err(|_| inexact())?;
    // `Decimal` rounds what does not fit in 96 bits: compare with what was written.
    if d.normalize().to_string() != canonical {
        return Err(inexact());
    }
    let d = if negative { -d } else { d };
    // Keep the scale that was written (`10.50` stays `10.50`) where it fits.
    match frac.map(str::len) {
        Some(n) if n > significant.len() && n <= MAX_FRACTION_DIGITS => {
            let mut kept = d;
            kept.rescale(n as u32);
            Ok(if kept == d { kept } else { d })
        }
        _ => Ok(d),
    }
}

/// Parses an amount of a currency with `scale` minor digits into minor units.
pub fn parse_minor(text: &str, scale: u32, object: &str) -> FuncResult<i64> {
    let d = parse_decimal(text, object)?;
    to_minor(d, scale, object)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn formats_minor_units_exactly() {
        assert_eq!(format_minor(-1234, 2), "-12.34");
        assert_eq!(format_minor(5, 2), "0.05");
        assert_eq!(format_minor(100, 0), "100");
        assert_eq!(format_minor(1, 3), "0.001");
    }

    #[test]
    fn parses_strictly() {
        assert_eq!(parse_minor("10", 2, "amount"), Ok(1000));
        assert_eq!(parse_minor("10.5", 2, "amount"), Ok(1050));
        assert_eq!(parse_minor("-0.01", 2, "amount"), Ok(-1));
        assert_eq!(parse_minor("10.50", 2, "amount"), Ok(1050));
        for bad in [
            "", "1e3", " 1", "1.", ".5", "1.2.3", "NaN", "+1", "1,5", "--1",
        ] {
            assert!(parse_decimal(bad, "amount").is_err(), "{bad}");
        }
        assert!(parse_minor("10.001", 2, "amount").is_err());
        assert_eq!(parse_minor("10.000", 2, "amount"), Ok(1000));
        assert_eq!(parse_minor("10.010", 2, "amount"), Ok(1001));
    }

    #[test]
    fn never_rounds_what_decimal_cannot_hold() {
        for bad in [
            "9.9999999999999999999999999999999",
            "0.00000000000000000000000000001",
            "9.9999999999999999999999999999",
            "99999999999999999999999999999999",
        ] {
            assert!(parse_decimal(bad, "amount").is_err(), "{bad}");
        }
        assert_eq!(
            parse_decimal("10.0000000000000000000000000000000", "a"),
            Ok(Decimal::new(10, 0))
        );
        assert_eq!(
            parse_decimal("10.50", "a").map(|d| d.to_string()),
            Ok("10.50".into())
        );
        assert_eq!(parse_decimal("-0.5", "a"), Ok(Decimal::new(-5, 1)));
        assert_eq!(parse_decimal("007", "a"), Ok(Decimal::new(7, 0)));
    }

    #[test]
    fn amounts_are_bounded() {
        assert_eq!(parse_minor("999999999999999.99", 2, "a"), Ok(MAX_AMOUNT));
        assert!(parse_minor("1000000000000000.00", 2, "a").is_err());
        assert!(parse_minor("92233720368547758.07", 2, "a").is_err());
        assert!(parse_minor("-1000000000000000", 2, "a").is_err());
        assert_eq!(
            add_to_balance(MAX_BALANCE - 1, 1, "a", "1"),
            Ok(MAX_BALANCE)
        );
        assert!(add_to_balance(MAX_BALANCE, 1, "a", "1").is_err());
        assert!(add_to_balance(i64::MIN, -1, "a", "1").is_err());
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(round(Decimal::new(1005, 3), 2), Decimal::new(101, 2));
        assert_eq!(round(Decimal::new(-1005, 3), 2), Decimal::new(-101, 2));
        assert_eq!(round(Decimal::new(1004, 3), 2), Decimal::new(100, 2));
    }
}
