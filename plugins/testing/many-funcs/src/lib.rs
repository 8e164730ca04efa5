//! A func-handler plugin declaring 20 000 funcs: listings must stay readable and never panic.

use billhost_plugin_sdk::{
    Access, FuncAnswer, FuncCall, FuncHandler, FuncSpec, Result, billhost_plugin,
};

#[derive(Default)]
pub struct ManyFuncs;

impl FuncHandler for ManyFuncs {
    fn name(&self) -> &str {
        "manyfuncs"
    }

    fn funcs(&self) -> Vec<FuncSpec> {
        (0..20_000)
            .map(|i| FuncSpec {
                name: format!("many.func{i:05}"),
                title: format!("Func {i}"),
                access: Access::Admin,
                params: Vec::new(),
            })
            .collect()
    }

    fn call(&self, call: FuncCall) -> Result<FuncAnswer> {
        Ok(FuncAnswer {
            ok: false,
            fields: vec![("func".into(), call.func)],
        })
    }
}

billhost_plugin!(funcs: ManyFuncs);
