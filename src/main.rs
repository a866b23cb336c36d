//! The `gateway` binary: parse the command line, load the configuration, run.

use std::{io::IsTerminal, process::ExitCode};

use clap::Parser;
use gateway::{
    cli::{Cli, Command, ServeArgs},
    config::Config,
    node,
};
use shards::config::Mode;
use tracing_subscriber::EnvFilter;

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_env("GATEWAY_LOG").unwrap_or_else(|_| EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    match Cli::parse().command {
        Command::Serve(args) => serve(args, Mode::Protocol),
        Command::Echo(args) => serve(args, Mode::Echo),
        Command::Check(args) => gateway::check::run(args),
    }
}

/// `gateway serve` and `gateway echo`: configuration (defaults < file < env < flags), then run.
fn serve(args: ServeArgs, mode: Mode) -> ExitCode {
    let mut config = match Config::load(args.config.as_deref(), std::env::vars()) {
        Ok(c) => c,
        Err(e) => {
            eprintln!("gateway: {e}");
            return ExitCode::from(2);
        }
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(admin) = args.admin {
        config.admin = admin;
    }
    if let Some(shards) = args.shards {
        config.shards = shards;
    }
    if let Some(id) = args.node_id {
        config.node_id = id;
    }
    if let Some(url) = args.redis_url {
        config.redis_url = url;
    }
    // Flags override after the file and environment were validated: check the result again.
    if let Err(e) = config.validate() {
        eprintln!("gateway: {e}");
        return ExitCode::from(2);
    }
    match node::serve(config, mode) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("gateway: {e}");
            ExitCode::FAILURE
        }
    }
}
