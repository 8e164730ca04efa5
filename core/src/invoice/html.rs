//! The printable HTML invoice: the operator's `invoice.html` from the templates folder when
//! there is one (read on every print, so edits show at once), else the shipped
//! `templates/invoice.html`. minijinja escapes every value for HTML.

use super::{Invoice, Templates};
use crate::error::{FuncError, FuncResult};
use minijinja::{AutoEscape, Environment};

/// The shipped template.
pub const DEFAULT_TEMPLATE: &str = include_str!("../../../templates/invoice.html");

/// Renders `invoice` with the operator's template or the shipped one.
pub fn render(invoice: &Invoice, templates: &Templates) -> FuncResult<String> {
    let (source, origin) = match templates.file("invoice.html") {
        Some(path) => {
            let bytes = super::read_operator_file(&path)?;
            let text = String::from_utf8(bytes).map_err(|_| {
                FuncError::internal(format!("{} is not UTF-8 text", path.display()))
            })?;
            (text, path.display().to_string())
        }
        None => (
            DEFAULT_TEMPLATE.to_string(),
            "the shipped invoice.html".into(),
        ),
    };
    render_source(&source, invoice)
        .map_err(|e| FuncError::internal(format!("the invoice template ({origin}) failed: {e:#}")))
}

fn render_source(source: &str, invoice: &Invoice) -> Result<String, minijinja::Error> {
    let mut env = Environment::new();
    env.set_auto_escape_callback(|_| AutoEscape::Html);
    env.add_template("invoice.html", source)?;
    env.get_template("invoice.html")?
        .render(minijinja::value::Serde(invoice))
}
