//! `stripe`: card payments through Stripe Checkout (hosted payment page), with signed webhooks,
//! status checks and refunds, full or partial, over Stripe's HTTP API.
//!
//! Settings (a payment method's `settings` JSON; see `docs/plugins.md`):
//! - `secret_key` (required): the account's secret API key (`sk_live_...`, `sk_test_...`) or a
//!   restricted key (`rk_...`) allowed to write Checkout Sessions and Refunds;
//! - `webhook_secret` (required): the webhook endpoint's signing secret (`whsec_...`), or a list
//!   of them while an operator rotates secrets;
//! - `panel_url` (required): where the payer comes back to, the billhost panel (`/` of the
//!   billhost server); Stripe's `success_url` and `cancel_url` are made from it;
//! - `base_url` (default `https://api.stripe.com`): the API's address;
//! - `tolerance` (seconds, default 300): how old a webhook's signed timestamp may be;
//! - `timeout` (seconds, default 20) and `attempts` (default 2): per request to the API.
//!
//! A payment is a Checkout Session (`mode=payment`, one line of the payment's amount in the
//! currency's smallest unit, our payment id in `client_reference_id` and in the metadata); the
//! external id is the session's id and the payer is sent to the session's `url`. Every POST
//! carries an `Idempotency-Key` made from what it is for, so that a repeat never makes a second
//! session or refund. Webhooks (`checkout.session.completed`, `checkout.session.expired`,
//! `checkout.session.async_payment_succeeded`/`_failed`, `charge.refunded`) are trusted only
//! with a valid `Stripe-Signature`; the host decides what they change.

use billhost_gateway_http as http;

use billhost_plugin_sdk::amount::{from_minor, to_minor};
use billhost_plugin_sdk::crypto::{constant_time_eq, hex, hmac_sha256, sha256};
use billhost_plugin_sdk::settings;
use billhost_plugin_sdk::{
    CallbackReport, CallbackRequest, CheckReport, CheckRequest, Error, Outcome, PaymentGateway,
    RefundNotice, RefundOutcome, RefundReport, RefundRequest, Result, StartRequest, StartResponse,
    billhost_plugin,
};
use http::{Client, Failure, form};
use serde_json::Value;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const DEFAULT_BASE_URL: &str = "https://api.stripe.com";
const DEFAULT_TOLERANCE: i64 = 300;
/// The dated API version every request names (`Stripe-Version`), so that what the plugin reads
/// back (a session's `url`, `status`, `payment_status`, `payment_intent`; a refund's `status`)
/// does not change with the account's default version. Webhook payloads follow the version
/// set on the webhook endpoint instead; the fields read from them are the same in every
/// version since 2020 (docs/plugins.md).
pub const API_VERSION: &str = "2024-06-20";

#[derive(Default)]
pub struct Stripe;

/// Currencies Stripe takes as integers of the main unit (its "zero-decimal" list).
const ZERO_DECIMAL: &[&str] = &[
    "BIF", "CLP", "DJF", "GNF", "JPY", "KMF", "KRW", "MGA", "PYG", "RWF", "UGX", "VND", "VUV",
    "XAF", "XOF", "XPF",
];
/// Currencies Stripe counts in thousandths, whose amounts must end in 0 (whole hundredths).
const THREE_DECIMAL: &[&str] = &["BHD", "JOD", "KWD", "OMR", "TND"];
/// Two-decimal in the API, but charged in whole units only (amounts divisible by 100).
const WHOLE_UNITS: &[&str] = &["ISK"];
/// Currencies Stripe presents (its list of supported currencies for card payments).
const SUPPORTED: &[&str] = &[
    "USD", "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD",
    "BDT", "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BRL", "BSD", "BWP", "BYN", "BZD", "CAD",
    "CDF", "CHF", "CLP", "CNY", "COP", "CRC", "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP",
    "ETB", "EUR", "FJD", "FKP", "GBP", "GEL", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL",
    "HTG", "HUF", "IDR", "ILS", "INR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF",
    "KRW", "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MUR", "MVR", "MWK", "MXN", "MYR", "MZN", "NAD", "NGN", "NIO", "NOK",
    "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR", "RON", "RSD",
    "RWF", "SAR", "SBD", "SCR", "SEK", "SGD", "SHP", "SLE", "SOS", "SRD", "SZL", "THB", "TJS",
    "TND", "TOP", "TRY", "TTD", "TWD", "TZS", "UAH", "UGX", "UYU", "UZS", "VND", "VUV", "WST",
    "XAF", "XCD", "XOF", "XPF", "YER", "ZAR", "ZMW",
];

/// How many decimals Stripe's integer amounts of `currency` stand for.
pub fn exponent(currency: &str) -> u32 {
    let c = currency.to_ascii_uppercase();
    if ZERO_DECIMAL.contains(&c.as_str()) {
        0
    } else if THREE_DECIMAL.contains(&c.as_str()) {
        3
    } else {
        2
    }
}

/// A decimal amount of `currency` as Stripe's integer amount, with Stripe's rules for the
/// currency: never rounded, refused when it cannot be charged exactly.
pub fn stripe_amount(amount: &str, currency: &str) -> Result<i64> {
    let c = currency.to_ascii_uppercase();
    let exp = exponent(&c);
    let minor = to_minor(amount, exp).ok_or_else(|| {
        Error::value(
            "amount",
            format!(
                "{amount} {c} is not an amount Stripe can charge: {c} has {exp} decimal places at Stripe"
            ),
        )
    })?;
    if minor <= 0 {
        return Err(Error::value("amount", "the amount must be positive"));
    }
    if THREE_DECIMAL.contains(&c.as_str()) && minor % 10 != 0 {
        return Err(Error::value(
            "amount",
            format!("Stripe charges {c} in whole hundredths only: {amount} {c} is not one"),
        ));
    }
    if WHOLE_UNITS.contains(&c.as_str()) && minor % 100 != 0 {
        return Err(Error::value(
            "amount",
            format!("Stripe charges {c} in whole units only: {amount} {c} is not one"),
        ));
    }
    Ok(minor)
}

/// Stripe's integer amount of `currency` as decimal text.
pub fn decimal_amount(minor: i64, currency: &str) -> String {
    from_minor(minor, exponent(currency))
}

struct Config {
    secret_key: String,
    webhook_secrets: Vec<String>,
    panel_url: String,
    base_url: String,
    tolerance: i64,
    client: Client,
}

impl Config {
    fn from(settings: &Value) -> Result<Config> {
        let secret_key = settings::required(settings, "secret_key")?;
        if !(secret_key.starts_with("sk_") || secret_key.starts_with("rk_")) {
            return Err(Error::value(
                "secret_key",
                "the secret key is Stripe's secret or restricted API key (sk_... or rk_...), not the publishable one",
            ));
        }
        let webhook_secrets: Vec<String> = match settings.get("webhook_secret") {
            Some(Value::Array(list)) => list
                .iter()
                .map(|v| {
                    v.as_str()
                        .filter(|s| !s.trim().is_empty())
                        .map(|s| s.trim().to_string())
                        .ok_or_else(|| {
                            Error::value(
                                "webhook_secret",
                                "webhook_secret is text or a list of texts",
                            )
                        })
                })
                .collect::<Result<_>>()?,
            _ => vec![settings::required(settings, "webhook_secret")?],
        };
        if webhook_secrets.is_empty() {
            return Err(Error::missed("webhook_secret"));
        }
        let panel_url = settings::url(settings, "panel_url", None)?;
        let base_url = settings::url(settings, "base_url", Some(DEFAULT_BASE_URL))?
            .trim_end_matches('/')
            .to_string();
        let tolerance = settings::number(settings, "tolerance", DEFAULT_TOLERANCE, 1, 86_400)?;
        let timeout = settings::number(settings, "timeout", 20, 1, 300)?;
        let attempts = settings::number(settings, "attempts", 2, 1, 5)?;
        Ok(Config {
            secret_key,
            webhook_secrets,
            panel_url,
            base_url,
            tolerance,
            client: Client::new(Duration::from_secs(timeout as u64), attempts as u32),
        })
    }

    fn auth(&self) -> String {
        format!("Bearer {}", self.secret_key)
    }

    fn get(&self, path: &str) -> Result<Value> {
        let url = format!("{}{path}", self.base_url);
        let auth = self.auth();
        let answer = self.client.get(
            &url,
            &[("Authorization", &auth), ("Stripe-Version", API_VERSION)],
        );
        decode(answer)
    }

    /// A form POST with an idempotency key made from `purpose` and the body itself: the same
    /// request sent again (a repeat, a retry by the host) is the same key, and Stripe answers it
    /// without acting twice.
    fn post(&self, path: &str, purpose: &str, pairs: &[(String, String)]) -> Result<Value> {
        let body = form(pairs);
        let key = format!(
            "billhost-{purpose}-{}",
            &hex(&sha256(format!("{path}\n{body}").as_bytes()))[..16]
        );
        let url = format!("{}{path}", self.base_url);
        let auth = self.auth();
        let answer = self.client.post(
            &url,
            &[
                ("Authorization", &auth),
                ("Idempotency-Key", &key),
                ("Stripe-Version", API_VERSION),
            ],
            "application/x-www-form-urlencoded",
            &body,
        );
        decode(answer)
    }
}

/// The JSON of an answer, or an error carrying Stripe's own message.
fn decode(answer: std::result::Result<String, Failure>) -> Result<Value> {
    match answer {
        Ok(body) => serde_json::from_str(&body)
            .map_err(|e| Error::new(format!("Stripe answered something that is not JSON: {e}"))),
        Err(Failure::Transport(e)) => Err(Error::new(format!("Stripe did not answer: {e}"))),
        Err(Failure::Status(status, body)) => {
            let doc: Value = serde_json::from_str(&body).unwrap_or(Value::Null);
            let err = &doc["error"];
            let message = err["message"].as_str().unwrap_or("").to_string();
            let code = err["code"]
                .as_str()
                .or_else(|| err["type"].as_str())
                .unwrap_or("");
            let mut text = format!("Stripe refused (HTTP {status}");
            if !code.is_empty() {
                text.push_str(&format!(", {code}"));
            }
            text.push(')');
            if message.is_empty() {
                let preview: String = body.chars().take(200).collect();
                if !preview.is_empty() {
                    text.push_str(&format!(": {preview}"));
                }
            } else {
                text.push_str(&format!(": {message}"));
            }
            Err(Error::value(err["param"].as_str().unwrap_or(""), text))
        }
    }
}

fn unix_now() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Checks a `Stripe-Signature` header (`t=TIMESTAMP,v1=SIG[,v1=SIG...]`) for `payload`: some
/// `v1` must be the hex HMAC-SHA256 of `{t}.{payload}` under one of the secrets, and `t` within
/// `tolerance` seconds of `now`. Answers why not.
pub fn verify_signature(
    header: &str,
    payload: &str,
    secrets: &[String],
    tolerance: i64,
    now: i64,
) -> std::result::Result<(), String> {
    let mut timestamp: Option<&str> = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", v)) => timestamp = Some(v),
            Some(("v1", v)) => signatures.push(v),
            _ => {}
        }
    }
    let Some(t) = timestamp else {
        return Err("the Stripe-Signature header is missing or has no timestamp".into());
    };
    let Ok(seconds) = t.parse::<i64>() else {
        return Err(format!(
            "the Stripe-Signature timestamp '{t}' is not a number"
        ));
    };
    if signatures.is_empty() {
        return Err("the Stripe-Signature header has no v1 signature".into());
    }
    let signed = format!("{t}.{payload}");
    let good = secrets.iter().any(|secret| {
        let expected = hex(&hmac_sha256(secret.as_bytes(), signed.as_bytes()));
        signatures
            .iter()
            .any(|s| constant_time_eq(s.as_bytes(), expected.as_bytes()))
    });
    if !good {
        return Err("the Stripe signature does not verify".into());
    }
    if (now - seconds).abs() > tolerance {
        return Err(format!(
            "the Stripe signature's timestamp is {}s away from now, more than the {tolerance}s tolerated (a replayed or delayed webhook)",
            (now - seconds).abs()
        ));
    }
    Ok(())
}

/// Our payment id in a session (or any object with our metadata).
fn payment_id_of(object: &Value) -> Option<i64> {
    object["client_reference_id"]
        .as_str()
        .or_else(|| object["metadata"]["billhost_payment"].as_str())
        .and_then(|s| s.parse().ok())
}

fn session_amount(session: &Value) -> String {
    let currency = session["currency"].as_str().unwrap_or("");
    session["amount_total"]
        .as_i64()
        .map(|m| decimal_amount(m, currency))
        .unwrap_or_default()
}

/// Where a Checkout Session stands.
fn session_outcome(session: &Value) -> Outcome {
    match (
        session["status"].as_str().unwrap_or(""),
        session["payment_status"].as_str().unwrap_or(""),
    ) {
        ("complete", "paid") => Outcome::Paid,
        ("expired", _) => Outcome::Failed,
        _ => Outcome::Pending,
    }
}

fn path_id(id: &str) -> Result<&str> {
    if id.is_empty()
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
    {
        return Err(Error::value(
            "external_id",
            format!("'{id}' is not a Stripe id"),
        ));
    }
    Ok(id)
}

/// The session's payment intent, where the money and the refunds hang.
fn payment_intent(cfg: &Config, session_id: &str) -> Result<String> {
    let session = cfg.get(&format!("/v1/checkout/sessions/{}", path_id(session_id)?))?;
    session["payment_intent"]
        .as_str()
        .or_else(|| session["payment_intent"]["id"].as_str())
        .map(str::to_string)
        .ok_or_else(|| {
            Error::new(format!(
                "the Stripe session {session_id} has no payment (status {})",
                session["status"].as_str().unwrap_or("unknown")
            ))
        })
}

fn refunds_of(cfg: &Config, intent: &str) -> Result<Vec<Value>> {
    let list = cfg.get(&format!(
        "/v1/refunds?payment_intent={}&limit=100",
        path_id(intent)?
    ))?;
    Ok(list["data"].as_array().cloned().unwrap_or_default())
}

fn refund_outcome(refund: &Value) -> Result<RefundOutcome> {
    match refund["status"].as_str().unwrap_or("") {
        "succeeded" => Ok(RefundOutcome::Done),
        "pending" | "requires_action" => Ok(RefundOutcome::Pending),
        other => Err(Error::new(format!(
            "Stripe's refund {} is {other}{}",
            refund["id"].as_str().unwrap_or("?"),
            refund["failure_reason"]
                .as_str()
                .map(|r| format!(": {r}"))
                .unwrap_or_default()
        ))),
    }
}

fn with_query(url: &str, query: &str) -> String {
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{query}")
}

impl PaymentGateway for Stripe {
    fn name(&self) -> &str {
        "stripe"
    }

    fn features(&self) -> Vec<String> {
        ["callback", "checkpay", "refund", "partial_refund"]
            .map(String::from)
            .to_vec()
    }

    fn secret_settings(&self) -> Vec<String> {
        vec!["secret_key".into(), "webhook_secret".into()]
    }

    fn validate_settings(&self, settings: &Value) -> Result<()> {
        if !settings.is_object() {
            return Err(Error::value("settings", "the settings are a JSON object"));
        }
        Config::from(settings).map(|_| ())
    }

    fn validate_currency(&self, _settings: &Value, currency: &str) -> Result<()> {
        if SUPPORTED.contains(&currency.to_ascii_uppercase().as_str()) {
            Ok(())
        } else {
            Err(Error::value(
                "currency",
                format!("Stripe does not take payments in {currency}"),
            ))
        }
    }

    fn start(&self, req: StartRequest) -> Result<StartResponse> {
        let cfg = Config::from(&req.settings)?;
        let currency = req.currency.to_ascii_lowercase();
        let amount = stripe_amount(&req.amount, &currency)?;
        let name = if !req.description.trim().is_empty() {
            req.description.trim().chars().take(250).collect()
        } else if !req.number.is_empty() {
            format!("Payment {}", req.number)
        } else {
            format!("Payment {}", req.payment_id)
        };
        let id = req.payment_id.to_string();
        let back =
            |result: &str| with_query(&cfg.panel_url, &format!("payment={id}&stripe={result}"));
        let pairs: Vec<(String, String)> = [
            ("mode", "payment".to_string()),
            ("line_items[0][quantity]", "1".into()),
            ("line_items[0][price_data][currency]", currency.clone()),
            ("line_items[0][price_data][unit_amount]", amount.to_string()),
            ("line_items[0][price_data][product_data][name]", name),
            ("success_url", back("success")),
            ("cancel_url", back("cancel")),
            ("client_reference_id", id.clone()),
            ("metadata[billhost_payment]", id.clone()),
            ("metadata[billhost_paymethod]", req.paymethod_id.to_string()),
            (
                "payment_intent_data[metadata][billhost_payment]",
                id.clone(),
            ),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let session = cfg.post(
            "/v1/checkout/sessions",
            &format!("session-{}", req.payment_id),
            &pairs,
        )?;
        let (Some(session_id), Some(url)) = (session["id"].as_str(), session["url"].as_str())
        else {
            return Err(Error::new("Stripe's answer has no session id or url"));
        };
        Ok(StartResponse {
            external_id: Some(session_id.to_string()),
            redirect_url: Some(url.to_string()),
            ..StartResponse::default()
        })
    }

    fn callback(&self, req: CallbackRequest) -> Result<CallbackReport> {
        let cfg = Config::from(&req.settings)?;
        let event: Value = serde_json::from_str(&req.body)
            .map_err(|e| Error::value("body", format!("the webhook body is not JSON: {e}")))?;
        let kind = event["type"].as_str().unwrap_or("").to_string();
        let object = &event["data"]["object"];
        let header = req
            .headers
            .get("stripe-signature")
            .or_else(|| req.headers.get("signature"))
            .map(String::as_str)
            .unwrap_or("");
        let verdict = verify_signature(
            header,
            &req.body,
            &cfg.webhook_secrets,
            cfg.tolerance,
            unix_now(),
        );
        let reply = None;
        match kind.as_str() {
            "checkout.session.completed"
            | "checkout.session.expired"
            | "checkout.session.async_payment_succeeded"
            | "checkout.session.async_payment_failed" => {
                let outcome = match kind.as_str() {
                    "checkout.session.async_payment_failed" => Outcome::Failed,
                    _ => session_outcome(object),
                };
                if verdict.is_ok() && payment_id_of(object).is_none() {
                    return Ok(CallbackReport::ignored(format!(
                        "the session {} was not made by billhost",
                        object["id"].as_str().unwrap_or("?")
                    )));
                }
                Ok(CallbackReport {
                    verified: verdict.is_ok(),
                    payment_id: payment_id_of(object),
                    external_id: object["id"].as_str().unwrap_or("").to_string(),
                    amount: session_amount(object),
                    outcome,
                    reply,
                    reason: verdict.err(),
                    refunds: Vec::new(),
                    ignored: None,
                })
            }
            "charge.refunded" => {
                if let Err(reason) = verdict {
                    // Nothing is fetched for an unsigned claim; the host records it where it can.
                    return Ok(CallbackReport {
                        verified: false,
                        payment_id: payment_id_of(object),
                        external_id: String::new(),
                        amount: String::new(),
                        outcome: Outcome::Paid,
                        reply,
                        reason: Some(reason),
                        refunds: Vec::new(),
                        ignored: None,
                    });
                }
                let intent = object["payment_intent"]
                    .as_str()
                    .ok_or_else(|| Error::value("body", "the charge has no payment_intent"))?;
                // The session (our payment id, the external id) and the refunds (ours carry our
                // refund id), as Stripe has them now.
                let sessions = cfg.get(&format!(
                    "/v1/checkout/sessions?payment_intent={}",
                    path_id(intent)?
                ))?;
                let session = sessions["data"]
                    .as_array()
                    .and_then(|l| l.first())
                    .cloned()
                    .unwrap_or(Value::Null);
                if payment_id_of(&session).is_none() {
                    return Ok(CallbackReport::ignored(format!(
                        "the payment {intent} was not made by billhost's Checkout Sessions"
                    )));
                }
                let currency = object["currency"].as_str().unwrap_or("");
                let refunds = refunds_of(&cfg, intent)?
                    .iter()
                    .filter_map(|r| {
                        let outcome = refund_outcome(r).ok()?;
                        Some(RefundNotice {
                            refund_id: r["metadata"]["billhost_refund"]
                                .as_str()
                                .and_then(|s| s.parse().ok()),
                            external_id: r["id"].as_str()?.to_string(),
                            amount: decimal_amount(r["amount"].as_i64()?, currency),
                            outcome,
                        })
                    })
                    .collect::<Vec<_>>();
                if refunds.is_empty() {
                    return Err(Error::value(
                        "body",
                        format!("Stripe lists no refund of the payment {intent}"),
                    ));
                }
                Ok(CallbackReport {
                    verified: true,
                    payment_id: payment_id_of(&session),
                    external_id: session["id"].as_str().unwrap_or("").to_string(),
                    amount: session_amount(&session),
                    outcome: Outcome::Paid,
                    reply,
                    reason: None,
                    refunds,
                    ignored: None,
                })
            }
            "" => Err(Error::value("body", "the webhook body has no event type")),
            // A signed event of a type not handled (the endpoint listens to more): acknowledged,
            // nothing changes.
            other => match verdict {
                Ok(()) => Ok(CallbackReport::ignored(format!(
                    "the stripe gateway does not handle '{other}' events"
                ))),
                Err(reason) => Err(Error::value("signature", reason)),
            },
        }
    }

    fn check(&self, req: CheckRequest) -> Result<CheckReport> {
        let cfg = Config::from(&req.settings)?;
        let session_id = req
            .external_id
            .ok_or_else(|| Error::new("the payment was never started at Stripe"))?;
        let session = cfg.get(&format!("/v1/checkout/sessions/{}", path_id(&session_id)?))?;
        let outcome = session_outcome(&session);
        Ok(CheckReport {
            outcome,
            amount: match outcome {
                Outcome::Paid => Some(session_amount(&session)),
                _ => None,
            },
            external_id: Some(session_id),
        })
    }

    fn refund(&self, req: RefundRequest) -> Result<RefundReport> {
        let cfg = Config::from(&req.settings)?;
        let session_id = req
            .external_id
            .clone()
            .ok_or_else(|| Error::new("the payment was never started at Stripe"))?;
        let amount = stripe_amount(&req.amount, &req.currency)?;
        let intent = payment_intent(&cfg, &session_id)?;
        let ours = req.refund_id.to_string();
        // Asked again (a retry, an answer lost on the way): the refund made before is the
        // answer, even after Stripe has forgotten the idempotency key.
        if let Some(made) = refunds_of(&cfg, &intent)?
            .into_iter()
            .find(|r| r["metadata"]["billhost_refund"].as_str() == Some(ours.as_str()))
        {
            return Ok(RefundReport {
                outcome: refund_outcome(&made)?,
                external_id: made["id"].as_str().map(str::to_string),
            });
        }
        let pairs: Vec<(String, String)> = [
            ("payment_intent", intent),
            ("amount", amount.to_string()),
            ("metadata[billhost_refund]", ours.clone()),
            ("metadata[billhost_payment]", req.payment_id.to_string()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let refund = cfg.post("/v1/refunds", &format!("refund-{ours}"), &pairs)?;
        Ok(RefundReport {
            outcome: refund_outcome(&refund)?,
            external_id: refund["id"].as_str().map(str::to_string),
        })
    }
}

billhost_plugin!(gateway: Stripe);

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn amounts_follow_stripes_currency_rules() {
        assert_eq!(stripe_amount("10.00", "usd"), Ok(1000));
        assert_eq!(stripe_amount("1500", "JPY"), Ok(1500));
        assert!(stripe_amount("15.5", "jpy").is_err());
        assert_eq!(stripe_amount("1.230", "KWD"), Ok(1230));
        assert!(stripe_amount("1.234", "kwd").is_err());
        assert_eq!(stripe_amount("500", "ISK"), Ok(50000));
        assert!(stripe_amount("5.10", "isk").is_err());
        assert!(stripe_amount("0.001", "usd").is_err());
        assert!(stripe_amount("0", "usd").is_err());
        assert_eq!(decimal_amount(1500, "jpy"), "1500");
        assert_eq!(decimal_amount(1050, "usd"), "10.50");
        assert_eq!(decimal_amount(1230, "kwd"), "1.230");
    }

    #[test]
    fn signatures_verify_with_any_secret_and_within_the_tolerance() {
        let payload = r#"{"id":"evt_1"}"#;
        let sig = |secret: &str, t: i64| {
            hex(&hmac_sha256(
                secret.as_bytes(),
                format!("{t}.{payload}").as_bytes(),
            ))
        };
        let secrets = vec!["whsec_old".to_string(), "whsec_new".to_string()];
        let now = 1_700_000_000;
        let header = format!(
            "t={now},v1={},v1={}",
            "00".repeat(32),
            sig("whsec_new", now)
        );
        assert_eq!(
            verify_signature(&header, payload, &secrets, 300, now),
            Ok(())
        );
        let forged = format!("t={now},v1={}", sig("whsec_other", now));
        assert!(verify_signature(&forged, payload, &secrets, 300, now).is_err());
        let stale = format!("t={},v1={}", now - 301, sig("whsec_new", now - 301));
        assert!(
            verify_signature(&stale, payload, &secrets, 300, now)
                .unwrap_err()
                .contains("tolerated")
        );
        assert!(verify_signature("", payload, &secrets, 300, now).is_err());
        let v0 = format!("t={now},v0={}", sig("whsec_new", now));
        assert!(verify_signature(&v0, payload, &secrets, 300, now).is_err());
    }
}
