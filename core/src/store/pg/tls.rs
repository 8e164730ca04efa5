//! TLS to PostgreSQL: libpq's `sslmode`, `sslrootcert`, `sslcert` and `sslkey`, with rustls (the
//! ring provider; no OpenSSL) under tokio-postgres.
//!
//! The postgres crate's `Config` knows `disable`, `prefer` and `require` only, and nothing of
//! certificates: [`split`] takes these parameters out of the URL (or the `key=value` string)
//! before the rest goes to `Config`, and [`Settings`] says what a connection does with them:
//!
//! | sslmode | TLS | the server's certificate |
//! |---|---|---|
//! | `disable` | never | — |
//! | `allow` | only if the plain attempt fails | not checked |
//! | `prefer` (the default) | if the server offers it, else plain (also after a failed handshake) | not checked |
//! | `require` | always | not checked; checked like `verify-ca` when a root certificate is there (given, or `~/.postgresql/root.crt`) |
//! | `verify-ca` | always | its chain against the root certificate |
//! | `verify-full` | always | its chain, and that it names the host connected to |
//!
//! `sslrootcert=system` takes the roots built in (webpki-roots, Mozilla's list) and, as in libpq,
//! makes `verify-full` the default and refuses a weaker mode. Files are read on every connect.
//!
//! [`split`] also takes out `tcp_user_timeout`, which libpq reads in milliseconds and the
//! postgres crate in seconds, and notes which network timeouts the string leaves out, for
//! [`Settings::network_defaults`]: libpq waits for ever where a billing server must not (a host
//! that accepts the connection and never answers, a peer gone without a reset).

use super::env;
use rustls::client::WebPkiServerVerifier;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::crypto::CryptoProvider;
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName, UnixTime};
use rustls::{
    CertificateError, ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};
use std::future::Future;
use std::io;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio_postgres::Socket;
use tokio_postgres::tls::{ChannelBinding, MakeTlsConnect, TlsConnect, TlsStream};

/// libpq's `sslmode` values.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SslMode {
    Disable,
    Allow,
    Prefer,
    Require,
    VerifyCa,
    VerifyFull,
}

impl SslMode {
    fn parse(value: &str) -> Result<SslMode, String> {
        Ok(match value {
            "disable" => SslMode::Disable,
            "allow" => SslMode::Allow,
            "prefer" => SslMode::Prefer,
            "require" => SslMode::Require,
            "verify-ca" => SslMode::VerifyCa,
            "verify-full" => SslMode::VerifyFull,
            _ => {
                return Err(format!(
                    "sslmode={value} is not one of disable, allow, prefer, require, verify-ca, \
                     verify-full"
                ));
            }
        })
    }

    pub fn name(self) -> &'static str {
        match self {
            SslMode::Disable => "disable",
            SslMode::Allow => "allow",
            SslMode::Prefer => "prefer",
            SslMode::Require => "require",
            SslMode::VerifyCa => "verify-ca",
            SslMode::VerifyFull => "verify-full",
        }
    }

    /// The mode tokio-postgres is given: it negotiates, our connector checks.
    pub fn negotiated(self) -> tokio_postgres::config::SslMode {
        match self {
            SslMode::Disable | SslMode::Allow => tokio_postgres::config::SslMode::Disable,
            SslMode::Prefer => tokio_postgres::config::SslMode::Prefer,
            SslMode::Require | SslMode::VerifyCa | SslMode::VerifyFull => {
                tokio_postgres::config::SslMode::Require
            }
        }
    }
}

/// Where the root certificates come from.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Roots {
    File(PathBuf),
    System,
}

/// The TLS parameters of a connection string.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Settings {
    pub mode: SslMode,
    roots: Option<Roots>,
    cert: Option<PathBuf>,
    key: Option<PathBuf>,
    /// libpq's `tcp_user_timeout` (milliseconds; 0 is the system's default), else
    /// [`TCP_USER_TIMEOUT`].
    tcp_user_timeout: Option<Duration>,
    /// Which of [`NETWORK_DEFAULTS`] neither the string nor a variable gives.
    left_out: Vec<&'static str>,
}

/// How long transmitted data may stay unacknowledged before the connection counts as broken
/// (`TCP_USER_TIMEOUT`), where the string does not say: a statement sent to a host that is
/// gone fails after this instead of waiting for the kernel's retransmissions (15 minutes).
pub const TCP_USER_TIMEOUT: Duration = Duration::from_secs(30);

/// What billhost uses for a libpq parameter that neither the string nor a variable gives, and
/// libpq leaves unbounded: each host's whole connection attempt (TCP, TLS, start-up,
/// authentication, the `target_session_attrs` check) is given `connect_timeout` seconds; an
/// idle connection is probed after `keepalives_idle` seconds, so that one whose peer vanished
/// (a waited-for answer that will never come) fails within [`TCP_USER_TIMEOUT`] of the probe.
pub const NETWORK_DEFAULTS: &[(&str, Duration)] = &[
    ("connect_timeout", Duration::from_secs(10)),
    ("keepalives_idle", Duration::from_secs(10)),
];

/// The parameters taken out of a connection string, as they were given.
#[derive(Default)]
struct Given {
    mode: Option<String>,
    rootcert: Option<String>,
    cert: Option<String>,
    key: Option<String>,
    tcp_user_timeout: Option<String>,
}

impl Given {
    /// Takes `key`'s value when it is one of ours.
    fn take(&mut self, key: &str, value: String) -> bool {
        let slot = match key {
            "sslmode" => &mut self.mode,
            "sslrootcert" => &mut self.rootcert,
            "sslcert" => &mut self.cert,
            "sslkey" => &mut self.key,
            "tcp_user_timeout" => &mut self.tcp_user_timeout,
            _ => return false,
        };
        *slot = Some(value);
        true
    }

    fn settings(self, left_out: Vec<&'static str>) -> Result<Settings, String> {
        let tcp_user_timeout = match self.tcp_user_timeout.as_deref().map(str::trim) {
            None | Some("") => Some(TCP_USER_TIMEOUT),
            Some(ms) => match ms.parse::<u64>() {
                Ok(0) => None,
                Ok(ms) => Some(Duration::from_millis(ms)),
                Err(_) => {
                    return Err(format!(
                        "tcp_user_timeout={ms} is not a number of milliseconds"
                    ));
                }
            },
        };
        let roots = match self.rootcert.as_deref() {
            None | Some("") => None,
            Some("system") => Some(Roots::System),
            Some(path) => Some(Roots::File(PathBuf::from(path))),
        };
        let mode = match (self.mode.as_deref(), &roots) {
            (Some(m), _) => SslMode::parse(m)?,
            (None, Some(Roots::System)) => SslMode::VerifyFull,
            (None, _) => SslMode::Prefer,
        };
        if roots == Some(Roots::System) && mode != SslMode::VerifyFull {
            return Err(format!(
                "sslrootcert=system takes sslmode=verify-full (any certificate of the public \
                 roots would pass a weaker check), not sslmode={}",
                mode.name()
            ));
        }
        let path = |v: Option<String>| v.filter(|p| !p.is_empty()).map(PathBuf::from);
        Ok(Settings {
            mode,
            roots,
            cert: path(self.cert),
            key: path(self.key),
            tcp_user_timeout,
            left_out,
        })
    }
}

impl Settings {
    /// Sets the network timeouts the connection string left to billhost ([`NETWORK_DEFAULTS`],
    /// [`TCP_USER_TIMEOUT`]) on `config`.
    pub fn network_defaults(&self, config: &mut tokio_postgres::Config) {
        for (key, value) in NETWORK_DEFAULTS {
            if !self.left_out.contains(key) {
                continue;
            }
            match *key {
                "connect_timeout" => config.connect_timeout(*value),
                _ => config.keepalives_idle(*value),
            };
        }
        if let Some(t) = self.tcp_user_timeout {
            config.tcp_user_timeout(t);
        }
    }
}

/// Splits a `postgres://` URL or a `key=value` connection string into the text the postgres
/// crate's `Config` parses (without our parameters) and the TLS settings. A parameter of
/// [`env::PARAMETERS`] that the string does not give is taken from its `PG*` variable.
pub fn split(conninfo: &str) -> Result<(String, Settings), String> {
    split_with(conninfo, &env::process)
}

pub(super) fn split_with(
    conninfo: &str,
    vars: env::Lookup<'_>,
) -> Result<(String, Settings), String> {
    let mut given = Given::default();
    let mut seen = Vec::new();
    let uri = super::is_uri(conninfo);
    let (base, mut kept) = if uri {
        match conninfo.split_once('?') {
            None => (conninfo.to_string(), Vec::new()),
            Some((base, query)) => {
                let mut kept = Vec::new();
                for pair in query.split('&').filter(|p| !p.is_empty()) {
                    let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
                    let key = percent_decode(k)?;
                    seen.push(key.clone());
                    if !given.take(&key, percent_decode(v)?) {
                        kept.push(pair.to_string());
                    }
                }
                (base.to_string(), kept)
            }
        }
    } else {
        let mut kept = Vec::new();
        for (k, v) in keyword_pairs(conninfo)? {
            seen.push(k.clone());
            if !given.take(&k, v.clone()) {
                kept.push(keyword_pair(&k, &v));
            }
        }
        (String::new(), kept)
    };
    for (key, var) in env::PARAMETERS {
        if seen.iter().any(|k| k == key) {
            continue;
        }
        if let Some(value) = vars(var) {
            seen.push(key.to_string());
            if !given.take(key, value.clone()) {
                kept.push(if uri {
                    format!("{key}={}", percent_encode(&value))
                } else {
                    keyword_pair(key, &value)
                });
            }
        }
    }
    let left_out = NETWORK_DEFAULTS
        .iter()
        .map(|(key, _)| *key)
        .filter(|key| !seen.iter().any(|k| k == key))
        .collect();
    let rest = match (uri, kept.is_empty()) {
        (true, true) => base,
        (true, false) => format!("{base}?{}", kept.join("&")),
        (false, _) => kept.join(" "),
    };
    Ok((rest, given.settings(left_out)?))
}

/// `key='value'` in libpq's keyword form, quoted and escaped.
fn keyword_pair(key: &str, value: &str) -> String {
    format!(
        "{key}='{}'",
        value.replace('\\', "\\\\").replace('\'', "\\'")
    )
}

/// `s` percent-encoded for a URL's query (everything but the unreserved characters).
fn percent_encode(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b'/') {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// `%XX` escapes of a URL's query decoded (libpq decodes them in every part of the URL).
fn percent_decode(s: &str) -> Result<String, String> {
    let b = s.as_bytes();
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] == b'%' {
            let hex = s
                .get(i + 1..i + 3)
                .and_then(|h| u8::from_str_radix(h, 16).ok())
                .ok_or_else(|| format!("a bad %-escape in \"{s}\""))?;
            out.push(hex);
            i += 3;
        } else {
            out.push(b[i]);
            i += 1;
        }
    }
    String::from_utf8(out).map_err(|_| format!("\"{s}\" is not UTF-8 once decoded"))
}

/// libpq's `key = value` pairs: a value is a word, or quoted in `'...'`; a backslash escapes
/// the next character in both.
pub(super) fn keyword_pairs(s: &str) -> Result<Vec<(String, String)>, String> {
    let mut out = Vec::new();
    let mut it = s.chars().peekable();
    loop {
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.peek().is_none() {
            return Ok(out);
        }
        let mut key = String::new();
        while let Some(&c) = it.peek() {
            if c == '=' || c.is_whitespace() {
                break;
            }
            key.push(c);
            it.next();
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        if it.next() != Some('=') {
            return Err(format!("\"{key}\" has no \"=\" and value"));
        }
        while it.peek().is_some_and(|c| c.is_whitespace()) {
            it.next();
        }
        let mut value = String::new();
        if it.peek() == Some(&'\'') {
            it.next();
            loop {
                match it.next() {
                    None => return Err(format!("the quoted value of \"{key}\" is not closed")),
                    Some('\'') => break,
                    Some('\\') => value.extend(it.next()),
                    Some(c) => value.push(c),
                }
            }
        } else {
            while let Some(&c) = it.peek() {
                if c.is_whitespace() {
                    break;
                }
                it.next();
                if c == '\\' {
                    value.extend(it.next());
                } else {
                    value.push(c);
                }
            }
        }
        out.push((key, value));
    }
}

/// A file under `~/.postgresql/`, where libpq looks when a parameter is not given.
fn default_file(name: &str) -> Option<PathBuf> {
    let home = std::env::var_os("HOME")?;
    Some(Path::new(&home).join(".postgresql").join(name))
}

fn read(what: &str, path: &Path) -> Result<Vec<u8>, String> {
    std::fs::read(path).map_err(|e| format!("{what} {}: cannot be read: {e}", path.display()))
}

/// How the server's certificate is checked.
enum Check {
    Nothing,
    Chain(RootCertStore),
    ChainAndName(RootCertStore),
}

impl Settings {
    /// The rustls configuration of one connect: the roots and the client certificate read now.
    pub fn connector(&self) -> Result<Connector, String> {
        let roots = match &self.roots {
            Some(r) => Some(r.clone()),
            None => default_file("root.crt")
                .filter(|p| p.exists())
                .map(Roots::File),
        };
        let store = |roots: &Roots| -> Result<RootCertStore, String> {
            match roots {
                Roots::System => Ok(RootCertStore {
                    roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
                }),
                Roots::File(path) => {
                    let pem = read("sslrootcert", path)?;
                    let mut store = RootCertStore::empty();
                    for cert in CertificateDer::pem_slice_iter(&pem) {
                        let cert = cert.map_err(|e| {
                            format!("sslrootcert {}: not a PEM file: {e}", path.display())
                        })?;
                        store.add(cert).map_err(|e| {
                            format!(
                                "sslrootcert {}: not a usable CA certificate: {e}",
                                path.display()
                            )
                        })?;
                    }
                    if store.is_empty() {
                        return Err(format!(
                            "sslrootcert {}: no certificate (\"BEGIN CERTIFICATE\") in the file",
                            path.display()
                        ));
                    }
                    Ok(store)
                }
            }
        };
        let needs_root = |mode: SslMode| {
            format!(
                "sslmode={} checks the server's certificate and needs a root certificate: give \
                 sslrootcert=FILE (or sslrootcert=system), or put it in ~/.postgresql/root.crt",
                mode.name()
            )
        };
        let check = match (self.mode, &roots) {
            (SslMode::Disable | SslMode::Allow | SslMode::Prefer, _) | (SslMode::Require, None) => {
                Check::Nothing
            }
            (SslMode::Require | SslMode::VerifyCa, Some(r)) => Check::Chain(store(r)?),
            (SslMode::VerifyFull, Some(r)) => Check::ChainAndName(store(r)?),
            (mode, None) => return Err(needs_root(mode)),
        };
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let verifier: Arc<dyn ServerCertVerifier> = match check {
            Check::Nothing => Arc::new(Unchecked(provider.clone())),
            Check::Chain(store) => Arc::new(ChainOnly(webpki(store, &provider)?)),
            Check::ChainAndName(store) => webpki(store, &provider)?,
        };
        let builder = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("TLS: {e}"))?
            .dangerous()
            .with_custom_certificate_verifier(verifier);
        let cert = match &self.cert {
            Some(p) => Some(p.clone()),
            None => default_file("postgresql.crt").filter(|p| p.exists()),
        };
        let config = match cert {
            None => builder.with_no_client_auth(),
            Some(cert_path) => {
                let key_path = match &self.key {
                    Some(p) => p.clone(),
                    None => default_file("postgresql.key").ok_or_else(|| {
                        format!(
                            "sslcert {} is given without sslkey (its private key)",
                            cert_path.display()
                        )
                    })?,
                };
                let pem = read("sslcert", &cert_path)?;
                let chain = CertificateDer::pem_slice_iter(&pem)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("sslcert {}: not a PEM file: {e}", cert_path.display()))?;
                if chain.is_empty() {
                    return Err(format!(
                        "sslcert {}: no certificate (\"BEGIN CERTIFICATE\") in the file",
                        cert_path.display()
                    ));
                }
                let pem = read("sslkey", &key_path)?;
                let key = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                    format!(
                        "sslkey {}: no unencrypted private key (PKCS#8, PKCS#1 or SEC1 PEM) in \
                         the file: {e}",
                        key_path.display()
                    )
                })?;
                builder.with_client_auth_cert(chain, key).map_err(|e| {
                    format!(
                        "sslcert {} and sslkey {} do not go together: {e}",
                        cert_path.display(),
                        key_path.display()
                    )
                })?
            }
        };
        Ok(Connector {
            config: Arc::new(config),
            describe: Arc::from(self.describe(roots.as_ref())),
            failed: Arc::default(),
        })
    }

    /// What a handshake error names: the mode and the roots checked against.
    fn describe(&self, roots: Option<&Roots>) -> String {
        match roots {
            Some(Roots::File(p)) if !matches!(self.mode, SslMode::Allow | SslMode::Prefer) => {
                format!("sslmode={}, sslrootcert={}", self.mode.name(), p.display())
            }
            Some(Roots::System) => format!("sslmode={}, sslrootcert=system", self.mode.name()),
            _ => format!("sslmode={}", self.mode.name()),
        }
    }
}

fn webpki(
    store: RootCertStore,
    provider: &Arc<CryptoProvider>,
) -> Result<Arc<WebPkiServerVerifier>, String> {
    WebPkiServerVerifier::builder_with_provider(Arc::new(store), provider.clone())
        .build()
        .map_err(|e| format!("sslrootcert: {e}"))
}

/// `require` without a root, `allow`, `prefer`: encryption without knowing whom to; the
/// handshake's signatures are still checked against the certificate presented.
#[derive(Debug)]
struct Unchecked(Arc<CryptoProvider>);

impl ServerCertVerifier for Unchecked {
    fn verify_server_cert(
        &self,
        _: &CertificateDer<'_>,
        _: &[CertificateDer<'_>],
        _: &ServerName<'_>,
        _: &[u8],
        _: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        Ok(ServerCertVerified::assertion())
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.0.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.signature_verification_algorithms.supported_schemes()
    }
}

/// `verify-ca`: the chain must lead to a root; the names the certificate is for are not looked
/// at. webpki checks the chain first and the name last, so a name error means the chain held.
#[derive(Debug)]
struct ChainOnly(Arc<WebPkiServerVerifier>);

impl ServerCertVerifier for ChainOnly {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp, now)
        {
            Err(rustls::Error::InvalidCertificate(
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. },
            )) => Ok(ServerCertVerified::assertion()),
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

/// tokio-postgres's TLS hook: one [`Handshake`] per host tried, for the name of that host.
#[derive(Clone)]
pub struct Connector {
    config: Arc<ClientConfig>,
    describe: Arc<str>,
    /// Set when a handshake of this connector (or of a clone) failed: `sslmode=prefer` then
    /// tries again without TLS, as libpq does.
    failed: Arc<std::sync::atomic::AtomicBool>,
}

impl Connector {
    /// Whether a TLS handshake failed (rather than, say, the login after it).
    pub fn handshake_failed(&self) -> bool {
        self.failed.load(std::sync::atomic::Ordering::Acquire)
    }
}

impl MakeTlsConnect<Socket> for Connector {
    type Stream = Stream;
    type TlsConnect = Handshake;
    type Error = io::Error;

    fn make_tls_connect(&mut self, host: &str) -> Result<Handshake, io::Error> {
        Ok(Handshake {
            config: self.config.clone(),
            describe: self.describe.clone(),
            host: host.to_string(),
            failed: self.failed.clone(),
        })
    }
}

pub struct Handshake {
    config: Arc<ClientConfig>,
    describe: Arc<str>,
    host: String,
    failed: Arc<std::sync::atomic::AtomicBool>,
}

type HandshakeFuture = Pin<Box<dyn Future<Output = Result<Stream, io::Error>> + Send>>;

impl TlsConnect<Socket> for Handshake {
    type Stream = Stream;
    type Error = io::Error;
    type Future = HandshakeFuture;

    fn connect(self, socket: Socket) -> HandshakeFuture {
        Box::pin(async move {
            let name = ServerName::try_from(self.host.clone()).map_err(|_| {
                io::Error::other(format!(
                    "\"{}\" is not a host name or address to check a certificate against",
                    self.host
                ))
            })?;
            tokio_rustls::TlsConnector::from(self.config)
                .connect(name, socket)
                .await
                .map(Stream)
                .map_err(|e| {
                    self.failed
                        .store(true, std::sync::atomic::Ordering::Release);
                    let certificate = e
                        .get_ref()
                        .and_then(|inner| inner.downcast_ref::<rustls::Error>())
                        .is_some_and(|r| matches!(r, rustls::Error::InvalidCertificate(_)));
                    if certificate {
                        io::Error::other(format!(
                            "the certificate of {} could not be verified ({}): {e}",
                            self.host, self.describe
                        ))
                    } else {
                        io::Error::other(format!("with {} ({}): {e}", self.host, self.describe))
                    }
                })
        })
    }
}

/// A connection under TLS.
pub struct Stream(tokio_rustls::client::TlsStream<Socket>);

impl AsyncRead for Stream {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_read(cx, buf)
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.0).poll_write(cx, buf)
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.0).poll_shutdown(cx)
    }
}

impl TlsStream for Stream {
    /// `tls-server-end-point` (RFC 5929): the server certificate's hash, with the hash of its
    /// signature algorithm (SHA-256 for MD5 and SHA-1), for SCRAM-SHA-256-PLUS.
    fn channel_binding(&self) -> ChannelBinding {
        let (_, session) = self.0.get_ref();
        let digest = session
            .peer_certificates()
            .and_then(|certs| certs.first())
            .and_then(|cert| {
                let algorithm = match signature_algorithm(cert)? {
                    // sha{1,256}WithRSAEncryption, ecdsa-with-SHA256, md5WithRSAEncryption
                    [42, 134, 72, 134, 247, 13, 1, 1, 4 | 5 | 11]
                    | [42, 134, 72, 206, 61, 4, 3, 2] => &ring::digest::SHA256,
                    [42, 134, 72, 134, 247, 13, 1, 1, 12] | [42, 134, 72, 206, 61, 4, 3, 3] => {
                        &ring::digest::SHA384
                    }
                    [42, 134, 72, 134, 247, 13, 1, 1, 13] | [42, 134, 72, 206, 61, 4, 3, 4] => {
                        &ring::digest::SHA512
                    }
                    _ => return None,
                };
                Some(ring::digest::digest(algorithm, cert).as_ref().to_vec())
            });
        match digest {
            Some(d) => ChannelBinding::tls_server_end_point(d),
            None => ChannelBinding::none(),
        }
    }
}

/// The OID (its DER content) of a certificate's `signatureAlgorithm`: the second element of the
/// outer SEQUENCE, itself a SEQUENCE that starts with the OID.
fn signature_algorithm(der: &[u8]) -> Option<&[u8]> {
    /// One DER element at the start of `b`: (tag, content, the rest after it).
    fn element(b: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let tag = *b.first()?;
        let first = *b.get(1)? as usize;
        let (len, head) = if first < 0x80 {
            (first, 2)
        } else {
            let n = first & 0x7f;
            if n == 0 || n > 4 {
                return None;
            }
            let mut len = 0usize;
            for i in 0..n {
                len = (len << 8) | *b.get(2 + i)? as usize;
            }
            (len, 2 + n)
        };
        let end = head.checked_add(len)?;
        Some((tag, b.get(head..end)?, b.get(end..)?))
    }
    let (0x30, cert, _) = element(der)? else {
        return None;
    };
    let (0x30, _, rest) = element(cert)? else {
        return None;
    };
    let (0x30, algorithm, _) = element(rest)? else {
        return None;
    };
    match element(algorithm)? {
        (0x06, oid, _) => Some(oid),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::{Settings, SslMode, split_with};

    /// Without the process's `PG*` variables.
    fn split(conninfo: &str) -> Result<(String, Settings), String> {
        split_with(conninfo, &|_| None)
    }

    #[test]
    fn variables_stand_in_for_the_parameters_the_string_leaves_out() {
        let vars = |k: &str| match k {
            "PGSSLMODE" => Some("require".to_string()),
            "PGAPPNAME" => Some("a b&c".to_string()),
            "PGTARGETSESSIONATTRS" => Some("read-write".to_string()),
            _ => None,
        };
        let (rest, s) = split_with("postgres://u@h/db?application_name=given", &vars).expect("url");
        assert_eq!(
            rest,
            "postgres://u@h/db?application_name=given&target_session_attrs=read-write"
        );
        assert_eq!(s.mode, SslMode::Require);
        let (rest, s) = split_with("host=h sslmode=disable", &vars).expect("key=value");
        assert_eq!(
            rest,
            "host='h' target_session_attrs='read-write' application_name='a b&c'"
        );
        assert_eq!(s.mode, SslMode::Disable);
        let (rest, _) = split_with("postgres://u@h/db", &vars).expect("url");
        assert_eq!(
            rest,
            "postgres://u@h/db?target_session_attrs=read-write&application_name=a%20b%26c"
        );
    }

    #[test]
    fn our_parameters_are_taken_out_of_both_forms() {
        let (rest, s) = split(
            "postgres://u@h1:1,h2:2/db?sslmode=verify-full&sslrootcert=%2Ftmp%2Fa%20b.pem&\
             target_session_attrs=read-write",
        )
        .expect("url");
        assert_eq!(
            rest,
            "postgres://u@h1:1,h2:2/db?target_session_attrs=read-write"
        );
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(s.roots, Some(super::Roots::File("/tmp/a b.pem".into())));
        let (rest, s) = split(
            "host=h1,h2 port=1,2 dbname = db sslmode=verify-ca sslrootcert='/tmp/it\\'s.pem' \
             password='a b'",
        )
        .expect("key=value");
        assert_eq!(rest, "host='h1,h2' port='1,2' dbname='db' password='a b'");
        assert_eq!(s.mode, SslMode::VerifyCa);
        assert_eq!(s.roots, Some(super::Roots::File("/tmp/it's.pem".into())));
        let (_, s) = split("postgres://u@h/db?sslrootcert=system").expect("system");
        assert_eq!(s.mode, SslMode::VerifyFull);
        assert_eq!(
            split("postgres://u@h/db").expect("plain").1.mode,
            SslMode::Prefer
        );
    }

    #[test]
    fn network_timeouts_left_out_get_billhost_s_bounds() {
        use std::str::FromStr;
        use std::time::Duration;
        let config = |conninfo: &str, vars: &dyn Fn(&str) -> Option<String>| {
            let (rest, s) = split_with(conninfo, vars).expect("conninfo");
            let mut config = tokio_postgres::Config::from_str(&rest).expect("config");
            s.network_defaults(&mut config);
            config
        };
        let none = |_: &str| None;
        let c = config("postgres://u@h/db", &none);
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(10)));
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(10));
        assert_eq!(c.get_tcp_user_timeout(), Some(&super::TCP_USER_TIMEOUT));
        // Given: as given, tcp_user_timeout in libpq's milliseconds; 0 is libpq's "for ever".
        let c = config(
            "host=h connect_timeout=0 keepalives_idle=99 tcp_user_timeout=1500",
            &none,
        );
        assert_eq!(c.get_connect_timeout(), None);
        assert_eq!(c.get_keepalives_idle(), Duration::from_secs(99));
        assert_eq!(c.get_tcp_user_timeout(), Some(&Duration::from_millis(1500)));
        let c = config("postgres://u@h/db?tcp_user_timeout=0", &|k: &str| {
            (k == "PGCONNECT_TIMEOUT").then(|| "3".to_string())
        });
        assert_eq!(c.get_connect_timeout(), Some(&Duration::from_secs(3)));
        assert_eq!(c.get_tcp_user_timeout(), None);
        let err = split("host=h tcp_user_timeout=soon").unwrap_err();
        assert!(err.contains("not a number of milliseconds"), "{err}");
    }

    #[test]
    fn bad_values_are_refused_with_what_is_wrong() {
        let err = split("postgres://u@h/db?sslmode=verify").unwrap_err();
        assert!(err.contains("sslmode=verify is not one of"), "{err}");
        let err = split("postgres://u@h/db?sslmode=require&sslrootcert=system").unwrap_err();
        assert!(
            err.contains("sslrootcert=system takes sslmode=verify-full"),
            "{err}"
        );
        let err = split("host=h sslrootcert='/x").unwrap_err();
        assert!(err.contains("not closed"), "{err}");
    }
}
