//! The `sluice` binary: flags in, library calls out.

use clap::{Parser, Subcommand};

/// Many small allocations (keys, sessions, Arrow buffers) come and go every
/// epoch; mimalloc keeps them off glibc's slow paths.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

#[derive(Parser)]
#[command(name = "sluice", version, about = "Streaming SQL server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
    /// Threads that run queries' pipelines, apart from the ones serving
    /// HTTP, websockets and Postgres (default: one per core); 0 runs
    /// queries on the API's threads.
    #[arg(long, global = true)]
    pipeline_threads: Option<usize>,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// HTTP address; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:7878")]
        http: String,
        /// Postgres wire protocol address (psql, drivers); `off` turns it off.
        #[arg(long, default_value = "127.0.0.1:6875")]
        pg: String,
        /// Also declare the built-in demo streams.
        #[arg(long)]
        demo: bool,
        /// Where streams and queries are kept across restarts.
        #[arg(long, default_value = "./sluice-data")]
        data_dir: std::path::PathBuf,
        /// The largest HTTP request body taken (larger ones get 413).
        #[arg(long, default_value_t = sluice::state::DEFAULT_MAX_BODY_BYTES)]
        max_body_bytes: usize,
        /// A file holding the token every client must present (HTTP
        /// `Authorization: Bearer`, websocket `?token=`, Postgres password);
        /// or set SLUICE_TOKEN.
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// Listen beyond loopback without a token.
        #[arg(long)]
        insecure: bool,
        /// A PEM certificate chain: serve HTTP, websockets and Postgres
        /// over TLS (with --tls-key).
        #[arg(long, requires = "tls_key")]
        tls_cert: Option<std::path::PathBuf>,
        /// The PEM private key of --tls-cert.
        #[arg(long, requires = "tls_cert")]
        tls_key: Option<std::path::PathBuf>,
        /// How http streams' event logs and queries' input logs reach the
        /// disk before a POST is acknowledged or a result published:
        /// always (a sync per POST), batch (POSTs arriving together share
        /// one sync), never (the OS's cache: survives a crash of Sluice,
        /// not of the machine).
        #[arg(long, default_value = "batch")]
        fsync: sluice_runtime::Fsync,
        /// Bytes of SQL in one request.
        #[arg(long, default_value_t = sluice::engine::Limits::default().max_sql_bytes)]
        max_sql_bytes: usize,
        /// Statements in one request.
        #[arg(long, default_value_t = sluice::engine::Limits::default().max_statements)]
        max_statements: usize,
        /// Queries running at once (more get 429).
        #[arg(long, default_value_t = sluice::engine::Limits::default().max_queries)]
        max_queries: usize,
        /// Subscribers of one query.
        #[arg(long, default_value_t = sluice::engine::Limits::default().max_subscribers_per_query)]
        max_subscribers_per_query: usize,
        /// Subscribers of all queries.
        #[arg(long, default_value_t = sluice::engine::Limits::default().max_subscribers)]
        max_subscribers: usize,
        /// The most result rows a query may retain (SET retained_rows).
        #[arg(long, default_value_t = sluice::engine::Limits::default().max_retained_rows)]
        max_retained_rows: usize,
        /// HTTP, websocket and Postgres connections open at once (more
        /// are answered 503 / SQLSTATE 53300 and closed).
        #[arg(long, default_value_t = sluice::engine::Limits::default().max_connections)]
        max_connections: usize,
        /// Threads each query's key-partitioned operators run on unless it
        /// sets `parallelism` (default: one per core).
        #[arg(long, default_value_t = sluice::engine::Limits::default().parallelism)]
        parallelism: usize,
        /// Bytes of operator state one query may hold; 0 for no limit.
        #[arg(long, default_value_t = sluice::engine::Limits::default().max_state_bytes.unwrap_or(0))]
        max_state_bytes: u64,
    },
    /// Run the server with the demo streams and print a live demo query.
    Demo {
        #[arg(long, default_value = "127.0.0.1:7878")]
        http: String,
        /// Postgres wire protocol address; `off` turns it off.
        #[arg(long, default_value = "127.0.0.1:6875")]
        pg: String,
        /// The query to print (a file such as queries/cep/post_without_get.sql);
        /// default queries/weblog/top_error_ips.sql.
        #[arg(long)]
        query: Option<std::path::PathBuf>,
        /// A Kafka broker (`host:port`): the `weblog` stream is written to
        /// and read from its topic `weblog`.
        #[arg(long)]
        kafka: Option<String>,
    },
    /// Measure throughput: run queries in-process over generated records.
    /// `sluice bench nexmark --query q5` runs Nexmark queries instead.
    Bench {
        /// `weblog` (default), `nexmark`, `checkpoint` (checkpoint size,
        /// duration and recovery time of a query with `--keys` keys of state),
        /// `fanout` (one query, `--subscribers` websocket readers and one
        /// that never reads), or `many` (`--subscribers` concurrent queries
        /// for 20 s, and the HTTP API's latency meanwhile), or `api` (the
        /// HTTP API's latency while one Nexmark `--query` runs flat out,
        /// default q16), or `latency` (event to result on a websocket at
        /// 100 000 events/s for q0, q1, q2 and a TUMBLE, with epochs of 10
        /// ms and 0), or `shed` (a windowed aggregate through a burst to ten
        /// times the capacity, without and with `SET max_lag`).
        #[arg(default_value = "weblog")]
        suite: String,
        /// Queries to run: filter, tumble, hop, hop_10s, session, running, top_n, interval_join, window_join,
        /// pattern_v, pattern_rising, pattern_ambiguous, pattern_adversarial, pattern_nested;
        /// for nexmark q0 ... q22 (default: all).
        #[arg(long = "query")]
        queries: Vec<String>,
        #[arg(long, default_value_t = 1_000_000)]
        events: u64,
        /// Distinct keys (client IPs) in the generated data.
        #[arg(long, default_value_t = 40)]
        keys: u64,
        /// checkpoint: recover a state of about this size (such as 1G or
        /// 500M) instead of `--keys` keys.
        #[arg(long, value_parser = parse_bytes)]
        state_bytes: Option<u64>,
        /// fanout: websocket subscribers of the one query.
        #[arg(long, default_value_t = 1000)]
        subscribers: usize,
        /// nexmark: where bids come from: generator, csv or json (a file of
        /// the same bids, which DataFusion batch reads too).
        #[arg(long, default_value = "generator")]
        source: String,
        #[arg(long, default_value = "100ms")]
        epoch_interval: String,
        /// nexmark: run each query and its batch counterpart this many
        /// times and report the fastest of each.
        #[arg(long, default_value_t = 1)]
        runs: usize,
        /// fanout, many: the bench's server asks for the token in this
        /// file (or SLUICE_TOKEN) and its clients present it.
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
        /// Threads each query's key-partitioned operators use (`SET
        /// parallelism`; default: one per core).
        #[arg(long)]
        parallelism: Option<usize>,
        /// Key groups each operator with per-key state is split into (`SET
        /// max_parallelism`; default 8, 1 keeps operators whole).
        #[arg(long)]
        max_parallelism: Option<usize>,
        /// shed: how long the burst to ten times the capacity lasts, seconds.
        #[arg(long, default_value_t = 30.0)]
        burst_seconds: f64,
        /// shed: the shedding run's `SET max_lag`.
        #[arg(long, default_value = "500ms")]
        max_lag: String,
    },
    /// An interactive SQL client of a running server.
    Repl {
        #[arg(long, default_value = "http://127.0.0.1:7878")]
        url: String,
        /// The server's token, from this file (or SLUICE_TOKEN).
        #[arg(long)]
        token_file: Option<std::path::PathBuf>,
    },
}

/// The token from `--token-file` (trimmed), else `SLUICE_TOKEN`.
fn token(file: Option<&std::path::Path>) -> anyhow::Result<Option<String>> {
    if let Some(file) = file {
        let text = std::fs::read_to_string(file)
            .map_err(|error| anyhow::anyhow!("cannot read the token file {}: {error}", file.display()))?;
        let token = text.trim().to_string();
        anyhow::ensure!(!token.is_empty(), "the token file {} is empty", file.display());
        return Ok(Some(token));
    }
    Ok(std::env::var("SLUICE_TOKEN").ok().map(|token| token.trim().to_string()).filter(|token| !token.is_empty()))
}

/// How long a graceful shutdown waits for the queries' final checkpoints.
const SHUTDOWN_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(20);

/// The `--query` names given, or all of a suite's when none is.
fn or_all(chosen: Vec<String>, all: impl Iterator<Item = String>) -> Vec<String> {
    if chosen.is_empty() { all.collect() } else { chosen }
}

/// `--pg off` turns the Postgres endpoint off.
fn pg_address(flag: &str) -> Option<&str> {
    (!flag.eq_ignore_ascii_case("off")).then_some(flag)
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    if let Some(threads) = cli.pipeline_threads {
        sluice_runtime::cpu::set_pipeline_threads(threads);
    }
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if let Command::Bench { parallelism, max_parallelism, .. } = &cli.command {
        let mut settings = sluice::engine::Settings::new();
        if let Some(threads) = parallelism {
            settings.insert("parallelism".into(), threads.to_string());
        }
        if let Some(groups) = max_parallelism {
            settings.insert("max_parallelism".into(), groups.to_string());
        }
        sluice::bench::set_base_settings(settings);
    }
    match cli.command {
        Command::Serve {
            http,
            pg,
            demo,
            data_dir,
            max_body_bytes,
            token_file,
            insecure,
            tls_cert,
            tls_key,
            fsync,
            max_sql_bytes,
            max_statements,
            max_queries,
            max_subscribers_per_query,
            max_subscribers,
            max_retained_rows,
            max_state_bytes,
            max_connections,
            parallelism,
        } => runtime.block_on(async {
            let options = sluice::Options {
                pg_address: pg_address(&pg).map(str::to_string),
                with_demo: demo,
                demo_kafka: None,
                max_body_bytes,
                token: token(token_file.as_deref())?,
                insecure,
                tls: match (&tls_cert, &tls_key) {
                    (Some(cert), Some(key)) => Some(sluice::tls::Certificate::from_files(cert, key)?),
                    _ => None,
                },
                fsync,
                limits: sluice::engine::Limits {
                    max_sql_bytes,
                    max_statements,
                    max_queries,
                    max_subscribers_per_query,
                    max_subscribers,
                    max_retained_rows,
                    max_state_bytes: (max_state_bytes > 0).then_some(max_state_bytes),
                    max_connections,
                    parallelism: parallelism.max(1),
                },
            };
            let server = sluice::start_with(&http, Some(&data_dir), &options).await?;
            println!("Sluice listening on {}", server.url());
            if let Some(pg) = server.pg_address {
                let ssl = if options.tls.is_some() { " sslmode=require" } else { "" };
                println!("Postgres wire protocol on {pg}: psql \"host={} port={}{ssl}\"", pg.ip(), pg.port());
            }
            let mut terminate = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = terminate.recv() => {}
            }
            // Graceful: final checkpoints, subscribers told; a second
            // signal exits at once.
            println!("shutting down: taking a final checkpoint of every query (Ctrl-C again to exit at once)");
            let started = std::time::Instant::now();
            tokio::select! {
                late = server.shutdown(SHUTDOWN_TIMEOUT) => {
                    if !late.is_empty() {
                        eprintln!("queries {} did not stop in time; they will replay from their last checkpoint", late.join(", "));
                    }
                    println!("stopped in {:.0} ms", started.elapsed().as_secs_f64() * 1000.0);
                }
                _ = tokio::signal::ctrl_c() => std::process::exit(130),
                _ = terminate.recv() => std::process::exit(143),
            }
            Ok(())
        }),
        Command::Demo { http, pg, query, kafka } => runtime.block_on(async {
            let (name, sql) = match &query {
                Some(path) => (path.display().to_string(), std::fs::read_to_string(path)?),
                None => ("queries/weblog/top_error_ips.sql".to_string(), sluice::demo::DEMO_QUERY.to_string()),
            };
            // The demo keeps nothing between runs.
            let options = sluice::Options {
                pg_address: pg_address(&pg).map(str::to_string),
                with_demo: true,
                demo_kafka: kafka.clone(),
                ..sluice::Options::default()
            };
            let server = sluice::start_with(&http, None, &options).await?;
            let url = server.url();
            println!("Sluice listening on {url} with the demo streams `weblog` and `weblog_b` (generated access logs of two servers, 50/s each).");
            if let Some(kafka) = &kafka {
                println!("`weblog` goes through Kafka at {kafka}: the sink weblog_to_kafka writes topic `weblog`, the stream reads it.");
            }
            println!("The console: {url}/");
            println!("In another terminal: cargo run -- repl --url {url}   (Ctrl-C here stops the server)");
            if let Some(pg) = server.pg_address {
                println!("or: psql -h {} -p {}", pg.ip(), pg.port());
            }
            println!();
            println!("Running {name}:\n{}", sql.trim());
            let mut client = sluice::repl::Client::new(&url);
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            client.run(&sql, &mut std::io::stdout(), stop).await?;
            Ok(())
        }),
        Command::Bench { suite, queries, events, source, runs, .. } if suite == "nexmark" => runtime.block_on(async {
            let source = sluice::nexmark::BidSource::parse(&source)
                .ok_or_else(|| anyhow::anyhow!("--source is generator, csv or json, not {source:?}"))?;
            let queries = or_all(queries, sluice::nexmark::queries().into_iter().map(|(name, _)| name));
            println!(
                "{:<6} {:>10} {:>9} {:>12} {:>14} {:>12} {:>11} {:>9} {:>8} {:>8}",
                "query",
                "events",
                "seconds",
                "events/s",
                "events/s/core",
                "peak RSS MB",
                "batch ratio",
                "rows out",
                "p50 ms",
                "p99 ms"
            );
            // The first query of a process pays for faulting in its heap and
            // starting its thread pools: q0 runs once unmeasured, so every
            // query (and its batch counterpart) is measured in a warm process.
            let _ = sluice::nexmark::warm_up(events, source).await;
            let mut lines = Vec::new();
            for query in queries {
                match sluice::nexmark::run_best_of(&query, events, source, runs).await {
                    Ok(result) => {
                        println!(
                            "{:<6} {:>10} {:>9.3} {:>12.0} {:>14.0} {:>12} {:>11} {:>9} {:>8} {:>8}",
                            result.query,
                            result.events,
                            result.seconds,
                            result.events_per_sec(),
                            result.events_per_sec_per_core(),
                            result.peak_rss_bytes.map_or("-".into(), |bytes| (bytes / 1_000_000).to_string()),
                            result.batch_ratio().map_or("-".into(), |ratio| format!("{ratio:.2}")),
                            result.rows_out,
                            result.latency.map_or("-".into(), |latency| format!("{:.1}", latency.p50_ms)),
                            result.latency.map_or("-".into(), |latency| format!("{:.1}", latency.p99_ms)),
                        );
                        lines.push(result.json_line());
                    }
                    Err(error) => println!("{query:<6} not run: {}", error.message),
                }
            }
            for line in lines {
                println!("{line}");
            }
            Ok(())
        }),
        Command::Bench { suite, events, subscribers, token_file, .. } if suite == "fanout" => runtime.block_on(async {
            let result = sluice::bench::fanout(subscribers, events, token(token_file.as_deref())?).await?;
            println!("{}", sluice::bench::FANOUT_QUERY);
            println!(
                "{} events, {} result rows: alone {:.0} events/s; with {} subscribers (+1 never reading) {:.0} events/s ({:+.1}%); {} of {} received every row; {} cut off as lagged",
                result.events,
                result.rows_out,
                result.events as f64 / result.seconds_alone,
                result.subscribers,
                result.events as f64 / result.seconds_with,
                result.slowdown_percent(),
                result.complete,
                result.subscribers,
                result.lagged
            );
            println!("{}", result.json_line());
            Ok(())
        }),
        Command::Bench { suite, subscribers, token_file, .. } if suite == "many" => runtime.block_on(async {
            // --subscribers doubles as the number of queries here.
            let result = sluice::bench::many(subscribers, 20, token(token_file.as_deref())?).await?;
            println!(
                "{} queries for {:.0} s ({} events read in all): GET /v1/queries p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} calls; {} running, {} with rows",
                result.queries,
                result.seconds,
                result.events_in,
                result.latency.p50_ms,
                result.latency.p99_ms,
                result.latency.max_ms,
                result.latency.requests,
                result.running,
                result.with_rows
            );
            println!("{}", result.json_line());
            Ok(())
        }),
        Command::Bench { suite, queries, token_file, .. } if suite == "api" => runtime.block_on(async {
            let query = queries.first().map_or("q16", String::as_str);
            let result = sluice::bench::api(query, 20, token(token_file.as_deref())?).await?;
            println!(
                "Nexmark {} for {:.0} s ({} events read; pipeline threads: {}): GET /v1/queries p50 {:.2} ms, p99 {:.2} ms, max {:.2} ms over {} calls",
                result.query,
                result.seconds,
                result.events_in,
                sluice_runtime::cpu::pipeline_threads(),
                result.latency.p50_ms,
                result.latency.p99_ms,
                result.latency.max_ms,
                result.latency.requests
            );
            println!("{}", result.json_line());
            Ok(())
        }),
        Command::Bench { suite, queries, .. } if suite == "latency" => runtime.block_on(async {
            let queries = or_all(queries, sluice::bench::LATENCY_QUERIES.iter().map(|(name, _)| name.to_string()));
            println!(
                "{:<8} {:>6} {:>9} {:>8} {:>8} {:>9} {:>8}",
                "query", "epoch", "rows", "p50 ms", "p99 ms", "p99.9 ms", "max ms"
            );
            let mut lines = Vec::new();
            for epoch_interval in ["10ms", "0"] {
                for query in &queries {
                    let result = sluice::bench::latency(query, epoch_interval, 5.0).await?;
                    println!(
                        "{:<8} {:>6} {:>9} {:>8.2} {:>8.2} {:>9.2} {:>8.2}",
                        result.query,
                        result.epoch_interval,
                        result.rows,
                        result.p50_ms,
                        result.p99_ms,
                        result.p999_ms,
                        result.max_ms
                    );
                    lines.push(result.json_line());
                }
            }
            for line in lines {
                println!("{line}");
            }
            Ok(())
        }),
        Command::Bench { suite, burst_seconds, max_lag, .. } if suite == "shed" => runtime.block_on(async {
            let result = sluice::shed_bench::shed(burst_seconds, &max_lag).await?;
            println!("{}", sluice::shed_bench::SHED_QUERY);
            println!(
                "capacity {:.2} M rows/s flat out; released at {:.2} M/s, bursting to {:.2} M/s for {} s",
                result.capacity / 1e6,
                result.base_rate / 1e6,
                result.burst_rate / 1e6,
                result.burst_seconds
            );
            println!(
                "{:<16} {:>8} {:>9} {:>9} {:>9} {:>12} {:>12} {:>8}",
                "run", "windows", "p50 ms", "p99 ms", "max ms", "rows in", "rows shed", "seconds"
            );
            for run in [&result.exact, &result.shed] {
                println!(
                    "{:<16} {:>8} {:>9.0} {:>9.0} {:>9.0} {:>12} {:>12} {:>8.1}",
                    run.max_lag.as_deref().map_or("unshed".to_string(), |lag| format!("max_lag {lag}")),
                    run.windows,
                    run.p50_ms,
                    run.p99_ms,
                    run.max_ms,
                    run.rows_in,
                    run.rows_shed,
                    run.seconds
                );
            }
            for run in [&result.exact, &result.shed] {
                let curve: Vec<String> =
                    run.lag_curve.iter().map(|(at, worst)| format!("{at:.0}s:{:.1}", worst / 1000.0)).collect();
                println!(
                    "lag curve ({}), worst window latency in s per 5 s of event time: {}",
                    run.max_lag.as_deref().unwrap_or("unshed"),
                    curve.join(" ")
                );
            }
            println!(
                "{} of {} windows computed from a sample (rate down to {:.4}): count inside its 95 % interval in {:.1} %, sum in {:.1} % (all windows: {:.1} %, {:.1} %); mean squared z-score {:.2} and {:.2} (1: exact intervals); relative error median {:.4} %, max {:.3} %; {} windows unmatched",
                result.sampled_windows,
                result.shed.windows,
                result.min_rate,
                result.hits_covered * 100.0,
                result.total_covered * 100.0,
                result.hits_covered_all * 100.0,
                result.total_covered_all * 100.0,
                result.hits_z2,
                result.total_z2,
                result.median_relative_error * 100.0,
                result.max_relative_error * 100.0,
                result.missing_windows
            );
            println!("{}", result.json_line());
            Ok(())
        }),
        Command::Bench { suite, keys, state_bytes, .. } if suite == "checkpoint" => runtime.block_on(async {
            let result = sluice::bench::checkpoint(keys, state_bytes).await?;
            println!("{}", sluice::bench::CHECKPOINT_QUERY);
            let recovery = result.recovery;
            println!(
                "{} keys in state: checkpoint {:.1} MB in {:.0} ms; recovery {:.0} ms (read {:.1} MB in {:.0} ms, decode {:.0} ms, restore {:.0} ms)",
                result.keys,
                result.checkpoint_bytes as f64 / 1e6,
                result.checkpoint_ms,
                result.recovery_ms,
                recovery.bytes as f64 / 1e6,
                recovery.read_ms,
                recovery.decode_ms,
                recovery.restore_ms
            );
            let pause = |quantile: f64| result.pause_quantile(quantile).map_or("-".into(), |ms| format!("{ms:.1}"));
            println!(
                "{} periodic checkpoints of {} keys while the query ran: pause min {} ms, p50 {} ms, max {} ms (written in the background in {:.0} ms)",
                result.pauses_ms.len(),
                keys,
                pause(0.0),
                pause(0.5),
                pause(1.0),
                result.background_write_ms
            );
            let megabytes = |bytes: &u64| format!("{:.1}", *bytes as f64 / 1e6);
            let written: Vec<String> = result.periodic.iter().map(|(written, _)| megabytes(written)).collect();
            let reused: Vec<String> = result.periodic.iter().map(|(_, reused)| megabytes(reused)).collect();
            println!("  MB written by each: {}", written.join(" "));
            println!("  MB of unchanged state pointed at instead: {}", reused.join(" "));
            println!("{}", result.json_line());
            Ok(())
        }),
        Command::Bench { queries, events, keys, epoch_interval, .. } => runtime.block_on(async {
            let queries = or_all(queries, sluice::bench::QUERIES.iter().map(|(name, _)| name.to_string()));
            println!(
                "{:<18} {:>10} {:>9} {:>14} {:>10} {:>11} {:>9}",
                "query", "events", "seconds", "events/s", "rows out", "peak state", "peak MB"
            );
            let mut lines = Vec::new();
            for query in queries {
                let result = sluice::bench::run(&query, events, keys, &epoch_interval).await?;
                println!(
                    "{:<18} {:>10} {:>9.3} {:>14.0} {:>10} {:>11} {:>9}",
                    result.query,
                    result.events,
                    result.seconds,
                    result.events_per_sec(),
                    result.rows_out,
                    result.peak_state_rows,
                    result.peak_rss_bytes.map_or("-".to_string(), |bytes| (bytes >> 20).to_string())
                );
                lines.push(result.json_line());
            }
            for line in lines {
                println!("{line}");
            }
            Ok(())
        }),
        Command::Repl { url, token_file } => {
            Ok(sluice::repl::interactive(&url, token(token_file.as_deref())?, &runtime)?)
        }
    }
}

/// A size such as `1G`, `500M`, `64K` or `1000` (bytes; powers of 1024).
fn parse_bytes(text: &str) -> Result<u64, String> {
    let text = text.trim().trim_end_matches(['B', 'b']);
    let (number, scale) = match text.char_indices().last() {
        Some((at, 'K' | 'k')) => (&text[..at], 1u64 << 10),
        Some((at, 'M' | 'm')) => (&text[..at], 1 << 20),
        Some((at, 'G' | 'g')) => (&text[..at], 1 << 30),
        _ => (text, 1),
    };
    let number: f64 = number.trim().parse().map_err(|_| format!("{text:?} is not a size such as 1G, 500M or 4096"))?;
    Ok((number * scale as f64) as u64)
}
