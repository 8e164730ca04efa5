//! The plugin host: loads shared-library plugins written against `billhost-plugin-sdk` (the one
//! place the ABI is defined), checks their ABI before calling anything, keeps every library
//! loaded for the life of the process, and turns whatever a plugin does wrong (a missing symbol,
//! another ABI version, a panic, bytes that are not the JSON expected) into an error that names
//! the plugin, while the host keeps serving.
//!
//! [`install`] adds the funcs that use plugins to an engine: the gateway flow (`gateway`), the
//! notifiers (`notify`) and the funcs of func-handler plugins.
//!
//! # Where plugins are found
//! Every shared library (`*.so`, `*.dylib`, `*.dll`) directly inside each plugin folder is
//! loaded, folders in the order given. The folders are the `--plugins DIR` options (repeatable),
//! else the `BILLHOST_PLUGINS` variable (a path list, `:`-separated on Unix), else
//! `target/release` and `target/debug` under the working directory, those that exist: where
//! `cargo build --release --workspace` and `cargo build` put the shipped plugins. When two
//! libraries declare the same module name, the first loaded wins and the other is skipped
//! (reported, not an error).

mod gateway;
mod notify;

use crate::auth::Caller;
use crate::doc::{Doc, Level};
use crate::engine::{Ctx, Engine};
use crate::error::{ErrorType, FuncError, FuncResult};
use crate::func::{Access, ActionMode, FuncDecl, Param, Ty};
use crate::params::Params;
use billhost_plugin_sdk as sdk;
use serde::Serialize;
use serde::de::DeserializeOwned;
use serde_json::Value;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;

pub use sdk::{ABI_VERSION, Kind, Manifest};

/// Where plugins come from and the settings of those configured outside payment methods.
#[derive(Debug, Clone, Default)]
pub struct PluginConfig {
    pub dirs: Vec<PathBuf>,
    /// Whether `dirs` were given (a missing folder is then an error) or are the defaults.
    pub explicit: bool,
    /// Settings by module name (notifiers, func handlers), from the plugin configuration file.
    pub settings: BTreeMap<String, Value>,
}

impl PluginConfig {
    /// The folders by the documented rule: `given`, else `BILLHOST_PLUGINS`, else
    /// `target/release` and `target/debug` under the working directory.
    pub fn resolve(given: Vec<PathBuf>, env: Option<std::ffi::OsString>) -> PluginConfig {
        if !given.is_empty() {
            return PluginConfig {
                dirs: given,
                explicit: true,
                settings: BTreeMap::new(),
            };
        }
        if let Some(list) = env.filter(|v| !v.is_empty()) {
            return PluginConfig {
                dirs: std::env::split_paths(&list).collect(),
                explicit: true,
                settings: BTreeMap::new(),
            };
        }
        PluginConfig {
            dirs: default_dirs(),
            explicit: false,
            settings: BTreeMap::new(),
        }
    }

    /// Reads the settings file: a JSON object of module name to settings object.
    pub fn read_settings(&mut self, path: &Path) -> Result<(), String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        let map: BTreeMap<String, Value> = serde_json::from_str(&text)
            .map_err(|e| format!("{}: not a JSON object of settings: {e}", path.display()))?;
        self.settings = map;
        Ok(())
    }
}

/// `target/release` and `target/debug` under the working directory, those that exist.
pub fn default_dirs() -> Vec<PathBuf> {
    ["target/release", "target/debug"]
        .iter()
        .map(PathBuf::from)
        .filter(|d| d.is_dir())
        .collect()
}

/// A library that could not be used, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LoadError {
    pub path: PathBuf,
    pub message: String,
}

impl std::fmt::Display for LoadError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.path.display(), self.message)
    }
}

/// A loaded plugin. Its library is never unloaded, so `decl` stays valid for the process.
pub struct Plugin {
    pub manifest: Manifest,
    pub path: PathBuf,
    /// Its settings from the plugin configuration (`null` when none).
    pub settings: Value,
    decl: &'static sdk::PluginDecl,
}

/// A plugin call's failure.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum CallError {
    /// The plugin answered an error of its own (a bad setting, a declined operation).
    Plugin(sdk::Error),
    /// The plugin panicked, answered garbage or an unknown status: a bug in the plugin.
    Broken(String),
}

impl CallError {
    pub fn message(&self) -> String {
        match self {
            CallError::Plugin(e) => e.message.clone(),
            CallError::Broken(m) => m.clone(),
        }
    }

    /// As an error document of a func: the plugin's own error keeps its type and object; a
    /// broken plugin is an `internal` error naming it.
    pub fn into_func_error(self, plugin: &str) -> FuncError {
        match self {
            CallError::Plugin(e) => {
                let kind = ErrorType::parse(&e.kind).unwrap_or(ErrorType::Value);
                let object = if e.object.is_empty() {
                    "plugin".to_string()
                } else {
                    e.object
                };
                FuncError::new(kind, object, plugin, format!("{plugin}: {}", e.message))
            }
            CallError::Broken(m) => FuncError::new(ErrorType::Internal, "plugin", plugin, m),
        }
    }
}

impl std::fmt::Display for CallError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message())
    }
}

impl Plugin {
    pub fn name(&self) -> &str {
        &self.manifest.name
    }

    pub fn has_feature(&self, feature: &str) -> bool {
        self.manifest.features.iter().any(|f| f == feature)
    }

    /// The raw round trip: `method` with `input` bytes, answering the status and a copy of the
    /// plugin's buffer, which goes back to the plugin's `free`.
    pub fn call_raw(&self, method: &str, input: &[u8]) -> (i32, Vec<u8>) {
        raw_call(self.decl, method, input)
    }

    /// Calls `method` with `input` as JSON and decodes the answer.
    pub fn call<I: Serialize, O: DeserializeOwned>(
        &self,
        method: &str,
        input: &I,
    ) -> Result<O, CallError> {
        let bytes = serde_json::to_vec(input)
            .map_err(|e| CallError::Broken(format!("cannot encode the input: {e}")))?;
        let (status, out) = self.call_raw(method, &bytes);
        decode(self.name(), method, status, &out)
    }

    /// Asks the plugin whether `settings` suit it.
    pub fn validate_settings(&self, settings: &Value) -> Result<(), CallError> {
        self.validate_method(settings, None)
    }

    /// Validates a payment method's settings and, when given, its currency (ISO code).
    pub fn validate_method(
        &self,
        settings: &Value,
        currency: Option<&str>,
    ) -> Result<(), CallError> {
        let _: Value = self.call(
            "validate_settings",
            &sdk::Settings {
                settings: settings.clone(),
                currency: currency.map(str::to_string),
            },
        )?;
        Ok(())
    }
}

fn raw_call(decl: &sdk::PluginDecl, method: &str, input: &[u8]) -> (i32, Vec<u8>) {
    let mut out = sdk::Buffer::EMPTY;
    // SAFETY: the declaration passed the ABI checks and its library is never unloaded; the
    // pointers are valid for their lengths for the duration of the call.
    let status = unsafe {
        (decl.call)(
            method.as_ptr(),
            method.len(),
            input.as_ptr(),
            input.len(),
            &mut out,
        )
    };
    // SAFETY: the plugin answered a buffer of `len` bytes (or null); it is copied, then given
    // back to the allocator that made it.
    let bytes = unsafe { out.copy_bytes() };
    unsafe { (decl.free)(out) };
    (status, bytes)
}

fn decode<O: DeserializeOwned>(
    plugin: &str,
    method: &str,
    status: i32,
    out: &[u8],
) -> Result<O, CallError> {
    match status {
        sdk::STATUS_OK => serde_json::from_slice(out).map_err(|e| {
            CallError::Broken(format!(
                "plugin '{plugin}' answered {method} with invalid JSON ({e}): {}",
                preview(out)
            ))
        }),
        sdk::STATUS_ERROR => match serde_json::from_slice::<sdk::Error>(out) {
            Ok(e) => Err(CallError::Plugin(e)),
            Err(e) => Err(CallError::Broken(format!(
                "plugin '{plugin}' failed in {method} with an error that is not valid JSON ({e}): {}",
                preview(out)
            ))),
        },
        sdk::STATUS_PANIC => Err(CallError::Broken(format!(
            "plugin '{plugin}' panicked in {method}: {}",
            preview(out)
        ))),
        other => Err(CallError::Broken(format!(
            "plugin '{plugin}' answered {method} with the unknown status {other}"
        ))),
    }
}

fn preview(bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let mut s: String = text.chars().take(200).collect();
    if text.chars().count() > 200 {
        s.push_str("...");
    }
    s
}

/// Every plugin loaded and every library refused.
#[derive(Default)]
pub struct PluginHost {
    plugins: Vec<Arc<Plugin>>,
    errors: Vec<LoadError>,
    skipped: Vec<LoadError>,
    dirs: Vec<PathBuf>,
}

impl PluginHost {
    /// Loads every library of the configured folders. Never fails: what cannot be loaded is
    /// recorded in [`PluginHost::errors`].
    pub fn load(config: &PluginConfig) -> PluginHost {
        let mut host = PluginHost {
            dirs: config.dirs.clone(),
            ..PluginHost::default()
        };
        for dir in &config.dirs {
            let entries = match std::fs::read_dir(dir) {
                Ok(e) => e,
                Err(e) => {
                    if config.explicit {
                        host.errors.push(LoadError {
                            path: dir.clone(),
                            message: format!("cannot read the plugin folder: {e}"),
                        });
                    }
                    continue;
                }
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| {
                    p.extension()
                        .is_some_and(|x| x == std::env::consts::DLL_EXTENSION)
                })
                .collect();
            files.sort();
            for path in files {
                // Something named like a library that is not a file is reported, never
                // skipped in silence: the operator meant it to load.
                if !path.is_file() {
                    let what = match std::fs::metadata(&path) {
                        Ok(m) if m.is_dir() => "a folder",
                        Ok(_) => "not a regular file (a device, socket or pipe)",
                        Err(_) => "a broken link",
                    };
                    host.errors.push(LoadError {
                        message: format!("not a library: {what}"),
                        path,
                    });
                    continue;
                }
                match load_one(&path, config) {
                    Ok(plugin) => {
                        if let Some(first) = host.get(plugin.name()) {
                            host.skipped.push(LoadError {
                                message: format!(
                                    "module '{}' is already loaded from {}",
                                    plugin.name(),
                                    first.path.display()
                                ),
                                path,
                            });
                        } else {
                            host.plugins.push(Arc::new(plugin));
                        }
                    }
                    Err(message) => host.errors.push(LoadError { path, message }),
                }
            }
        }
        host
    }

    pub fn plugins(&self) -> &[Arc<Plugin>] {
        &self.plugins
    }

    pub fn errors(&self) -> &[LoadError] {
        &self.errors
    }

    /// Libraries not loaded because a plugin of the same name came first.
    pub fn skipped(&self) -> &[LoadError] {
        &self.skipped
    }

    pub fn dirs(&self) -> &[PathBuf] {
        &self.dirs
    }

    pub fn get(&self, name: &str) -> Option<&Arc<Plugin>> {
        self.plugins.iter().find(|p| p.name() == name)
    }

    /// The gateway plugin of a payment method's module.
    pub fn gateway(&self, module: &str) -> Option<&Arc<Plugin>> {
        self.get(module)
            .filter(|p| p.manifest.kind == Kind::Gateway)
    }

    /// The first notifier serving `channel` (`sms`, `email`).
    pub fn notifier(&self, channel: &str) -> Option<&Arc<Plugin>> {
        self.plugins
            .iter()
            .find(|p| p.manifest.kind == Kind::Notifier && p.has_feature(channel))
    }
}

/// An error with the causes it carries (libloading's own message is only "dlopen failed"; the
/// loader's reason is its source).
fn error_chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        out.push_str(": ");
        out.push_str(&s.to_string());
        source = s.source();
    }
    out
}

/// Says plainly why a file cannot be a shared library before the loader is asked: an empty
/// file, or one without the platform's library header.
fn check_library_file(path: &Path) -> Result<(), String> {
    use std::io::Read;
    let mut head = [0u8; 4];
    let mut file = std::fs::File::open(path).map_err(|e| format!("cannot open the file: {e}"))?;
    let n = file
        .read(&mut head)
        .map_err(|e| format!("cannot read the file: {e}"))?;
    if n == 0 {
        return Err("the file is empty, not a shared library".into());
    }
    let magic: &[&[u8]] = if cfg!(target_os = "macos") {
        &[
            b"\xcf\xfa\xed\xfe",
            b"\xce\xfa\xed\xfe",
            b"\xca\xfe\xba\xbe",
        ]
    } else if cfg!(windows) {
        &[b"MZ"]
    } else {
        &[b"\x7fELF"]
    };
    if !magic.iter().any(|m| head[..n].starts_with(m)) {
        return Err(format!(
            "not a shared library: the file does not start with the {} header",
            if cfg!(target_os = "macos") {
                "Mach-O"
            } else if cfg!(windows) {
                "PE"
            } else {
                "ELF"
            }
        ));
    }
    Ok(())
}

/// Loads one library: the entry symbol, the ABI version and struct size, then the manifest.
fn load_one(path: &Path, config: &PluginConfig) -> Result<Plugin, String> {
    // SAFETY: loading runs the library's initialisers; plugin folders are trusted code, as the
    // operator's choice of `--plugins` says.
    check_library_file(path)?;
    let library = unsafe { libloading::Library::new(path) }
        .map_err(|e| format!("cannot load the library: {}", error_chain(&e)))?;
    // Never unloaded (dlclose is unreliable with thread-locals and code that may still run):
    // the handle is leaked for the life of the process.
    let library: &'static libloading::Library = Box::leak(Box::new(library));
    // SAFETY: the symbol's type is the SDK's `EntryFn`; a library exporting the name with
    // another type breaks the contract of every plugin folder.
    let entry: libloading::Symbol<sdk::EntryFn> = unsafe { library.get(sdk::ENTRY_SYMBOL) }
        .map_err(|_| {
            "not a billhost plugin: the library has no `billhost_plugin_entry` symbol (export a \
             type with billhost_plugin!)"
                .to_string()
        })?;
    // SAFETY: the entry takes no arguments and answers a pointer to a static declaration.
    let decl = unsafe { entry() };
    if decl.is_null() {
        return Err("billhost_plugin_entry answered a null declaration".into());
    }
    // Only the first two fields are read before the version is known: they never move.
    // SAFETY: every declaration of every version starts with these two u32 fields.
    let (abi, size) = unsafe {
        (
            std::ptr::addr_of!((*decl).abi_version).read(),
            std::ptr::addr_of!((*decl).struct_size).read(),
        )
    };
    if abi != sdk::ABI_VERSION {
        return Err(format!(
            "the plugin speaks plugin ABI version {abi}, this billhost speaks version {}: \
             rebuild it against a matching billhost-plugin-sdk",
            sdk::ABI_VERSION
        ));
    }
    let own = std::mem::size_of::<sdk::PluginDecl>();
    if (size as usize) < own {
        return Err(format!(
            "the plugin declaration is {size} bytes, smaller than the {own} of ABI version {}",
            sdk::ABI_VERSION
        ));
    }
    // SAFETY: version and size match this build's declaration; the library stays loaded.
    let decl: &'static sdk::PluginDecl = unsafe { &*decl };
    let (status, out) = raw_call(decl, "manifest", b"");
    let file = path
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let manifest: Manifest = decode(&file, "manifest", status, &out).map_err(|e| e.message())?;
    if manifest.abi_version != sdk::ABI_VERSION {
        return Err(format!(
            "the manifest says ABI version {}, the declaration {abi}",
            manifest.abi_version
        ));
    }
    if !valid_name(&manifest.name) {
        return Err(format!(
            "the module name '{}' is not a name (letters, digits, '_', '-', '.')",
            manifest.name
        ));
    }
    let settings = config
        .settings
        .get(&manifest.name)
        .cloned()
        .unwrap_or(Value::Null);
    let plugin = Plugin {
        manifest,
        path: path.to_path_buf(),
        settings,
        decl,
    };
    if !plugin.settings.is_null() {
        plugin
            .validate_settings(&plugin.settings)
            .map_err(|e| format!("module '{}': bad settings: {e}", plugin.name()))?;
    }
    Ok(plugin)
}

fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
}

/// Adds the plugin funcs to `engine` (before it is shared): the gateway flow (`payment.add`,
/// `payment.refund` and `paymethod.edit` wrapped; `payment.callback`, `payment.checkpay`,
/// `payment.refund.retry`), `account.sms`, and the funcs of func-handler plugins. A plugin func
/// whose name is taken is refused and recorded as a load error.
pub fn install(engine: &mut Engine, mut host: PluginHost) -> Arc<PluginHost> {
    let mut refused = Vec::new();
    let mut added = Vec::new();
    for plugin in host
        .plugins
        .iter()
        .filter(|p| p.manifest.kind == Kind::Funcs)
    {
        for spec in &plugin.manifest.funcs {
            if !valid_name(&spec.name) || engine.registry().get(&spec.name).is_some() {
                refused.push(LoadError {
                    path: plugin.path.clone(),
                    message: format!(
                        "module '{}': the func '{}' is not a free name; not added",
                        plugin.name(),
                        spec.name
                    ),
                });
                continue;
            }
            added.push(plugin_func(plugin.clone(), spec));
        }
    }
    host.errors.extend(refused);
    for decl in added {
        engine.add_func(decl);
    }
    let host = Arc::new(host);
    gateway::install(engine, &host);
    notify::install(engine, &host);
    // Payments stuck in progress and refunds a gateway has not confirmed are looked at again
    // every five minutes.
    engine.add_periodic("payment.checkpay", 300);
    engine.add_periodic("payment.refund.retry", 300);
    host
}

fn access(a: sdk::Access) -> Access {
    match a {
        sdk::Access::Admin => Access::ADMIN,
        sdk::Access::User => Access::ADMIN_USER,
        sdk::Access::Public => Access::PUBLIC,
    }
}

/// What a plugin learns about its caller.
pub fn caller_info(caller: &Caller) -> sdk::CallerInfo {
    sdk::CallerInfo {
        login: caller.history_name(),
        level: caller.level.as_str().into(),
        account_id: if caller.level == Level::User {
            caller.account_id
        } else {
            None
        },
    }
}

fn plugin_func(plugin: Arc<Plugin>, spec: &sdk::FuncSpec) -> FuncDecl {
    let name = spec.name.clone();
    let params = spec
        .params
        .iter()
        .map(|p| {
            let param = Param::new(&p.name, Ty::LongText(p.max_len.unwrap_or(4000)));
            if p.required { param.required() } else { param }
        })
        .collect();
    FuncDecl::action(
        &spec.name,
        &spec.title,
        access(spec.access),
        ActionMode::Read,
        move |ctx: &Ctx, p: &Params| {
            let call = sdk::FuncCall {
                settings: plugin.settings.clone(),
                func: name.clone(),
                params: p
                    .iter()
                    .filter(|(k, _)| !matches!(*k, "authinfo" | "auth"))
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                caller: caller_info(ctx.caller),
            };
            let answer: sdk::FuncAnswer = plugin
                .call("func.call", &call)
                .map_err(|e| e.into_func_error(plugin.name()))?;
            Ok(if answer.ok {
                Doc::Ok(crate::doc::owned(answer.fields))
            } else {
                Doc::Form(crate::doc::owned(answer.fields))
            })
        },
    )
    .params(params)
}

/// The text of a `FuncResult` for job reports.
pub fn outcome_text(r: &FuncResult<Doc>) -> String {
    match r {
        Ok(Doc::Ok(fields)) | Ok(Doc::Form(fields)) => fields
            .iter()
            .map(|(k, v)| format!("{k}={v}"))
            .collect::<Vec<_>>()
            .join(" "),
        Ok(_) => "ok".into(),
        Err(e) => e.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn folders_follow_the_documented_rule() {
        let given = PluginConfig::resolve(vec![PathBuf::from("a")], Some("b:c".into()));
        assert_eq!(given.dirs, vec![PathBuf::from("a")]);
        assert!(given.explicit);
        let env = PluginConfig::resolve(Vec::new(), Some("b:c".into()));
        assert_eq!(env.dirs, vec![PathBuf::from("b"), PathBuf::from("c")]);
        let default = PluginConfig::resolve(Vec::new(), None);
        assert!(!default.explicit);
        assert!(
            default
                .dirs
                .iter()
                .all(|d| d.ends_with("target/release") || d.ends_with("target/debug"))
        );
    }

    #[test]
    fn a_missing_explicit_folder_is_reported_and_a_missing_default_is_not() {
        let mut config = PluginConfig::resolve(vec![PathBuf::from("/nonexistent/x")], None);
        let host = PluginHost::load(&config);
        assert_eq!(host.errors().len(), 1);
        assert!(
            host.errors()[0]
                .message
                .contains("cannot read the plugin folder")
        );
        config.explicit = false;
        assert!(PluginHost::load(&config).errors().is_empty());
    }

    #[test]
    fn a_file_that_is_no_library_is_a_load_error() {
        let dir = std::env::temp_dir().join(format!("billhost-notalib-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let file = dir.join(format!("libfake.{}", std::env::consts::DLL_EXTENSION));
        std::fs::write(&file, b"not an ELF").unwrap();
        let host = PluginHost::load(&PluginConfig::resolve(vec![dir.clone()], None));
        std::fs::remove_dir_all(&dir).unwrap();
        assert!(host.plugins().is_empty());
        assert_eq!(host.errors().len(), 1);
        assert!(
            host.errors()[0]
                .message
                .contains("not a shared library: the file does not start with the ELF header"),
            "{:?}",
            host.errors()
        );
    }

    #[test]
    fn answers_are_decoded_or_named_broken() {
        let ok: Result<sdk::CheckReport, _> = decode(
            "p",
            "gateway.check",
            sdk::STATUS_OK,
            br#"{"outcome":"paid"}"#,
        );
        assert_eq!(ok.unwrap().outcome, sdk::Outcome::Paid);
        let garbage: Result<sdk::CheckReport, _> =
            decode("p", "gateway.check", sdk::STATUS_OK, b"{nope");
        assert!(matches!(garbage, Err(CallError::Broken(m)) if m.contains("invalid JSON")));
        let wrong_shape: Result<sdk::CheckReport, _> =
            decode("p", "gateway.check", sdk::STATUS_OK, b"[1,2]");
        assert!(matches!(wrong_shape, Err(CallError::Broken(_))));
        let own: Result<Value, _> = decode(
            "p",
            "x",
            sdk::STATUS_ERROR,
            br#"{"type":"missed","object":"secret","message":"no secret"}"#,
        );
        let e = own.unwrap_err().into_func_error("p");
        assert_eq!((e.kind, e.object.as_str()), (ErrorType::Missed, "secret"));
        let panic: Result<Value, _> = decode("p", "x", sdk::STATUS_PANIC, b"boom");
        assert_eq!(
            panic.unwrap_err().into_func_error("p").msg,
            "plugin 'p' panicked in x: boom"
        );
        let odd: Result<Value, _> = decode("p", "x", 7, b"");
        assert!(matches!(odd, Err(CallError::Broken(m)) if m.contains("unknown status 7")));
    }

    #[test]
    fn module_names() {
        assert!(valid_name("testpay"));
        assert!(valid_name("my-gw.v2"));
        assert!(!valid_name(""));
        assert!(!valid_name("a b"));
        assert!(!valid_name("x;drop"));
    }
}
