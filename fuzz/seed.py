#!/usr/bin/env python3
"""Seeds fuzz/corpus/<target>/ from the repository's own inputs: every
statement of the .slt files and queries/ (sql, http, pgwire), the test data
files (records), and small data-directory files (storage). cargo fuzz then
grows the corpus; `cargo fuzz cmin` keeps it small.

usage: fuzz/seed.py   (from the repository root; standard library only)
"""

import hashlib
import json
import pathlib
import re
import struct
import zlib

ROOT = pathlib.Path(__file__).resolve().parent.parent
CORPUS = ROOT / "fuzz" / "corpus"


def put(target, data):
    if isinstance(data, str):
        data = data.encode()
    directory = CORPUS / target
    directory.mkdir(parents=True, exist_ok=True)
    (directory / hashlib.sha1(data).hexdigest()).write_bytes(data)


def statements():
    """SQL statements of the .slt files and queries/, with the fuzz catalog's names."""
    found = []
    for slt in sorted((ROOT / "tests" / "sql").glob("*.slt")):
        block = []
        for line in slt.read_text().splitlines() + [""]:
            if line.startswith(("statement", "query")):
                block = []
                continue
            if line.strip() == "----" or not line.strip():
                if block:
                    found.append("\n".join(block))
                block = []
                continue
            if not line.startswith("#"):
                block.append(line)
    for sql in sorted((ROOT / "queries").rglob("*.sql")):
        found.append(sql.read_text())
    # Keep them short and distinct.
    seen, result = set(), []
    for text in found:
        text = text.strip()
        if 0 < len(text) < 4000 and text not in seen:
            seen.add(text)
            result.append(text)
    return result


def pg_message(kind, body):
    return kind + struct.pack("!I", len(body) + 4) + body


def startup():
    body = struct.pack("!I", 196608) + b"user\0sluice\0database\0sluice\0\0"
    return struct.pack("!I", len(body) + 4) + body


def main():
    sql = statements()
    for text in sql:
        put("sql", text)
        put("http", b"\x01/v1/sql\n" + json.dumps({"sql": text}).encode())
        put("http", b"\x06" + json.dumps({"sql": text, "where": "true", "format": "arrow", "heartbeat_ms": 100}).encode())
        put("pgwire", startup() + pg_message(b"Q", text.encode() + b"\0"))
    put("sql", "SET epoch_interval = '0'; SHOW STREAMS; EXPLAIN SELECT k, count(*) FROM ev GROUP BY k")
    put(
        "sql",
        "SELECT * FROM ev MATCH_RECOGNIZE (PARTITION BY k ORDER BY ts MEASURES FIRST(A.v) AS a "
        "ONE ROW PER MATCH AFTER MATCH SKIP PAST LAST ROW PATTERN (A B+ C?) "
        "DEFINE B AS B.v > PREV(B.v), C AS C.v < 0)",
    )
    put("sql", "SELECT window_start, k, sum(v) FROM TABLE(TUMBLE(TABLE ev, DESCRIPTOR(ts), INTERVAL '1' SECOND)) GROUP BY 1, 2")
    put("sql", "SELECT e.k, o.owner FROM ev e JOIN owners o ON e.k = o.k")
    put("sql", "SELECT a.k FROM ev a JOIN other b ON a.k = b.k AND b.ts BETWEEN a.ts AND a.ts + INTERVAL '1' SECOND")

    # HTTP: every route, good and odd.
    for method, path, body in [
        (0, "/v1/streams", b""),
        (0, "/v1/queries", b""),
        (0, "/v1/queries/q1", b""),
        (0, "/v1/queries/q1/plan", b""),
        (2, "/v1/queries/q1", b""),
        (0, "/metrics", b""),
        (0, "/openapi.json", b""),
        (0, "/v1/subscribe?sql=SELECT%20k%20FROM%20ev&where=v%3E1&format=arrow", b""),
        (0, "/v1/queries/q1/ws?from_seq=3&heartbeat_ms=10", b""),
        (1, "/v1/streams/ev/events", b'[{"ts": "2026-01-01T00:00:00", "k": "a", "v": 1}]'),
        (1, "/v1/streams/ev/events?wait=true", b'{"ts": "2026-01-01T00:00:00", "k": "a", "v": 1, "d": 1.5}\n{"k": 2}'),
        (1, "/v1/streams/nope/events", b"{}"),
        (1, "/v1/sql", b'{"sql": "SELECT k FROM ev", "settings": {"epoch_interval": "10ms"}}'),
        (1, "/v1/sql", b'{"sql": 7}'),
        (1, "/v1/sql", b"not json"),
    ]:
        put("http", bytes([method]) + path.encode() + b"\n" + body)

    # pgwire: startup, SSL request, extended protocol, cancel, COPY.
    put("pgwire", struct.pack("!II", 8, 80877103))
    put("pgwire", struct.pack("!IIII", 16, 80877102, 1, 2))
    parse = pg_message(b"P", b"\0SELECT k FROM ev LIMIT $1\0" + struct.pack("!HI", 1, 23))
    bind = pg_message(b"B", b"\0\0" + struct.pack("!HH", 0, 1) + struct.pack("!I", 1) + b"5" + struct.pack("!H", 0))
    execute = pg_message(b"E", b"\0" + struct.pack("!I", 0))
    put("pgwire", startup() + parse + bind + pg_message(b"D", b"P\0") + execute + pg_message(b"S", b""))
    put("pgwire", startup() + pg_message(b"Q", b"DECLARE c CURSOR FOR SUBSCRIBE ev; FETCH 10 c\0"))
    put("pgwire", startup() + pg_message(b"Q", b"COPY (SUBSCRIBE TO q1) TO STDOUT\0") + pg_message(b"c", b""))
    put("pgwire", startup() + pg_message(b"p", b"secret\0") + pg_message(b"X", b""))

    # Records: format byte, columns byte, lines.
    for data in sorted((ROOT / "tests" / "data").iterdir()):
        if data.is_file() and data.stat().st_size < 20000:
            text = data.read_bytes()[:4000]
            fmt = {".csv": 2, ".json": 4, ".jsonl": 4}.get(data.suffix, 0)
            put("records", bytes([fmt, 0xFF]) + text)
            put("records", bytes([fmt, 0x05]) + text)
    put("records", bytes([4, 0x0F]) + b'{"ts": "2026-01-01T00:00:00", "ip": "10.0.0.1", "status": 200, "ok": true}\n{"ts": 1}\n')
    put("records", bytes([0, 0xFF]) + b"2026-01-01T00:00:00 10.0.0.1 200 1.5 true 7 2026-01-01T00:00:00.123 2026-01-01\n")
    put("records", bytes([3, 0x03]) + b'ts;ip\n"2026-01-01 00:00:00";"a;b"\n')

    # Storage: kind byte, then the file.
    put("storage", bytes([0]) + b"ARROW1")
    manifest = {
        "format_version": 1, "id": 0, "taken_at_ms": 0, "plan": ["filter"],
        "sources": [{"position": 0, "max_event_time": None, "ended": False, "idle": False}],
        "last_clock": 0,
        "counters": {"rows_in": 0, "rows_out": 0, "epochs": 0, "late_rows_dropped": 0, "malformed_records": 0, "watermark": 0},
        "files": [],
    }
    put("storage", bytes([1]) + json.dumps(manifest).encode())
    put("storage", bytes([2]) + b"r 0 10 5\ne 0\ni 0\nc 0 7\nr 0 4")
    payload = b'{"k": "a", "v": 1}'
    record = struct.pack("<II", len(payload), zlib.crc32(payload)) + payload
    put("storage", bytes([3]) + record + record + b"\x09\x00")
    put("storage", bytes([4]) + json.dumps({"format_version": 1, "streams": [{"name": "s", "ddl": "CREATE STREAM s (x INT) WITH (connector = 'http')"}], "queries": []}).encode())
    for target in sorted(p.name for p in CORPUS.iterdir()):
        print(f"{target}: {len(list((CORPUS / target).iterdir()))} inputs")


if __name__ == "__main__":
    main()
