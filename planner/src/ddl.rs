//! `CREATE STREAM` (and Flink-style `CREATE TABLE ... WATERMARK`): from the
//! parsed statement to the [`SourceSpec`] the runtime reads. `CREATE TABLE`
//! without a WATERMARK declares a static table ([`static_table`]).
//!
//! Connector options:
//!
//! | connector   | options |
//! |-------------|---------|
//! | `socket`    | `host` (default `127.0.0.1`), `port`, `format`, `delimiter` |
//! | `file`      | `path`, `format` (from the extension by default), `header`, `delimiter`, `batch_rows` |
//! | `generator` | `kind` (`weblog`), `seed`, `rate` (rows/s), `rows`, `realtime`, `start`, `hosts` |
//! | `nexmark`   | `table` (`person`, `auction`, `bid`; default the stream's name), `seed`, `event_rate` (events/s), `events`, `realtime`, `start` |
//! | `http`      | none: events are POSTed to `/v1/streams/{name}/events` |
//!
//! `format` is `text` (split on `delimiter`, default a space), `csv`
//! (default delimiter `,`) or `json` (one object per line).

use std::path::PathBuf;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, TimeUnit};
use datafusion::sql::sqlparser::ast::{self, ColumnDef, ColumnOption, Expr, Ident};
use datafusion::sql::sqlparser::tokenizer::Location;
use sluice_runtime::source::generator::{Burst, DEFAULT_START_NANOS, GeneratorKind, GeneratorSpec};
use sluice_runtime::source::nexmark::{NexmarkSpec, NexmarkTable};
use sluice_runtime::source::{ConnectorSpec, EventTimeSpec, Format, HttpIngest, SourceSpec, SourceStatus};
use sluice_runtime::table::StaticTable;

use crate::error::{PlanError, Result};
use crate::names::ident_name;
use crate::watermark::event_time;

#[derive(Debug, Clone)]
pub struct CreateStream {
    pub name: String,
    pub name_location: Location,
    /// `CREATE STREAM` (true) or `CREATE TABLE` (false).
    pub is_stream: bool,
    pub if_not_exists: bool,
    pub columns: Vec<ColumnDef>,
    pub watermark: Option<(Ident, Expr)>,
    pub primary_key: Vec<Ident>,
    /// `name AS PROCTIME()` and the position among the columns.
    pub proctime: Option<(Ident, usize)>,
    /// `name TYPE METADATA FROM 'what'`: the column (index into
    /// `columns`), what fills it, where that is.
    pub metadata: Vec<(usize, String, Location)>,
    /// `(key, value, where the key is)`, keys lower-cased.
    pub options: Vec<(String, String, Location)>,
    pub start: Location,
}

/// Builds the runtime's description of the stream `create` declares.
pub fn stream_source_spec(create: &CreateStream) -> Result<SourceSpec> {
    if create.is_static_table() {
        return Err(PlanError::invalid("internal: a static table is not a stream").at_location(create.start));
    }
    let mut fields = column_fields(create)?;
    let mut proctime_column = None;
    if let Some((name, position)) = &create.proctime {
        let field = Field::new(ident_name(name), DataType::Timestamp(TimeUnit::Nanosecond, None), false);
        if fields.iter().any(|existing| existing.name() == field.name()) {
            return Err(PlanError::invalid(format!("column {:?} is declared twice", field.name())).at(name.span));
        }
        fields.insert(*position, field);
        proctime_column = Some(*position);
    }
    let schema = Arc::new(Schema::new(fields));
    let event_time = match (&create.watermark, proctime_column) {
        (Some((column, expr)), _) => Some(event_time(&schema, column, expr)?),
        // Without a watermark, processing time drives the stream's time.
        (None, Some(column)) => Some(EventTimeSpec { column, delay: 0 }),
        (None, None) => None,
    };
    let options = Options::new(&create.options);
    let decoded_schema = Arc::new(decoded_schema(&schema, proctime_column));
    let is_kafka = options.get("connector").is_some_and(|(connector, _)| connector.eq_ignore_ascii_case("kafka"));
    let connector = if is_kafka {
        kafka_connector(&options, create, &schema, proctime_column)?
    } else {
        if let Some((_, _, location)) = create.metadata.first() {
            return Err(PlanError::invalid("METADATA columns are for the kafka connector").at_location(*location));
        }
        connector(&options, &decoded_schema, &create.name)?
    };
    options.reject_unused()?;
    let status = match &connector {
        ConnectorSpec::Socket { .. } => "idle (connects when a query reads it)",
        _ => "ready",
    };
    let primary_key = primary_key(create, &schema)?.iter().map(|index| schema.field(*index).name().clone()).collect();
    Ok(SourceSpec {
        stream: create.name.clone(),
        primary_key,
        schema,
        event_time,
        proctime_column,
        connector,
        columns: None,
        status: Arc::new(SourceStatus::new(status)),
        sample: None,
        shed: false,
    })
}

impl CreateStream {
    /// `CREATE TABLE` without a WATERMARK: rows from a file or `INSERT INTO`,
    /// not a stream.
    pub fn is_static_table(&self) -> bool {
        !self.is_stream && self.watermark.is_none()
    }
}

/// The declared columns, checked.
fn column_fields(create: &CreateStream) -> Result<Vec<Field>> {
    let what = if create.is_static_table() { "a table" } else { "a stream" };
    if create.columns.is_empty() {
        return Err(PlanError::invalid(format!("{what} needs at least one column")).at_location(create.name_location));
    }
    let mut fields = Vec::new();
    for column in &create.columns {
        let name = ident_name(&column.name);
        if fields.iter().any(|field: &Field| field.name() == &name) {
            return Err(PlanError::invalid(format!("column {name:?} is declared twice")).at(column.name.span));
        }
        let data_type = arrow_type(&column.data_type).map_err(|error| error.at(column.name.span))?;
        let not_null = column.options.iter().any(|option| matches!(option.option, ColumnOption::NotNull));
        fields.push(Field::new(name, data_type, !not_null));
    }
    Ok(fields)
}

/// Indices of the `PRIMARY KEY` columns.
fn primary_key(create: &CreateStream, schema: &Schema) -> Result<Vec<usize>> {
    create
        .primary_key
        .iter()
        .map(|ident| {
            let name = ident_name(ident);
            schema
                .index_of(&name)
                .map_err(|_| PlanError::unknown(format!("PRIMARY KEY names unknown column {name:?}")).at(ident.span))
        })
        .collect()
}

/// A static table declared by `create`, and the file to load into it, if any.
pub fn static_table(create: &CreateStream) -> Result<(StaticTable, Option<(PathBuf, Format)>)> {
    if let Some((name, _)) = &create.proctime {
        return Err(PlanError::invalid(
            "a table without a WATERMARK is static and has no PROCTIME() column; declare a stream for rows that arrive",
        )
        .at(name.span));
    }
    let schema = Arc::new(Schema::new(column_fields(create)?));
    let primary_key = primary_key(create, &schema)?;
    let options = Options::new(&create.options);
    let file = match options.get("connector") {
        None => None,
        Some((connector, _)) if connector.eq_ignore_ascii_case("file") => {
            let (path, _) = options.get("path").ok_or_else(|| {
                PlanError::invalid("the file connector needs a path").at_location(create.name_location)
            })?;
            Some((PathBuf::from(path), format(&options, Some(path))?))
        }
        Some((connector, location)) => {
            return Err(PlanError::invalid(format!(
                "a static table reads connector 'file' (or none, for INSERT INTO), not {connector:?}; add a WATERMARK to declare a stream"
            ))
            .at_location(location));
        }
    };
    options.reject_unused()?;
    Ok((StaticTable::new(create.name.clone(), schema, primary_key), file))
}

/// What connectors decode: the columns without the processing-time one.
fn decoded_schema(schema: &Schema, proctime_column: Option<usize>) -> Schema {
    match proctime_column {
        Some(column) => {
            let indices: Vec<usize> = (0..schema.fields().len()).filter(|index| *index != column).collect();
            schema.project(&indices).unwrap_or_else(|_| schema.clone())
        }
        None => schema.clone(),
    }
}

/// SQL column types to Arrow types.
pub fn arrow_type(data_type: &ast::DataType) -> Result<DataType> {
    use ast::DataType as Sql;
    Ok(match data_type {
        Sql::Boolean | Sql::Bool => DataType::Boolean,
        Sql::TinyInt(_) => DataType::Int8,
        Sql::SmallInt(_) | Sql::Int2(_) => DataType::Int16,
        Sql::Int(_) | Sql::Integer(_) | Sql::Int4(_) => DataType::Int32,
        Sql::BigInt(_) | Sql::Int8(_) | Sql::Int64 => DataType::Int64,
        Sql::Real | Sql::Float4 | Sql::Float(_) => DataType::Float32,
        Sql::Double(_) | Sql::DoublePrecision | Sql::Float8 | Sql::Float64 => DataType::Float64,
        Sql::Varchar(_) | Sql::Text | Sql::String(_) | Sql::Char(_) | Sql::CharVarying(_) | Sql::Character(_) => {
            DataType::Utf8
        }
        Sql::Date => DataType::Date32,
        Sql::Timestamp(_, timezone) => match timezone {
            ast::TimezoneInfo::WithTimeZone | ast::TimezoneInfo::Tz => {
                DataType::Timestamp(TimeUnit::Nanosecond, Some("+00:00".into()))
            }
            _ => DataType::Timestamp(TimeUnit::Nanosecond, None),
        },
        Sql::Decimal(info) | Sql::Numeric(info) => match info {
            ast::ExactNumberInfo::PrecisionAndScale(precision, scale) => decimal(*precision, *scale)?,
            ast::ExactNumberInfo::Precision(precision) => decimal(*precision, 0)?,
            ast::ExactNumberInfo::None => DataType::Decimal128(38, 10),
        },
        Sql::Array(element) => {
            let element = match element {
                ast::ArrayElemTypeDef::AngleBracket(element)
                | ast::ArrayElemTypeDef::SquareBracket(element, _)
                | ast::ArrayElemTypeDef::Parenthesis(element) => arrow_type(element)?,
                ast::ArrayElemTypeDef::None => {
                    return Err(PlanError::invalid("ARRAY needs an element type, e.g. ARRAY<VARCHAR>"));
                }
            };
            DataType::List(Arc::new(Field::new("item", element, true)))
        }
        other => {
            return Err(PlanError::unsupported(format!("column type {other} is not supported")));
        }
    })
}

/// `DECIMAL(precision, scale)`, checked: the precision is 1 to 38 (a
/// 128-bit decimal), the scale 0 to the precision.
fn decimal(precision: u64, scale: i64) -> Result<DataType> {
    let max = datafusion::arrow::datatypes::DECIMAL128_MAX_PRECISION;
    let precision = u8::try_from(precision)
        .ok()
        .filter(|precision| (1..=max).contains(precision))
        .ok_or_else(|| PlanError::invalid(format!("the DECIMAL precision must be 1 to {max}, not {precision}")))?;
    let scale = i8::try_from(scale).ok().filter(|scale| (0..=precision as i8).contains(scale)).ok_or_else(|| {
        PlanError::invalid(format!("the DECIMAL scale must be 0 to its precision {precision}, not {scale}"))
    })?;
    Ok(DataType::Decimal128(precision, scale))
}

/// Connector options, tracking which were used so unknown ones are errors.
struct Options<'a> {
    options: &'a [(String, String, Location)],
    used: std::cell::RefCell<Vec<bool>>,
}

impl<'a> Options<'a> {
    fn new(options: &'a [(String, String, Location)]) -> Self {
        Self { options, used: std::cell::RefCell::new(vec![false; options.len()]) }
    }

    fn get(&self, key: &str) -> Option<(&'a str, Location)> {
        let index = self.options.iter().position(|(name, _, _)| name == key)?;
        self.used.borrow_mut()[index] = true;
        let (_, value, location) = &self.options[index];
        Some((value.as_str(), *location))
    }

    fn parse<T: std::str::FromStr>(&self, key: &str, what: &str) -> Result<Option<T>> {
        match self.get(key) {
            None => Ok(None),
            Some((value, location)) => value.trim().parse().map(Some).map_err(|_| {
                PlanError::invalid(format!("option {key} must be {what}, not {value:?}")).at_location(location)
            }),
        }
    }

    fn boolean(&self, key: &str) -> Result<Option<bool>> {
        match self.get(key) {
            None => Ok(None),
            Some((value, location)) => match value.to_ascii_lowercase().as_str() {
                "true" | "yes" | "1" => Ok(Some(true)),
                "false" | "no" | "0" => Ok(Some(false)),
                _ => Err(PlanError::invalid(format!("option {key} must be true or false, not {value:?}"))
                    .at_location(location)),
            },
        }
    }

    /// The `start` option of the generators: the first row's event time
    /// (a timestamp), [`DEFAULT_START_NANOS`] when not given.
    fn start(&self) -> Result<i64> {
        match self.get("start") {
            None => Ok(DEFAULT_START_NANOS),
            Some((start, location)) => parse_timestamp(start).ok_or_else(|| {
                PlanError::invalid(format!("option start must be a timestamp, not {start:?}")).at_location(location)
            }),
        }
    }

    /// Every option whose key starts with `prefix`, without it.
    fn prefixed(&self, prefix: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        for (index, (key, value, _)) in self.options.iter().enumerate() {
            if let Some(rest) = key.strip_prefix(prefix) {
                self.used.borrow_mut()[index] = true;
                found.push((rest.to_string(), value.clone()));
            }
        }
        found
    }

    fn reject_unused(&self) -> Result<()> {
        let used = self.used.borrow();
        match self.options.iter().zip(used.iter()).find(|(_, used)| !**used) {
            Some(((key, _, location), _)) => {
                Err(PlanError::invalid(format!("unknown option {key:?} for this connector")).at_location(*location))
            }
            None => Ok(()),
        }
    }
}

fn connector(options: &Options, schema: &Arc<Schema>, stream: &str) -> Result<ConnectorSpec> {
    let Some((connector, location)) = options.get("connector") else {
        return Err(PlanError::invalid(
            "a stream needs WITH (connector = ...): one of 'kafka', 'socket', 'file', 'generator', 'nexmark', 'http'",
        ));
    };
    match connector.to_ascii_lowercase().as_str() {
        "socket" => {
            let host = options.get("host").map_or("127.0.0.1", |(host, _)| host).to_string();
            let port = options
                .parse::<u16>("port", "a TCP port number")?
                .ok_or_else(|| PlanError::invalid("the socket connector needs a port").at_location(location))?;
            Ok(ConnectorSpec::Socket { host, port, format: format(options, None)? })
        }
        "file" => {
            let (path, _) = options
                .get("path")
                .ok_or_else(|| PlanError::invalid("the file connector needs a path").at_location(location))?;
            let batch_rows = options.parse::<usize>("batch_rows", "a positive number")?.unwrap_or(8192).max(1);
            Ok(ConnectorSpec::File { path: PathBuf::from(path), format: format(options, Some(path))?, batch_rows })
        }
        "generator" => {
            let kind = match options.get("kind") {
                None => GeneratorKind::Weblog,
                Some((kind, _)) if kind.eq_ignore_ascii_case("weblog") => GeneratorKind::Weblog,
                Some((kind, location)) => {
                    return Err(PlanError::invalid(format!("unknown generator kind {kind:?}; try 'weblog'"))
                        .at_location(location));
                }
            };
            let start = options.start()?;
            let spec = GeneratorSpec {
                kind,
                seed: options.parse("seed", "a whole number")?.unwrap_or(0),
                rate: options.parse("rate", "a number of rows per second")?.unwrap_or(100.0),
                rows: options.parse("rows", "a whole number")?,
                realtime: options.boolean("realtime")?.unwrap_or(true),
                start,
                hosts: options.parse("hosts", "a whole number of distinct IPs")?.unwrap_or(40),
                burst: match options.parse::<f64>("burst_factor", "a number (times the rate)")? {
                    None => None,
                    Some(factor) => Some(Burst {
                        factor,
                        after: options.parse::<f64>("burst_after", "a number of seconds")?.unwrap_or(0.0).max(0.0),
                        seconds: options.parse::<f64>("burst_seconds", "a number of seconds")?.unwrap_or(30.0).max(0.0),
                    }),
                },
            };
            spec.validate(schema).map_err(|error| PlanError::invalid(error.to_string()).at_location(location))?;
            Ok(ConnectorSpec::Generator(spec))
        }
        "nexmark" => {
            let table = match options.get("table") {
                Some((table, location)) => NexmarkTable::parse(table).ok_or_else(|| {
                    PlanError::invalid(format!("unknown nexmark table {table:?}: use 'person', 'auction' or 'bid'"))
                        .at_location(location)
                })?,
                None => NexmarkTable::parse(stream).ok_or_else(|| {
                    PlanError::invalid("a nexmark stream needs table = 'person', 'auction' or 'bid'")
                        .at_location(location)
                })?,
            };
            let start = options.start()?;
            let spec = NexmarkSpec {
                table,
                seed: options.parse("seed", "a whole number")?.unwrap_or(0),
                event_rate: options.parse("event_rate", "a number of events per second")?.unwrap_or(10_000.0),
                events: options.parse("events", "a whole number")?,
                realtime: options.boolean("realtime")?.unwrap_or(true),
                start,
            };
            spec.validate(schema).map_err(|error| PlanError::invalid(error.to_string()).at_location(location))?;
            Ok(ConnectorSpec::Nexmark(spec))
        }
        "http" => {
            let segment_bytes = options
                .parse::<u64>("segment_bytes", "a positive number of bytes")?
                .unwrap_or(sluice_runtime::source::http::SEGMENT_BYTES);
            if segment_bytes == 0 {
                let (_, location) = options.get("segment_bytes").unwrap_or(("", location));
                return Err(PlanError::invalid("segment_bytes must be at least 1").at_location(location));
            }
            let retention_bytes = options.parse::<u64>("retention_bytes", "a number of bytes")?.unwrap_or(0);
            Ok(ConnectorSpec::Http(Arc::new(HttpIngest::new(segment_bytes, retention_bytes))))
        }
        other => Err(PlanError::invalid(format!(
            "unknown connector {other:?} for stream {stream}: use 'kafka', 'socket', 'file', 'generator', 'nexmark' or 'http'"
        ))
        .at_location(location)),
    }
}

/// `connector = 'kafka'`: brokers, topic, format ('json', 'csv', 'text',
/// 'raw'), start ('earliest', 'latest' or a timestamp), group, partitions
/// (else looked up when the stream is declared), batch_rows and
/// `properties.*` for librdkafka.
fn kafka_connector(
    options: &Options,
    create: &CreateStream,
    schema: &Arc<Schema>,
    proctime_column: Option<usize>,
) -> Result<ConnectorSpec> {
    use sluice_runtime::source::kafka::{KafkaFormat, KafkaMetadata, KafkaSpec, KafkaStart};
    let at = create.name_location;
    let (brokers, _) = options
        .get("brokers")
        .ok_or_else(|| PlanError::invalid("the kafka connector needs brokers = 'host:port,...'").at_location(at))?;
    let (topic, _) = options
        .get("topic")
        .ok_or_else(|| PlanError::invalid("the kafka connector needs topic = '...'").at_location(at))?;
    let mut metadata = Vec::new();
    for (column, what, location) in &create.metadata {
        let kind = KafkaMetadata::parse(what).ok_or_else(|| {
            PlanError::invalid(format!("METADATA FROM {what:?}: use 'key', 'partition', 'offset' or 'timestamp'"))
                .at_location(*location)
        })?;
        let index = match proctime_column {
            Some(proctime) if proctime <= *column => column + 1,
            _ => *column,
        };
        let field = schema.field(index);
        if field.data_type() != &kind.data_type() {
            return Err(PlanError::invalid(format!(
                "METADATA FROM '{what}' fills a {} column, not {}",
                crate::ddl::sql_type_name(&kind.data_type()),
                crate::ddl::sql_type_name(field.data_type())
            ))
            .at_location(*location));
        }
        metadata.push((index, kind));
    }
    let format = match options.get("format") {
        Some((name, _)) if name.eq_ignore_ascii_case("raw") => {
            let payload = schema.fields().len() - metadata.len() - usize::from(proctime_column.is_some());
            if payload != 1 {
                return Err(PlanError::invalid(
                    "format = 'raw' puts each record's value in the one column that is not METADATA",
                )
                .at_location(at));
            }
            KafkaFormat::Raw
        }
        _ => KafkaFormat::Lines(format(options, Some("x.json"))?),
    };
    let start = match options.get("start") {
        None => KafkaStart::Earliest,
        Some((start, _)) if start.eq_ignore_ascii_case("earliest") => KafkaStart::Earliest,
        Some((start, _)) if start.eq_ignore_ascii_case("latest") => KafkaStart::Latest,
        Some((start, location)) => {
            KafkaStart::Timestamp(parse_timestamp(start).map(|nanos| nanos / 1_000_000).ok_or_else(|| {
                PlanError::invalid(format!("option start is 'earliest', 'latest' or a timestamp, not {start:?}"))
                    .at_location(location)
            })?)
        }
    };
    let partitions = match options.parse::<i32>("partitions", "a number of partitions")? {
        Some(count) if count >= 1 => (0..count).collect(),
        Some(_) => return Err(PlanError::invalid("partitions must be at least 1").at_location(at)),
        None => Vec::new(),
    };
    let batch_rows = options.parse::<usize>("batch_rows", "a positive number")?.unwrap_or(8192).max(1);
    let group = options.get("group").map(|(group, _)| group.to_string());
    let properties = options.prefixed("properties.");
    Ok(ConnectorSpec::Kafka(Box::new(KafkaSpec {
        brokers: brokers.to_string(),
        topic: topic.to_string(),
        format,
        start,
        group,
        partitions,
        partition: None,
        metadata,
        batch_rows,
        properties,
    })))
}

/// A type's SQL name, for messages.
fn sql_type_name(data_type: &DataType) -> &'static str {
    match data_type {
        DataType::Utf8 => "VARCHAR",
        DataType::Int32 => "INT",
        DataType::Int64 => "BIGINT",
        DataType::Timestamp(_, _) => "TIMESTAMP",
        _ => "other",
    }
}

fn format(options: &Options, path: Option<&str>) -> Result<Format> {
    let name = match options.get("format") {
        Some((format, _)) => format.to_ascii_lowercase(),
        None => match path.and_then(|path| path.rsplit('.').next()) {
            Some("json" | "jsonl" | "ndjson") => "json".into(),
            Some("csv") => "csv".into(),
            _ => "text".into(),
        },
    };
    let delimiter = options.get("delimiter").map(|(delimiter, _)| delimiter.to_string());
    let header = options.boolean("header")?.unwrap_or(false);
    match name.as_str() {
        "text" => Ok(Format::Text { delimiter: delimiter.unwrap_or_else(|| " ".into()) }),
        "csv" => {
            let delimiter = delimiter.unwrap_or_else(|| ",".into());
            let mut chars = delimiter.chars();
            match (chars.next(), chars.next()) {
                (Some(delimiter), None) => Ok(Format::Csv { delimiter, header }),
                _ => Err(PlanError::invalid("a CSV delimiter is one character")),
            }
        }
        "json" => Ok(Format::Json),
        other => Err(PlanError::invalid(format!("unknown format {other:?}: use 'text', 'csv' or 'json'"))),
    }
}

fn parse_timestamp(text: &str) -> Option<i64> {
    datafusion::arrow::compute::kernels::cast_utils::string_to_timestamp_nanos(text).ok()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::statement::{Statement, parse_statements};

    fn create(sql: &str) -> Result<SourceSpec> {
        let statements = parse_statements(sql)?;
        let Statement::CreateStream(create) = &statements[0].statement else { panic!("not a create") };
        stream_source_spec(create)
    }

    #[test]
    fn socket_stream_with_watermark() {
        let spec = create(
            "CREATE STREAM weblog (ts TIMESTAMP, ip VARCHAR, status INT, WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
             WITH (connector = 'socket', host = '127.0.0.1', port = '7777', format = 'text', delimiter = ' ')",
        )
        .unwrap();
        assert_eq!(spec.event_time, Some(EventTimeSpec { column: 0, delay: 2_000_000_000 }));
        assert!(matches!(spec.connector, ConnectorSpec::Socket { port: 7777, .. }));
        assert_eq!(spec.schema.field(2).data_type(), &DataType::Int32);
    }

    #[test]
    fn errors_point_at_the_problem() {
        let error = create("CREATE STREAM s (ts TIMESTAMP)\nWITH (connector = 'socket', port = 'x')").unwrap_err();
        assert_eq!(error.message, "option port must be a TCP port number, not \"x\"");
        assert_eq!((error.line, error.column), (Some(2), Some(29)));
        let error = create("CREATE STREAM s (ts INT, WATERMARK FOR ts AS ts) WITH (connector = 'http')").unwrap_err();
        assert!(error.message.contains("must be a TIMESTAMP"));
        let error = create("CREATE STREAM s (ts TIMESTAMP) WITH (connector = 'http', colour = 'red')").unwrap_err();
        assert!(error.message.contains("unknown option \"colour\""));
    }

    #[test]
    fn decimal_precision_and_scale_are_checked_not_wrapped() {
        let spec = create("CREATE STREAM s (d DECIMAL(10, 2)) WITH (connector = 'http')").unwrap();
        assert_eq!(spec.schema.field(0).data_type(), &DataType::Decimal128(10, 2));
        // 257 used to wrap to a precision of 1, 300 to a scale of 44.
        for (sql, message) in [
            ("DECIMAL(257, 0)", "precision must be 1 to 38, not 257"),
            ("DECIMAL(0)", "precision must be 1 to 38, not 0"),
            ("DECIMAL(10, 300)", "scale must be 0 to its precision 10, not 300"),
            ("DECIMAL(10, 11)", "scale must be 0 to its precision 10, not 11"),
        ] {
            let error = create(&format!("CREATE STREAM s (\n  d {sql}) WITH (connector = 'http')")).unwrap_err();
            assert!(error.message.contains(message), "{sql}: {}", error.message);
            assert_eq!((error.line, error.column), (Some(2), Some(3)), "{sql}");
        }
    }
}
