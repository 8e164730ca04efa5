//! The billhost plugin SDK: the one place the plugin ABI is defined, and the safe Rust traits a
//! plugin implements on top of it.
//!
//! # The ABI (version [`ABI_VERSION`])
//! A plugin is a shared library (`crate-type = ["cdylib"]`) exporting one C symbol,
//! [`ENTRY_SYMBOL`] (`billhost_plugin_entry`), a function without arguments answering a
//! pointer to a static [`PluginDecl`]. The host reads the declaration's first two fields (the
//! ABI version and the struct size) before it calls anything else, and refuses a library whose
//! version differs or whose declaration is smaller than its own.
//!
//! Everything else crosses as bytes: the host calls `call(method, input)` with a method name
//! and a JSON input; the plugin answers a status ([`STATUS_OK`], [`STATUS_ERROR`],
//! [`STATUS_PANIC`]) and a [`Buffer`] of JSON (the result, or an [`Error`]). The host copies the
//! buffer and hands it back to the plugin's own `free`: each side frees what it allocated.
//! Every exported function catches panics, which become [`STATUS_PANIC`] with the message.
//!
//! Methods (inputs and outputs are the types of this crate, as JSON):
//! - `manifest` → [`Manifest`];
//! - `validate_settings` ([`Settings`]) → `null`;
//! - gateways: `gateway.start` ([`StartRequest`] → [`StartResponse`]), `gateway.callback`
//!   ([`CallbackRequest`] → [`CallbackReport`]), `gateway.check` ([`CheckRequest`] →
//!   [`CheckReport`]), `gateway.refund` ([`RefundRequest`] → [`RefundReport`]);
//! - notifiers: `notify.send` ([`Message`] → [`Delivery`]);
//! - func handlers: `func.call` ([`FuncCall`] → [`FuncAnswer`]).
//!
//! # Writing a plugin
//! Implement one of [`PaymentGateway`], [`Notifier`] or [`FuncHandler`] on a `Default` type and
//! export it with [`billhost_plugin!`]; see `docs/plugins.md`.

pub mod amount;
pub mod crypto;
pub mod settings;

use serde::{Deserialize, Serialize};
use serde_json::Value;
use std::collections::BTreeMap;
use std::panic::{AssertUnwindSafe, catch_unwind};

/// The version of the ABI this SDK defines. A host loads only plugins of its own version.
pub const ABI_VERSION: u32 = 1;

/// The name of the one symbol a plugin exports, NUL-terminated for `dlsym`.
pub const ENTRY_SYMBOL: &[u8] = b"billhost_plugin_entry\0";

/// `call` succeeded; the buffer holds the method's JSON result.
pub const STATUS_OK: i32 = 0;
/// The method failed; the buffer holds an [`Error`] as JSON.
pub const STATUS_ERROR: i32 = 1;
/// The plugin panicked; the buffer holds the panic message as UTF-8 text.
pub const STATUS_PANIC: i32 = 2;

/// Bytes allocated by the plugin and handed to the host, which copies them and gives the
/// buffer back to the plugin's `free`. (`ptr`, `len`, `cap`) are a `Vec<u8>`'s parts.
#[repr(C)]
#[derive(Debug)]
pub struct Buffer {
    pub ptr: *mut u8,
    pub len: usize,
    pub cap: usize,
}

impl Buffer {
    pub const EMPTY: Buffer = Buffer {
        ptr: std::ptr::null_mut(),
        len: 0,
        cap: 0,
    };

    /// Gives up a vector's memory to the other side (plugin side only).
    pub fn from_vec(v: Vec<u8>) -> Buffer {
        let mut v = std::mem::ManuallyDrop::new(v);
        Buffer {
            ptr: v.as_mut_ptr(),
            len: v.len(),
            cap: v.capacity(),
        }
    }

    /// Takes the memory back into a vector to drop it (plugin side only: the allocator that
    /// made it).
    ///
    /// # Safety
    /// The buffer must come from [`Buffer::from_vec`] in this same library, once.
    pub unsafe fn into_vec(self) -> Vec<u8> {
        if self.ptr.is_null() {
            return Vec::new();
        }
        unsafe { Vec::from_raw_parts(self.ptr, self.len, self.cap) }
    }

    /// A copy of the bytes (host side).
    ///
    /// # Safety
    /// `ptr` must point to `len` readable bytes (or be null).
    pub unsafe fn copy_bytes(&self) -> Vec<u8> {
        if self.ptr.is_null() || self.len == 0 {
            return Vec::new();
        }
        unsafe { std::slice::from_raw_parts(self.ptr, self.len) }.to_vec()
    }
}

/// `call(method, method_len, input, input_len, out) -> status`. The input bytes are the
/// host's, borrowed for the call; `out` receives the plugin's buffer.
pub type CallFn = unsafe extern "C" fn(*const u8, usize, *const u8, usize, *mut Buffer) -> i32;
/// Frees a buffer the plugin returned.
pub type FreeFn = unsafe extern "C" fn(Buffer);
/// The entry symbol's type.
pub type EntryFn = unsafe extern "C" fn() -> *const PluginDecl;

/// What the entry symbol answers. The first two fields never move: a host of any version reads
/// them to decide whether to go on.
#[repr(C)]
pub struct PluginDecl {
    pub abi_version: u32,
    /// `size_of::<PluginDecl>()` as the plugin was built.
    pub struct_size: u32,
    pub call: CallFn,
    pub free: FreeFn,
}

/// A plugin method's failure.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Error {
    /// The parameter or setting concerned (`""` when none).
    #[serde(default)]
    pub object: String,
    /// A BILLmanager error type for func handlers (`value`, `missed`, `access`, ...); the host
    /// uses `value` when empty.
    #[serde(default, rename = "type")]
    pub kind: String,
    pub message: String,
}

impl Error {
    pub fn new(message: impl Into<String>) -> Error {
        Error {
            object: String::new(),
            kind: String::new(),
            message: message.into(),
        }
    }

    /// A bad value of `object` (a parameter or a setting).
    pub fn value(object: &str, message: impl Into<String>) -> Error {
        Error {
            object: object.into(),
            kind: "value".into(),
            message: message.into(),
        }
    }

    /// A required parameter or setting is absent.
    pub fn missed(object: &str) -> Error {
        Error {
            object: object.into(),
            kind: "missed".into(),
            message: format!("The '{object}' field is required"),
        }
    }
}

impl std::fmt::Display for Error {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl From<String> for Error {
    fn from(s: String) -> Error {
        Error::new(s)
    }
}

impl From<&str> for Error {
    fn from(s: &str) -> Error {
        Error::new(s)
    }
}

pub type Result<T> = std::result::Result<T, Error>;

/// A plugin's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Kind {
    Gateway,
    Notifier,
    Funcs,
}

impl Kind {
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Gateway => "gateway",
            Kind::Notifier => "notifier",
            Kind::Funcs => "funcs",
        }
    }
}

/// What a plugin says about itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    /// The module name: what a payment method's `module` names, unique among loaded plugins.
    pub name: String,
    pub version: String,
    pub kind: Kind,
    pub abi_version: u32,
    /// Gateways: `callback`, `checkpay`, `refund`, `partial_refund`. Notifiers: `sms`, `email`.
    #[serde(default)]
    pub features: Vec<String>,
    /// Func handlers: the funcs added.
    #[serde(default)]
    pub funcs: Vec<FuncSpec>,
    /// Gateways: the keys of a payment method's settings that are secrets (API keys, signing
    /// secrets). The host never shows their values: a method's view has a mask in their place,
    /// and a mask sent back keeps the stored value.
    #[serde(default)]
    pub secret_settings: Vec<String>,
}

/// Who may call a plugin func.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Access {
    /// Staff only.
    Admin,
    /// Staff and client users.
    User,
    /// Anyone, logged in or not.
    Public,
}

/// A func a func-handler plugin adds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FuncSpec {
    pub name: String,
    pub title: String,
    pub access: Access,
    #[serde(default)]
    pub params: Vec<ParamSpec>,
}

/// A parameter of a plugin func: text of at most `max_len` characters (default 4000).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParamSpec {
    pub name: String,
    #[serde(default)]
    pub required: bool,
    #[serde(default)]
    pub max_len: Option<usize>,
}

impl ParamSpec {
    pub fn new(name: &str) -> ParamSpec {
        ParamSpec {
            name: name.into(),
            required: false,
            max_len: None,
        }
    }

    pub fn required(mut self) -> ParamSpec {
        self.required = true;
        self
    }
}

/// A plugin's settings: a payment method's `settings` JSON, or the plugin's entry in the
/// host's plugin configuration.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Settings {
    #[serde(default)]
    pub settings: Value,
    /// Gateways: the ISO code of the payment method's currency, when the host validates a
    /// payment method's settings (absent from older hosts, and for other kinds).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub currency: Option<String>,
}

/// Helpers to read settings.
pub fn setting_str<'a>(settings: &'a Value, name: &str) -> Option<&'a str> {
    settings.get(name).and_then(Value::as_str)
}

/// The payment the host asks a gateway to start.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct StartRequest {
    pub settings: Value,
    /// The host's payment id: the reference a gateway echoes in callbacks.
    pub payment_id: i64,
    pub paymethod_id: i64,
    pub number: String,
    /// The amount in the payment method's currency, as a decimal string (`"10.00"`).
    pub amount: String,
    /// ISO code of the payment method's currency.
    pub currency: String,
    pub account_id: i64,
    #[serde(default)]
    pub description: String,
}

/// What the payer does next.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct StartResponse {
    /// The gateway's id of the payment, when known now.
    #[serde(default)]
    pub external_id: Option<String>,
    /// Send the payer here.
    #[serde(default)]
    pub redirect_url: Option<String>,
    /// Or post this form to `form_action`.
    #[serde(default)]
    pub form_action: Option<String>,
    #[serde(default)]
    pub form: Vec<(String, String)>,
    /// Or show these instructions (a bank transfer).
    #[serde(default)]
    pub instructions: Option<String>,
}

/// A notification a gateway sent to `payment.callback`, as received.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackRequest {
    pub settings: Value,
    pub paymethod_id: i64,
    /// The raw body.
    pub body: String,
    /// Request headers (names lowercase), `signature` among them when the caller passed it.
    #[serde(default)]
    pub headers: BTreeMap<String, String>,
    /// The address the notification came from, as the host saw it (the TCP peer of
    /// `POST /billmgr/callback/MODULE`, the caller's address of `payment.callback`); empty when
    /// unknown (the command line, older hosts).
    #[serde(default)]
    pub remote_addr: String,
}

/// A payment's state at the gateway.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Outcome {
    /// Not decided yet.
    Pending,
    /// The money arrived.
    Paid,
    /// Declined, canceled or expired.
    Failed,
}

/// What a callback says. `verified` is false when the signature does not hold: the host then
/// changes no money and records the attempt in the claimed payment's history.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallbackReport {
    pub verified: bool,
    /// The host's payment id the callback names.
    pub payment_id: Option<i64>,
    pub external_id: String,
    /// In the payment method's currency, as a decimal string.
    pub amount: String,
    pub outcome: Outcome,
    /// What the gateway wants as the HTTP answer body, if anything in particular.
    #[serde(default)]
    pub reply: Option<String>,
    /// Why the callback is not `verified`, in words for the payment's history (a gateway whose
    /// notifications carry no signature checks them otherwise); without it the host says the
    /// signature does not verify.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Refunds of the payment the notification reports (a provider's "refunded" event). When
    /// not empty, the callback is about these refunds, not about the payment's own state: the
    /// host completes the pending refunds they confirm and records the others in history.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub refunds: Vec<RefundNotice>,
    /// Set when the notification is about nothing of billhost's (a payment another integration
    /// made on the same provider account, an event type the gateway does not handle): the host
    /// acknowledges it, so that the provider stops sending it, and changes nothing.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ignored: Option<String>,
}

impl CallbackReport {
    /// A genuine notification about nothing of billhost's (another integration's payment, an
    /// event type not handled): acknowledged, and nothing changes.
    pub fn ignored(why: String) -> CallbackReport {
        CallbackReport {
            verified: true,
            payment_id: None,
            external_id: String::new(),
            amount: String::new(),
            outcome: Outcome::Pending,
            reply: None,
            reason: None,
            refunds: Vec::new(),
            ignored: Some(why),
        }
    }
}

/// A refund as the gateway reports it in a callback.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundNotice {
    /// The host's refund id, when the gateway echoes it (the refund id sent with
    /// `gateway.refund`).
    #[serde(default)]
    pub refund_id: Option<i64>,
    /// The gateway's id of the refund.
    pub external_id: String,
    /// In the payment method's currency, as a decimal string.
    pub amount: String,
    /// `Done` when the gateway confirms the refund, `Pending` while it does not yet.
    pub outcome: RefundOutcome,
}

/// The host asks where a payment stands (the `checkpay` feature).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckRequest {
    pub settings: Value,
    pub payment_id: i64,
    pub external_id: Option<String>,
    pub amount: String,
    pub currency: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CheckReport {
    pub outcome: Outcome,
    #[serde(default)]
    pub external_id: Option<String>,
    /// What the gateway says was paid, as a decimal string.
    #[serde(default)]
    pub amount: Option<String>,
}

/// A refund the host asks a gateway for. `refund_id` is the idempotency key: asked again with
/// the same id (a retry), a gateway must not refund twice.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundRequest {
    pub settings: Value,
    pub refund_id: i64,
    pub payment_id: i64,
    pub external_id: Option<String>,
    /// In the payment method's currency.
    pub amount: String,
    pub currency: String,
    /// What the payment was, in the same currency.
    pub payment_amount: String,
    #[serde(default)]
    pub description: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RefundOutcome {
    /// The gateway confirmed the refund.
    Done,
    /// Accepted, not confirmed yet: the host asks again later.
    Pending,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RefundReport {
    pub outcome: RefundOutcome,
    #[serde(default)]
    pub external_id: Option<String>,
}

/// A message for a notifier.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Message {
    pub settings: Value,
    /// `sms` or `email`.
    pub channel: String,
    pub to: String,
    pub text: String,
    /// The host's id of the message (`sms.id`).
    pub id: i64,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Delivery {
    /// The provider's id of the message, if any.
    #[serde(default)]
    pub external_id: Option<String>,
}

/// The caller of a plugin func.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct CallerInfo {
    pub login: String,
    /// `admin`, `user` or `public`.
    pub level: String,
    pub account_id: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct FuncCall {
    pub settings: Value,
    pub func: String,
    pub params: BTreeMap<String, String>,
    pub caller: CallerInfo,
}

/// A plugin func's answer: fields of a form (`ok: false`) or of an ok document (`ok: true`).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FuncAnswer {
    #[serde(default)]
    pub ok: bool,
    #[serde(default)]
    pub fields: Vec<(String, String)>,
}

/// A payment gateway. Calls never run inside a database transaction; they may do network I/O,
/// except `validate_settings`.
pub trait PaymentGateway: Send + Sync + 'static {
    /// The module name payment methods use.
    fn name(&self) -> &str;
    /// `callback`, `checkpay`, `refund`, `partial_refund`: what the host may ask for.
    fn features(&self) -> Vec<String> {
        Vec::new()
    }
    /// Checks a payment method's settings; an error keeps the method unchanged.
    fn validate_settings(&self, _settings: &Value) -> Result<()> {
        Ok(())
    }
    /// Checks that the gateway takes payments in a payment method's currency (ISO code), when
    /// the method is saved (after [`PaymentGateway::validate_settings`], with the same
    /// settings); an error keeps the method unchanged.
    fn validate_currency(&self, _settings: &Value, _currency: &str) -> Result<()> {
        Ok(())
    }
    /// The settings keys whose values are secrets, never shown back (see
    /// [`Manifest::secret_settings`]).
    fn secret_settings(&self) -> Vec<String> {
        Vec::new()
    }
    fn start(&self, req: StartRequest) -> Result<StartResponse>;
    fn callback(&self, _req: CallbackRequest) -> Result<CallbackReport> {
        Err(Error::new("this gateway takes no callbacks"))
    }
    fn check(&self, _req: CheckRequest) -> Result<CheckReport> {
        Err(Error::new("this gateway has no status check"))
    }
    fn refund(&self, _req: RefundRequest) -> Result<RefundReport> {
        Err(Error::new("this gateway does not refund"))
    }
}

/// Sends messages (SMS, email).
pub trait Notifier: Send + Sync + 'static {
    fn name(&self) -> &str;
    /// `sms`, `email`: the channels it serves.
    fn features(&self) -> Vec<String>;
    fn validate_settings(&self, _settings: &Value) -> Result<()> {
        Ok(())
    }
    fn send(&self, msg: Message) -> Result<Delivery>;
}

/// Adds funcs.
pub trait FuncHandler: Send + Sync + 'static {
    fn name(&self) -> &str;
    fn funcs(&self) -> Vec<FuncSpec>;
    fn validate_settings(&self, _settings: &Value) -> Result<()> {
        Ok(())
    }
    fn call(&self, call: FuncCall) -> Result<FuncAnswer>;
}

/// How the ABI reaches a plugin's trait: implemented by the adapters [`billhost_plugin!`] uses.
pub trait Dispatch: Send + Sync + 'static {
    fn manifest(&self, version: &str) -> Manifest;
    fn dispatch(&self, method: &str, input: &[u8]) -> Result<Vec<u8>>;
}

fn parse<T: for<'de> Deserialize<'de>>(method: &str, input: &[u8]) -> Result<T> {
    serde_json::from_slice(input).map_err(|e| Error::new(format!("{method}: bad input: {e}")))
}

fn json<T: Serialize>(v: &T) -> Result<Vec<u8>> {
    serde_json::to_vec(v).map_err(|e| Error::new(format!("cannot encode the answer: {e}")))
}

fn unknown(method: &str) -> Error {
    Error::new(format!("unknown method '{method}'"))
}

/// Exports a [`PaymentGateway`].
pub struct GatewayAdapter<T>(pub T);
/// Exports a [`Notifier`].
pub struct NotifierAdapter<T>(pub T);
/// Exports a [`FuncHandler`].
pub struct FuncsAdapter<T>(pub T);

impl<T: PaymentGateway> Dispatch for GatewayAdapter<T> {
    fn manifest(&self, version: &str) -> Manifest {
        Manifest {
            name: self.0.name().into(),
            version: version.into(),
            kind: Kind::Gateway,
            abi_version: ABI_VERSION,
            features: self.0.features(),
            funcs: Vec::new(),
            secret_settings: self.0.secret_settings(),
        }
    }

    fn dispatch(&self, method: &str, input: &[u8]) -> Result<Vec<u8>> {
        match method {
            "validate_settings" => {
                let s: Settings = parse(method, input)?;
                self.0.validate_settings(&s.settings)?;
                if let Some(currency) = &s.currency {
                    self.0.validate_currency(&s.settings, currency)?;
                }
                json(&Value::Null)
            }
            "gateway.start" => json(&self.0.start(parse(method, input)?)?),
            "gateway.callback" => json(&self.0.callback(parse(method, input)?)?),
            "gateway.check" => json(&self.0.check(parse(method, input)?)?),
            "gateway.refund" => json(&self.0.refund(parse(method, input)?)?),
            _ => Err(unknown(method)),
        }
    }
}

impl<T: Notifier> Dispatch for NotifierAdapter<T> {
    fn manifest(&self, version: &str) -> Manifest {
        Manifest {
            name: self.0.name().into(),
            version: version.into(),
            kind: Kind::Notifier,
            abi_version: ABI_VERSION,
            features: self.0.features(),
            funcs: Vec::new(),
            secret_settings: Vec::new(),
        }
    }

    fn dispatch(&self, method: &str, input: &[u8]) -> Result<Vec<u8>> {
        match method {
            "validate_settings" => {
                let s: Settings = parse(method, input)?;
                self.0.validate_settings(&s.settings)?;
                json(&Value::Null)
            }
            "notify.send" => json(&self.0.send(parse(method, input)?)?),
            _ => Err(unknown(method)),
        }
    }
}

impl<T: FuncHandler> Dispatch for FuncsAdapter<T> {
    fn manifest(&self, version: &str) -> Manifest {
        Manifest {
            name: self.0.name().into(),
            version: version.into(),
            kind: Kind::Funcs,
            abi_version: ABI_VERSION,
            features: Vec::new(),
            funcs: self.0.funcs(),
            secret_settings: Vec::new(),
        }
    }

    fn dispatch(&self, method: &str, input: &[u8]) -> Result<Vec<u8>> {
        match method {
            "validate_settings" => {
                let s: Settings = parse(method, input)?;
                self.0.validate_settings(&s.settings)?;
                json(&Value::Null)
            }
            "func.call" => json(&self.0.call(parse(method, input)?)?),
            _ => Err(unknown(method)),
        }
    }
}

fn panic_text(p: Box<dyn std::any::Any + Send>) -> String {
    p.downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| p.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "unknown panic".into())
}

/// The body of a plugin's exported `call`: decodes the method, dispatches, encodes the answer,
/// and turns a panic into [`STATUS_PANIC`]. Used by [`billhost_plugin!`].
///
/// # Safety
/// The pointers must be valid for their lengths and `out` writable, as the ABI promises.
pub unsafe fn export_call<D: Dispatch>(
    plugin: &D,
    version: &str,
    method: *const u8,
    method_len: usize,
    input: *const u8,
    input_len: usize,
    out: *mut Buffer,
) -> i32 {
    let result = catch_unwind(AssertUnwindSafe(|| {
        let method = if method.is_null() {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(method, method_len) }
        };
        let input = if input.is_null() {
            &[][..]
        } else {
            unsafe { std::slice::from_raw_parts(input, input_len) }
        };
        let method = std::str::from_utf8(method).map_err(|_| Error::new("method is not UTF-8"))?;
        if method == "manifest" {
            return json(&plugin.manifest(version));
        }
        plugin.dispatch(method, input)
    }));
    let (status, bytes) = match result {
        Ok(Ok(bytes)) => (STATUS_OK, bytes),
        Ok(Err(e)) => (
            STATUS_ERROR,
            serde_json::to_vec(&e).unwrap_or_else(|_| b"{\"message\":\"error\"}".to_vec()),
        ),
        Err(p) => (STATUS_PANIC, panic_text(p).into_bytes()),
    };
    if !out.is_null() {
        unsafe { out.write(Buffer::from_vec(bytes)) };
    }
    status
}

/// The body of a plugin's exported `free`.
///
/// # Safety
/// `buf` must be a buffer this library's `call` returned, freed once.
pub unsafe fn export_free(buf: Buffer) {
    let _ = catch_unwind(AssertUnwindSafe(|| drop(unsafe { buf.into_vec() })));
}

/// Exports a plugin: `billhost_plugin!(gateway: MyGateway);`, `billhost_plugin!(notifier:
/// MyNotifier);` or `billhost_plugin!(funcs: MyFuncs);`. The type must implement `Default` and
/// the kind's trait ([`PaymentGateway`], [`Notifier`], [`FuncHandler`]). The plugin's version is
/// its crate's version. Use it once per library.
#[macro_export]
macro_rules! billhost_plugin {
    (gateway: $t:ty) => {
        $crate::billhost_plugin!(@export $crate::GatewayAdapter<$t>, $crate::GatewayAdapter(<$t as ::core::default::Default>::default()));
    };
    (notifier: $t:ty) => {
        $crate::billhost_plugin!(@export $crate::NotifierAdapter<$t>, $crate::NotifierAdapter(<$t as ::core::default::Default>::default()));
    };
    (funcs: $t:ty) => {
        $crate::billhost_plugin!(@export $crate::FuncsAdapter<$t>, $crate::FuncsAdapter(<$t as ::core::default::Default>::default()));
    };
    (@export $adapter:ty, $make:expr) => {
        fn __billhost_plugin_instance() -> &'static $adapter {
            static INSTANCE: ::std::sync::OnceLock<$adapter> = ::std::sync::OnceLock::new();
            INSTANCE.get_or_init(|| $make)
        }

        unsafe extern "C" fn __billhost_plugin_call(
            method: *const u8,
            method_len: usize,
            input: *const u8,
            input_len: usize,
            out: *mut $crate::Buffer,
        ) -> i32 {
            let instance = ::std::panic::catch_unwind(__billhost_plugin_instance);
            match instance {
                Ok(plugin) => unsafe {
                    $crate::export_call(
                        plugin,
                        env!("CARGO_PKG_VERSION"),
                        method,
                        method_len,
                        input,
                        input_len,
                        out,
                    )
                },
                Err(_) => $crate::STATUS_PANIC,
            }
        }

        unsafe extern "C" fn __billhost_plugin_free(buf: $crate::Buffer) {
            unsafe { $crate::export_free(buf) }
        }

        static __BILLHOST_PLUGIN_DECL: $crate::PluginDecl = $crate::PluginDecl {
            abi_version: $crate::ABI_VERSION,
            struct_size: ::core::mem::size_of::<$crate::PluginDecl>() as u32,
            call: __billhost_plugin_call,
            free: __billhost_plugin_free,
        };

        /// The plugin's entry symbol (see `billhost_plugin_sdk`).
        #[unsafe(no_mangle)]
        pub extern "C" fn billhost_plugin_entry() -> *const $crate::PluginDecl {
            &__BILLHOST_PLUGIN_DECL
        }
    };
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Echo;

    impl FuncHandler for Echo {
        fn name(&self) -> &str {
            "echo"
        }
        fn funcs(&self) -> Vec<FuncSpec> {
            vec![FuncSpec {
                name: "x.echo".into(),
                title: "Echo".into(),
                access: Access::Public,
                params: vec![ParamSpec::new("text")],
            }]
        }
        fn call(&self, call: FuncCall) -> Result<FuncAnswer> {
            if call.params.contains_key("boom") {
                panic!("boom");
            }
            Ok(FuncAnswer {
                ok: false,
                fields: call.params.into_iter().collect(),
            })
        }
    }

    billhost_plugin!(funcs: Echo);

    fn call(method: &str, input: &[u8]) -> (i32, Vec<u8>) {
        let decl = unsafe { &*billhost_plugin_entry() };
        assert_eq!(decl.abi_version, ABI_VERSION);
        let mut out = Buffer::EMPTY;
        let status = unsafe {
            (decl.call)(
                method.as_ptr(),
                method.len(),
                input.as_ptr(),
                input.len(),
                &mut out,
            )
        };
        let bytes = unsafe { out.copy_bytes() };
        unsafe { (decl.free)(out) };
        (status, bytes)
    }

    #[test]
    fn round_trip_through_the_exported_functions() {
        let (s, m) = call("manifest", b"");
        assert_eq!(s, STATUS_OK);
        let m: Manifest = serde_json::from_slice(&m).unwrap();
        assert_eq!(m.kind, Kind::Funcs);
        assert_eq!(m.funcs[0].name, "x.echo");

        let input = br#"{"settings":null,"func":"x.echo","params":{"text":"hi"},
            "caller":{"login":"root","level":"admin","account_id":null}}"#;
        let (s, a) = call("func.call", input);
        assert_eq!(s, STATUS_OK);
        let a: FuncAnswer = serde_json::from_slice(&a).unwrap();
        assert_eq!(a.fields, vec![("text".to_string(), "hi".to_string())]);

        let (s, e) = call("func.call", b"not json");
        assert_eq!(s, STATUS_ERROR);
        let e: Error = serde_json::from_slice(&e).unwrap();
        assert!(e.message.contains("bad input"), "{e:?}");

        let (s, _) = call("nope", b"");
        assert_eq!(s, STATUS_ERROR);
    }

    #[test]
    fn panics_are_caught_at_the_boundary() {
        let prev = std::panic::take_hook();
        std::panic::set_hook(Box::new(|_| {}));
        let input = br#"{"settings":null,"func":"x.echo","params":{"boom":"1"},
            "caller":{"login":"root","level":"admin","account_id":null}}"#;
        let (s, text) = call("func.call", input);
        std::panic::set_hook(prev);
        assert_eq!(s, STATUS_PANIC);
        assert_eq!(text, b"boom");
    }
}
