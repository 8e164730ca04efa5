//! Exact money. Amounts are `rust_decimal::Decimal` in code and integer minor units of their
//! currency in the database. Input is parsed strictly (no exponents, no more fraction digits than
//! the currency has: an amount is never rounded silently). Computed amounts (conversions, tax,
//! discounts, commissions) are rounded to the currency's minor units with one mode,
//! half away from zero, at the point where they are computed, per line; sums add rounded lines.

use crate::error::{FuncError, FuncResult};
use rust_decimal::{Decimal, RoundingStrategy};
use std::str::FromStr;

/// The one rounding mode of the ledger.
pub const ROUNDING: RoundingStrategy = RoundingStrategy::MidpointAwayFromZero;

/// Renders integer minor units with `scale` fraction digits: `format_minor(-5, 2)` is `-0.05`.
pub fn format_minor(minor: i64, scale: u32) -> String {
    Decimal::new(minor, scale).to_string()
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
        .map_err(|_| FuncError::value(object, amount.to_string(), "The amount is too large"))
}

/// Rounds a computed amount to `scale` digits with the ledger's rounding mode.
pub fn round(amount: Decimal, scale: u32) -> Decimal {
    amount.round_dp_with_strategy(scale, ROUNDING)
}

/// Parses a decimal written as BILLmanager sends it: optional `-`, digits, optional `.` and
/// digits. Anything else (exponents, spaces, `NaN`, a second point) is a `value` error.
pub fn parse_decimal(text: &str, object: &str) -> FuncResult<Decimal> {
    let bad = || FuncError::value(object, text, format!("'{text}' is not a decimal number"));
    let digits = text.strip_prefix('-').unwrap_or(text);
    let (int, frac) = match digits.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (digits, None),
    };
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !all_digits(int) || frac.is_some_and(|f| f.is_empty() || !all_digits(f)) {
        return Err(bad());
    }
    Decimal::from_str(text).map_err(|_| bad())
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
    }

    #[test]
    fn rounds_half_away_from_zero() {
        assert_eq!(round(Decimal::new(1005, 3), 2), Decimal::new(101, 2));
        assert_eq!(round(Decimal::new(-1005, 3), 2), Decimal::new(-101, 2));
        assert_eq!(round(Decimal::new(1004, 3), 2), Decimal::new(100, 2));
    }
}
