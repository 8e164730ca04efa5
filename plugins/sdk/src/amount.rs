//! Exact amounts without floats: the decimal text the host sends (`"10.00"`, `"1000"`) and the
//! integer minor units a provider's API counts in.

/// `text` (`-`? digits, `.` digits?) in units of `10^-scale`: `to_minor("10.5", 2) == Some(1050)`.
/// `None` when it is not a plain decimal, has more significant decimals than `scale` (extra
/// trailing zeros are fine), or does not fit.
pub fn to_minor(text: &str, scale: u32) -> Option<i64> {
    let (negative, digits) = match text.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, text),
    };
    let (int, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let plain = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if int.is_empty() || !plain(int) || !plain(frac) || (digits.contains('.') && frac.is_empty()) {
        return None;
    }
    let scale = scale as usize;
    if frac.len() > scale && frac[scale..].bytes().any(|b| b != b'0') {
        return None;
    }
    let kept = &frac[..frac.len().min(scale)];
    let mut value: i128 = 0;
    for b in int.bytes().chain(kept.bytes()) {
        value = value.checked_mul(10)?.checked_add(i128::from(b - b'0'))?;
    }
    for _ in kept.len()..scale {
        value = value.checked_mul(10)?;
    }
    let value = if negative { -value } else { value };
    i64::try_from(value).ok()
}

/// Minor units as decimal text with `scale` decimals: `from_minor(1050, 2) == "10.50"`.
pub fn from_minor(minor: i64, scale: u32) -> String {
    let sign = if minor < 0 { "-" } else { "" };
    let digits = minor.unsigned_abs().to_string();
    let scale = scale as usize;
    if scale == 0 {
        return format!("{sign}{digits}");
    }
    let padded = format!("{digits:0>width$}", width = scale + 1);
    let (int, frac) = padded.split_at(padded.len() - scale);
    format!("{sign}{int}.{frac}")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_exactly() {
        assert_eq!(to_minor("10.00", 2), Some(1000));
        assert_eq!(to_minor("10.5", 2), Some(1050));
        assert_eq!(to_minor("1000", 0), Some(1000));
        assert_eq!(to_minor("1000.00", 0), Some(1000));
        assert_eq!(to_minor("0.001", 3), Some(1));
        assert_eq!(to_minor("-2.5", 2), Some(-250));
        assert_eq!(to_minor("0.005", 2), None);
        assert_eq!(to_minor("1e3", 2), None);
        assert_eq!(to_minor("1.", 2), None);
        assert_eq!(to_minor(".5", 2), None);
        assert_eq!(to_minor("99999999999999999999", 2), None);
        assert_eq!(from_minor(1050, 2), "10.50");
        assert_eq!(from_minor(5, 2), "0.05");
        assert_eq!(from_minor(1000, 0), "1000");
        assert_eq!(from_minor(-5, 3), "-0.005");
    }
}
