//! `sluice repl`: a psql-like client of the HTTP/websocket API.
//!
//! Statements end with `;` and may span lines. DDL prints its status;
//! `SHOW`/`DESCRIBE` print a table; a continuous query is submitted on a
//! websocket (`/v1/subscribe`, so its subscriber sees it from the first
//! row) and its results print as they arrive, until the query ends or
//! Ctrl-C, which cancels it and returns to the prompt. Updating results can
//! instead be shown as their current table redrawn in place with a status
//! line (`\live`, on by default on a terminal). `SET name = value` is
//! remembered for the session. Errors are printed with a caret under the
//! position they point at.
//!
//! Backslash commands (`\?` lists them): `\d [name]`, `\dq`, `\timing`,
//! `\i file`, `\o [file]`, `\x`, `\live`, `\q`. The interactive loop keeps
//! its history in `~/.sluice_history` (or `$SLUICE_HISTORY`) and completes
//! keywords, stream, table and column names with Tab.
//!
//! [`Client`] is the library API the binary and the tests share; it
//! subscribes through [`crate::client`].

mod complete;
pub mod display;

use std::collections::BTreeMap;
use std::future::Future;
use std::io::Write;
use std::path::PathBuf;
use std::pin::Pin;
use std::time::{Duration, Instant};

use serde_json::{Value, json};
use sluice_planner::Statement;

use crate::client::{ClientError, Frame, Subscription};
use display::{LiveTable, cell, column_names};

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

/// How updating results are shown.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LiveMode {
    /// Redrawn in place when the output is a terminal.
    Auto,
    On,
    /// Every change printed as it arrives, with its op.
    Off,
}

/// What a backslash command asks of the loop.
#[derive(Debug, PartialEq, Eq)]
pub enum Meta {
    Continue,
    Quit,
}

/// Where a statement sits in what the user typed (1-based), so an error's
/// position can be shown in the user's text.
#[derive(Debug, Clone, Copy)]
struct Offset {
    line: u64,
    column: u64,
}

/// A session with a Sluice server.
pub struct Client {
    base_url: String,
    http: reqwest::Client,
    /// `SET` values, sent with every request.
    pub settings: BTreeMap<String, String>,
    /// `\x`.
    pub expanded: bool,
    /// `\timing`.
    pub timing: bool,
    /// `\live`.
    pub live: LiveMode,
    /// Whether the output is a terminal (for `\live` auto).
    pub terminal: bool,
    /// `\o FILE`.
    output: Option<(PathBuf, std::fs::File)>,
    /// The server's token, if it wants one.
    token: Option<String>,
}

impl Client {
    pub fn new(base_url: &str) -> Self {
        Self {
            base_url: base_url.trim_end_matches('/').to_string(),
            http: reqwest::Client::new(),
            settings: BTreeMap::new(),
            expanded: false,
            timing: false,
            live: LiveMode::Auto,
            terminal: false,
            output: None,
            token: None,
        }
    }

    /// A client presenting `token` on every request.
    pub fn with_token(mut self, token: Option<String>) -> Self {
        self.token = token;
        self
    }

    fn authorized(&self, request: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
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
        let started = Instant::now();
        let printed = self.run_statements(sql, out, stop).await?;
        if self.timing {
            writeln!(out, "Time: {:.3} ms", started.elapsed().as_secs_f64() * 1000.0).map_err(io)?;
        }
        Ok(printed)
    }

    async fn run_statements<W: Write>(
        &mut self,
        sql: &str,
        out: &mut W,
        stop: impl Future<Output = ()>,
    ) -> Result<u64, ReplError> {
        let mut stop = std::pin::pin!(stop);
        let statements = match sluice_planner::parse_statements(sql) {
            Ok(statements) if !statements.is_empty() => statements,
            // The server says what is wrong, with the position.
            _ => {
                return self
                    .post(sql, sql, Offset { line: 1, column: 1 }, out, stop.as_mut(), true)
                    .await
                    .map(|(rows, _)| rows);
            }
        };
        let single = statements.len() == 1;
        let mut printed = 0;
        for located in statements {
            // One statement is sent as typed, so positions need no shift.
            let (text, offset) = if single {
                (sql.to_string(), Offset { line: 1, column: 1 })
            } else {
                (located.text.clone(), Offset { line: located.start.line, column: located.start.column })
            };
            let continuous = matches!(&located.statement, Statement::Query { query, patterns, .. }
                if !(patterns.is_empty() && crate::engine::reads_no_relation(query)));
            // A materialized view or sink starts a query that keeps
            // running on its own: its status, not its rows.
            let creates = matches!(&located.statement, Statement::CreateView(_) | Statement::CreateSink(_));
            let (rows, ok) = if continuous {
                self.submit(&text, sql, offset, out, stop.as_mut()).await?
            } else {
                self.post(&text, sql, offset, out, stop.as_mut(), !creates).await?
            };
            printed += rows;
            if !ok {
                break;
            }
        }
        Ok(printed)
    }

    /// Runs one statement (or a request the REPL could not split) over
    /// `POST /v1/sql`. Returns the rows printed and whether it succeeded. A
    /// query it starts is followed (its rows printed) only if `follow`.
    async fn post<W: Write>(
        &mut self,
        text: &str,
        typed: &str,
        offset: Offset,
        out: &mut W,
        stop: Pin<&mut impl Future<Output = ()>>,
        follow: bool,
    ) -> Result<(u64, bool), ReplError> {
        let (ok, body) = self.request(text).await?;
        if !ok {
            print_error(typed, &shift(&body, offset), out).map_err(io)?;
            return Ok((0, false));
        }
        let results = match body.get("results") {
            Some(Value::Array(results)) => results.clone(),
            _ => vec![body],
        };
        let mut stop = stop;
        let mut printed = 0;
        for result in results {
            if let Some(query_id) = result.get("query_id").and_then(Value::as_str) {
                print_warnings(&result, out)?;
                if !follow {
                    let what: Vec<&str> = text
                        .split_whitespace()
                        .take_while(|word| !["AS", "INTO"].contains(&word.to_ascii_uppercase().as_str()))
                        .collect();
                    writeln!(out, "{} (query {query_id}, running)", what.join(" ")).map_err(io)?;
                    continue;
                }
                let path = result["subscribe"].as_str().unwrap_or_default();
                let ws_url = format!("{}{path}", self.ws_base());
                let subscription = Subscription::connect_with(&ws_url, 0, self.token.as_deref()).await.map_err(
                    |error| match error {
                        ClientError::NotFound => ReplError(format!("cannot subscribe to {ws_url}: no such query")),
                        other => ReplError(other.to_string()),
                    },
                )?;
                let columns = column_names(&result["columns"]);
                printed += self.follow(subscription, query_id, &columns, out, stop.as_mut()).await?;
            } else if let Some(rows) = result.get("rows").and_then(Value::as_array) {
                let columns = column_names(&result["columns"]);
                let values: Vec<Vec<String>> = rows
                    .iter()
                    .map(|row| row.as_array().map(|cells| cells.iter().map(cell).collect()).unwrap_or_default())
                    .collect();
                writeln!(out, "{}", display::rows(&columns, &values, self.expanded)).map_err(io)?;
                writeln!(out, "{}", display::count(values.len())).map_err(io)?;
            } else if let Some(status) = result.get("status").and_then(Value::as_str) {
                if status == "SET"
                    && let Some(name) = result.get("name").and_then(Value::as_str)
                    && let Some(value) = set_value(text, name)
                {
                    self.settings.insert(name.to_string(), value);
                }
                writeln!(out, "{status}").map_err(io)?;
            }
        }
        Ok((printed, true))
    }

    /// `POST /v1/sql`: whether it succeeded, and the body.
    async fn request(&self, sql: &str) -> Result<(bool, Value), ReplError> {
        let response = self
            .authorized(self.http.post(format!("{}/v1/sql", self.base_url)))
            .json(&json!({"sql": sql, "settings": self.settings}))
            .send()
            .await
            .map_err(|error| ReplError(format!("cannot reach {}: {error}", self.base_url)))?;
        let status = response.status();
        let body: Value = response.json().await.map_err(|error| ReplError(format!("bad response: {error}")))?;
        Ok((status.is_success(), body))
    }

    fn ws_base(&self) -> String {
        self.base_url.replacen("http", "ws", 1)
    }

    /// Submits a continuous query on a websocket and follows its results.
    /// It is kept running on the server (so the REPL can resume it after a
    /// restart) until it ends or the user stops it.
    async fn submit<W: Write>(
        &mut self,
        text: &str,
        typed: &str,
        offset: Offset,
        out: &mut W,
        stop: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<(u64, bool), ReplError> {
        let request = json!({"sql": text, "settings": self.settings, "keep_running": true});
        let mut subscription = Subscription::submit_with(&self.ws_base(), &request, self.token.as_deref())
            .await
            .map_err(|error| ReplError(error.to_string()))?;
        let first = subscription.next_json().await.map_err(|error| ReplError(error.to_string()))?;
        let Some(first) = first else {
            return Err(ReplError("the server closed the connection before the query started".into()));
        };
        if first["type"] == "error" {
            print_error(typed, &shift(&json!({"error": first}), offset), out).map_err(io)?;
            return Ok((0, false));
        }
        let query_id = first["query_id"].as_str().unwrap_or_default().to_string();
        print_warnings(&first, out)?;
        let columns = column_names(&first["columns"]);
        let printed = self.follow(subscription, &query_id, &columns, out, stop).await?;
        Ok((printed, true))
    }

    /// Prints a subscription's results until the query ends, fails, or
    /// `stop` completes (then the query is cancelled).
    async fn follow<W: Write>(
        &self,
        mut subscription: Subscription,
        query_id: &str,
        columns: &[String],
        out: &mut W,
        mut stop: Pin<&mut impl Future<Output = ()>>,
    ) -> Result<u64, ReplError> {
        writeln!(out, "query {query_id} running; results appear as they are emitted (Ctrl-C to stop)").map_err(io)?;
        out.flush().map_err(io)?;
        let live_mode = self.live == LiveMode::On || (self.live == LiveMode::Auto && self.terminal);
        let mut live: Option<LiveTable> = None;
        let mut status = Status::default();
        let mut printed = 0u64;
        let mut ticks = tokio::time::interval(Duration::from_millis(500));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = stop.as_mut() => {
                    subscription.close().await;
                    let _ = self.authorized(self.http.delete(format!("{}/v1/queries/{query_id}", self.base_url))).send().await;
                    writeln!(out, "(subscription ended; query {query_id} cancelled after {printed} rows)").map_err(io)?;
                    return Ok(printed);
                }
                _ = ticks.tick(), if live.is_some() => {
                    status.sample(self.late_rows(query_id).await);
                    if let Some(table) = &mut live {
                        write!(out, "{}", table.redraw(columns, &status.line(query_id), self.expanded)).map_err(io)?;
                        out.flush().map_err(io)?;
                    }
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
                            printed += rows.len() as u64;
                            status.rows += rows.len() as u64;
                            let values: Vec<Vec<String>> = rows
                                .iter()
                                .map(|row| columns.iter().map(|name| cell(row.get(name).unwrap_or(&Value::Null))).collect())
                                .collect();
                            match (&ops, live_mode) {
                                (Some(ops), true) => {
                                    let table = live.get_or_insert_with(LiveTable::default);
                                    for (index, row) in values.into_iter().enumerate() {
                                        table.apply(ops.get(index).map_or("+", String::as_str), row);
                                    }
                                }
                                _ => {
                                    let mut header = columns.to_vec();
                                    let mut values = values;
                                    if let Some(ops) = &ops {
                                        header.insert(0, "op".into());
                                        for (index, row) in values.iter_mut().enumerate() {
                                            row.insert(0, ops.get(index).cloned().unwrap_or_default());
                                        }
                                    }
                                    writeln!(out, "{}", display::rows(&header, &values, self.expanded)).map_err(io)?;
                                    out.flush().map_err(io)?;
                                }
                            }
                        }
                        Frame::Progress { watermark } | Frame::Heartbeat { watermark, .. } if !watermark.is_null() => {
                            status.watermark = Some(watermark_text(&watermark));
                        }
                        Frame::Gap { from_seq, first_available } => {
                            writeln!(out, "WARNING: rows {from_seq} to {} are no longer retained by the server; showing rows from {first_available}", first_available.saturating_sub(1)).map_err(io)?;
                        }
                        Frame::End => {
                            if let Some(table) = &mut live {
                                write!(out, "{}", table.redraw(columns, &status.line(query_id), self.expanded)).map_err(io)?;
                            }
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

    /// The query's late rows, for the live status line.
    async fn late_rows(&self, query_id: &str) -> Option<u64> {
        let response =
            self.authorized(self.http.get(format!("{}/v1/queries/{query_id}", self.base_url))).send().await.ok()?;
        let report: Value = response.json().await.ok()?;
        report["metrics"]["late_rows_dropped"].as_u64()
    }

    /// Runs a backslash command.
    pub async fn meta<W: Write>(&mut self, line: &str, out: &mut W) -> Result<Meta, ReplError> {
        let mut words = line.split_whitespace();
        let command = words.next().unwrap_or_default();
        let argument = words.next();
        match command {
            "\\q" => return Ok(Meta::Quit),
            "\\?" => {
                for (name, help) in complete::COMMANDS {
                    writeln!(out, "  {name:<8} {help}").map_err(io)?;
                }
                writeln!(out, "  Statements end with ';'. Ctrl-C stops a running query; Ctrl-D quits.").map_err(io)?;
            }
            "\\timing" => {
                self.timing = toggle(self.timing, argument);
                writeln!(out, "Timing is {}.", on_off(self.timing)).map_err(io)?;
            }
            "\\x" => {
                self.expanded = toggle(self.expanded, argument);
                writeln!(out, "Expanded display is {}.", on_off(self.expanded)).map_err(io)?;
            }
            "\\live" => {
                self.live = match argument {
                    Some("on") => LiveMode::On,
                    Some("off") => LiveMode::Off,
                    Some("auto") => LiveMode::Auto,
                    None if self.live == LiveMode::Off => LiveMode::On,
                    None => LiveMode::Off,
                    Some(other) => {
                        writeln!(out, "\\live takes on, off or auto, not {other:?}").map_err(io)?;
                        return Ok(Meta::Continue);
                    }
                };
                let mode = match self.live {
                    LiveMode::Auto => "auto (on for updating results on a terminal)",
                    LiveMode::On => "on",
                    LiveMode::Off => "off",
                };
                writeln!(out, "Live display is {mode}.").map_err(io)?;
            }
            "\\d" => match argument {
                Some(name) => {
                    self.run(&format!("DESCRIBE {name};"), out, std::future::pending()).await?;
                }
                None => self.list_relations(out).await?,
            },
            "\\dq" => self.list_queries(out).await?,
            "\\i" => match argument {
                Some(path) => match std::fs::read_to_string(path) {
                    Ok(sql) => {
                        self.run(&sql, out, ctrl_c()).await?;
                    }
                    Err(error) => writeln!(out, "ERROR: cannot read {path}: {error}").map_err(io)?,
                },
                None => writeln!(out, "\\i needs a file name").map_err(io)?,
            },
            "\\o" => match argument {
                Some(path) => match std::fs::OpenOptions::new().create(true).append(true).open(path) {
                    Ok(file) => {
                        self.output = Some((PathBuf::from(path), file));
                        writeln!(out, "Results go to {path}.").map_err(io)?;
                    }
                    Err(error) => writeln!(out, "ERROR: cannot open {path}: {error}").map_err(io)?,
                },
                None => {
                    self.output = None;
                    writeln!(out, "Results go to the terminal.").map_err(io)?;
                }
            },
            other => writeln!(out, "invalid command {other}; \\? lists the commands").map_err(io)?,
        }
        Ok(Meta::Continue)
    }

    /// `\d`: streams and tables.
    async fn list_relations<W: Write>(&self, out: &mut W) -> Result<(), ReplError> {
        let (ok, body) = self.request("SHOW STREAMS; SHOW TABLES;").await?;
        if !ok {
            return print_error("", &body, out).map_err(io);
        }
        let results = body["results"].as_array().cloned().unwrap_or_default();
        let cells = |result: Option<&Value>| -> Vec<Vec<String>> {
            result.and_then(|result| result["rows"].as_array()).map_or_else(Vec::new, |rows| {
                rows.iter()
                    .map(|row| row.as_array().map(|row| row.iter().map(cell).collect()).unwrap_or_default())
                    .collect()
            })
        };
        let mut rows: Vec<Vec<String>> = cells(results.first())
            .into_iter()
            .map(|stream| {
                let get = |index: usize| stream.get(index).cloned().unwrap_or_default();
                vec![get(0), "stream".into(), get(1), get(2), get(3)]
            })
            .collect();
        rows.extend(cells(results.get(1)).into_iter().map(|table| {
            let get = |index: usize| table.get(index).cloned().unwrap_or_default();
            vec![get(0), "table".into(), "static".into(), String::new(), format!("{} rows", get(1))]
        }));
        rows.sort();
        let header: Vec<String> = ["name", "type", "connector", "watermark", "status"].map(String::from).to_vec();
        writeln!(out, "List of relations\n{}", display::rows(&header, &rows, self.expanded)).map_err(io)?;
        writeln!(out, "{}", display::count(rows.len())).map_err(io)
    }

    /// `\dq`: running queries with their state, rates and watermark.
    async fn list_queries<W: Write>(&self, out: &mut W) -> Result<(), ReplError> {
        let response = self
            .authorized(self.http.get(format!("{}/v1/queries", self.base_url)))
            .send()
            .await
            .map_err(|error| ReplError(format!("cannot reach {}: {error}", self.base_url)))?;
        let queries: Vec<Value> = response.json().await.map_err(|error| ReplError(format!("bad response: {error}")))?;
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |since| since.as_millis() as u64);
        let rows: Vec<Vec<String>> = queries
            .iter()
            .map(|query| {
                let metrics = &query["metrics"];
                let seconds = now_ms.saturating_sub(query["started_at_ms"].as_u64().unwrap_or(now_ms)) as f64 / 1000.0;
                let rate = |count: &Value| match count.as_u64() {
                    Some(count) if seconds > 0.0 => format!("{:.0}", count as f64 / seconds),
                    _ => "-".into(),
                };
                let sql: String =
                    query["sql"].as_str().unwrap_or_default().split_whitespace().collect::<Vec<_>>().join(" ");
                let sql = if sql.chars().count() > 60 {
                    format!("{}...", sql.chars().take(57).collect::<String>())
                } else {
                    sql
                };
                vec![
                    cell(&query["query_id"]),
                    cell(&query["status"]),
                    cell(&metrics["rows_in"]),
                    rate(&metrics["rows_in"]),
                    cell(&metrics["rows_out"]),
                    rate(&metrics["rows_out"]),
                    watermark_text(&metrics["watermark"]),
                    cell(&metrics["late_rows_dropped"]),
                    sql,
                ]
            })
            .collect();
        let header: Vec<String> = ["id", "status", "rows_in", "in/s", "rows_out", "out/s", "watermark", "late", "sql"]
            .map(String::from)
            .to_vec();
        writeln!(out, "{}", display::rows(&header, &rows, self.expanded)).map_err(io)?;
        writeln!(out, "{}", display::count(rows.len())).map_err(io)
    }

    /// Stream, table and column names, for completion.
    async fn names(&self) -> complete::Names {
        let mut names = complete::Names::default();
        let streams: Vec<Value> =
            match self.authorized(self.http.get(format!("{}/v1/streams", self.base_url))).send().await {
                Ok(response) => response.json().await.unwrap_or_default(),
                Err(_) => return names,
            };
        for stream in &streams {
            names.relations.extend(stream["name"].as_str().map(str::to_string));
            names.columns.extend(column_names(&stream["columns"]));
        }
        if let Ok((true, tables)) = self.request("SHOW TABLES;").await {
            for table in tables["rows"].as_array().into_iter().flatten() {
                let Some(name) = table[0].as_str() else { continue };
                names.relations.push(name.to_string());
                if let Ok((true, described)) = self.request(&format!("DESCRIBE {name};")).await {
                    for column in described["rows"].as_array().into_iter().flatten() {
                        names.columns.extend(column[0].as_str().map(str::to_string));
                    }
                }
            }
        }
        names.columns.sort();
        names.columns.dedup();
        names
    }
}

/// What the live display's status line shows.
#[derive(Debug, Default)]
struct Status {
    watermark: Option<String>,
    /// Rows received in all, and at the last sample.
    rows: u64,
    sampled_rows: u64,
    sampled_at: Option<Instant>,
    rate: f64,
    late: Option<u64>,
}

impl Status {
    fn sample(&mut self, late: Option<u64>) {
        let now = Instant::now();
        if let Some(at) = self.sampled_at {
            let seconds = now.duration_since(at).as_secs_f64();
            if seconds > 0.0 {
                self.rate = (self.rows - self.sampled_rows) as f64 / seconds;
            }
        }
        self.sampled_at = Some(now);
        self.sampled_rows = self.rows;
        if late.is_some() {
            self.late = late;
        }
    }

    fn line(&self, query_id: &str) -> String {
        format!(
            "-- {query_id} | watermark {} | {:.0} changes/s | late rows {} | Ctrl-C to stop",
            self.watermark.as_deref().unwrap_or("none yet"),
            self.rate,
            self.late.map_or("-".to_string(), |late| late.to_string())
        )
    }
}

/// A watermark as the REPL shows it: the largest timestamp means every
/// input ended.
fn watermark_text(watermark: &Value) -> String {
    match watermark.as_str() {
        Some(text) if text.starts_with("2262-04-11T23:47:16") => "end of input".into(),
        Some(text) => text.to_string(),
        None => "-".into(),
    }
}

fn toggle(current: bool, argument: Option<&str>) -> bool {
    match argument {
        Some("on") => true,
        Some("off") => false,
        _ => !current,
    }
}

fn on_off(value: bool) -> &'static str {
    if value { "on" } else { "off" }
}

fn print_warnings<W: Write>(result: &Value, out: &mut W) -> Result<(), ReplError> {
    for warning in result.get("warnings").and_then(Value::as_array).into_iter().flatten() {
        writeln!(out, "WARNING: {}", warning.as_str().unwrap_or_default()).map_err(io)?;
    }
    Ok(())
}

/// An error body with its position moved from the statement sent into the
/// text the user typed.
fn shift(body: &Value, offset: Offset) -> Value {
    let mut body = body.clone();
    let error = &mut body["error"];
    if let (Some(line), Some(column)) = (error["line"].as_u64(), error["column"].as_u64()) {
        let column = if line == 1 { column + offset.column - 1 } else { column };
        error["line"] = json!(line + offset.line - 1);
        error["column"] = json!(column);
    }
    body
}

/// Tries to resume every half second for up to [`RECONNECT_FOR`]; `false`
/// if the server stays away, the query is gone, or the user stops.
async fn reconnect(subscription: &mut Subscription, mut stop: Pin<&mut impl Future<Output = ()>>) -> bool {
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
        Statement::Set { name: set, value } if set == name => Some(value),
        _ => None,
    })
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

/// Ctrl-C (SIGINT) as the REPL counts it: installed once, so a Ctrl-C that
/// arrives before a statement's stop is being waited for still stops it
/// (and never kills the REPL), and one from an earlier statement does not.
struct Interrupts {
    count: std::sync::atomic::AtomicU64,
    notify: tokio::sync::Notify,
}

static INTERRUPTS: std::sync::OnceLock<std::sync::Arc<Interrupts>> = std::sync::OnceLock::new();

impl Interrupts {
    async fn install() -> std::io::Result<()> {
        let mut signals = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::interrupt())?;
        let interrupts = INTERRUPTS
            .get_or_init(|| {
                std::sync::Arc::new(Interrupts {
                    count: std::sync::atomic::AtomicU64::new(0),
                    notify: tokio::sync::Notify::new(),
                })
            })
            .clone();
        tokio::spawn(async move {
            while signals.recv().await.is_some() {
                interrupts.count.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                interrupts.notify.notify_waiters();
            }
        });
        Ok(())
    }
}

/// Completes at the next Ctrl-C from now (through [`Interrupts`] once
/// installed, else tokio's own listener).
fn ctrl_c() -> impl Future<Output = ()> {
    let installed = INTERRUPTS.get().cloned();
    let seen = installed.as_ref().map(|interrupts| interrupts.count.load(std::sync::atomic::Ordering::SeqCst));
    async move {
        match (installed, seen) {
            (Some(interrupts), Some(seen)) => loop {
                let notified = interrupts.notify.notified();
                if interrupts.count.load(std::sync::atomic::Ordering::SeqCst) > seen {
                    return;
                }
                notified.await;
            },
            _ => {
                let _ = tokio::signal::ctrl_c().await;
            }
        }
    }
}

/// Where the history is kept: `$SLUICE_HISTORY`, else `~/.sluice_history`.
fn history_path() -> Option<PathBuf> {
    if let Some(path) = std::env::var_os("SLUICE_HISTORY") {
        return Some(PathBuf::from(path));
    }
    std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".sluice_history"))
}

/// The interactive loop (blocking; run outside the async runtime).
pub fn interactive(url: &str, token: Option<String>, runtime: &tokio::runtime::Runtime) -> Result<(), ReplError> {
    use std::io::IsTerminal;
    use std::sync::{Arc, Mutex};

    use rustyline::error::ReadlineError;
    use rustyline::history::FileHistory;
    use rustyline::{CompletionType, Config, Editor};

    if url.starts_with("https://") {
        return Err(ReplError(format!(
            "the REPL speaks plain HTTP only; against a TLS server ({url}) use psql \"sslmode=require\", or run the REPL on the server's machine against a plain loopback address"
        )));
    }
    // From now on Ctrl-C outside the line editor stops a statement, never
    // the REPL, however early it comes.
    runtime.block_on(Interrupts::install()).map_err(|error| ReplError(format!("cannot catch Ctrl-C: {error}")))?;
    let mut client = Client::new(url).with_token(token);
    client.terminal = std::io::stdout().is_terminal();
    let names = Arc::new(Mutex::new(runtime.block_on(client.names())));
    let config = Config::builder()
        .completion_type(CompletionType::List)
        .max_history_size(5000)
        .map_err(|error| ReplError(error.to_string()))?
        .build();
    let mut editor: Editor<complete::SqlHelper, FileHistory> =
        Editor::with_config(config).map_err(|error| ReplError(error.to_string()))?;
    editor.set_helper(Some(complete::SqlHelper { names: names.clone() }));
    let history = history_path();
    if let Some(path) = &history {
        let _ = editor.load_history(path);
    }
    println!("sluice repl connected to {url}. End statements with ';'. \\? for help, \\q quits.");
    let mut buffer = String::new();
    loop {
        let prompt = if buffer.is_empty() { "sluice> " } else { "     -> " };
        let line = match editor.readline(prompt) {
            Ok(line) => line,
            Err(ReadlineError::Interrupted) => {
                buffer.clear();
                continue;
            }
            Err(ReadlineError::Eof) => {
                println!();
                return Ok(());
            }
            Err(error) => return Err(ReplError(error.to_string())),
        };
        let trimmed = line.trim();
        if buffer.is_empty() && matches!(trimmed, "quit" | "exit") {
            return Ok(());
        }
        if buffer.is_empty() && trimmed.starts_with('\\') {
            let _ = editor.add_history_entry(trimmed);
            if let Some(path) = &history {
                let _ = editor.save_history(path);
            }
            let mut stdout = std::io::stdout();
            match runtime.block_on(client.meta(trimmed, &mut stdout)) {
                Ok(Meta::Quit) => return Ok(()),
                Ok(Meta::Continue) => {}
                Err(error) => println!("ERROR: {error}"),
            }
            continue;
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
        if let Some(path) = &history {
            let _ = editor.save_history(path);
        }
        let sql = std::mem::take(&mut buffer);
        let stop = ctrl_c();
        let result = match client.output.take() {
            Some((path, mut file)) => {
                let result = runtime.block_on(client.run(&sql, &mut file, stop));
                client.output = Some((path, file));
                result
            }
            None => runtime.block_on(client.run(&sql, &mut std::io::stdout(), stop)),
        };
        if let Err(error) = result {
            println!("ERROR: {error}");
        }
        // DDL may have changed what there is to complete.
        let fresh = runtime.block_on(client.names());
        if let Ok(mut names) = names.lock() {
            *names = fresh;
        }
    }
}
