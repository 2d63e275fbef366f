//! The Postgres wire endpoint driven by real clients: the `psql` binary and
//! psycopg 3 (a Python driver, extended protocol, cursors, cancel), over
//! a server in this process on free loopback ports.

use std::process::Stdio;
use std::time::Duration;

use sluice_tests::data_dir;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::process::Command;

const WEBLOG: &str = "CREATE STREAM weblog (
  ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'file', path = '$DATA/weblog.log', format = 'text', delimiter = ' ')";

const LIVE: &str = "CREATE STREAM live (
  ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
  WATERMARK FOR ts AS ts - INTERVAL '2' SECOND
) WITH (connector = 'generator', kind = 'weblog', rate = '200', seed = '1')";

async fn server() -> sluice::RunningServer {
    sluice::start_with_pg("127.0.0.1:0", Some("127.0.0.1:0"), false, None).await.expect("server starts")
}

fn port(server: &sluice::RunningServer) -> String {
    server.pg_address.expect("pg endpoint").port().to_string()
}

/// Runs psql with `commands` (each a `-c`), unaligned and without headers;
/// returns (exit code, stdout, stderr).
async fn psql(server: &sluice::RunningServer, commands: &[&str]) -> (i32, String, String) {
    let mut command = Command::new("psql");
    command.args(["-X", "-A", "-t", "-h", "127.0.0.1", "-p", &port(server), "-U", "sluice", "-d", "sluice"]);
    for sql in commands {
        command.args(["-c", &sql.replace("$DATA", &data_dir().display().to_string())]);
    }
    let output = tokio::time::timeout(Duration::from_secs(30), command.output())
        .await
        .expect("psql finishes")
        .expect("psql runs (Debian postgresql-client)");
    (
        output.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_ddl_bounded_selects_and_describes() {
    let server = server().await;
    let (code, out, err) = psql(
        &server,
        &[
            WEBLOG,
            "CREATE TABLE owners (ip VARCHAR, owner VARCHAR)",
            "INSERT INTO owners VALUES ('10.0.0.1', 'ann'), ('10.0.0.2', NULL)",
            "SELECT ip, status FROM weblog WHERE status >= 500",
            // Without ORDER BY, keys come in key-group order.
            "SELECT ip, count(*) AS hits FROM weblog GROUP BY ip",
            "SELECT * FROM owners ORDER BY ip",
            "SELECT 1 AS one, current_setting('client_encoding')",
            "SHOW server_version",
            "SET epoch_interval = '10ms'",
            "SHOW STREAMS",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    let expected = "CREATE STREAM\nCREATE TABLE\nINSERT 0 2\n\
        10.0.0.1|500\n10.0.0.3|503\n\
        10.0.0.1|5\n10.0.0.3|4\n10.0.0.2|4\n\
        10.0.0.1|ann\n10.0.0.2|\n\
        1|UTF8\n\
        16.6 (Sluice 0.1.0)\n\
        SET\n\
        weblog|file|ts - INTERVAL '2' SECOND|ready\n";
    assert_eq!(out, expected);

    // \d lists streams and tables; \d name describes the columns.
    let (code, out, err) = psql(&server, &["\\d", "\\d weblog"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(out.contains("public|owners|table|sluice\npublic|weblog|table|sluice\n"), "{out}");
    assert!(out.contains("ts|timestamp without time zone|||\nip|text|||\nstatus|integer|||\n"), "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn errors_carry_sqlstate_and_position() {
    let server = server().await;
    psql(&server, &[WEBLOG]).await;
    let cases =
        [("SELECT nope FROM weblog", "42703", 8), ("SELECT ip FROM nowhere", "42P01", 16), ("SELEC 1", "42601", 1)];
    for (sql, state, position) in cases {
        let mut command = Command::new("psql");
        command.args(["-X", "-h", "127.0.0.1", "-p", &port(&server), "-v", "VERBOSITY=verbose", "-c", sql]);
        let output = command.output().await.expect("psql runs");
        let err = String::from_utf8_lossy(&output.stderr);
        assert!(err.contains(&format!("ERROR:  {state}:")), "{sql}: {err}");
        // psql draws the caret under the position.
        let caret_line = err.lines().find(|line| line.trim_start() == "^").unwrap_or_else(|| panic!("{sql}: {err}"));
        let statement_line = err.lines().find(|line| line.starts_with("LINE 1: ")).expect("LINE 1");
        assert_eq!(caret_line.len() - "LINE 1: ".len(), position, "{sql}: {err}\n{statement_line}");
    }
    // An unbounded SELECT is refused with the way to follow it.
    let (code, _, err) = psql(&server, &[LIVE, "SELECT ip FROM live"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("SUBSCRIBE (SELECT ip FROM live)"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn copy_subscribe_streams_until_psql_cancels() {
    let server = server().await;
    psql(&server, &[LIVE]).await;
    let mut child = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &port(&server), "-c"])
        .arg("COPY (SUBSCRIBE (SELECT ip, status FROM live)) TO STDOUT")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    let mut stdout = child.stdout.take().expect("stdout");
    let mut seen = String::new();
    let mut buffer = [0u8; 4096];
    tokio::time::timeout(Duration::from_secs(20), async {
        while seen.lines().count() < 20 {
            let read = stdout.read(&mut buffer).await.expect("reads");
            assert!(read > 0, "psql ended early: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buffer[..read]));
        }
    })
    .await
    .expect("rows arrive while the query runs");
    // Rows are numbered from 0 and carry the query's columns.
    for (number, line) in seen.lines().take(20).enumerate() {
        let fields: Vec<&str> = line.split('\t').collect();
        assert_eq!(fields.len(), 3, "{line}");
        assert_eq!(fields[0], number.to_string());
    }
    assert_eq!(server.engine.queries().len(), 1, "the subscription runs one query");
    // Ctrl-C: psql sends a CancelRequest.
    let pid = child.id().expect("pid") as i32;
    assert_eq!(unsafe_kill(pid), 0);
    let output = tokio::time::timeout(Duration::from_secs(10), child.wait_with_output())
        .await
        .expect("psql ends")
        .expect("output");
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(err.contains("canceling statement due to user request"), "{err}");
    tokio::time::sleep(Duration::from_millis(100)).await;
    assert!(server.engine.queries().is_empty(), "the cancelled subscription's query is dropped");
}

/// SIGINT, as Ctrl-C sends it.
fn unsafe_kill(pid: i32) -> i32 {
    std::process::Command::new("kill")
        .args(["-INT", &pid.to_string()])
        .status()
        .map_or(-1, |status| status.code().unwrap_or(-1))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_bytes_close_only_that_connection() {
    let server = server().await;
    psql(&server, &[WEBLOG]).await;
    let address = server.pg_address.expect("pg");
    // The last: a startup, then a Bind whose parameter claims more bytes
    // than the message holds (found by fuzz/run.sh pgwire): pgwire 0.41's
    // decoder panics on it, which ends only that connection's task.
    let bind_past_its_end = std::fs::read(
        std::path::Path::new(env!("CARGO_MANIFEST_DIR"))
            .join("../fuzz/regressions/pgwire/bind-parameter-past-the-message"),
    )
    .unwrap();
    for garbage in
        [&b"\x00\x00\x00\x08\x12\x34\x56\x78"[..], b"GET / HTTP/1.1\r\n\r\n", &[0xff; 64], &bind_past_its_end]
    {
        let mut socket = tokio::net::TcpStream::connect(address).await.expect("connects");
        let _ = socket.write_all(garbage).await;
        let mut sink = Vec::new();
        let closed = tokio::time::timeout(Duration::from_secs(15), socket.read_to_end(&mut sink)).await;
        assert!(closed.is_ok(), "the server closes a connection that sends garbage");
    }
    let (code, out, err) = psql(&server, &["SELECT count(*) FROM weblog"]).await;
    assert_eq!((code, out.as_str()), (0, "13\n"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psycopg_connects_binds_fetches_cursors_and_cancels() {
    let server = server().await;
    psql(&server, &[WEBLOG, LIVE]).await;
    let script = r#"
import sys, threading, psycopg
conn = psycopg.connect(host="127.0.0.1", port=int(sys.argv[1]), user="sluice", dbname="sluice", autocommit=True)
cur = conn.cursor()
# Extended protocol with a bound parameter, binary results.
cur.execute("SELECT ip, status, duration, ts FROM weblog WHERE status = %s", (404,), binary=True)
rows = cur.fetchall()
print("bound", len(rows), rows[0][0], rows[0][1], type(rows[0][2]).__name__, type(rows[0][3]).__name__)
cur.execute("SELECT version()")
print("version", cur.fetchone()[0].startswith("PostgreSQL 16"))
# A cursor over a live query, as on Materialize.
with conn.transaction():
    cur.execute("DECLARE c CURSOR FOR SUBSCRIBE (SELECT ip FROM live)")
    # FETCH waits for the first row, then takes what has arrived (as
    # Materialize's does): fetch until five have come.
    first = []
    while len(first) < 5:
        cur.execute("FETCH %d c" % (5 - len(first)))
        first += cur.fetchall()
    cur.execute("FETCH ALL c")
    more = cur.fetchall()
print("fetched", [row[0] for row in first], len(more) >= 1, more[0][0] if more else None)
# An error with its SQLSTATE; the connection stays usable.
try:
    cur.execute("SELECT nope FROM weblog")
except psycopg.Error as error:
    print("error", error.sqlstate)
# Cancel a live subscription from another thread.
timer = threading.Timer(1.0, conn.cancel)
timer.start()
try:
    for row in cur.stream("SUBSCRIBE (SELECT ip FROM live)"):
        pass
except psycopg.errors.QueryCanceled:
    print("cancelled")
cur.execute("SELECT 1")
print("after", cur.fetchone()[0])
"#;
    let output = tokio::time::timeout(
        Duration::from_secs(60),
        Command::new("python3").arg("-c").arg(script).arg(port(&server)).output(),
    )
    .await
    .expect("the script finishes")
    .expect("python3 runs");
    let out = String::from_utf8_lossy(&output.stdout);
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{out}\n{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[0], "bound 4 10.0.0.2 404 float datetime", "{out}");
    assert_eq!(lines[1], "version True");
    assert_eq!(lines[2], "fetched [0, 1, 2, 3, 4] True 5", "{out}");
    assert_eq!(&lines[3..], ["error 42703", "cancelled", "after 1"], "{out}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_runs_match_recognize_over_bounded_input() {
    let server = server().await;
    let (code, out, err) = psql(
        &server,
        &[
            WEBLOG,
            "SELECT ip, first_status, n FROM weblog MATCH_RECOGNIZE (
               PARTITION BY ip ORDER BY ts
               MEASURES FIRST(A.status) AS first_status, COUNT(*) AS n
               ONE ROW PER MATCH
               PATTERN (A B+)
               DEFINE B AS B.status > PREV(B.status)
             ) AS m",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    // 10.0.0.1: 200 then 500, later 200 then 404; 10.0.0.3: 200 then 503.
    assert_eq!(out, "CREATE STREAM\n10.0.0.1|200|2\n10.0.0.1|200|2\n10.0.0.3|200|2\n");
}

/// `SUBSCRIBE TO qN` of a query whose first rows are no longer retained
/// says so in a NOTICE before the rows, and the rows' seqs start there.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn attaching_past_the_retained_rows_gives_a_notice() {
    let server = server().await;
    let engine = server.engine.clone();
    let mut settings = sluice::settings::Settings::new();
    settings.insert("epoch_interval".into(), "0".into());
    let ddl = "CREATE STREAM gen (ts TIMESTAMP, status INT, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
               WITH (connector = 'generator', kind = 'weblog', rate = '1000000', rows = '30000', seed = '2')";
    engine.execute(ddl, &mut settings).await.expect("DDL");
    engine.execute("SELECT status FROM gen", &mut settings).await.expect("query starts");
    for _ in 0..600 {
        if engine.query("q1").is_some_and(|query| query.report().status.name() == "finished") {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let (code, out, err) = psql(&server, &["COPY (SUBSCRIBE TO q1) TO STDOUT"]).await;
    assert_eq!(code, 0, "{err}");
    assert!(err.contains("NOTICE:  rows 0 to "), "{err}");
    let first_seq: u64 = out.lines().next().and_then(|line| line.split('\t').next()).unwrap().parse().unwrap();
    assert!(first_seq > 0 && err.contains(&format!("starts at seq {first_seq}")), "{first_seq}: {err}");
}

/// A top-level ORDER BY (with LIMIT and OFFSET) sorts a bounded SELECT's
/// final rows, as a batch query would; bound LIMITs are numbers.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bounded_selects_are_sorted_by_their_order_by() {
    let server = server().await;
    let (code, out, err) = psql(
        &server,
        &[
            WEBLOG,
            "SELECT ip, count(*) AS hits FROM weblog GROUP BY ip ORDER BY hits DESC, ip",
            "SELECT ip, status FROM weblog ORDER BY status DESC, ip LIMIT 2",
            "SELECT ip, count(*) AS hits FROM weblog GROUP BY ip ORDER BY 2, 1 LIMIT 1 OFFSET 1",
        ],
    )
    .await;
    assert_eq!(code, 0, "{err}");
    assert_eq!(
        out, "CREATE STREAM\n10.0.0.1|5\n10.0.0.2|4\n10.0.0.3|4\n10.0.0.3|503\n10.0.0.1|500\n10.0.0.3|4\n",
        "{err}"
    );
    let (_, _, err) = psql(&server, &["SELECT ip FROM weblog ORDER BY duration"]).await;
    assert!(err.contains("may name only result columns"), "{err}");
    let script = r#"
import sys, psycopg
with psycopg.connect(f"host=127.0.0.1 port={sys.argv[1]} user=sluice dbname=sluice") as conn:
    rows = conn.execute("SELECT ip, count(*) AS hits FROM weblog GROUP BY ip ORDER BY hits DESC LIMIT %s", (1,)).fetchall()
    print(rows)
"#;
    let output = Command::new("python3").arg("-c").arg(script).arg(port(&server)).output().await.expect("python3 runs");
    assert_eq!(
        String::from_utf8_lossy(&output.stdout),
        "[('10.0.0.1', 5)]\n",
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
}

/// A server shutting down ends a running SUBSCRIBE with the admin-shutdown
/// error (57P01) rather than leaving psql waiting.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_shutdown_ends_subscriptions_with_admin_shutdown() {
    let server = server().await;
    let (code, _, err) = psql(&server, &[LIVE]).await;
    assert_eq!(code, 0, "{err}");
    let mut child = Command::new("psql")
        .args(["-X", "-h", "127.0.0.1", "-p", &port(&server), "-U", "u", "-d", "d", "-v", "VERBOSITY=verbose"])
        .args(["-c", "COPY (SUBSCRIBE (SELECT ip FROM live)) TO STDOUT"])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("psql runs");
    let mut stdout = child.stdout.take().unwrap();
    let mut first = [0u8; 1];
    tokio::time::timeout(Duration::from_secs(30), stdout.read_exact(&mut first)).await.unwrap().unwrap();
    assert!(server.engine.shutdown(Duration::from_secs(10)).await.is_empty());
    let output = tokio::time::timeout(Duration::from_secs(30), child.wait_with_output()).await.unwrap().unwrap();
    let err = String::from_utf8_lossy(&output.stderr);
    assert!(!output.status.success());
    assert!(err.contains("57P01") && err.contains("shutting down"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_reads_views_and_materialized_views() {
    let server = server().await;
    let (code, out, err) = psql(
        &server,
        &[
            LIVE,
            "CREATE VIEW errors AS SELECT ip, status FROM live WHERE status >= 500",
            "CREATE MATERIALIZED VIEW error_counts AS SELECT ip, count(*) AS n FROM errors GROUP BY ip",
            "SHOW VIEWS",
        ],
    )
    .await;
    assert_eq!(code, 0, "{out}\n{err}");
    assert!(out.contains("errors|view") && out.contains("error_counts|materialized view"), "{out}");
    // The materialized view's current rows, at once, although `live` never ends.
    let mut total = 0;
    for _ in 0..100 {
        let (code, out, err) = psql(&server, &["SELECT coalesce(sum(n), 0) FROM error_counts"]).await;
        assert_eq!(code, 0, "{out}\n{err}");
        total = out.trim().parse::<i64>().unwrap_or_default();
        if total > 0 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(total > 0, "the view counted errors");
    let (code, _, err) = psql(&server, &["DROP VIEW errors"]).await;
    assert_ne!(code, 0);
    assert!(err.contains("materialized view error_counts reads errors"), "{err}");
}

/// `SET max_lag` from psql: a bounded SELECT through a burst returns its
/// windows with their estimates, errors and rates, and EXPLAIN ANALYZE of
/// a running shedding query shows its rate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn psql_sets_max_lag_and_reads_shed_estimates() {
    let server = server().await;
    let stream =
        "CREATE STREAM burst (ts TIMESTAMP, ip VARCHAR, duration DOUBLE, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
        WITH (connector = 'generator', realtime = 'true', rate = '2000', hosts = '1', burst_factor = '1000',
              burst_after = '1', burst_seconds = '1', rows = '2004000')";
    let query = "SELECT window_start, count(*) AS hits, count_error(*) AS hits_error
        FROM TUMBLE(TABLE burst, DESCRIPTOR(ts), INTERVAL '1' SECOND) GROUP BY window_start, window_end";
    let (code, out, err) = psql(&server, &[stream, "SET max_lag = '300ms'", query]).await;
    assert_eq!(code, 0, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines[..2], ["CREATE STREAM", "SET"], "{out}");
    // window_start|hits|hits_error|sample_rate, one row per window.
    let windows: Vec<Vec<f64>> = lines[2..]
        .iter()
        .filter(|line| line.starts_with("2016-"))
        .map(|line| line.split('|').skip(1).map(|cell| cell.parse().unwrap()).collect())
        .collect();
    assert!(windows.len() >= 3, "{out}");
    assert!(windows.iter().all(|window| window.len() == 3), "{out}");
    let shed: Vec<&Vec<f64>> = windows.iter().filter(|window| window[2] < 1.0).collect();
    assert!(!shed.is_empty(), "nothing was shed: {out}");
    // The burst's second holds 2 M rows: estimated within its interval's scale.
    let burst = windows.iter().map(|window| window[0]).fold(0.0, f64::max);
    assert!((1.6e6..2.4e6).contains(&burst), "{out}");
    assert!(shed.iter().all(|window| window[1] > 0.0), "{out}");
}
