//! `application/x-www-form-urlencoded` decoding for query strings and POST bodies, strict where
//! the usual decoders are lenient: a broken `%` escape or bytes that are not UTF-8 are the
//! caller's error (an error document), never silently replaced.

use crate::error::FuncError;

/// Decodes `input` into `(name, value)` pairs in order. `+` is a space; empty segments
/// (`a=1&&b=2`) and pairs without a name are skipped; a name without `=` has an empty value.
/// Fails when more than `max_pairs` pairs arrive, so that a flood of parameters costs nothing.
pub fn decode(
    input: &[u8],
    what: &str,
    max_pairs: usize,
) -> Result<Vec<(String, String)>, FuncError> {
    let mut pairs = Vec::new();
    for segment in input.split(|&b| b == b'&') {
        if segment.is_empty() {
            continue;
        }
        let (name, value) = match segment.iter().position(|&b| b == b'=') {
            Some(i) => (&segment[..i], &segment[i + 1..]),
            None => (segment, &b""[..]),
        };
        let name = unescape(name, what)?;
        if name.is_empty() {
            continue;
        }
        if pairs.len() == max_pairs {
            return Err(too_many(max_pairs));
        }
        let value = unescape(value, what)?;
        pairs.push((name, value));
    }
    Ok(pairs)
}

/// Decodes a JSON object of parameters (`{"func": "auth", "username": "a", "elid": 3}`) into
/// `(name, value)` pairs in order. Values are strings; integers and `true`/`false` (`on`/`off`,
/// BILLmanager's flags) are taken as their text, `null` as absent, an array of them as an
/// `elid`-style list (`"1, 2"`). A number with a fraction or an exponent is refused: JSON
/// numbers are floats, and amounts must arrive exact (send them as strings).
pub fn decode_json(input: &[u8], max_pairs: usize) -> Result<Vec<(String, String)>, FuncError> {
    use serde_json::Value;
    let bad = |msg: String| FuncError::value("body", "", msg);
    let value: Value =
        serde_json::from_slice(input).map_err(|e| bad(format!("The body is not JSON: {e}")))?;
    let Value::Object(map) = value else {
        return Err(bad("The JSON body must be an object of parameters".into()));
    };
    let scalar = |name: &str, v: &Value| -> Result<Option<String>, FuncError> {
        match v {
            Value::String(s) => Ok(Some(s.clone())),
            Value::Bool(b) => Ok(Some(if *b { "on" } else { "off" }.to_string())),
            Value::Null => Ok(None),
            Value::Number(n) if n.is_i64() || n.is_u64() => Ok(Some(n.to_string())),
            Value::Number(n) => Err(FuncError::value(
                name,
                n.to_string(),
                "A JSON number with a fraction is a float: send decimal values as strings",
            )),
            _ => Err(FuncError::value(
                name,
                "",
                "A parameter is a string, an integer, true/false or a list of them",
            )),
        }
    };
    let mut pairs = Vec::new();
    for (name, v) in &map {
        if name.is_empty() {
            continue;
        }
        let text = match v {
            Value::Array(items) => {
                let mut parts = Vec::with_capacity(items.len());
                for item in items {
                    if let Some(t) = scalar(name, item)? {
                        parts.push(t);
                    }
                }
                Some(parts.join(", "))
            }
            other => scalar(name, other)?,
        };
        let Some(text) = text else { continue };
        if pairs.len() == max_pairs {
            return Err(too_many(max_pairs));
        }
        pairs.push((name.clone(), text));
    }
    Ok(pairs)
}

pub fn too_many(max_pairs: usize) -> FuncError {
    FuncError::value(
        "params",
        "",
        format!("At most {max_pairs} parameters are accepted in one request"),
    )
}

fn unescape(raw: &[u8], what: &str) -> Result<String, FuncError> {
    let mut bytes = Vec::with_capacity(raw.len());
    let mut i = 0;
    while i < raw.len() {
        match raw[i] {
            b'+' => bytes.push(b' '),
            b'%' => {
                let hex = raw
                    .get(i + 1..i + 3)
                    .and_then(|h| Some(hex_value(h[0])? * 16 + hex_value(h[1])?));
                let Some(byte) = hex else {
                    return Err(FuncError::value(
                        what,
                        "",
                        format!("The {what} has a malformed percent escape"),
                    ));
                };
                bytes.push(byte);
                i += 2;
            }
            b => bytes.push(b),
        }
        i += 1;
    }
    String::from_utf8(bytes)
        .map_err(|_| FuncError::value(what, "", format!("The {what} is not valid UTF-8")))
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'a'..=b'f' => Some(b - b'a' + 10),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::decode;

    fn ok(input: &str) -> Vec<(String, String)> {
        decode(input.as_bytes(), "query", 10).expect("decodes")
    }

    fn pair(k: &str, v: &str) -> (String, String) {
        (k.to_string(), v.to_string())
    }

    #[test]
    fn decodes_pairs_in_order() {
        assert_eq!(
            ok("func=auth&username=a%40b.com&password=x+y%2Bz&flag"),
            vec![
                pair("func", "auth"),
                pair("username", "a@b.com"),
                pair("password", "x y+z"),
                pair("flag", ""),
            ]
        );
        assert_eq!(
            ok("&&a=1&&=x&b=%D0%B6"),
            vec![pair("a", "1"), pair("b", "ж")]
        );
        assert_eq!(ok("a=b=c"), vec![pair("a", "b=c")]);
        assert!(ok("").is_empty());
    }

    #[test]
    fn refuses_what_it_cannot_read() {
        for bad in ["a=%", "a=%4", "a=%zz", "%g0=1", "a=%ff", "a=%C3%28"] {
            let e = decode(bad.as_bytes(), "query", 10).expect_err(bad);
            assert_eq!(e.kind.as_str(), "value", "{bad}");
            assert_eq!(e.object, "query");
        }
        assert!(decode(b"a=\xff", "body", 10).is_err());
    }

    #[test]
    fn counts_pairs() {
        assert_eq!(decode(b"a=1&b=2", "query", 2).map(|p| p.len()), Ok(2));
        assert!(decode(b"a=1&b=2&c=3", "query", 2).is_err());
    }
}
