//! Tab completion: func names at the start of a line (and inside `billing.call("`), parameter
//! names after a func name, `billing.` members anywhere, and the REPL's `:` commands.

use rustyline::completion::{Completer, Pair};
use rustyline::highlight::Highlighter;
use rustyline::hint::Hinter;
use rustyline::validate::Validator;
use rustyline::{Context, Helper};

/// What the completer knows of one func.
#[derive(Debug, Clone, Default)]
pub struct FuncNames {
    pub name: String,
    /// Declared parameters, list filter fields and columns, and the protocol's own.
    pub params: Vec<String>,
}

pub const COMMANDS: &[&str] = &[
    ":help",
    ":funcs",
    ":scripts",
    ":reload",
    ":out",
    ":as",
    ":dry",
    ":commit",
    ":rollback",
    ":quit",
];

pub const FORMATS: &[&str] = &["table", "xml", "json", "sjson", "text"];

#[derive(Default)]
pub struct ReplHelper {
    pub funcs: Vec<FuncNames>,
    /// Members of the `billing` table.
    pub billing: Vec<String>,
}

fn word_char(c: char) -> bool {
    c.is_ascii_alphanumeric() || "._-".contains(c)
}

impl ReplHelper {
    /// The start of the word before `pos` and the candidates for it.
    pub fn candidates(&self, line: &str, pos: usize) -> (usize, Vec<String>) {
        let before = &line[..pos];
        let start = before
            .char_indices()
            .rev()
            .find(|(_, c)| !word_char(*c))
            .map(|(i, c)| i + c.len_utf8())
            .unwrap_or(0);
        let word = &before[start..];
        let head = &before[..start];
        let starting = |names: &mut dyn Iterator<Item = String>| -> Vec<String> {
            let mut v: Vec<String> = names.filter(|n| n.starts_with(word)).collect();
            v.sort();
            v.dedup();
            v
        };
        if head == ":" {
            let cmds = COMMANDS.iter().map(|c| c[1..].to_string());
            return (start, starting(&mut cmds.into_iter()));
        }
        if head.trim_end() == ":out" && head.ends_with(' ') {
            return (start, starting(&mut FORMATS.iter().map(|f| f.to_string())));
        }
        if word.starts_with("billing.") {
            let members = self.billing.iter().map(|m| format!("billing.{m}"));
            return (start, starting(&mut members.into_iter()));
        }
        if head.trim().is_empty()
            || head.ends_with("billing.call(\"")
            || head.ends_with("billing.call('")
        {
            let funcs = self.funcs.iter().map(|f| f.name.clone());
            let mut names = starting(&mut funcs.into_iter());
            if head.trim().is_empty() && "billing".starts_with(word) && !word.is_empty() {
                names.push("billing.".into());
            }
            return (start, names);
        }
        // After a func name at the start of the line: its parameter names.
        let first = head.split_whitespace().next().unwrap_or("");
        if !head.starts_with(char::is_whitespace)
            && !head.ends_with('=')
            && let Some(f) = self.funcs.iter().find(|f| f.name == first)
        {
            let params = f.params.iter().map(|p| format!("{p}="));
            return (start, starting(&mut params.into_iter()));
        }
        (start, Vec::new())
    }
}

impl Completer for ReplHelper {
    type Candidate = Pair;

    fn complete(
        &self,
        line: &str,
        pos: usize,
        _ctx: &Context<'_>,
    ) -> rustyline::Result<(usize, Vec<Pair>)> {
        let (start, names) = self.candidates(line, pos);
        Ok((
            start,
            names
                .into_iter()
                .map(|n| Pair {
                    display: n.clone(),
                    replacement: n,
                })
                .collect(),
        ))
    }
}

impl Hinter for ReplHelper {
    type Hint = String;
}

impl Highlighter for ReplHelper {}

impl Validator for ReplHelper {}

impl Helper for ReplHelper {}

#[cfg(test)]
mod tests {
    use super::*;

    fn helper() -> ReplHelper {
        ReplHelper {
            funcs: vec![
                FuncNames {
                    name: "account".into(),
                    params: vec!["email".into(), "name".into(), "p_num".into()],
                },
                FuncNames {
                    name: "account.edit".into(),
                    params: vec!["elid".into(), "email".into(), "sok".into()],
                },
                FuncNames {
                    name: "payment.setpaid".into(),
                    params: vec!["elid".into()],
                },
            ],
            billing: vec!["call".into(), "money".into()],
        }
    }

    fn complete(line: &str) -> (usize, Vec<String>) {
        helper().candidates(line, line.len())
    }

    #[test]
    fn func_names_params_members_and_commands() {
        assert_eq!(complete("payment.se"), (0, vec!["payment.setpaid".into()]));
        assert_eq!(
            complete("acc"),
            (0, vec!["account".into(), "account.edit".into()])
        );
        assert_eq!(
            complete("account.edit elid=3 e"),
            (20, vec!["elid=".into(), "email=".into()])
        );
        assert_eq!(complete("account.edit elid=3"), (18, vec![]));
        assert_eq!(
            complete("x = billing.mo"),
            (4, vec!["billing.money".into()])
        );
        assert_eq!(
            complete("billing.call(\"pay"),
            (14, vec!["payment.setpaid".into()])
        );
        assert_eq!(complete(":ro"), (1, vec!["rollback".into()]));
        assert_eq!(complete(":out j"), (5, vec!["json".into()]));
        assert_eq!(complete("bil"), (0, vec!["billing.".into()]));
    }
}
