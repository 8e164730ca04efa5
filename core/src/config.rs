//! The configuration file: a small TOML file for what does not belong in the database — the
//! SMTP server the outbox delivers through, and the folder of the operator's templates.
//!
//! Where it is read from: `--config FILE` (`BILLHOST_CONFIG`), else `billhost.toml` beside the
//! database when that file exists; no file is an empty configuration. Environment variables
//! override the file: `BILLHOST_SMTP_HOST`, `BILLHOST_SMTP_PORT`, `BILLHOST_SMTP_FROM`,
//! `BILLHOST_SMTP_USERNAME`, `BILLHOST_SMTP_PASSWORD`, `BILLHOST_SMTP_TLS`,
//! `BILLHOST_SMTP_TIMEOUT`, and `BILLHOST_TEMPLATES`. Unknown keys are errors, so that a typo
//! does not silently leave mail unconfigured.
//!
//! ```toml
//! templates = "/etc/billhost/templates"
//!
//! [smtp]
//! host = "127.0.0.1"
//! port = 25
//! from = "Billing <billing@example.com>"
//! # username = "billing"        # AUTH PLAIN/LOGIN, only with both set
//! # password = "secret"
//! # tls = "none"                # the only mode built in; see docs/invoices.md
//! # timeout_secs = 30
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// The configuration file's name beside the database.
pub const FILE_NAME: &str = "billhost.toml";

#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// The operator's templates (`invoice.html`, `invoice-font.ttf`).
    pub templates: Option<PathBuf>,
    pub smtp: Option<SmtpFile>,
}

/// The `[smtp]` table as written; every key is optional so that the environment can supply it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SmtpFile {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub from: Option<String>,
    pub username: Option<String>,
    pub password: Option<String>,
    pub tls: Option<String>,
    pub timeout_secs: Option<u64>,
}

/// A usable SMTP configuration: a host and a sender at least.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SmtpConfig {
    pub host: String,
    pub port: u16,
    /// The sender, `Name <addr>` or `addr`.
    pub from: String,
    pub credentials: Option<(String, String)>,
    pub timeout_secs: u64,
}

impl Config {
    /// Reads the configuration: `explicit` (which must exist) or `billhost.toml` beside `db`,
    /// then the environment's overrides.
    pub fn load(explicit: Option<&Path>, db: &Path) -> Result<Config, String> {
        let beside = db
            .parent()
            .filter(|_| !crate::store::is_postgres(db))
            .map(|d| d.join(FILE_NAME))
            .unwrap_or_else(|| PathBuf::from(FILE_NAME));
        let mut config = match explicit {
            Some(path) => Self::read(path)?,
            None if beside.is_file() => Self::read(&beside)?,
            None => Config::default(),
        };
        config.apply_env(|k| std::env::var(k).ok());
        Ok(config)
    }

    pub fn read(path: &Path) -> Result<Config, String> {
        let text = std::fs::read_to_string(path)
            .map_err(|e| format!("cannot read {}: {e}", path.display()))?;
        Self::parse(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Config, String> {
        toml::from_str(text).map_err(|e| e.to_string())
    }

    /// Applies `BILLHOST_*` overrides looked up with `var`.
    pub fn apply_env(&mut self, var: impl Fn(&str) -> Option<String>) {
        if let Some(t) = var("BILLHOST_TEMPLATES") {
            self.templates = Some(t.into());
        }
        let keys = [
            "HOST", "PORT", "FROM", "USERNAME", "PASSWORD", "TLS", "TIMEOUT",
        ];
        let found: Vec<(&str, String)> = keys
            .iter()
            .filter_map(|k| var(&format!("BILLHOST_SMTP_{k}")).map(|v| (*k, v)))
            .collect();
        if found.is_empty() {
            return;
        }
        let smtp = self.smtp.get_or_insert_with(SmtpFile::default);
        for (k, v) in found {
            match k {
                "HOST" => smtp.host = Some(v),
                // A bad number is kept as no port, and `smtp()` says what is wrong.
                "PORT" => smtp.port = Some(v.parse().unwrap_or(0)),
                "FROM" => smtp.from = Some(v),
                "USERNAME" => smtp.username = Some(v),
                "PASSWORD" => smtp.password = Some(v),
                "TLS" => smtp.tls = Some(v),
                _ => smtp.timeout_secs = v.parse().ok(),
            }
        }
    }

    /// The SMTP settings, or why there are none usable.
    pub fn smtp(&self) -> Result<SmtpConfig, String> {
        let Some(s) = &self.smtp else {
            return Err(format!(
                "no SMTP server is configured: set [smtp] host and from in {FILE_NAME} or \
                 BILLHOST_SMTP_HOST and BILLHOST_SMTP_FROM"
            ));
        };
        let host = s
            .host
            .clone()
            .filter(|h| !h.trim().is_empty())
            .ok_or("[smtp] has no host (BILLHOST_SMTP_HOST)")?;
        let from = s
            .from
            .clone()
            .filter(|f| !f.trim().is_empty())
            .ok_or("[smtp] has no from address (BILLHOST_SMTP_FROM)")?;
        if from.parse::<lettre::message::Mailbox>().is_err() {
            return Err(format!("[smtp] from '{from}' is not an email address"));
        }
        let port = s.port.unwrap_or(25);
        if port == 0 {
            return Err("[smtp] port must be 1 to 65535".into());
        }
        match s.tls.as_deref() {
            None | Some("none") => {}
            Some(other) => {
                return Err(format!(
                    "[smtp] tls = '{other}': this build speaks plain SMTP only (tls = \"none\"); \
                     relay through a local MTA for TLS, see docs/invoices.md"
                ));
            }
        }
        let credentials = match (&s.username, &s.password) {
            (Some(u), Some(p)) => Some((u.clone(), p.clone())),
            (None, None) => None,
            _ => return Err("[smtp] needs both username and password, or neither".into()),
        };
        Ok(SmtpConfig {
            host,
            port,
            from,
            credentials,
            timeout_secs: s.timeout_secs.unwrap_or(30).max(1),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_and_environment() {
        let mut c = Config::parse(
            "templates = \"/t\"\n[smtp]\nhost = \"mail\"\nfrom = \"billing@example.com\"\n",
        )
        .unwrap();
        let smtp = c.smtp().unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("mail", 25));
        c.apply_env(|k| match k {
            "BILLHOST_SMTP_PORT" => Some("2525".into()),
            "BILLHOST_SMTP_HOST" => Some("127.0.0.1".into()),
            _ => None,
        });
        let smtp = c.smtp().unwrap();
        assert_eq!((smtp.host.as_str(), smtp.port), ("127.0.0.1", 2525));
        assert_eq!(c.templates, Some(PathBuf::from("/t")));
    }

    #[test]
    fn errors() {
        assert!(Config::parse("[smtp]\nhots = \"x\"\n").is_err());
        assert!(Config::default().smtp().is_err());
        let no_from = Config::parse("[smtp]\nhost = \"x\"\n").unwrap();
        assert!(no_from.smtp().unwrap_err().contains("from"));
        let tls =
            Config::parse("[smtp]\nhost = \"x\"\nfrom = \"a@b.cd\"\ntls = \"starttls\"\n").unwrap();
        assert!(tls.smtp().unwrap_err().contains("plain SMTP"));
    }
}
