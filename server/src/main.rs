//! The `sluice` binary: flags in, library calls out.

use clap::{Parser, Subcommand};

#[derive(Parser)]
#[command(name = "sluice", version, about = "Streaming SQL server")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Run the server.
    Serve {
        /// HTTP address; port 0 picks a free port.
        #[arg(long, default_value = "127.0.0.1:7878")]
        http: String,
        /// Also declare the built-in demo streams.
        #[arg(long)]
        demo: bool,
    },
    /// Run the server with the demo streams and print a live demo query.
    Demo {
        #[arg(long, default_value = "127.0.0.1:7878")]
        http: String,
    },
    /// An interactive SQL client of a running server.
    Repl {
        #[arg(long, default_value = "http://127.0.0.1:7878")]
        url: String,
    },
}

fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    match cli.command {
        Command::Serve { http, demo } => runtime.block_on(async {
            let server = sluice::start(&http, demo).await?;
            println!("Sluice listening on {}", server.url());
            tokio::select! {
                _ = tokio::signal::ctrl_c() => {}
                _ = server.wait() => {}
            }
            Ok(())
        }),
        Command::Demo { http } => runtime.block_on(async {
            let server = sluice::start(&http, true).await?;
            let url = server.url();
            println!("Sluice listening on {url} with the demo stream `weblog` (generated access logs, 50/s).");
            println!("In another terminal: cargo run -- repl --url {url}   (Ctrl-C here stops the server)\n");
            println!("Running queries/weblog/top_error_ips.sql:\n{}", sluice::demo::DEMO_QUERY.trim());
            let mut client = sluice::repl::Client::new(&url);
            let stop = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            client.run(sluice::demo::DEMO_QUERY, &mut std::io::stdout(), stop).await?;
            Ok(())
        }),
        Command::Repl { url } => Ok(sluice::repl::interactive(&url, &runtime)?),
    }
}
