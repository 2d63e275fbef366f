//! The real `sluice repl` binary in a pseudo-terminal: a script types into
//! it and reads the screen (`pty_session.py`, Python's standard library).
//! Covers multi-line statements, carets, backslash commands, completion,
//! live redrawing, Ctrl-C and Ctrl-D, and history kept across sessions.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::{Value, json};

fn data() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/data")
}

fn send(text: &str) -> Value {
    json!({"send": text})
}

fn expect(pattern: &str) -> Value {
    json!({"expect": pattern, "timeout": 30})
}

/// Runs the REPL against `url` through `steps`; returns the transcript.
fn session(dir: &Path, name: &str, url: &str, steps: Vec<Value>) -> String {
    let steps_path = dir.join(format!("{name}.json"));
    std::fs::write(&steps_path, serde_json::to_vec(&steps).unwrap()).unwrap();
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/pty_session.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(&steps_path)
        .arg("--")
        .arg(env!("CARGO_BIN_EXE_sluice"))
        .args(["repl", "--url", url])
        .env("SLUICE_HISTORY", dir.join("history"))
        .output()
        .expect("python3 runs");
    let transcript = String::from_utf8_lossy(&output.stdout).into_owned();
    assert!(output.status.success(), "{transcript}\n{}", String::from_utf8_lossy(&output.stderr));
    transcript
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_at_a_terminal_uses_the_repl() {
    let server = sluice::start("127.0.0.1:0", false, None).await.expect("server starts");
    let url = server.url();
    let dir = std::env::temp_dir().join(format!("sluice-repl-pty-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let http = reqwest::Client::new();
    let ddl = [
        format!(
            "CREATE STREAM weblog (ts TIMESTAMP, ip VARCHAR, status INT, method VARCHAR, url VARCHAR, duration DOUBLE,
               WATERMARK FOR ts AS ts - INTERVAL '2' SECOND)
             WITH (connector = 'file', path = '{}/weblog.log', format = 'text', delimiter = ' ')",
            data().display()
        ),
        "CREATE STREAM gen (ts TIMESTAMP, ip VARCHAR, WATERMARK FOR ts AS ts - INTERVAL '1' SECOND)
         WITH (connector = 'generator', kind = 'weblog', rate = '50')"
            .to_string(),
    ];
    for sql in ddl {
        let response = http.post(format!("{url}/v1/sql")).json(&json!({"sql": sql})).send().await.unwrap();
        assert_eq!(response.status(), 200);
    }
    let script = dir.join("show.sql");
    std::fs::write(&script, "SHOW STREAMS;\n").unwrap();
    let output_file = dir.join("out.txt");

    let steps = vec![
        expect(r"sluice> "),
        send("\\?\r"),
        expect(r"\\dq\s+list running queries"),
        send("\\d\r"),
        expect(r"List of relations[\s\S]*weblog\s+stream\s+file"),
        send("\\d weblog\r"),
        expect(r"ts\s+TIMESTAMP"),
        // Tab completes a column and a stream; the statement spans lines.
        send("SELECT sta\t"),
        expect(r"SELECT status"),
        send(", count(*) AS n FROM web\t"),
        expect(r"FROM weblog"),
        send("\r"),
        expect(r"-> "),
        send("GROUP BY status;\r"),
        // An updating result on a terminal: the live table and its status
        // line, redrawn until the query ends.
        expect(r"-- q\d+ \| watermark [\s\S]*\(query q\d+ finished: \d+ rows\)"),
        send("SELECT ip\r"),
        send("FROM nope;\r"),
        expect(r"ERROR: stream 'nope' not found\s+LINE 2: FROM nope;\s+\^"),
        send("\\timing\r"),
        expect(r"Timing is on\."),
        send("SHOW STREAMS;\r"),
        expect(r"Time: \d+\.\d+ ms"),
        send("\\timing\r"),
        expect(r"Timing is off\."),
        send("\\x\r"),
        expect(r"Expanded display is on\."),
        send("SHOW STREAMS;\r"),
        expect(r"-\[ RECORD 1 \]-+\s+name\s+\| (gen|weblog)"),
        send("\\x\r"),
        expect(r"Expanded display is off\."),
        send(&format!("\\o {}\r", output_file.display())),
        expect(r"Results go to "),
        send("SHOW TABLES;\r"),
        send("\\o\r"),
        expect(r"Results go to the terminal\."),
        send(&format!("\\i {}\r", script.display())),
        expect(r"weblog\s+file"),
        // Ctrl-C at once, before any row: the statement stops, not the REPL.
        send("SELECT ip FROM gen;\r\u{3}"),
        expect(r"\(subscription ended; query q\d+ cancelled after \d+ rows\)[\s\S]*sluice> "),
        // An append-only live query prints as it arrives; Ctrl-C stops it
        // and cancels the query.
        send("SELECT ip FROM gen;\r"),
        expect(r"query q\d+ running[\s\S]*\| \d+\.\d+\.\d+\.\d+"),
        send("\u{3}"),
        expect(r"\(subscription ended; query q\d+ cancelled after \d+ rows\)[\s\S]*sluice> "),
        send("\\dq\r"),
        expect(r"in/s[\s\S]*\(\d+ rows?\)"),
        send("\\nope\r"),
        expect(r"invalid command \\nope"),
        send("\u{4}"),
    ];
    let first = session(&dir, "first", &url, steps);
    assert!(first.contains("weblog"), "{first}");
    let written = std::fs::read_to_string(&output_file).unwrap();
    assert!(written.contains("(0 rows)"), "\\o wrote {written:?}");
    let history = std::fs::read_to_string(dir.join("history")).unwrap();
    assert!(history.contains("SHOW STREAMS;") && history.contains("\\dq"), "{history}");

    // A new session finds the last session's statements with Up.
    let steps = vec![expect(r"sluice> "), send("\u{1b}[A"), expect(r"\\nope"), send("\u{3}"), send("\u{4}")];
    session(&dir, "second", &url, steps);
    let _ = std::fs::remove_dir_all(&dir);
}
