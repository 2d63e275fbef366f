//! The Postgres catalogs psql and drivers read, over Sluice's streams and
//! tables: `pg_catalog` tables (`pg_class`, `pg_attribute`, `pg_type`, ...),
//! `information_schema` (DataFusion's), and the functions their queries
//! call (`pg_table_is_visible`, `format_type`, `current_setting`, ...).
//!
//! # How a catalog query runs
//!
//! A fresh DataFusion context is built for each query from a snapshot of
//! the catalog (a few small in-memory tables: Sluice catalogs hold tens of
//! relations, not millions), with streams and tables registered as empty
//! tables of their schemas in `public`. The query is rewritten where
//! Postgres syntax has no DataFusion equivalent (`OPERATOR(pg_catalog.~)`,
//! `COLLATE pg_catalog.default`, `::regclass`, schema-qualified function
//! names, `ARRAY(subquery)`), then planned and run by DataFusion.
//!
//! Streams are listed as relkind `r` (a table to psql) with the
//! description "stream (<connector> connector)"; static tables as `r` too.

use std::collections::BTreeMap;
use std::hash::{Hash, Hasher};
use std::ops::ControlFlow;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, BooleanArray, Int16Array, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::MemorySchemaProvider;
use datafusion::datasource::{MemTable, empty::EmptyTable};
use datafusion::logical_expr::{ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility};
use datafusion::prelude::{SessionConfig, SessionContext};
use datafusion::sql::sqlparser::ast::{
    self, BinaryOperator, Expr, FunctionArguments, ObjectName, ObjectNamePart, visit_expressions_mut,
    visit_relations_mut,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;

use crate::engine::{Engine, Relation};
use crate::error::{EngineError, ErrorCode};

/// The catalog and schema names clients see.
pub const DATABASE: &str = "sluice";
const PUBLIC_OID: i32 = 2200;
const PG_CATALOG_OID: i32 = 11;
const INFORMATION_SCHEMA_OID: i32 = 13_000;
/// Relations get oids from here on, in name order.
const FIRST_RELATION_OID: i32 = 16_384;

/// The rows of a catalog query (a query over `pg_catalog`,
/// `information_schema`, static tables alone, or no relation).
pub async fn run(
    engine: &Engine,
    parameters: &BTreeMap<String, String>,
    sql: &str,
) -> Result<(SchemaRef, Vec<RecordBatch>), EngineError> {
    let frame = plan(engine, parameters, sql).await?;
    let schema: SchemaRef = Arc::new(frame.schema().as_arrow().clone());
    let batches = frame.collect().await.map_err(datafusion_error)?;
    Ok((schema, batches))
}

/// The result schema of a catalog query, without running it.
pub async fn schema(
    engine: &Engine,
    parameters: &BTreeMap<String, String>,
    sql: &str,
) -> Result<SchemaRef, EngineError> {
    let frame = plan(engine, parameters, sql).await?;
    Ok(Arc::new(frame.schema().as_arrow().clone()))
}

async fn plan(
    engine: &Engine,
    parameters: &BTreeMap<String, String>,
    sql: &str,
) -> Result<datafusion::dataframe::DataFrame, EngineError> {
    let relations = engine.relations();
    let context = context(&relations, parameters)?;
    let rewritten = rewrite(sql)?;
    context.sql(&rewritten).await.map_err(datafusion_error)
}

fn datafusion_error(error: datafusion::error::DataFusionError) -> EngineError {
    let message = error.strip_backtrace();
    let code = if message.contains("not found") { ErrorCode::UnknownObject } else { ErrorCode::Invalid };
    EngineError::new(code, message)
}

/// Postgres syntax DataFusion does not take, turned into what it does.
pub fn rewrite(sql: &str) -> Result<String, EngineError> {
    let mut statements = Parser::parse_sql(&PostgreSqlDialect {}, sql)
        .map_err(|error| EngineError::new(ErrorCode::Syntax, error.to_string()))?;
    for statement in &mut statements {
        let _ = visit_expressions_mut(statement, |expr| {
            rewrite_expr(expr);
            ControlFlow::<()>::Continue(())
        });
        let _ = visit_relations_mut(statement, |name| {
            qualify_catalog_table(name);
            ControlFlow::<()>::Continue(())
        });
        if let ast::Statement::Query(query) = statement {
            name_duplicate_columns(&mut query.body);
        }
    }
    Ok(statements.iter().map(|statement| statement.to_string()).collect::<Vec<_>>().join("; "))
}

fn rewrite_expr(expr: &mut Expr) {
    match expr {
        Expr::BinaryOp { left, op: BinaryOperator::Eq | BinaryOperator::NotEq, right }
            if matches!(right.as_ref(), Expr::Value(value)
                if matches!(&value.value, ast::Value::SingleQuotedString(text) if text.starts_with('{') && text.ends_with('}'))) =>
        {
            // `array = '{0}'`: an array literal in Postgres's text form.
            if let Expr::Value(value) = right.as_mut()
                && let ast::Value::SingleQuotedString(text) = &mut value.value
            {
                *text = text[1..text.len() - 1].to_string();
            }
            let taken = std::mem::replace(left.as_mut(), Expr::value(ast::Value::Null));
            **left =
                function_call("array_to_string", vec![taken, Expr::value(ast::Value::SingleQuotedString(",".into()))]);
        }
        Expr::BinaryOp { op, .. } => {
            if let BinaryOperator::PGCustomBinaryOperator(parts) = op {
                *op = match parts.last().map(String::as_str) {
                    Some("~") => BinaryOperator::PGRegexMatch,
                    Some("~*") => BinaryOperator::PGRegexIMatch,
                    Some("!~") => BinaryOperator::PGRegexNotMatch,
                    Some("!~*") => BinaryOperator::PGRegexNotIMatch,
                    Some("=") => BinaryOperator::Eq,
                    Some("<>") => BinaryOperator::NotEq,
                    _ => return,
                };
            }
        }
        Expr::Collate { expr: inner, .. } => {
            *expr = std::mem::replace(inner.as_mut(), Expr::value(ast::Value::Null));
        }
        Expr::Cast { data_type, expr: inner, .. } => {
            let name = data_type.to_string().to_ascii_lowercase();
            let name = name.strip_prefix("pg_catalog.").unwrap_or(&name).to_string();
            match name.as_str() {
                "regclass" => {
                    // 'name'::regclass is the relation's oid.
                    if let Expr::Value(value) = inner.as_ref()
                        && let ast::Value::SingleQuotedString(relation) = &value.value
                        && relation.parse::<i64>().is_err()
                    {
                        let relation = relation.trim_matches('"').to_ascii_lowercase();
                        *expr = function_call(
                            "sluice_relation_oid",
                            vec![Expr::value(ast::Value::SingleQuotedString(relation))],
                        );
                    } else {
                        *data_type = ast::DataType::Int(None);
                    }
                }
                "oid" | "regtype" | "regproc" | "regprocedure" | "regnamespace" | "regrole" | "xid" | "regoper" => {
                    *data_type = ast::DataType::Int(None)
                }
                "text" | "name" | "\"char\"" | "char" | "bpchar" => *data_type = ast::DataType::Text,
                _ => {}
            }
        }
        Expr::Subquery(query) if reads_only_empty_catalogs(query) => {
            // Always no row: NULL (DataFusion cannot decorrelate some of
            // psql's, such as pg_attrdef's with an outer-only predicate).
            *expr = Expr::value(ast::Value::Null);
        }
        Expr::Subquery(query) => {
            // A correlated scalar subquery returns at most one row on
            // Postgres; DataFusion wants that said with an aggregate.
            if let ast::SetExpr::Select(select) = query.body.as_mut()
                && select.projection.len() == 1
                && matches!(select.group_by, ast::GroupByExpr::Expressions(ref keys, _) if keys.is_empty())
            {
                let item = &mut select.projection[0];
                let inner = match item {
                    ast::SelectItem::UnnamedExpr(inner) | ast::SelectItem::ExprWithAlias { expr: inner, .. } => inner,
                    _ => return,
                };
                let aggregated = matches!(inner, Expr::Function(function)
                    if matches!(function.name.to_string().to_ascii_lowercase().as_str(), "count" | "max" | "min" | "sum" | "avg" | "array_agg" | "string_agg"));
                if !aggregated {
                    let taken = std::mem::replace(inner, Expr::value(ast::Value::Null));
                    *inner = function_call("max", vec![taken]);
                }
            }
        }
        Expr::Function(function) => {
            let parts = &mut function.name.0;
            if parts.len() == 2
                && matches!(&parts[0], ObjectNamePart::Identifier(ident) if ident.value.eq_ignore_ascii_case("pg_catalog"))
            {
                parts.remove(0);
            }
            let name = function.name.to_string().to_ascii_lowercase();
            if name == "array" && matches!(function.args, FunctionArguments::Subquery(_)) {
                // ARRAY(SELECT ...) over catalog options: they are always
                // empty here.
                *expr = function_call("make_array", vec![]);
            }
        }
        _ => {}
    }
}

/// Postgres lets two result columns have one name (`NULL, NULL`);
/// DataFusion does not: the later ones get an alias.
fn name_duplicate_columns(body: &mut ast::SetExpr) {
    match body {
        ast::SetExpr::Select(select) => {
            // Over an always-empty catalog (joined inner), the select has
            // no rows: its projection's subqueries need not plan.
            let empty_input = select.from.iter().any(|from| {
                std::iter::once(&from.relation)
                    .chain(
                        from.joins
                            .iter()
                            .filter(|join| {
                                matches!(join.join_operator, ast::JoinOperator::Join(_) | ast::JoinOperator::Inner(_))
                            })
                            .map(|join| &join.relation),
                    )
                    .any(|relation| matches!(relation, ast::TableFactor::Table { name, .. } if is_empty_catalog(name)))
            });
            if empty_input {
                for item in &mut select.projection {
                    let _ = visit_expressions_mut(item, |expr| {
                        if matches!(expr, Expr::Subquery(_)) {
                            *expr = Expr::value(ast::Value::Null);
                        }
                        ControlFlow::<()>::Continue(())
                    });
                }
            }
            let mut seen = std::collections::HashSet::new();
            for (index, item) in select.projection.iter_mut().enumerate() {
                if let ast::SelectItem::UnnamedExpr(expr) = item
                    && !seen.insert(expr.to_string())
                {
                    let expr = std::mem::replace(expr, Expr::value(ast::Value::Null));
                    *item =
                        ast::SelectItem::ExprWithAlias { expr, alias: ast::Ident::new(format!("column{}", index + 1)) };
                }
            }
        }
        ast::SetExpr::SetOperation { left, right, .. } => {
            name_duplicate_columns(left);
            name_duplicate_columns(right);
        }
        ast::SetExpr::Query(query) => name_duplicate_columns(&mut query.body),
        _ => {}
    }
}

/// Catalogs of things Sluice does not have: always empty.
const EMPTY_CATALOGS: &[&str] = &[
    "pg_attrdef",
    "pg_collation",
    "pg_index",
    "pg_inherits",
    "pg_constraint",
    "pg_trigger",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_rewrite",
    "pg_proc",
    "pg_range",
    "pg_enum",
    "pg_extension",
    "pg_matviews",
    "pg_views",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_sequence",
    "pg_event_trigger",
];

fn is_empty_catalog(name: &ObjectName) -> bool {
    let name = name.to_string().to_ascii_lowercase();
    EMPTY_CATALOGS.contains(&name.strip_prefix("pg_catalog.").unwrap_or(&name))
}

/// Whether a scalar subquery reads an always-empty catalog (psql's join
/// them with inner joins: the subquery has no row).
fn reads_only_empty_catalogs(query: &ast::Query) -> bool {
    let mut empty = false;
    let _ = datafusion::sql::sqlparser::ast::visit_relations(query, |name: &ObjectName| {
        let name = name.to_string().to_ascii_lowercase();
        let name = name.strip_prefix("pg_catalog.").unwrap_or(&name);
        empty |= EMPTY_CATALOGS.contains(&name);
        ControlFlow::<()>::Continue(())
    });
    empty
}

fn function_call(name: &str, args: Vec<Expr>) -> Expr {
    let args = args.into_iter().map(|arg| ast::FunctionArg::Unnamed(ast::FunctionArgExpr::Expr(arg))).collect();
    Expr::Function(ast::Function {
        name: ObjectName::from(vec![ast::Ident::new(name)]),
        uses_odbc_syntax: false,
        parameters: FunctionArguments::None,
        args: FunctionArguments::List(ast::FunctionArgumentList { duplicate_treatment: None, args, clauses: vec![] }),
        filter: None,
        null_treatment: None,
        over: None,
        within_group: vec![],
    })
}

/// `pg_class` is `pg_catalog.pg_class`, as on Postgres's search path.
fn qualify_catalog_table(name: &mut ObjectName) {
    if name.0.len() == 1
        && let ObjectNamePart::Identifier(ident) = &name.0[0]
        && CATALOG_TABLES.contains(&ident.value.to_ascii_lowercase().as_str())
    {
        name.0.insert(0, ObjectNamePart::Identifier(ast::Ident::new("pg_catalog")));
    }
}

const CATALOG_TABLES: &[&str] = &[
    "pg_namespace",
    "pg_class",
    "pg_attribute",
    "pg_type",
    "pg_am",
    "pg_attrdef",
    "pg_collation",
    "pg_index",
    "pg_inherits",
    "pg_constraint",
    "pg_trigger",
    "pg_policy",
    "pg_statistic_ext",
    "pg_publication",
    "pg_publication_rel",
    "pg_publication_namespace",
    "pg_rewrite",
    "pg_description",
    "pg_database",
    "pg_roles",
    "pg_user",
    "pg_settings",
    "pg_tablespace",
    "pg_proc",
    "pg_range",
    "pg_enum",
    "pg_extension",
    "pg_matviews",
    "pg_views",
    "pg_tables",
    "pg_foreign_table",
    "pg_partitioned_table",
    "pg_sequence",
    "pg_event_trigger",
];

/// The context a catalog query runs in.
fn context(relations: &[Relation], parameters: &BTreeMap<String, String>) -> Result<SessionContext, EngineError> {
    let config = SessionConfig::new().with_information_schema(true).with_default_catalog_and_schema(DATABASE, "public");
    let context = SessionContext::new_with_config(config);
    let internal = |error: datafusion::error::DataFusionError| EngineError::internal(error.to_string());
    for relation in relations {
        // Static tables with their rows (a SELECT over tables alone is a
        // batch query); streams empty (only their columns are listed).
        let table: Arc<dyn datafusion::catalog::TableProvider> = match &relation.rows {
            Some(rows) => {
                Arc::new(MemTable::try_new(relation.schema.clone(), vec![vec![rows.clone()]]).map_err(internal)?)
            }
            None => Arc::new(EmptyTable::new(relation.schema.clone())),
        };
        context.register_table(relation.name.as_str(), table).map_err(internal)?;
    }
    let catalog = context.catalog(DATABASE).ok_or_else(|| EngineError::internal("no default catalog"))?;
    catalog.register_schema("pg_catalog", Arc::new(MemorySchemaProvider::new())).map_err(internal)?;
    for (name, batch) in tables(relations, parameters).map_err(|error| EngineError::internal(error.to_string()))? {
        let table = MemTable::try_new(batch.schema(), vec![vec![batch]]).map_err(internal)?;
        context.register_table(format!("pg_catalog.{name}").as_str(), Arc::new(table)).map_err(internal)?;
    }
    let descriptions: Vec<(i32, String)> = relations
        .iter()
        .enumerate()
        .map(|(index, relation)| (relation_oid(index), relation.description.clone()))
        .collect();
    let names: Vec<(String, i32)> =
        relations.iter().enumerate().map(|(index, relation)| (relation.name.clone(), relation_oid(index))).collect();
    for function in PgFunction::all(parameters, descriptions, names) {
        context.register_udf(ScalarUDF::new_from_impl(function));
    }
    Ok(context)
}

fn relation_oid(index: usize) -> i32 {
    FIRST_RELATION_OID + index as i32
}

/// A Postgres type as `pg_type` lists it: oid, name, length, array type.
struct PgType {
    oid: i32,
    name: &'static str,
    len: i16,
    category: &'static str,
    array: i32,
}

const TYPES: &[PgType] = &[
    PgType { oid: 16, name: "bool", len: 1, category: "B", array: 1000 },
    PgType { oid: 17, name: "bytea", len: -1, category: "U", array: 1001 },
    PgType { oid: 18, name: "char", len: 1, category: "Z", array: 1002 },
    PgType { oid: 19, name: "name", len: 64, category: "S", array: 1003 },
    PgType { oid: 20, name: "int8", len: 8, category: "N", array: 1016 },
    PgType { oid: 21, name: "int2", len: 2, category: "N", array: 1005 },
    PgType { oid: 23, name: "int4", len: 4, category: "N", array: 1007 },
    PgType { oid: 25, name: "text", len: -1, category: "S", array: 1009 },
    PgType { oid: 26, name: "oid", len: 4, category: "N", array: 1028 },
    PgType { oid: 114, name: "json", len: -1, category: "U", array: 199 },
    PgType { oid: 700, name: "float4", len: 4, category: "N", array: 1021 },
    PgType { oid: 701, name: "float8", len: 8, category: "N", array: 1022 },
    PgType { oid: 1042, name: "bpchar", len: -1, category: "S", array: 1014 },
    PgType { oid: 1043, name: "varchar", len: -1, category: "S", array: 1015 },
    PgType { oid: 1082, name: "date", len: 4, category: "D", array: 1182 },
    PgType { oid: 1083, name: "time", len: 8, category: "D", array: 1183 },
    PgType { oid: 1114, name: "timestamp", len: 8, category: "D", array: 1115 },
    PgType { oid: 1184, name: "timestamptz", len: 8, category: "D", array: 1185 },
    PgType { oid: 1186, name: "interval", len: 16, category: "T", array: 1187 },
    PgType { oid: 1700, name: "numeric", len: -1, category: "N", array: 1231 },
    PgType { oid: 2950, name: "uuid", len: 16, category: "U", array: 2951 },
    PgType { oid: 3802, name: "jsonb", len: -1, category: "U", array: 3807 },
];

/// The SQL name `format_type` gives a type oid.
fn type_display_name(oid: i64) -> Option<String> {
    let name = match oid {
        16 => "boolean",
        17 => "bytea",
        18 => "\"char\"",
        19 => "name",
        20 => "bigint",
        21 => "smallint",
        23 => "integer",
        25 => "text",
        26 => "oid",
        114 => "json",
        700 => "real",
        701 => "double precision",
        1042 => "character",
        1043 => "character varying",
        1082 => "date",
        1083 => "time without time zone",
        1114 => "timestamp without time zone",
        1184 => "timestamp with time zone",
        1186 => "interval",
        1700 => "numeric",
        2950 => "uuid",
        3802 => "jsonb",
        _ => {
            let element = TYPES.iter().find(|pg_type| i64::from(pg_type.array) == oid)?;
            return Some(format!("{}[]", type_display_name(i64::from(element.oid))?));
        }
    };
    Some(name.to_string())
}

/// Columns of one catalog table, built one column at a time.
struct Columns {
    rows: usize,
    columns: Vec<(String, ArrayRef)>,
}

impl Columns {
    fn new(rows: usize) -> Self {
        Self { rows, columns: Vec::new() }
    }

    fn int(mut self, name: &str, values: impl IntoIterator<Item = i32>) -> Self {
        self.columns.push((name.into(), Arc::new(Int32Array::from_iter_values(values))));
        self
    }

    fn small(mut self, name: &str, values: impl IntoIterator<Item = i16>) -> Self {
        self.columns.push((name.into(), Arc::new(Int16Array::from_iter_values(values))));
        self
    }

    fn int_all(self, name: &str, value: i32) -> Self {
        let rows = self.rows;
        self.int(name, std::iter::repeat_n(value, rows))
    }

    fn text<S: AsRef<str>>(mut self, name: &str, values: impl IntoIterator<Item = S>) -> Self {
        self.columns.push((name.into(), Arc::new(StringArray::from_iter_values(values))));
        self
    }

    fn text_all(self, name: &str, value: &str) -> Self {
        let rows = self.rows;
        self.text(name, std::iter::repeat_n(value, rows))
    }

    fn null_text(mut self, name: &str) -> Self {
        self.columns.push((name.into(), Arc::new(StringArray::new_null(self.rows))));
        self
    }

    fn bools(mut self, name: &str, values: impl IntoIterator<Item = bool>) -> Self {
        self.columns.push((name.into(), Arc::new(values.into_iter().map(Some).collect::<BooleanArray>())));
        self
    }

    fn bool_all(self, name: &str, value: bool) -> Self {
        let rows = self.rows;
        self.bools(name, std::iter::repeat_n(value, rows))
    }

    fn null_text_list(mut self, name: &str) -> Self {
        let field = Arc::new(Field::new_list_field(DataType::Utf8, true));
        self.columns.push((name.into(), datafusion::arrow::array::new_null_array(&DataType::List(field), self.rows)));
        self
    }

    fn batch(self) -> Result<RecordBatch, datafusion::arrow::error::ArrowError> {
        if self.columns.is_empty() {
            return Ok(RecordBatch::new_empty(Arc::new(Schema::empty())));
        }
        let fields: Vec<Field> =
            self.columns.iter().map(|(name, array)| Field::new(name, array.data_type().clone(), true)).collect();
        RecordBatch::try_new(Arc::new(Schema::new(fields)), self.columns.into_iter().map(|(_, array)| array).collect())
    }
}

/// The oid and size of the Postgres type an Arrow type is shown as.
fn pg_type_of(data_type: &DataType) -> (i32, i16) {
    let oid = arrow_pg::datatypes::into_pg_type(data_type).map_or(25, |pg_type| pg_type.oid() as i32);
    let len = TYPES.iter().find(|pg_type| pg_type.oid == oid).map_or(-1, |pg_type| pg_type.len);
    (oid, len)
}

type Tables = Vec<(&'static str, RecordBatch)>;

/// Every `pg_catalog` table, filled from `relations`.
fn tables(
    relations: &[Relation],
    parameters: &BTreeMap<String, String>,
) -> Result<Tables, datafusion::arrow::error::ArrowError> {
    let count = relations.len();
    let oids: Vec<i32> = (0..count).map(relation_oid).collect();
    let mut tables = Vec::new();
    tables.push((
        "pg_namespace",
        Columns::new(3)
            .int("oid", [PG_CATALOG_OID, PUBLIC_OID, INFORMATION_SCHEMA_OID])
            .text("nspname", ["pg_catalog", "public", "information_schema"])
            .int_all("nspowner", 10)
            .null_text("nspacl")
            .batch()?,
    ));
    tables.push((
        "pg_class",
        Columns::new(count)
            .int("oid", oids.clone())
            .text("relname", relations.iter().map(|relation| &relation.name))
            .int_all("relnamespace", PUBLIC_OID)
            .int_all("reltype", 0)
            .int_all("reloftype", 0)
            .int_all("relowner", 10)
            .int_all("relam", 2)
            .int("relfilenode", oids.clone())
            .int_all("reltablespace", 0)
            .int_all("relpages", 0)
            .int_all("reltuples", -1)
            .int_all("relallvisible", 0)
            .int_all("reltoastrelid", 0)
            .bool_all("relhasindex", false)
            .bool_all("relisshared", false)
            .text_all("relpersistence", "p")
            .text_all("relkind", "r")
            .small("relnatts", relations.iter().map(|relation| relation.schema.fields().len() as i16))
            .small("relchecks", std::iter::repeat_n(0, count))
            .bool_all("relhasrules", false)
            .bool_all("relhastriggers", false)
            .bool_all("relhassubclass", false)
            .bool_all("relrowsecurity", false)
            .bool_all("relforcerowsecurity", false)
            .bool_all("relispopulated", true)
            .text_all("relreplident", "d")
            .bool_all("relispartition", false)
            .null_text_list("reloptions")
            .null_text("relacl")
            .null_text("relpartbound")
            .batch()?,
    ));
    let columns: Vec<(i32, i16, &Field)> = relations
        .iter()
        .enumerate()
        .flat_map(|(index, relation)| {
            relation
                .schema
                .fields()
                .iter()
                .enumerate()
                .map(move |(number, field)| (relation_oid(index), number as i16 + 1, field.as_ref()))
        })
        .collect();
    let attributes = columns.len();
    tables.push((
        "pg_attribute",
        Columns::new(attributes)
            .int("attrelid", columns.iter().map(|(oid, _, _)| *oid))
            .text("attname", columns.iter().map(|(_, _, field)| field.name()))
            .int("atttypid", columns.iter().map(|(_, _, field)| pg_type_of(field.data_type()).0))
            .small("attlen", columns.iter().map(|(_, _, field)| pg_type_of(field.data_type()).1))
            .small("attnum", columns.iter().map(|(_, number, _)| *number))
            .int_all("atttypmod", -1)
            .small("attndims", std::iter::repeat_n(0, attributes))
            .bools("attnotnull", columns.iter().map(|(_, _, field)| !field.is_nullable()))
            .bool_all("atthasdef", false)
            .bool_all("atthasmissing", false)
            .text_all("attidentity", "")
            .text_all("attgenerated", "")
            .bool_all("attisdropped", false)
            .bool_all("attislocal", true)
            .int_all("attinhcount", 0)
            .int_all("attcollation", 0)
            .int_all("attstattarget", -1)
            .text_all("attstorage", "x")
            .null_text("attacl")
            .null_text_list("attoptions")
            .null_text_list("attfdwoptions")
            .batch()?,
    ));
    let types = TYPES.len() * 2;
    let type_oids = TYPES.iter().flat_map(|pg_type| [pg_type.oid, pg_type.array]);
    let type_names = TYPES.iter().flat_map(|pg_type| [pg_type.name.to_string(), format!("_{}", pg_type.name)]);
    tables.push((
        "pg_type",
        Columns::new(types)
            .int("oid", type_oids)
            .text("typname", type_names)
            .int_all("typnamespace", PG_CATALOG_OID)
            .int_all("typowner", 10)
            .small("typlen", TYPES.iter().flat_map(|pg_type| [pg_type.len, -1]))
            .bool_all("typbyval", false)
            .text("typtype", std::iter::repeat_n("b", types))
            .text("typcategory", TYPES.iter().flat_map(|pg_type| [pg_type.category, "A"]))
            .bool_all("typispreferred", false)
            .bool_all("typisdefined", true)
            .text_all("typdelim", ",")
            .int_all("typrelid", 0)
            .int("typelem", TYPES.iter().flat_map(|pg_type| [0, pg_type.oid]))
            .int("typarray", TYPES.iter().flat_map(|pg_type| [pg_type.array, 0]))
            .text("typinput", TYPES.iter().flat_map(|pg_type| [format!("{}in", pg_type.name), "array_in".into()]))
            .text("typoutput", TYPES.iter().flat_map(|pg_type| [format!("{}out", pg_type.name), "array_out".into()]))
            .text("typreceive", TYPES.iter().flat_map(|pg_type| [format!("{}recv", pg_type.name), "array_recv".into()]))
            .text("typsend", TYPES.iter().flat_map(|pg_type| [format!("{}send", pg_type.name), "array_send".into()]))
            .bool_all("typnotnull", false)
            .int_all("typbasetype", 0)
            .int_all("typtypmod", -1)
            .int_all("typndims", 0)
            .int_all("typcollation", 0)
            .null_text("typdefault")
            .batch()?,
    ));
    tables.push((
        "pg_am",
        Columns::new(2).int("oid", [2, 403]).text("amname", ["heap", "btree"]).text("amtype", ["t", "i"]).batch()?,
    ));
    tables.push((
        "pg_database",
        Columns::new(1)
            .int("oid", [16_383])
            .text("datname", [DATABASE])
            .int_all("datdba", 10)
            .int_all("encoding", 6)
            .text_all("datcollate", "C")
            .text_all("datctype", "C")
            .bool_all("datistemplate", false)
            .bool_all("datallowconn", true)
            .int_all("datconnlimit", -1)
            .null_text("datacl")
            .batch()?,
    ));
    for name in ["pg_roles", "pg_user"] {
        tables.push((
            name,
            Columns::new(1)
                .int("oid", [10])
                .text("rolname", ["sluice"])
                .text("usename", ["sluice"])
                .int("usesysid", [10])
                .bool_all("rolsuper", true)
                .bool_all("usesuper", true)
                .bool_all("rolinherit", true)
                .bool_all("rolcreaterole", true)
                .bool_all("rolcreatedb", true)
                .bool_all("rolcanlogin", true)
                .bool_all("rolreplication", false)
                .int_all("rolconnlimit", -1)
                .batch()?,
        ));
    }
    let settings: Vec<(&String, &String)> = parameters.iter().collect();
    tables.push((
        "pg_settings",
        Columns::new(settings.len())
            .text("name", settings.iter().map(|(name, _)| name))
            .text("setting", settings.iter().map(|(_, value)| value))
            .null_text("unit")
            .text_all("category", "Sluice")
            .text_all("short_desc", "")
            .text_all("context", "user")
            .text_all("vartype", "string")
            .text_all("source", "session")
            .batch()?,
    ));
    tables.push((
        "pg_description",
        Columns::new(count)
            .int("objoid", oids.clone())
            .int_all("classoid", 1259)
            .int_all("objsubid", 0)
            .text("description", relations.iter().map(|relation| &relation.description))
            .batch()?,
    ));
    tables.push((
        "pg_tables",
        Columns::new(count)
            .text_all("schemaname", "public")
            .text("tablename", relations.iter().map(|relation| &relation.name))
            .text_all("tableowner", "sluice")
            .null_text("tablespace")
            .bool_all("hasindexes", false)
            .bool_all("hasrules", false)
            .bool_all("hastriggers", false)
            .bool_all("rowsecurity", false)
            .batch()?,
    ));
    tables.push((
        "pg_tablespace",
        Columns::new(1).int("oid", [1663]).text("spcname", ["pg_default"]).int_all("spcowner", 10).batch()?,
    ));
    // Catalogs of what Sluice does not have: the right columns, no rows.
    let empty: &[(&str, &[(&str, DataType)])] = &[
        (
            "pg_attrdef",
            &[
                ("oid", DataType::Int32),
                ("adrelid", DataType::Int32),
                ("adnum", DataType::Int16),
                ("adbin", DataType::Utf8),
            ],
        ),
        ("pg_collation", &[("oid", DataType::Int32), ("collname", DataType::Utf8), ("collnamespace", DataType::Int32)]),
        (
            "pg_index",
            &[
                ("indexrelid", DataType::Int32),
                ("indrelid", DataType::Int32),
                ("indnatts", DataType::Int16),
                ("indisunique", DataType::Boolean),
                ("indisprimary", DataType::Boolean),
                ("indisexclusion", DataType::Boolean),
                ("indimmediate", DataType::Boolean),
                ("indisclustered", DataType::Boolean),
                ("indisvalid", DataType::Boolean),
                ("indisreplident", DataType::Boolean),
                ("indkey", DataType::Utf8),
            ],
        ),
        (
            "pg_inherits",
            &[
                ("inhrelid", DataType::Int32),
                ("inhparent", DataType::Int32),
                ("inhseqno", DataType::Int32),
                ("inhdetachpending", DataType::Boolean),
            ],
        ),
        (
            "pg_constraint",
            &[
                ("oid", DataType::Int32),
                ("conname", DataType::Utf8),
                ("connamespace", DataType::Int32),
                ("contype", DataType::Utf8),
                ("condeferrable", DataType::Boolean),
                ("condeferred", DataType::Boolean),
                ("convalidated", DataType::Boolean),
                ("conrelid", DataType::Int32),
                ("contypid", DataType::Int32),
                ("conindid", DataType::Int32),
                ("conparentid", DataType::Int32),
                ("confrelid", DataType::Int32),
                ("conislocal", DataType::Boolean),
            ],
        ),
        (
            "pg_trigger",
            &[
                ("oid", DataType::Int32),
                ("tgrelid", DataType::Int32),
                ("tgparentid", DataType::Int32),
                ("tgname", DataType::Utf8),
                ("tgenabled", DataType::Utf8),
                ("tgisinternal", DataType::Boolean),
            ],
        ),
        (
            "pg_policy",
            &[
                ("oid", DataType::Int32),
                ("polname", DataType::Utf8),
                ("polrelid", DataType::Int32),
                ("polcmd", DataType::Utf8),
                ("polpermissive", DataType::Boolean),
                ("polroles", int_list()),
                ("polqual", DataType::Utf8),
                ("polwithcheck", DataType::Utf8),
            ],
        ),
        (
            "pg_statistic_ext",
            &[
                ("oid", DataType::Int32),
                ("stxrelid", DataType::Int32),
                ("stxname", DataType::Utf8),
                ("stxnamespace", DataType::Int32),
                ("stxowner", DataType::Int32),
                ("stxstattarget", DataType::Int32),
                ("stxkeys", DataType::Utf8),
                ("stxkind", text_list()),
            ],
        ),
        (
            "pg_publication",
            &[
                ("oid", DataType::Int32),
                ("pubname", DataType::Utf8),
                ("puballtables", DataType::Boolean),
                ("pubviaroot", DataType::Boolean),
            ],
        ),
        (
            "pg_publication_rel",
            &[
                ("oid", DataType::Int32),
                ("prpubid", DataType::Int32),
                ("prrelid", DataType::Int32),
                ("prqual", DataType::Utf8),
                ("prattrs", DataType::Utf8),
            ],
        ),
        (
            "pg_publication_namespace",
            &[("oid", DataType::Int32), ("pnpubid", DataType::Int32), ("pnnspid", DataType::Int32)],
        ),
        (
            "pg_rewrite",
            &[
                ("oid", DataType::Int32),
                ("rulename", DataType::Utf8),
                ("ev_class", DataType::Int32),
                ("ev_type", DataType::Utf8),
            ],
        ),
        (
            "pg_proc",
            &[
                ("oid", DataType::Int32),
                ("proname", DataType::Utf8),
                ("pronamespace", DataType::Int32),
                ("prokind", DataType::Utf8),
                ("prorettype", DataType::Int32),
            ],
        ),
        ("pg_range", &[("rngtypid", DataType::Int32), ("rngsubtype", DataType::Int32)]),
        (
            "pg_enum",
            &[
                ("oid", DataType::Int32),
                ("enumtypid", DataType::Int32),
                ("enumsortorder", DataType::Float32),
                ("enumlabel", DataType::Utf8),
            ],
        ),
        ("pg_extension", &[("oid", DataType::Int32), ("extname", DataType::Utf8), ("extversion", DataType::Utf8)]),
        (
            "pg_matviews",
            &[("schemaname", DataType::Utf8), ("matviewname", DataType::Utf8), ("definition", DataType::Utf8)],
        ),
        ("pg_views", &[("schemaname", DataType::Utf8), ("viewname", DataType::Utf8), ("definition", DataType::Utf8)]),
        ("pg_foreign_table", &[("ftrelid", DataType::Int32), ("ftserver", DataType::Int32)]),
        ("pg_partitioned_table", &[("partrelid", DataType::Int32), ("partstrat", DataType::Utf8)]),
        ("pg_sequence", &[("seqrelid", DataType::Int32), ("seqtypid", DataType::Int32)]),
        ("pg_event_trigger", &[("oid", DataType::Int32), ("evtname", DataType::Utf8)]),
    ];
    for (name, columns) in empty {
        let schema = Schema::new(
            columns.iter().map(|(column, data_type)| Field::new(*column, data_type.clone(), true)).collect::<Vec<_>>(),
        );
        tables.push((name, RecordBatch::new_empty(Arc::new(schema))));
    }
    Ok(tables)
}

fn text_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Utf8, true)))
}

fn int_list() -> DataType {
    DataType::List(Arc::new(Field::new_list_field(DataType::Int32, true)))
}

/// The Postgres functions catalog queries call.
#[derive(Debug, PartialEq, Eq, Hash, Clone, Copy)]
enum Kind {
    /// Always true: privileges and visibility (one schema, one user).
    True,
    False,
    /// A constant text.
    Text(&'static str),
    /// NULL text: definitions of things Sluice does not have.
    NullText,
    FormatType,
    QuoteIdent,
    CurrentSetting,
    ObjDescription,
    RelationOid,
    BackendPid,
    Version,
}

#[derive(Debug)]
struct PgFunction {
    name: &'static str,
    kind: Kind,
    signature: Signature,
    parameters: BTreeMap<String, String>,
    descriptions: Vec<(i32, String)>,
    names: Vec<(String, i32)>,
}

impl PartialEq for PgFunction {
    fn eq(&self, other: &Self) -> bool {
        self.name == other.name && self.kind == other.kind
    }
}

impl Eq for PgFunction {}

impl Hash for PgFunction {
    fn hash<H: Hasher>(&self, state: &mut H) {
        self.name.hash(state);
        self.kind.hash(state);
    }
}

impl PgFunction {
    fn all(
        parameters: &BTreeMap<String, String>,
        descriptions: Vec<(i32, String)>,
        names: Vec<(String, i32)>,
    ) -> Vec<Self> {
        let functions: &[(&'static str, Kind)] = &[
            ("pg_table_is_visible", Kind::True),
            ("pg_type_is_visible", Kind::True),
            ("pg_function_is_visible", Kind::True),
            ("has_table_privilege", Kind::True),
            ("has_schema_privilege", Kind::True),
            ("has_database_privilege", Kind::True),
            ("has_column_privilege", Kind::True),
            ("pg_has_role", Kind::True),
            ("pg_is_in_recovery", Kind::False),
            ("pg_relation_is_publishable", Kind::False),
            ("pg_get_userbyid", Kind::Text("sluice")),
            ("pg_encoding_to_char", Kind::Text("UTF8")),
            ("current_database", Kind::Text(DATABASE)),
            ("current_schema", Kind::Text("public")),
            ("current_user", Kind::Text("sluice")),
            ("session_user", Kind::Text("sluice")),
            ("pg_get_expr", Kind::NullText),
            ("pg_get_indexdef", Kind::NullText),
            ("pg_get_constraintdef", Kind::NullText),
            ("pg_get_viewdef", Kind::NullText),
            ("pg_get_triggerdef", Kind::NullText),
            ("pg_get_statisticsobjdef_columns", Kind::NullText),
            ("pg_get_partkeydef", Kind::NullText),
            ("col_description", Kind::NullText),
            ("shobj_description", Kind::NullText),
            ("format_type", Kind::FormatType),
            ("quote_ident", Kind::QuoteIdent),
            ("current_setting", Kind::CurrentSetting),
            ("obj_description", Kind::ObjDescription),
            ("sluice_relation_oid", Kind::RelationOid),
            ("pg_backend_pid", Kind::BackendPid),
            ("version", Kind::Version),
        ];
        functions
            .iter()
            .map(|(name, kind)| PgFunction {
                name,
                kind: *kind,
                signature: Signature::one_of(
                    vec![
                        datafusion::logical_expr::TypeSignature::Nullary,
                        datafusion::logical_expr::TypeSignature::VariadicAny,
                    ],
                    Volatility::Stable,
                ),
                parameters: parameters.clone(),
                descriptions: descriptions.clone(),
                names: names.clone(),
            })
            .collect()
    }
}

impl ScalarUDFImpl for PgFunction {
    fn name(&self) -> &str {
        self.name
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _arg_types: &[DataType]) -> datafusion::error::Result<DataType> {
        Ok(match self.kind {
            Kind::True | Kind::False => DataType::Boolean,
            Kind::RelationOid | Kind::BackendPid => DataType::Int32,
            _ => DataType::Utf8,
        })
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> datafusion::error::Result<ColumnarValue> {
        let rows = args.number_rows;
        let arrays = ColumnarValue::values_to_arrays(&args.args)?;
        let texts = |index: usize| -> datafusion::error::Result<Option<StringArray>> {
            Ok(match arrays.get(index) {
                Some(array) => Some(
                    cast(array, &DataType::Utf8)?
                        .as_any()
                        .downcast_ref::<StringArray>()
                        .cloned()
                        .unwrap_or_else(|| StringArray::new_null(rows)),
                ),
                None => None,
            })
        };
        let per_row = |f: &dyn Fn(Option<&str>) -> Option<String>| -> datafusion::error::Result<ArrayRef> {
            let first = texts(0)?;
            let values: StringArray = (0..rows)
                .map(|row| f(first.as_ref().and_then(|first| (!first.is_null(row)).then(|| first.value(row)))))
                .collect();
            Ok(Arc::new(values))
        };
        let array: ArrayRef = match self.kind {
            Kind::True => Arc::new(BooleanArray::from(vec![true; rows])),
            Kind::False => Arc::new(BooleanArray::from(vec![false; rows])),
            Kind::Text(value) => Arc::new(StringArray::from_iter_values(std::iter::repeat_n(value, rows))),
            Kind::NullText => Arc::new(StringArray::new_null(rows)),
            Kind::Version => {
                let version = format!(
                    "PostgreSQL 16.6 (Sluice {}, Apache DataFusion {})",
                    env!("CARGO_PKG_VERSION"),
                    datafusion::DATAFUSION_VERSION
                );
                Arc::new(StringArray::from_iter_values(std::iter::repeat_n(version, rows)))
            }
            Kind::BackendPid => {
                Arc::new(Int32Array::from_iter_values(std::iter::repeat_n(std::process::id() as i32, rows)))
            }
            Kind::FormatType => per_row(&|oid| type_display_name(oid?.parse().ok()?))?,
            Kind::QuoteIdent => per_row(&|name| {
                let name = name?;
                let plain = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
                    && !name.starts_with(|c: char| c.is_ascii_digit());
                Some(if plain { name.to_string() } else { format!("\"{}\"", name.replace('"', "\"\"")) })
            })?,
            Kind::CurrentSetting => per_row(&|name| self.parameters.get(&name?.to_ascii_lowercase()).cloned())?,
            Kind::ObjDescription => per_row(&|oid| {
                let oid: i32 = oid?.parse().ok()?;
                self.descriptions.iter().find(|(known, _)| *known == oid).map(|(_, description)| description.clone())
            })?,
            Kind::RelationOid => {
                let first = texts(0)?;
                Arc::new(
                    (0..rows)
                        .map(|row| {
                            let name = first.as_ref().filter(|first| !first.is_null(row))?.value(row);
                            let name = name.strip_prefix("public.").unwrap_or(name);
                            self.names.iter().find(|(known, _)| known == name).map(|(_, oid)| *oid)
                        })
                        .collect::<Int32Array>(),
                )
            }
        };
        Ok(ColumnarValue::Array(array))
    }
}

/// Whether `sql` is a query that reads no stream: only static tables (a
/// batch query DataFusion answers), or nothing.
pub fn reads_no_stream(engine: &Engine, sql: &str) -> bool {
    let Ok(statements) = Parser::parse_sql(&PostgreSqlDialect {}, sql) else { return false };
    let relations = engine.relations();
    let mut any = false;
    let mut stream = false;
    for statement in &statements {
        if !matches!(statement, ast::Statement::Query(_)) {
            return false;
        }
        let _ = datafusion::sql::sqlparser::ast::visit_relations(statement, |name: &ObjectName| {
            any = true;
            let name = name.to_string().to_ascii_lowercase();
            stream |= !relations.iter().any(|relation| relation.rows.is_some() && relation.name == name);
            ControlFlow::<()>::Continue(())
        });
    }
    any && !stream
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn psql_syntax_is_rewritten() {
        let sql = "SELECT a.attname, (SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid, true) FROM pg_catalog.pg_attrdef d \
                   WHERE d.adrelid = a.attrelid AND a.atthasdef) FROM pg_catalog.pg_attribute a \
                   WHERE c.relname OPERATOR(pg_catalog.~) '^(bid)$' COLLATE pg_catalog.default AND x = 'bid'::regclass";
        let rewritten = rewrite(sql).unwrap();
        assert_eq!(
            rewritten,
            "SELECT a.attname, NULL FROM pg_catalog.pg_attribute a WHERE c.relname ~ '^(bid)$' AND x = sluice_relation_oid('bid')"
        );
    }
}
