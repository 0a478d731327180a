//! Docker's output conventions: Go templates for `--format`, tabwriter
//! tables, go-units sizes.

mod table;
mod template;
mod units;

use serde_json::Value;

pub use table::TabWriter;
pub use template::{Template, TemplateError};
pub use units::{bytes_size, human_size, human_size_precision};

/// `table {{.A}}\t{{.B}}` → Some("{{.A}}\t{{.B}}").
pub fn is_table(format: &str) -> Option<&str> {
    let rest = format.strip_prefix("table")?;
    if rest.is_empty() {
        return Some("");
    }
    if rest.starts_with(char::is_whitespace) {
        return Some(rest.strip_prefix(' ').unwrap_or(rest));
    }
    None
}

/// Renders rows with a format as Docker's CLI does: a `table` format gets a
/// header row (the same template over `header`) and aligned columns; any
/// other format prints one rendered line per row.
pub fn render_rows(format: &str, header: &Value, rows: &[Value]) -> Result<String, TemplateError> {
    match is_table(format) {
        Some(body) => {
            let t = Template::parse(&body.replace("\\t", "\t"))?;
            let mut tw = TabWriter::new();
            tw.add(&t.render(header)?);
            for r in rows {
                tw.add(&t.render(r)?);
            }
            Ok(tw.render())
        }
        None => {
            let t = Template::parse(&format.replace("\\t", "\t"))?;
            let mut out = String::new();
            for r in rows {
                out.push_str(&t.render(r)?);
                out.push('\n');
            }
            Ok(out)
        }
    }
}
