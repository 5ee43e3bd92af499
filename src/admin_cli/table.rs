//! A small aligned-text table formatter for admin API objects, and the cell helpers the
//! resource modules build their columns from. Cells never carry control characters, so a value
//! from the API cannot break the layout or send escape sequences to the terminal.

use serde_json::Value;

/// One column: a header and how to read its cell from an API object.
pub struct Column {
    pub header: &'static str,
    pub cell: fn(&Value) -> String,
}

/// What an absent or null value shows as.
pub const NONE: &str = "-";

/// Rows under a header line, each column as wide as its widest cell, two spaces apart, no
/// trailing whitespace.
pub fn grid(headers: &[&str], rows: &[Vec<String>]) -> String {
    let mut widths: Vec<usize> = headers.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            if let Some(w) = widths.get_mut(i) {
                *w = (*w).max(cell.chars().count());
            }
        }
    }
    let mut out = String::new();
    let header_row: Vec<String> = headers.iter().map(|h| (*h).to_owned()).collect();
    for row in std::iter::once(&header_row).chain(rows) {
        let mut line = String::new();
        for (i, width) in widths.iter().enumerate() {
            let cell = row.get(i).map_or("", String::as_str);
            if i > 0 {
                line.push_str("  ");
            }
            line.push_str(cell);
            let pad = width.saturating_sub(cell.chars().count());
            line.extend(std::iter::repeat_n(' ', pad));
        }
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A list of objects, one per line.
pub fn rows(columns: &[Column], values: &[Value]) -> String {
    let headers: Vec<&str> = columns.iter().map(|c| c.header).collect();
    let cells: Vec<Vec<String>> = values
        .iter()
        .map(|v| columns.iter().map(|c| clean(&(c.cell)(v))).collect())
        .collect();
    grid(&headers, &cells)
}

/// One object, one field per line (`HEADER  value`).
pub fn record(columns: &[Column], value: &Value) -> String {
    let width = columns
        .iter()
        .map(|c| c.header.chars().count())
        .max()
        .unwrap_or(0);
    let mut out = String::new();
    for c in columns {
        let line = format!("{:<width$}  {}", c.header, clean(&(c.cell)(value)));
        out.push_str(line.trim_end());
        out.push('\n');
    }
    out
}

/// A field as text: strings as they are, numbers and booleans printed, arrays joined with
/// `, `, objects as compact JSON, absent or null as [`NONE`].
pub fn field(value: &Value, name: &str) -> String {
    text(value.get(name).unwrap_or(&Value::Null))
}

/// The first of `names` that is present and not null.
pub fn first(value: &Value, names: &[&str]) -> String {
    names
        .iter()
        .filter_map(|n| value.get(*n))
        .find(|v| !v.is_null())
        .map_or_else(|| NONE.to_owned(), text)
}

/// A timestamp field (RFC 3339) shown as `YYYY-MM-DD HH:MM:SSZ` in UTC.
pub fn time(value: &Value, name: &str) -> String {
    match value.get(name).and_then(Value::as_str) {
        Some(s) => chrono::DateTime::parse_from_rfc3339(s).map_or_else(
            |_| s.to_owned(),
            |t| {
                t.with_timezone(&chrono::Utc)
                    .format("%Y-%m-%d %H:%M:%SZ")
                    .to_string()
            },
        ),
        None => field(value, name),
    }
}

fn text(v: &Value) -> String {
    match v {
        Value::Null => NONE.to_owned(),
        Value::String(s) if s.is_empty() => NONE.to_owned(),
        Value::String(s) => s.clone(),
        Value::Array(items) if items.is_empty() => NONE.to_owned(),
        Value::Array(items) => items.iter().map(text).collect::<Vec<_>>().join(", "),
        other => other.to_string(),
    }
}

/// Replaces control characters (newlines, tabs, escapes) with spaces.
fn clean(s: &str) -> String {
    s.chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect()
}

#[cfg(test)]
mod tests;
