//! A func-handler plugin whose func panics: the host must answer an error and keep serving.

use billhost_plugin_sdk::{
    Access, FuncAnswer, FuncCall, FuncHandler, FuncSpec, Result, billhost_plugin,
};

#[derive(Default)]
pub struct Panics;

impl FuncHandler for Panics {
    fn name(&self) -> &str {
        "panics"
    }

    fn funcs(&self) -> Vec<FuncSpec> {
        vec![FuncSpec {
            name: "test.panic".into(),
            title: "Panics".into(),
            access: Access::Admin,
            params: Vec::new(),
        }]
    }

    fn call(&self, _call: FuncCall) -> Result<FuncAnswer> {
        panic!("deliberate test panic");
    }
}

billhost_plugin!(funcs: Panics);
