//! `echo`: a small func-handler plugin. `plugin.echo` answers its parameters back (and who
//! called), `plugin.sha256` the SHA-256 of `text` in hex: handy to see that plugin funcs work.

use billhost_plugin_sdk::crypto::{hex, sha256};
use billhost_plugin_sdk::{
    Access, Error, FuncAnswer, FuncCall, FuncHandler, FuncSpec, ParamSpec, Result, billhost_plugin,
};

#[derive(Default)]
pub struct Echo;

impl FuncHandler for Echo {
    fn name(&self) -> &str {
        "echo"
    }

    fn funcs(&self) -> Vec<FuncSpec> {
        vec![
            FuncSpec {
                name: "plugin.echo".into(),
                title: "Answer the parameters back".into(),
                access: Access::User,
                params: vec![ParamSpec::new("text")],
            },
            FuncSpec {
                name: "plugin.sha256".into(),
                title: "SHA-256 of a text".into(),
                access: Access::Public,
                params: vec![ParamSpec::new("text").required()],
            },
        ]
    }

    fn call(&self, call: FuncCall) -> Result<FuncAnswer> {
        match call.func.as_str() {
            "plugin.echo" => {
                let mut fields: Vec<(String, String)> = call
                    .params
                    .into_iter()
                    .filter(|(k, _)| !matches!(k.as_str(), "func" | "out" | "authinfo" | "auth"))
                    .collect();
                fields.push(("caller".into(), call.caller.login));
                Ok(FuncAnswer { ok: false, fields })
            }
            "plugin.sha256" => {
                let text = call.params.get("text").ok_or(Error::missed("text"))?;
                Ok(FuncAnswer {
                    ok: false,
                    fields: vec![("sha256".into(), hex(&sha256(text.as_bytes())))],
                })
            }
            other => Err(Error::new(format!("unknown func {other}"))),
        }
    }
}

billhost_plugin!(funcs: Echo);
