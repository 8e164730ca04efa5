//! The provider's HTTP API through a blocking client (ureq with rustls, the ring provider, the
//! webpki roots: no OpenSSL): one timeout for the whole exchange, and requests that are safe to
//! repeat (reads, and writes carrying an idempotency key) sent again when no answer came or the
//! provider answered 429 or 5xx.

use std::time::Duration;

/// Why a request has no usable answer.
#[derive(Debug)]
pub enum Failure {
    /// No answer (refused, timed out, TLS): the provider may or may not have acted on it.
    Transport(String),
    /// The provider answered this HTTP status with this body.
    Status(u16, String),
}

pub struct Client {
    agent: ureq::Agent,
    attempts: u32,
}

impl Client {
    pub fn new(timeout: Duration, attempts: u32) -> Client {
        let agent = ureq::Agent::config_builder()
            .timeout_global(Some(timeout))
            .http_status_as_error(false)
            .max_redirects(0)
            .user_agent(concat!(
                env!("CARGO_PKG_NAME"),
                "/",
                env!("CARGO_PKG_VERSION")
            ))
            .build()
            .new_agent();
        Client {
            agent,
            attempts: attempts.max(1),
        }
    }

    /// `GET url`: the body of a 2xx answer.
    pub fn get(&self, url: &str, headers: &[(&str, &str)]) -> Result<String, Failure> {
        self.repeat(|| {
            let mut req = self.agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.call()
        })
    }

    /// `POST url` with a body of `content_type`: the body of a 2xx answer. Repeated only with
    /// the same headers, so the caller's idempotency key makes a repeat harmless.
    pub fn post(
        &self,
        url: &str,
        headers: &[(&str, &str)],
        content_type: &str,
        body: &str,
    ) -> Result<String, Failure> {
        self.repeat(|| {
            let mut req = self.agent.post(url).content_type(content_type);
            for (k, v) in headers {
                req = req.header(*k, *v);
            }
            req.send(body)
        })
    }

    fn repeat(
        &self,
        send: impl Fn() -> Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<String, Failure> {
        let mut last = Failure::Transport("not sent".into());
        for attempt in 0..self.attempts {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(200 * u64::from(attempt)));
            }
            match send() {
                Ok(mut resp) => {
                    let status = resp.status().as_u16();
                    let body = resp
                        .body_mut()
                        .with_config()
                        .limit(4 << 20)
                        .read_to_string();
                    let body = match body {
                        Ok(b) => b,
                        Err(e) => {
                            last = Failure::Transport(format!("reading the answer: {e}"));
                            continue;
                        }
                    };
                    if (200..300).contains(&status) {
                        return Ok(body);
                    }
                    let again = status == 429 || status >= 500;
                    last = Failure::Status(status, body);
                    if !again {
                        break;
                    }
                }
                Err(e) => last = Failure::Transport(e.to_string()),
            }
        }
        Err(last)
    }
}

/// `application/x-www-form-urlencoded` encoding of one key or value.
pub fn form_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'*' => {
                out.push(b as char)
            }
            b' ' => out.push('+'),
            _ => out.push_str(&format!("%{b:02X}")),
        }
    }
    out
}

/// A form body from pairs.
pub fn form(pairs: &[(String, String)]) -> String {
    pairs
        .iter()
        .map(|(k, v)| format!("{}={}", form_encode(k), form_encode(v)))
        .collect::<Vec<_>>()
        .join("&")
}
