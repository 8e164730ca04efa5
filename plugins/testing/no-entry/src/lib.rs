//! A shared library that is no billhost plugin: it lacks the entry symbol.

#[unsafe(no_mangle)]
pub extern "C" fn something_else() -> i32 {
    42
}
