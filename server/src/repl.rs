//! `sluice repl`: a psql-like client of the HTTP/websocket API.
//!
//! Statements end with `;`. DDL prints its status; `SHOW`/`DESCRIBE`
//! print a table; a continuous query subscribes to its websocket and prints
//! each batch of results (each closed window) as a table as it arrives,
//! until the query ends or Ctrl-C, which cancels the query and returns to
//! the prompt. `SET name = value` is remembered for the session. Errors are
//! printed with a caret under the position they point at.
//!
//! [`Client`] is the library API the binary and the tests share; it
//! subscribes through [`crate::client`].

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::time::Duration;

use comfy_table::{Table, presets};
use serde_json::{Value, json};

use crate::client::{ClientError, Frame, Subscription};

/// What can go wrong talking to the server (the server's own errors are
/// printed, not returned).
#[derive(Debug)]
pub struct ReplError(pub String);

impl std::fmt::Display for ReplError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.0)
    }
}

impl std::error::Error for ReplError {}

fn io(error: std::io::Error) -> ReplError {
    ReplError(format!("cannot write output: {error}"))
}

/// A session with a Sluice server.
pub struct Client {
    base_url: String,
    http: reqwest::Client,
    /// `SET` values, sent with every request.
    pub settings: BTreeMap<String, String>,
}

impl Client {
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            settings: BTreeMap::new(),
        }
    }

    /// Executes `sql` and prints what it returns to `out`. A continuous
    /// query's results are printed until it ends or `stop` completes (then
    /// the query is cancelled). Returns the number of result rows printed.
    pub async fn run<W: Write>(
        &mut self,
        sql: &str,
        out: &mut W,
        stop: impl Future<Output = ()>,
    ) -> Result<u64, ReplError> {
        let response = self
            .http
            .post(format!("{}/v1/sql", self.base_url))
            .json(&json!({"sql": sql, "settings": self.settings}))
            .send()
            .await
            .map_err(|error| ReplError(format!("cannot reach {}: {error}", self.base_url)))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|error| ReplError(format!("bad response: {error}")))?;
        if !status.is_success() {
            print_error(sql, &body, out).map_err(io)?;
            return Ok(0);
        }
        let results = match body.get("results") {
            Some(Value::Array(results)) => results.clone(),
            _ => vec![body],
        };
        let mut stop = std::pin::pin!(stop);
        let mut printed = 0;
        for result in results {
            if let Some(query_id) = result.get("query_id").and_then(Value::as_str) {
                for warning in result.get("warnings").and_then(Value::as_array).into_iter().flatten() {
                    writeln!(out, "WARNING: {}", warning.as_str().unwrap_or_default()).map_err(io)?;
                }
                printed += self.subscribe(query_id, &result, out, stop.as_mut()).await?;
            } else if let Some(rows) = result.get("rows").and_then(Value::as_array) {
                let columns = column_names(&result["columns"]);
                let values: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| row.as_array().map(|cells| cells.iter().map(cell).collect()).unwrap_or_default())
                    .collect();
                writeln!(out, "{}", table(&columns, &values)).map_err(io)?;
                writeln!(out, "({} row{})", values.len(), if values.len() == 1 { "" } else { "s" }).map_err(io)?;
            } else if let Some(status) = result.get("status").and_then(Value::as_str) {
                if status == "SET"
                    && let Some(name) = result.get("name").and_then(Value::as_str)
                    && let Some(value) = set_value(sql, name)
                {
                    self.settings.insert(name.to_string(), value);
                }
                writeln!(out, "{status}").map_err(io)?;
            }
        }
        Ok(printed)
    }

    async fn subscribe<W: Write>(
        &self,
        query_id: &str,
        result: &Value,
        out: &mut W,
        mut stop: std::pin::Pin<&mut impl Future<Output = ()>>,
    ) -> Result<u64, ReplError> {
        let path = result["subscribe"].as_str().unwrap_or_default();
        let ws_url = format!("{}{path}", self.base_url.replacen("http", "ws", 1));
        let mut subscription = Subscription::connect(&ws_url).await.map_err(|error| match error {
            ClientError::NotFound => ReplError(format!("cannot subscribe to {ws_url}: no such query")),
            other => ReplError(other.to_string()),
        })?;
        let columns = column_names(&result["columns"]);
        writeln!(out, "query {query_id} running; results appear as they are emitted (Ctrl-C to stop)").map_err(io)?;
        let mut printed = 0u64;
        loop {
            tokio::select! {
                _ = stop.as_mut() => {
                    subscription.close().await;
                    let _ = self.http.delete(format!("{}/v1/queries/{query_id}", self.base_url)).send().await;
                    writeln!(out, "(subscription ended; query {query_id} cancelled after {printed} rows)").map_err(io)?;
                    return Ok(printed);
                }
                frame = subscription.next_frame() => {
                    let frame = match frame.map_err(|error| ReplError(error.to_string()))? {
                        Some(frame) => frame,
                        // The server went away (a restart, a crash): a
                        // recovered query numbers its rows as before, so
                        // resuming after the last one shows each row once.
                        None => {
                            let next_seq = subscription.next_seq();
                            writeln!(out, "(connection lost; resuming from row {next_seq} when the server is back)").map_err(io)?;
                            if reconnect(&mut subscription, stop.as_mut()).await {
                                continue;
                            }
                            writeln!(out, "(connection closed)").map_err(io)?;
                            return Ok(printed);
                        }
                    };
                    match frame {
                        Frame::Rows { rows, ops, .. } => {
                            let mut header = columns.clone();
                            if ops.is_some() {
                                header.insert(0, "op".into());
                            }
                            let values: Vec<Vec<String>> = rows
                                .iter()
                                .enumerate()
                                .map(|(index, row)| {
                                    let mut cells: Vec<String> =
                                        columns.iter().map(|name| cell(row.get(name).unwrap_or(&Value::Null))).collect();
                                    if let Some(ops) = &ops {
                                        cells.insert(0, ops.get(index).cloned().unwrap_or_default());
                                    }
                                    cells
                                })
                                .collect();
                            printed += values.len() as u64;
                            writeln!(out, "{}", table(&header, &values)).map_err(io)?;
                            out.flush().map_err(io)?;
                        }
                        Frame::End => {
                            writeln!(out, "(query {query_id} finished: {printed} rows)").map_err(io)?;
                            return Ok(printed);
                        }
                        Frame::Error { message, .. } => {
                            let message = if message.is_empty() { "query failed".to_string() } else { message };
                            writeln!(out, "ERROR: {message}").map_err(io)?;
                            return Ok(printed);
                        }
                        _ => {}
                    }
                }
            }
        }
    }
}

/// Tries to resume every half second for up to [`RECONNECT_FOR`]; `false`
/// if the server stays away, the query is gone, or the user stops.
async fn reconnect(subscription: &mut Subscription, mut stop: std::pin::Pin<&mut impl Future<Output = ()>>) -> bool {
    let deadline = tokio::time::Instant::now() + RECONNECT_FOR;
    while tokio::time::Instant::now() < deadline {
        tokio::select! {
            _ = stop.as_mut() => return false,
            _ = tokio::time::sleep(Duration::from_millis(500)) => {}
        }
        match subscription.resume().await {
            Ok(()) => return true,
            // The server is up but has no such query.
            Err(ClientError::NotFound) => return false,
            Err(_) => {}
        }
    }
    false
}

/// How long the REPL waits for a server that went away to come back.
const RECONNECT_FOR: Duration = Duration::from_secs(30);

/// The value of `SET name = value` in `sql`, as the server accepted it.
fn set_value(sql: &str, name: &str) -> Option<String> {
    let statements = sluice_planner::parse_statements(sql).ok()?;
    statements.into_iter().find_map(|located| match located.statement {
        sluice_planner::Statement::Set { name: set, value } if set == name => Some(value),
        _ => None,
    })
}

fn column_names(columns: &Value) -> Vec<String> {
    columns
        .as_array()
        .map(|columns| columns.iter().filter_map(|column| column["name"].as_str().map(str::to_string)).collect())
        .unwrap_or_default()
}

fn cell(value: &Value) -> String {
    match value {
        Value::Null => "NULL".into(),
        Value::String(text) => text.clone(),
        other => other.to_string(),
    }
}

fn table(header: &[String], rows: &[Vec<String>]) -> String {
    let mut table = Table::new();
    table.load_preset(presets::ASCII_BORDERS_ONLY_CONDENSED);
    table.set_header(header);
    for row in rows {
        table.add_row(row);
    }
    table.to_string()
}

/// `ERROR: message`, then the line it points at with a caret, like psql.
pub fn print_error<W: Write>(sql: &str, body: &Value, out: &mut W) -> std::io::Result<()> {
    let error = &body["error"];
    let message = error["message"].as_str().unwrap_or("request failed");
    writeln!(out, "ERROR: {message}")?;
    if let (Some(line), Some(column)) = (error["line"].as_u64(), error["column"].as_u64())
        && let Some(text) = sql.lines().nth(line.saturating_sub(1) as usize)
    {
        let prefix = format!("LINE {line}: ");
        writeln!(out, "{prefix}{text}")?;
        writeln!(out, "{}^", " ".repeat(prefix.len() + column.saturating_sub(1) as usize))?;
    }
    Ok(())
}

/// The interactive loop (blocking; run outside the async runtime).
pub fn interactive(url: &str, runtime: &tokio::runtime::Runtime) -> Result<(), ReplError> {
    use rustyline::DefaultEditor;
    use rustyline::error::ReadlineError;

    let mut client = Client::new(url);
    let mut editor = DefaultEditor::new().map_err(|error| ReplError(error.to_string()))?;
    println!("sluice repl connected to {url}. End statements with ';'. \\q quits.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "sluice> " } else { "     -> " };
        match editor.readline(prompt) {
            Ok(line) => {
                let trimmed = line.trim();
                if buffer.is_empty() && matches!(trimmed, "\\q" | "quit" | "exit") {
                    return Ok(());
                }
                if trimmed.is_empty() && buffer.is_empty() {
                    continue;
                }
                buffer.push_str(&line);
                buffer.push('\n');
                if !trimmed.ends_with(';') {
                    continue;
                }
                let _ = editor.add_history_entry(buffer.trim());
                let sql = std::mem::take(&mut buffer);
                let mut stdout = std::io::stdout();
                let stop = async {
                    let _ = tokio::signal::ctrl_c().await;
                };
                if let Err(error) = runtime.block_on(client.run(&sql, &mut stdout, stop)) {
                    println!("ERROR: {error}");
                }
            }
            Err(ReadlineError::Interrupted) => buffer.clear(),
            Err(ReadlineError::Eof) => return Ok(()),
            Err(error) => return Err(ReplError(error.to_string())),
        }
    }
}
