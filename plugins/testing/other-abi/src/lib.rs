//! Declares another ABI version: the host must refuse it without calling anything.

use billhost_plugin_sdk::{Buffer, PluginDecl};

unsafe extern "C" fn call(
    _method: *const u8,
    _method_len: usize,
    _input: *const u8,
    _input_len: usize,
    _out: *mut Buffer,
) -> i32 {
    // Never reached: a host that called this would crash the test on purpose.
    std::process::abort()
}

unsafe extern "C" fn free(_buf: Buffer) {
    std::process::abort()
}

static DECL: PluginDecl = PluginDecl {
    abi_version: 999,
    struct_size: std::mem::size_of::<PluginDecl>() as u32,
    call,
    free,
};

#[unsafe(no_mangle)]
pub extern "C" fn billhost_plugin_entry() -> *const PluginDecl {
    &DECL
}
