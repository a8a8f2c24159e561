//! `berth`: `berth server` runs the workspace server; every other command is a
//! client of its management API.

use std::process::ExitCode;

use clap::{Parser, Subcommand};

/// Self-hosted model deployment: registry, environments, services, in-place updates.
#[derive(Debug, Parser)]
#[command(name = "berth", version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
    #[command(flatten)]
    global: berth_cli::GlobalArgs,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the workspace server (management API, registry, scoring gateway)
    Server(Box<berth_server::ServerArgs>),
    /// Maintain a data directory: backup, restore, verify blobs, accept the store
    Admin(berth_server::admin::AdminArgs),
    /// Run one replica of a service revision: fetch its bundle from the server, start its
    /// worker, serve it to gateways over TLS (token in BERTH_REPLICA_TOKEN)
    Replica(Box<berth_server::replica::ReplicaArgs>),
    #[command(flatten)]
    Client(berth_cli::ClientCommand),
}

fn main() -> ExitCode {
    // The worker launcher runs before anything else (no threads yet): it applies the sandbox
    // to this process and execs the interpreter; it returns only to report a failure.
    let mut args = std::env::args_os().skip(1);
    if args
        .next()
        .is_some_and(|a| a == berth_server::WORKER_LAUNCHER_COMMAND)
    {
        eprintln!("{}", berth_server::launch_worker(args.collect()));
        return ExitCode::from(125);
    }
    let cli = Cli::parse();
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::from(berth_cli::EXIT_USAGE);
        }
    };
    let result = match cli.command {
        Command::Server(args) => runtime.block_on(serve(*args)),
        Command::Replica(args) => return runtime.block_on(replica(*args)),
        Command::Admin(args) => berth_server::admin::run(args)
            .map(|text| println!("{text}"))
            .map_err(anyhow::Error::from),
        Command::Client(command) => runtime.block_on(berth_cli::run(command, cli.global)),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) if is_broken_pipe(&err) => ExitCode::SUCCESS,
        Err(err) => {
            let (text, code) = berth_cli::report(&err);
            eprint!("{text}");
            ExitCode::from(code)
        }
    }
}

async fn serve(args: berth_server::ServerArgs) -> anyhow::Result<()> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .map_err(|e| anyhow::anyhow!("`--log {}` is not a valid filter: {e}", args.log))?;
    tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .init();
    let config = args.resolve()?;
    berth_server::run(config, berth_server::shutdown::signal()).await?;
    Ok(())
}

async fn replica(args: berth_server::replica::ReplicaArgs) -> ExitCode {
    match tracing_subscriber::EnvFilter::try_new(&args.log) {
        Ok(filter) => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(std::io::stderr)
            .init(),
        Err(e) => {
            eprintln!("error: `--log {}` is not a valid filter: {e}", args.log);
            return ExitCode::from(berth_cli::EXIT_USAGE);
        }
    }
    ExitCode::from(berth_server::replica::run(args).await)
}

/// Output piped into `head` and closed early is not a failure.
fn is_broken_pipe(err: &anyhow::Error) -> bool {
    err.chain().any(|cause| {
        cause
            .downcast_ref::<std::io::Error>()
            .is_some_and(|e| e.kind() == std::io::ErrorKind::BrokenPipe)
    })
}

#[cfg(test)]
mod tests {
    use clap::CommandFactory;

    #[test]
    fn command_line_definition_is_consistent() {
        super::Cli::command().debug_assert();
    }
}
