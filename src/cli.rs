//! The command line: `gateway serve` (and `echo`) with flags that override the config file and environment,
//! and `gateway check`.

use std::{net::SocketAddr, path::PathBuf};

use clap::{Parser, Subcommand};

/// Thread-per-core WebSocket gateway (io_uring, glommio).
#[derive(Debug, Parser)]
#[command(name = "gateway", version, about)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run a gateway node (embedded single-node mode unless configured otherwise).
    Serve(ServeArgs),
    /// Run the raw echo server: every text and binary message is sent back through the production
    /// shards and frame path, with no protocol on top (for comparing the transport with other servers).
    Echo(ServeArgs),
    /// Check whether this host's limits and sysctls allow N connections; exit status 1 if not.
    Check(CheckArgs),
}

/// Flags of `gateway serve`; each overrides the same key of the config file and `GATEWAY_*`.
#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// TOML config file (see gateway.example.toml).
    #[arg(long, short)]
    pub config: Option<PathBuf>,
    /// WebSocket listen address [default: 0.0.0.0:8080].
    #[arg(long)]
    pub listen: Option<SocketAddr>,
    /// Admin HTTP listen address [default: 0.0.0.0:9090].
    #[arg(long)]
    pub admin: Option<SocketAddr>,
    /// Number of shards (one per core) [default: every core the process may run on].
    #[arg(long)]
    pub shards: Option<usize>,
    /// Node id reported to clients [default: <hostname>-<pid>-<4 hex digits>].
    #[arg(long)]
    pub node_id: Option<String>,
    /// Redis URL for cluster mode (presence, node registry), e.g. redis://10.0.0.7:6379/0
    /// [default: none: the embedded single-node gateway].
    #[arg(long)]
    pub redis_url: Option<String>,
}

/// Flags of `gateway check`.
#[derive(Debug, clap::Args)]
pub struct CheckArgs {
    /// Connections the node should hold.
    #[arg(long, default_value_t = 1_000_000)]
    pub connections: u64,
    /// Number of shards the node will run [default: every core the process may run on].
    #[arg(long)]
    pub shards: Option<usize>,
}
