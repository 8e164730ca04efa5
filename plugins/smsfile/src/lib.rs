//! `smsfile`: an SMS notifier that appends each message as one line of JSON to a file instead
//! of sending it (for development and tests). Setting `path` (default `sms.log` in the working
//! directory); setting `fail` (true) makes every send fail, to try delivery errors.

use billhost_plugin_sdk::{
    Delivery, Error, Message, Notifier, Result, billhost_plugin, setting_str,
};
use serde_json::{Value, json};
use std::io::Write;

#[derive(Default)]
pub struct SmsFile;

impl Notifier for SmsFile {
    fn name(&self) -> &str {
        "smsfile"
    }

    fn features(&self) -> Vec<String> {
        vec!["sms".into()]
    }

    fn validate_settings(&self, settings: &Value) -> Result<()> {
        match settings.get("path") {
            None => Ok(()),
            Some(Value::String(p)) if !p.is_empty() => Ok(()),
            Some(_) => Err(Error::value("path", "path is a non-empty file name")),
        }
    }

    fn send(&self, msg: Message) -> Result<Delivery> {
        if msg.settings.get("fail") == Some(&Value::Bool(true)) {
            return Err(Error::new("delivery failed (the fail setting is on)"));
        }
        let path = setting_str(&msg.settings, "path").unwrap_or("sms.log");
        let line = json!({ "id": msg.id, "to": msg.to, "text": msg.text }).to_string();
        let mut file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(path)
            .map_err(|e| Error::new(format!("{path}: {e}")))?;
        writeln!(file, "{line}").map_err(|e| Error::new(format!("{path}: {e}")))?;
        Ok(Delivery {
            external_id: Some(format!("smsfile-{}", msg.id)),
        })
    }
}

billhost_plugin!(notifier: SmsFile);
