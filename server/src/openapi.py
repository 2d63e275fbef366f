"""Writes openapi.json (run from anywhere: python3 server/src/openapi.py).
The document is generated so its schemas stay consistent; edit this file,
run it, and commit both. tests/openapi.rs checks real responses against it."""
import os
import json
def ref(name): return {"$ref": f"#/components/schemas/{name}"}
def js(schema, description): return {"description": description, "content": {"application/json": {"schema": schema}}}
ERR = lambda d: js(ref("Error"), d)
ts = {"type": ["string", "null"], "description": "ISO-8601 UTC timestamp"}
opt_int = {"type": ["integer", "null"], "minimum": 0}
id_param = {"name": "id", "in": "path", "required": True, "schema": {"type": "string", "pattern": "^q[0-9]+$"}}
sub_params = [
  {"name": "where", "in": "query", "required": False, "schema": {"type": "string"}, "description": "A SQL condition over the result's columns (ip = '10.0.0.1'); only rows passing it are sent. Planned once per subscriber."},
  {"name": "format", "in": "query", "required": False, "schema": {"type": "string", "enum": ["json", "arrow"]}, "description": "arrow: rows as an Arrow IPC stream in binary frames (schema first, then one record batch per frame, with seq and op columns); control frames stay JSON text."},
  {"name": "heartbeat_ms", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 50, "maximum": 3600000}, "description": "A heartbeat frame after this long without frames (default 5000)."},
]
frames = ("Frames (JSON text): schema first ({type: schema, columns, query_id, updating, warnings, format}); "
  "gap ({type: gap, from_seq, first_available}) when rows from from_seq on are no longer retained; "
  "rows ({type: rows, seq, next_seq, rows: [{...}], ops?: ['+'|'-']}); "
  "snapshot ({type: snapshot, next_seq, rows}) first for a materialized view attached without from_seq: its current result; "
  "progress ({type: progress, watermark}); "
  "heartbeat ({type: heartbeat, watermark, next_seq}); warning ({type: warning, message}) for a client message it ignored; "
  "end ({type: end}) when a bounded query finished; error ({type: error, code, message, next_seq?}); "
  "code lagged cuts off a subscriber more than the output queue behind. See components.schemas.Frame.")
spec = {
 "openapi": "3.1.0",
 "info": {"title": "Sluice", "version": "0.1.0", "description": "Streaming SQL server: declare streams, submit continuous queries, subscribe to their results. Errors are {error: {code, message, line?, column?}}."},
 "paths": {
  "/v1/sql": {"post": {
    "summary": "Execute one or more SQL statements",
    "description": "The body is read as JSON whatever its content type. A continuous query starts and its result gives the websocket path to subscribe to (to see it from its first row, submit it on /v1/subscribe instead).",
    "requestBody": {"required": True, "content": {"application/json": {"schema": ref("SqlRequest")}}},
    "responses": {
      "200": js({"oneOf": [ref("StatementResult"), {"type": "object", "additionalProperties": False, "required": ["results"], "properties": {"results": {"type": "array", "items": ref("StatementResult")}}}]}, "One result for one statement, or {results: [...]} for several"),
      "400": ERR("The statement does not parse, plan, or is not supported"),
      "404": ERR("EXPLAIN ANALYZE of an unknown query"),
      "413": ERR("The body is larger than --max-body-bytes (code payload_too_large)"),
      "500": ERR("The data directory cannot be written, or a bug"),
    }}},
  "/v1/queries": {"get": {"summary": "Running and finished queries", "responses": {"200": js({"type": "array", "items": ref("QueryStatus")}, "Every query")}}},
  "/v1/queries/{id}": {"parameters": [id_param],
    "get": {"summary": "Status and metrics of a query", "responses": {"200": js(ref("QueryStatus"), "Query status"), "404": ERR("Unknown query")}},
    "delete": {"summary": "Cancel and drop a query", "responses": {"200": js({"type": "object", "additionalProperties": False, "required": ["status", "query_id"], "properties": {"status": {"const": "DELETED"}, "query_id": {"type": "string"}}}, "Deleted"), "404": ERR("Unknown query")}}},
  "/v1/queries/{id}/plan": {"parameters": [id_param],
    "get": {"summary": "EXPLAIN ANALYZE as data: the plan with each operator's figures", "responses": {"200": js(ref("Plan"), "The running plan"), "404": ERR("Unknown query")}}},
  "/v1/queries/{id}/ws": {"parameters": [id_param, {"name": "from_seq", "in": "query", "required": False, "schema": {"type": "integer", "minimum": 0}, "description": "First row to send (default 0; for a materialized view, absent means its current result as a snapshot frame, then the changes); older rows no longer retained are announced by a gap frame."}] + sub_params,
    "get": {"summary": "Websocket subscription to a running query's results", "description": frames,
      "responses": {"101": {"description": "Switching protocols; frames follow"}, "400": ERR("A bad from_seq, where, format or heartbeat_ms"), "404": ERR("Unknown query")}}},
  "/v1/subscribe": {"parameters": [
      {"name": "sql", "in": "query", "required": False, "schema": {"type": "string"}, "description": "The query to run for this socket; without it the first client message is a SubscribeRequest."},
      {"name": "settings", "in": "query", "required": False, "schema": {"type": "string"}, "description": "A JSON object of settings, as in POST /v1/sql."},
      {"name": "keep_running", "in": "query", "required": False, "schema": {"type": "string", "enum": ["true", "false"]}, "description": "Keep the query (listed, recovered) after the socket closes; by default it is cancelled with it."}] + sub_params,
    "get": {"summary": "Websocket: submit a query on the socket and receive its rows from the first", "description": "Runs the query for this subscriber, as Materialize's SUBSCRIBE does. " + frames + " Errors in a first message come as an error frame (with line and column for SQL errors), then the socket closes.",
      "requestBody": {"required": False, "description": "The first websocket message, when there is no sql parameter", "content": {"application/json": {"schema": ref("SubscribeRequest")}}},
      "responses": {"101": {"description": "Switching protocols; frames follow"}, "400": ERR("SQL in the URL that does not plan, or bad options")}}},
  "/v1/streams": {"get": {"summary": "Declared streams", "responses": {"200": js({"type": "array", "items": ref("Stream")}, "Every stream")}}},
  "/v1/streams/{name}/events": {"parameters": [{"name": "name", "in": "path", "required": True, "schema": {"type": "string"}}],
    "post": {"summary": "Send events (a JSON array of objects, or JSON lines) to an http stream",
      "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "array", "items": {"type": "object"}}}, "application/x-ndjson": {"schema": {"type": "string"}}}},
      "responses": {"200": js({"type": "object", "additionalProperties": False, "required": ["accepted", "queries"], "properties": {"accepted": {"type": "integer", "minimum": 0}, "queries": {"type": "integer", "minimum": 0}}}, "Accepted: events, and the queries they reached"),
        "400": ERR("Bad events, or not an http stream"), "404": ERR("Unknown stream"), "413": ERR("The body is larger than --max-body-bytes"), "500": ERR("The event log cannot be written")}}},
  "/metrics": {"get": {"summary": "Prometheus metrics: per query (label query) and per operator (labels query, node, operator)", "responses": {"200": {"description": "Text exposition format", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
  "/openapi.json": {"get": {"summary": "This document", "responses": {"200": js({"type": "object", "required": ["openapi", "paths"]}, "OpenAPI document")}}},
 },
 "components": {"schemas": {
  "SqlRequest": {"type": "object", "required": ["sql"], "properties": {"sql": {"type": "string"}, "settings": {"type": "object", "additionalProperties": {"type": ["string", "number", "boolean"]}, "description": "epoch_interval ('100ms', '0'), retained_rows, checkpoint_interval, ... (docs/sql.md)"}}},
  "SubscribeRequest": {"type": "object", "additionalProperties": False, "required": ["sql"], "properties": {"sql": {"type": "string"}, "settings": {"type": "object"}, "where": {"type": "string"}, "format": {"enum": ["json", "arrow"]}, "heartbeat_ms": {"type": "integer", "minimum": 50}, "keep_running": {"type": "boolean"}}},
  "Error": {"type": "object", "additionalProperties": False, "required": ["error"], "properties": {"error": {"type": "object", "additionalProperties": False, "required": ["code", "message"], "properties": {
      "code": {"enum": ["syntax_error", "unknown_object", "unsupported", "invalid", "bad_request", "payload_too_large", "unauthorized", "too_many", "shutting_down", "not_found", "data_dir", "event_log", "storage_full", "external", "internal"]},
      "message": {"type": "string"}, "line": {"type": "integer", "minimum": 1}, "column": {"type": "integer", "minimum": 1}}}}},
  "Column": {"type": "object", "additionalProperties": False, "required": ["name", "type"], "properties": {"name": {"type": "string"}, "type": {"type": "string"}}},
  "StatementResult": {"oneOf": [
      {"type": "object", "additionalProperties": False, "required": ["status"], "properties": {"status": {"type": "string"}, "name": {"type": "string"}}, "description": "DDL, SET, DROP: a status tag"},
      {"type": "object", "additionalProperties": False, "required": ["columns", "rows"], "properties": {"columns": {"type": "array", "items": ref("Column")}, "rows": {"type": "array", "items": {"type": "array"}}}, "description": "A finite result: SHOW, DESCRIBE, EXPLAIN, constant and bounded queries"},
      {"type": "object", "additionalProperties": False, "required": ["query_id", "columns", "subscribe"], "properties": {"query_id": {"type": "string"}, "columns": {"type": "array", "items": ref("Column")}, "subscribe": {"type": "string"}, "warnings": {"type": "array", "items": {"type": "string"}}}, "description": "A continuous query started"}]},
  "QueryStatus": {"type": "object", "additionalProperties": False,
    "required": ["query_id", "sql", "status", "columns", "subscribe", "epoch_interval_ms", "started_at_ms", "metrics", "plan", "warnings", "checkpoint"],
    "properties": {"query_id": {"type": "string"}, "sql": {"type": "string"}, "status": {"enum": ["running", "finished", "failed", "cancelled"]},
      "columns": {"type": "array", "items": ref("Column")}, "subscribe": {"type": "string"}, "epoch_interval_ms": {"type": "integer"}, "started_at_ms": {"type": "integer"},
      "metrics": {"type": "object", "additionalProperties": False,
        "required": ["rows_in", "rows_out", "epochs", "late_rows_dropped", "malformed_records", "state_rows", "latency_ms", "last_malformed", "watermark", "late_rows_by_window", "subscribers", "lagged_subscribers"],
        "properties": {"rows_in": {"type": "integer"}, "rows_out": {"type": "integer"}, "epochs": {"type": "integer"}, "late_rows_dropped": {"type": "integer"}, "malformed_records": {"type": "integer"}, "state_rows": {"type": "integer"},
          "latency_ms": {"oneOf": [{"type": "null"}, {"type": "object", "additionalProperties": False, "required": ["p50", "p99"], "properties": {"p50": {"type": "number"}, "p99": {"type": ["number", "null"]}}}]},
          "last_malformed": {"type": ["string", "null"]}, "watermark": ts,
          "late_rows_by_window": {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": ["window_start", "rows"], "properties": {"window_start": ts, "rows": {"type": "integer"}}}},
          "subscribers": {"type": "integer", "minimum": 0, "description": "Subscribers connected now"},
          "lagged_subscribers": {"type": "integer", "minimum": 0, "description": "Subscribers cut off for falling behind"},
          "shedding": ref("Shedding")}},
      "plan": {"type": "string"}, "warnings": {"type": "array", "items": {"type": "string"}},
      "checkpoint": {"type": "object", "additionalProperties": False, "required": ["enabled", "interval_ms", "last_id", "last_at", "last_bytes", "last_duration_ms", "last_pause_ms", "recent_pauses_ms", "last_reused_bytes", "restored_from", "replayed_steps", "recovery", "warnings"],
        "properties": {"enabled": {"type": "boolean"}, "interval_ms": opt_int, "last_id": opt_int, "last_at": ts, "last_bytes": opt_int, "last_duration_ms": {"type": ["number", "null"], "description": "How long the last checkpoint's writer took (in the background)"}, "last_pause_ms": {"type": ["number", "null"], "description": "How long the query stopped for the last checkpoint (its snapshot)"}, "recent_pauses_ms": {"type": "array", "items": {"type": "number"}, "description": "Pauses of the newest checkpoints (up to 100), oldest first"}, "last_reused_bytes": {"type": ["integer", "null"], "minimum": 0, "description": "Bytes of unchanged state the last checkpoint pointed at in earlier ones instead of writing (incremental checkpoints)"}, "restored_from": opt_int, "replayed_steps": {"type": "integer"}, "recovery": {"type": ["object", "null"], "additionalProperties": False, "required": ["bytes", "read_ms", "decode_ms", "restore_ms"], "description": "Where this run's recovery time went", "properties": {"bytes": {"type": "integer", "minimum": 0}, "read_ms": {"type": "number"}, "decode_ms": {"type": "number"}, "restore_ms": {"type": "number"}}}, "warnings": {"type": "array", "items": {"type": "string"}}}},
      "error": {"type": "string"}}},
  "Shedding": {"oneOf": [{"type": "null"}, {"type": "object", "additionalProperties": False, "required": ["max_lag_ms", "rate", "rows_shed", "lag_ms"],
    "description": "A query run with SET max_lag: how it sheds its input",
    "properties": {"max_lag_ms": {"type": "number"}, "rate": {"type": "number", "minimum": 0, "maximum": 1, "description": "The share of its input it keeps now"}, "rows_shed": {"type": "integer", "minimum": 0}, "lag_ms": {"type": "number", "description": "How far behind its input it was at its last epoch"}}}]},
  "Plan": {"type": "object", "additionalProperties": False, "required": ["query_id", "root", "late_rows_dropped", "text", "operators"],
    "properties": {"query_id": {"type": "string"}, "root": {"type": "integer"}, "late_rows_dropped": {"type": "integer"}, "shedding": ref("Shedding"), "text": {"type": "array", "items": {"type": "string"}, "description": "EXPLAIN ANALYZE's lines"},
      "operators": {"type": "array", "items": {"type": "object", "additionalProperties": False,
        "required": ["node", "operator", "inputs", "rows_in", "batches_in", "rows_out", "batches_out", "busy_ms", "busy_share", "watermark_in", "watermark_out", "state_rows", "state_bytes", "oldest_open_window_end", "input_states"],
        "properties": {"node": {"type": "integer"}, "operator": {"type": "string"}, "inputs": {"type": "array", "items": {"type": "integer"}}, "rows_in": {"type": "integer"}, "batches_in": {"type": "integer"}, "rows_out": {"type": "integer"}, "batches_out": {"type": "integer"},
          "busy_ms": {"type": "number"}, "busy_share": {"type": "number", "minimum": 0, "maximum": 1}, "watermark_in": ts, "watermark_out": ts, "state_rows": opt_int, "state_bytes": opt_int, "oldest_open_window_end": ts,
          "input_states": {"type": "array", "items": {"type": "object", "additionalProperties": False, "required": ["watermark", "state"], "properties": {"watermark": ts, "state": {"enum": ["active", "idle", "ended"]}}}}}}}}},
  "Stream": {"type": "object", "additionalProperties": False, "required": ["name", "connector", "bounded", "columns", "watermark", "status", "ddl"],
    "properties": {"name": {"type": "string"}, "connector": {"type": "string"}, "bounded": {"type": "boolean"}, "columns": {"type": "array", "items": ref("Column")}, "watermark": {"type": ["string", "null"]}, "status": {"type": "string"}, "ddl": {"type": "string"}}},
  "Frame": {"oneOf": [
      {"type": "object", "required": ["type", "columns", "query_id"], "properties": {"type": {"const": "schema"}, "columns": {"type": "array", "items": ref("Column")}, "query_id": {"type": "string"}, "updating": {"type": "boolean"}, "warnings": {"type": "array"}, "format": {"enum": ["json", "arrow"]}}},
      {"type": "object", "required": ["type", "from_seq", "first_available"], "properties": {"type": {"const": "gap"}, "from_seq": {"type": "integer"}, "first_available": {"type": "integer"}, "message": {"type": "string"}}},
      {"type": "object", "required": ["type", "seq", "next_seq", "rows"], "properties": {"type": {"const": "rows"}, "seq": {"type": "integer"}, "next_seq": {"type": "integer"}, "rows": {"type": "array", "items": {"type": "object"}}, "ops": {"type": "array", "items": {"enum": ["+", "-"]}}}},
      {"type": "object", "required": ["type", "next_seq", "rows"], "properties": {"type": {"const": "snapshot"}, "next_seq": {"type": "integer"}, "rows": {"type": "array", "items": {"type": "object"}}}},
      {"type": "object", "required": ["type", "watermark"], "properties": {"type": {"const": "progress"}, "watermark": ts, "sample_rate": {"type": "number", "description": "A shedding query's rate now"}}},
      {"type": "object", "required": ["type", "watermark", "next_seq"], "properties": {"type": {"const": "heartbeat"}, "watermark": ts, "next_seq": {"type": "integer"}}},
      {"type": "object", "required": ["type", "message"], "properties": {"type": {"const": "warning"}, "message": {"type": "string"}}},
      {"type": "object", "required": ["type"], "properties": {"type": {"const": "end"}}},
      {"type": "object", "required": ["type", "code", "message"], "properties": {"type": {"const": "error"}, "code": {"type": "string"}, "message": {"type": "string"}, "next_seq": {"type": "integer"}, "line": {"type": "integer"}, "column": {"type": "integer"}}}]},
 }},
}
for path, item in spec["paths"].items():
    for method, operation in item.items():
        if method in ("get", "post", "delete"):
            operation["responses"]["401"] = ERR("No token or not this server's (a server started with --token-file or SLUICE_TOKEN); code unauthorized")
            operation["security"] = [{}, {"bearer": []}, {"token": []}]
for path in ("/v1/sql", "/v1/queries/{id}/ws", "/v1/subscribe"):
    spec["paths"][path][("post" if path == "/v1/sql" else "get")]["responses"]["429"] = ERR("Over --max-queries or --max-subscribers(-per-query); code too_many")
spec["paths"]["/v1/sql"]["post"]["responses"]["413"]["description"] = "The body is larger than --max-body-bytes, or the SQL than --max-sql-bytes (code payload_too_large)"
events = spec["paths"]["/v1/streams/{name}/events"]["post"]
events["responses"]["429"] = ERR("A query reading the stream is a whole queue (64 posts) behind; nothing was taken. Retry-After: 1, or POST with ?wait=true (code too_many)")
events["responses"]["507"] = ERR("The disk holding the event log is full; nothing was taken (code storage_full)")
events["parameters"] = [{"name": "wait", "in": "query", "required": False, "schema": {"type": "string", "enum": ["true", "false"]}, "description": "Wait up to 30 s for queries that are behind instead of a 429"}]
spec["paths"]["/v1/sql"]["post"]["responses"]["503"] = ERR("The server is shutting down (code shutting_down)")
spec["components"]["securitySchemes"] = {
    "bearer": {"type": "http", "scheme": "bearer", "description": "The server's token (sluice serve --token-file F or SLUICE_TOKEN)"},
    "token": {"type": "apiKey", "in": "query", "name": "token", "description": "The token in the URL, for browsers' websockets"},
}
json.dump(spec, open(os.path.join(os.path.dirname(os.path.abspath(__file__)), "openapi.json"), "w"), indent=1)
