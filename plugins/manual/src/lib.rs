//! `manual`: a bank transfer. Starting a payment answers the transfer instructions (the
//! method's `instructions` setting, with `{number}`, `{amount}` and `{currency}` filled in);
//! staff confirm the payment with `payment.setpaid` when the money arrives. Refunds are done by
//! staff outside billhost, so the host records them at once.

use billhost_plugin_sdk::{
    Error, PaymentGateway, Result, StartRequest, StartResponse, billhost_plugin, setting_str,
};
use serde_json::Value;

const DEFAULT_INSTRUCTIONS: &str =
    "Transfer {amount} {currency} to our bank account, quoting invoice {number} as the reference.";

#[derive(Default)]
pub struct Manual;

impl PaymentGateway for Manual {
    fn name(&self) -> &str {
        "manual"
    }

    fn validate_settings(&self, settings: &Value) -> Result<()> {
        match settings.get("instructions") {
            None | Some(Value::String(_)) => Ok(()),
            Some(_) => Err(Error::value("instructions", "instructions are text")),
        }
    }

    fn start(&self, req: StartRequest) -> Result<StartResponse> {
        let text = setting_str(&req.settings, "instructions").unwrap_or(DEFAULT_INSTRUCTIONS);
        let text = text
            .replace("{number}", &req.number)
            .replace("{amount}", &req.amount)
            .replace("{currency}", &req.currency);
        Ok(StartResponse {
            instructions: Some(text),
            ..StartResponse::default()
        })
    }
}

billhost_plugin!(gateway: Manual);
