//! Speaks the ABI by hand and answers a func call with bytes that are not JSON.

use billhost_plugin_sdk::{ABI_VERSION, Buffer, PluginDecl, STATUS_OK};

const MANIFEST: &str = r#"{"name":"badjson","version":"0.1.0","kind":"funcs","abi_version":1,
  "funcs":[{"name":"test.badjson","title":"Answers garbage","access":"admin","params":[]}]}"#;

unsafe extern "C" fn call(
    method: *const u8,
    method_len: usize,
    _input: *const u8,
    _input_len: usize,
    out: *mut Buffer,
) -> i32 {
    let method = unsafe { std::slice::from_raw_parts(method, method_len) };
    let bytes = if method == b"manifest" {
        MANIFEST.as_bytes().to_vec()
    } else {
        b"{this is not json".to_vec()
    };
    unsafe { out.write(Buffer::from_vec(bytes)) };
    STATUS_OK
}

unsafe extern "C" fn free(buf: Buffer) {
    drop(unsafe { buf.into_vec() });
}

static DECL: PluginDecl = PluginDecl {
    abi_version: ABI_VERSION,
    struct_size: std::mem::size_of::<PluginDecl>() as u32,
    call,
    free,
};

#[unsafe(no_mangle)]
pub extern "C" fn billhost_plugin_entry() -> *const PluginDecl {
    &DECL
}
