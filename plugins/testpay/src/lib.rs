//! `testpay`: a complete simulated payment gateway, to develop and test against.
//!
//! Settings (a payment method's `settings` JSON):
//! - `secret` (required): the shared secret callbacks are signed with;
//! - `base_url` (default `https://testpay.invalid`): where the payer is sent;
//! - `state_dir` (optional): a folder playing the gateway's own records. With it, the status
//!   check and refunds see what "happened at the gateway": a payment's file
//!   `<external_id>.json` holds `{"status": "pending"|"paid"|"failed", "amount": "10.00",
//!   "refunds": {"<refund id>": "4.00"}}`; write `"paid"` into it to simulate a payer who paid
//!   without the callback arriving. A file `fail-refunds` in the folder makes refunds fail (the
//!   gateway is down); a file `pending-refunds` makes them confirm only when asked again.
//!
//! Starting a payment answers a redirect to `{base_url}/pay/{external_id}`, where
//! `external_id` is `tp-{paymethod}-{payment}`. The gateway then calls back `payment.callback`
//! with `module=testpay`, `paymethod=ID`, `body` = JSON
//! `{"payment_id": 5, "external_id": "tp-1-5", "amount": "10.00", "status": "paid"}` and
//! `signature` = lowercase hex HMAC-SHA256 of the body under the secret.
//! Refunds may be partial; the gateway refuses to refund more than was paid, and a refund asked
//! again with the same refund id is answered without refunding twice.

use billhost_plugin_sdk::crypto::{constant_time_eq, hex, hmac_sha256};
use billhost_plugin_sdk::{
    CallbackReport, CallbackRequest, CheckReport, CheckRequest, Error, Outcome, PaymentGateway,
    RefundOutcome, RefundReport, RefundRequest, Result, StartRequest, StartResponse,
    billhost_plugin, setting_str,
};
use serde_json::{Map, Value, json};
use std::path::{Path, PathBuf};

#[derive(Default)]
pub struct TestPay;

/// The signature of a callback body: what the gateway sends and `payment.callback` checks.
pub fn sign(secret: &str, body: &str) -> String {
    hex(&hmac_sha256(secret.as_bytes(), body.as_bytes()))
}

fn secret(settings: &Value) -> Result<&str> {
    match setting_str(settings, "secret") {
        Some(s) if !s.is_empty() => Ok(s),
        _ => Err(Error::missed("secret")),
    }
}

fn state_dir(settings: &Value) -> Option<PathBuf> {
    setting_str(settings, "state_dir").map(PathBuf::from)
}

fn read_state(path: &Path) -> Map<String, Value> {
    std::fs::read(path)
        .ok()
        .and_then(|b| serde_json::from_slice::<Value>(&b).ok())
        .and_then(|v| v.as_object().cloned())
        .unwrap_or_default()
}

fn write_state(path: &Path, state: &Map<String, Value>) -> Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, Value::Object(state.clone()).to_string())
        .and_then(|()| std::fs::rename(&tmp, path))
        .map_err(|e| Error::new(format!("testpay state {}: {e}", path.display())))
}

/// A decimal string as millionths, for comparing amounts without floats.
fn micros(s: &str) -> Option<i128> {
    let (int, frac) = s.split_once('.').unwrap_or((s, ""));
    if int.is_empty() || frac.len() > 6 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let int: i128 = int.parse().ok()?;
    let frac: i128 = format!("{frac:0<6}").parse().ok()?;
    Some(int * 1_000_000 + if int < 0 { -frac } else { frac })
}

fn format_micros(m: i128) -> String {
    format!("{}.{:06}", m / 1_000_000, (m % 1_000_000).abs())
}

impl PaymentGateway for TestPay {
    fn name(&self) -> &str {
        "testpay"
    }

    fn features(&self) -> Vec<String> {
        ["callback", "checkpay", "refund", "partial_refund"]
            .map(String::from)
            .to_vec()
    }

    fn secret_settings(&self) -> Vec<String> {
        vec!["secret".into()]
    }

    fn validate_settings(&self, settings: &Value) -> Result<()> {
        secret(settings)?;
        for name in ["base_url", "state_dir"] {
            match settings.get(name) {
                None | Some(Value::String(_)) => {}
                Some(_) => return Err(Error::value(name, format!("{name} is text"))),
            }
        }
        if let Some(dir) = state_dir(settings)
            && !dir.is_dir()
        {
            return Err(Error::value(
                "state_dir",
                format!("{} is not a folder", dir.display()),
            ));
        }
        Ok(())
    }

    fn start(&self, req: StartRequest) -> Result<StartResponse> {
        secret(&req.settings)?;
        let external_id = format!("tp-{}-{}", req.paymethod_id, req.payment_id);
        if let Some(dir) = state_dir(&req.settings) {
            let path = dir.join(format!("{external_id}.json"));
            let mut state = read_state(&path);
            state.insert("status".into(), json!("pending"));
            state.insert("amount".into(), json!(req.amount));
            state.insert("currency".into(), json!(req.currency));
            write_state(&path, &state)?;
        }
        let base = setting_str(&req.settings, "base_url").unwrap_or("https://testpay.invalid");
        Ok(StartResponse {
            redirect_url: Some(format!(
                "{}/pay/{external_id}?amount={}&currency={}",
                base.trim_end_matches('/'),
                req.amount,
                req.currency
            )),
            external_id: Some(external_id),
            ..StartResponse::default()
        })
    }

    fn callback(&self, req: CallbackRequest) -> Result<CallbackReport> {
        let secret = secret(&req.settings)?;
        let body: Value = serde_json::from_str(&req.body)
            .map_err(|e| Error::value("body", format!("the callback body is not JSON: {e}")))?;
        let field = |name: &str| -> Result<String> {
            body.get(name)
                .and_then(Value::as_str)
                .map(str::to_string)
                .ok_or_else(|| Error::value("body", format!("the callback has no '{name}'")))
        };
        let payment_id = body.get("payment_id").and_then(Value::as_i64);
        let outcome = match field("status")?.as_str() {
            "paid" => Outcome::Paid,
            "pending" => Outcome::Pending,
            "failed" => Outcome::Failed,
            other => return Err(Error::value("body", format!("unknown status '{other}'"))),
        };
        let given = req
            .headers
            .get("signature")
            .or_else(|| req.headers.get("x-testpay-signature"))
            .map(String::as_str)
            .unwrap_or("");
        let expected = sign(secret, &req.body);
        let verified = constant_time_eq(given.as_bytes(), expected.as_bytes());
        Ok(CallbackReport {
            verified,
            payment_id,
            external_id: field("external_id")?,
            amount: field("amount")?,
            outcome,
            reply: Some("OK".into()),
            reason: None,
            refunds: Vec::new(),
            ignored: None,
        })
    }

    fn check(&self, req: CheckRequest) -> Result<CheckReport> {
        let external_id = req
            .external_id
            .ok_or_else(|| Error::new("the payment was never started at testpay"))?;
        let Some(dir) = state_dir(&req.settings) else {
            return Ok(CheckReport {
                outcome: Outcome::Pending,
                external_id: Some(external_id),
                amount: None,
            });
        };
        let state = read_state(&dir.join(format!("{external_id}.json")));
        let outcome = match state.get("status").and_then(Value::as_str) {
            Some("paid") => Outcome::Paid,
            Some("failed") => Outcome::Failed,
            _ => Outcome::Pending,
        };
        Ok(CheckReport {
            outcome,
            amount: state
                .get("amount")
                .and_then(Value::as_str)
                .map(str::to_string),
            external_id: Some(external_id),
        })
    }

    fn refund(&self, req: RefundRequest) -> Result<RefundReport> {
        let external_id = req
            .external_id
            .clone()
            .ok_or_else(|| Error::new("the payment was never started at testpay"))?;
        let refund_ext = format!("tpr-{}", req.refund_id);
        let Some(dir) = state_dir(&req.settings) else {
            return Ok(RefundReport {
                outcome: RefundOutcome::Done,
                external_id: Some(refund_ext),
            });
        };
        if dir.join("fail-refunds").exists() {
            return Err(Error::new("testpay is unavailable (fail-refunds is set)"));
        }
        let path = dir.join(format!("{external_id}.json"));
        let mut state = read_state(&path);
        let mut refunds = state
            .get("refunds")
            .and_then(Value::as_object)
            .cloned()
            .unwrap_or_default();
        let key = req.refund_id.to_string();
        let done = |outcome| {
            Ok(RefundReport {
                outcome,
                external_id: Some(refund_ext.clone()),
            })
        };
        if let Some(entry) = refunds.get(&key) {
            // Asked again: never refund twice; a pending refund confirms on the second ask.
            let _ = entry;
            return done(RefundOutcome::Done);
        }
        let amount =
            micros(&req.amount).ok_or_else(|| Error::value("amount", "not a decimal amount"))?;
        let paid = micros(&req.payment_amount)
            .ok_or_else(|| Error::value("payment_amount", "not a decimal amount"))?;
        let already: i128 = refunds
            .values()
            .filter_map(Value::as_str)
            .filter_map(micros)
            .sum();
        if amount <= 0 || already + amount > paid {
            return Err(Error::value(
                "amount",
                format!(
                    "testpay refuses: {} already refunded of {} paid",
                    format_micros(already),
                    format_micros(paid)
                ),
            ));
        }
        refunds.insert(key, json!(req.amount));
        state.insert("refunds".into(), Value::Object(refunds));
        write_state(&path, &state)?;
        if dir.join("pending-refunds").exists() {
            return done(RefundOutcome::Pending);
        }
        done(RefundOutcome::Done)
    }
}

billhost_plugin!(gateway: TestPay);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_compare_exactly() {
        assert_eq!(micros("10.00"), Some(10_000_000));
        assert_eq!(micros("0.5"), Some(500_000));
        assert_eq!(micros("1e3"), None);
        assert_eq!(format_micros(4_000_000), "4.000000");
    }

    #[test]
    fn callbacks_verify_their_signature() {
        let settings = json!({"secret": "s3cret"});
        let body = r#"{"payment_id":1,"external_id":"tp-1-1","amount":"10.00","status":"paid"}"#;
        let mut req = CallbackRequest {
            settings,
            paymethod_id: 1,
            body: body.into(),
            headers: [("signature".to_string(), sign("s3cret", body))].into(),
            remote_addr: String::new(),
        };
        let r = TestPay.callback(req.clone()).unwrap();
        assert!(r.verified);
        assert_eq!(r.outcome, Outcome::Paid);
        req.body = body.replace("10.00", "99.00");
        assert!(!TestPay.callback(req).unwrap().verified);
    }
}
