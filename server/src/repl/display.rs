//! How the REPL prints rows: aligned tables, psql's expanded display
//! (`\x`), and the current table of an updating result redrawn in place
//! (`\live`).

use comfy_table::{Table, presets};
use serde_json::Value;

/// Rows as the REPL prints them: one table, or one block per row in
/// expanded display.
pub fn rows(header: &[String], rows: &[Vec<String>], expanded: bool) -> String {
    if !expanded {
        return table(header, rows);
    }
    let width = header.iter().map(|name| name.chars().count()).max().unwrap_or(0);
    let mut text = String::new();
    for (index, row) in rows.iter().enumerate() {
        let title = format!("-[ RECORD {} ]", index + 1);
        let rule = (width + 3).saturating_sub(title.chars().count());
        text.push_str(&format!("{title}{}\n", "-".repeat(rule.max(1))));
        for (name, value) in header.iter().zip(row) {
            text.push_str(&format!("{name:<width$} | {value}\n"));
        }
    }
    text.pop();
    text
}

pub fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_BORDERS_ONLY_CONDENSED);
    table.set_header(header);
    for row in rows {
        table.add_row(row);
    }
    table.to_string()
}

pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

pub fn column_names(columns: &Value) -> Vec<String> {
    columns
        .as_array()
        .map(|columns| columns.iter().filter_map(|column| column["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

/// `(N rows)`.
pub fn count(rows: usize) -> String {
    format!("({rows} row{})", if rows == 1 { "" } else { "s" })
}

/// The current rows of an updating result: an insertion adds a row, a
/// deletion removes one equal row. Rows keep the order they arrived in.
#[derive(Debug, Default)]
pub struct LiveTable {
    rows: Vec<Vec<String>>,
    /// Lines the last drawing took, to move back over them.
    drawn_lines: usize,
}

impl LiveTable {
    pub fn apply(&mut self, op: &str, row: Vec<String>) {
        if op == "-" {
            if let Some(position) = self.rows.iter().position(|kept| *kept == row) {
                self.rows.remove(position);
            }
        } else {
            self.rows.push(row);
        }
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    /// The table and `status` under it, drawn over the previous drawing
    /// (ANSI: cursor up, clear to the end of the screen).
    pub fn redraw(&mut self, header: &[String], status: &str, expanded: bool) -> String {
        let mut text = String::new();
        if self.drawn_lines > 0 {
            text.push_str(&format!("\x1b[{}F\x1b[J", self.drawn_lines));
        }
        let body = format!("{}\n{}\n{status}\n", rows(header, &self.rows, expanded), count(self.rows.len()));
        self.drawn_lines = body.lines().count();
        text.push_str(&body);
        text
    }

    pub fn rows(&self) -> &[Vec<String>] {
        &self.rows
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn strings(values: &[&str]) -> Vec<String> {
        values.iter().map(|value| value.to_string()).collect()
    }

    #[test]
    fn expanded_display_is_one_block_per_row() {
        let text =
            rows(&strings(&["ip", "requests"]), &[strings(&["10.0.0.1", "5"]), strings(&["10.0.0.2", "1"])], true);
        assert_eq!(
            text,
            "-[ RECORD 1 ]-\nip       | 10.0.0.1\nrequests | 5\n-[ RECORD 2 ]-\nip       | 10.0.0.2\nrequests | 1"
        );
    }

    #[test]
    fn a_live_table_keeps_the_current_rows_and_redraws_over_itself() {
        let mut live = LiveTable::default();
        live.apply("+", strings(&["a", "1"]));
        live.apply("+", strings(&["b", "1"]));
        live.apply("-", strings(&["a", "1"]));
        live.apply("+", strings(&["a", "2"]));
        assert_eq!(live.rows(), &[strings(&["b", "1"]), strings(&["a", "2"])]);
        let header = strings(&["k", "n"]);
        let first = live.redraw(&header, "status", false);
        assert!(!first.starts_with('\x1b'), "{first:?}");
        let lines = first.lines().count();
        let second = live.redraw(&header, "status", false);
        assert!(second.starts_with(&format!("\x1b[{lines}F\x1b[J")), "{second:?}");
    }
}
