//! Reading a plugin's settings (the JSON object the operator saved for a payment method or
//! module): text, required text, http(s) addresses and bounded whole numbers, each refused
//! with an error naming the setting.

use crate::{Error, Result};
use serde_json::Value;

/// A text setting, trimmed; absent, `null` or blank is `None`.
pub fn text(settings: &Value, name: &str) -> Result<Option<String>> {
    match settings.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(Value::String(s)) if s.trim().is_empty() => Ok(None),
        Some(Value::String(s)) => Ok(Some(s.trim().to_string())),
        Some(_) => Err(Error::value(name, format!("{name} is text"))),
    }
}

/// A text setting that must be there.
pub fn required(settings: &Value, name: &str) -> Result<String> {
    text(settings, name)?.ok_or_else(|| Error::missed(name))
}

/// An http:// or https:// address, `default` when absent (required when there is none).
pub fn url(settings: &Value, name: &str, default: Option<&str>) -> Result<String> {
    let url = match (text(settings, name)?, default) {
        (Some(u), _) => u,
        (None, Some(d)) => d.to_string(),
        (None, None) => return Err(Error::missed(name)),
    };
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(Error::value(
            name,
            format!("{name} is an http:// or https:// address"),
        ));
    }
    Ok(url)
}

/// A whole number from `min` to `max`, `default` when absent.
pub fn number(settings: &Value, name: &str, default: i64, min: i64, max: i64) -> Result<i64> {
    match settings.get(name) {
        None | Some(Value::Null) => Ok(default),
        Some(v) => v
            .as_i64()
            .filter(|n| (min..=max).contains(n))
            .ok_or_else(|| {
                Error::value(
                    name,
                    format!("{name} is a whole number from {min} to {max}"),
                )
            }),
    }
}
