//! The command line (the contract in the loadtest spec) and the checks that make a usage error.
//!
//! Every scenario takes the same [`Options`]; the ones a scenario does not use are ignored. The
//! options travel to worker processes as JSON, so they are serialisable. A usage error (bad value,
//! non-loopback URL) exits with status 2, like clap's own errors.

use std::{
    net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr},
    path::PathBuf,
};

use clap::{Parser, Subcommand};
use serde::{Deserialize, Serialize};

mod pusher;

pub use pusher::parse_api_url;
use pusher::pusher_url;

/// Load generator for the gateway: real WebSocket connections over loopback, every delivery checked.
#[derive(Debug, Parser)]
#[command(name = "loadtest", version, about)]
pub struct Cli {
    /// The scenario.
    #[command(subcommand)]
    pub command: Command,
}

/// Scenarios, and the hidden worker entry point.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Open --connections, identify each, hold them for --duration; report the server's RSS per
    /// connection (needs --pid) and each connection's set-up time (connect to `ready`). --url may be
    /// given once per node: the connections are spread over them.
    Idle(Options),
    /// Round trips of --size bytes, --window in flight per connection, every echo checked.
    Echo(Options),
    /// --connections/2 sender→receiver pairs of direct messages at --rate per sender (0: flat out).
    Dm(Options),
    /// dm across nodes: --url once per node (two or more, on one Redis); every receiver is on another
    /// node than its sender, so every message goes through Redis.
    Crossnode(Options),
    /// One publisher at --rate to --connections subscribers of --channel; with --channels N, subscriber
    /// i on `<--channel>-<i mod N>` and message k published to channel k mod N (every channel gets
    /// its share, every subscriber checks its channel's). --url may be given once per node: the
    /// subscribers are spread over them, so publications cross nodes.
    Fanout(Options),
    /// connect → identify → close at --rate per second for --duration.
    Churn(Options),
    /// Add connections at --rate per second until the first failure, --connections or --duration.
    Ramp(Options),
    /// Internal: a worker process (plan slice as JSON on stdin, reports on stdout).
    #[command(hide = true)]
    Worker,
}

/// The scenario of a run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Scenario {
    /// See [`Command::Idle`].
    Idle,
    /// See [`Command::Echo`].
    Echo,
    /// See [`Command::Dm`].
    Dm,
    /// See [`Command::Crossnode`].
    Crossnode,
    /// See [`Command::Fanout`].
    Fanout,
    /// See [`Command::Churn`].
    Churn,
    /// See [`Command::Ramp`].
    Ramp,
}

impl Scenario {
    /// The name used on the command line and in reports.
    pub fn name(self) -> &'static str {
        match self {
            Scenario::Idle => "idle",
            Scenario::Echo => "echo",
            Scenario::Dm => "dm",
            Scenario::Crossnode => "crossnode",
            Scenario::Fanout => "fanout",
            Scenario::Churn => "churn",
            Scenario::Ramp => "ramp",
        }
    }

    /// `--rate` when not given.
    pub fn default_rate(self) -> f64 {
        match self {
            Scenario::Dm | Scenario::Crossnode | Scenario::Idle | Scenario::Echo => 0.0,
            Scenario::Fanout | Scenario::Churn => 100.0,
            Scenario::Ramp => 1000.0,
        }
    }

    /// True for the scenarios of sender→receiver pairs (dm, crossnode).
    pub fn pairs(self) -> bool {
        matches!(self, Scenario::Dm | Scenario::Crossnode)
    }

    /// `--connections` when not given.
    pub fn default_connections(self) -> u64 {
        match self {
            Scenario::Ramp => 100_000,
            Scenario::Churn => u64::MAX,
            _ => 100,
        }
    }
}

/// Options shared by every scenario.
#[derive(Clone, Debug, clap::Args, Serialize, Deserialize)]
pub struct Options {
    /// Server URL, ws://HOST:PORT/PATH; HOST must be loopback (127.0.0.0/8, ::1, localhost).
    /// crossnode: once per node.
    #[arg(long, required = true)]
    pub url: Vec<String>,
    /// Connections to open [default: 100; ramp: 100000; churn: no cap on cycles].
    #[arg(long)]
    pub connections: Option<u64>,
    /// Seconds the measuring phase runs; the whole run is cut off at duration + 120 s.
    #[arg(long, default_value_t = 10.0)]
    pub duration: f64,
    /// No protocol: do not identify (for `gateway echo` and other plain echo servers).
    #[arg(long)]
    pub raw: bool,
    /// The server's pid: report its VmRSS before and after.
    #[arg(long)]
    pub pid: Option<u32>,
    /// Worker processes [default: planned from RLIMIT_NOFILE].
    #[arg(long)]
    pub processes: Option<usize>,
    /// Source addresses 127.0.0.2.. [default: planned from ip_local_port_range].
    #[arg(long)]
    pub sources: Option<usize>,
    /// New connections per second while connecting (0: as fast as possible).
    #[arg(long, default_value_t = 5000.0)]
    pub connect_rate: f64,
    /// Write the report as JSON to this file.
    #[arg(long)]
    pub json: Option<PathBuf>,
    /// Write an SVG plot (latency p50/p99 and throughput per second).
    #[arg(long)]
    pub svg: Option<PathBuf>,
    /// No progress bar.
    #[arg(long)]
    pub quiet: bool,
    /// echo: payload bytes per message.
    #[arg(long, default_value_t = 20)]
    pub size: usize,
    /// echo: messages in flight per connection (1: closed loop).
    #[arg(long, default_value_t = 1)]
    pub window: usize,
    /// echo: text frames instead of binary.
    #[arg(long)]
    pub text: bool,
    /// Messages (dm, crossnode: per sender; fanout: published) or connections (churn, ramp) per second
    /// [default: dm, crossnode 0 = flat out with 256 unacked; fanout 100; churn 100; ramp 1000].
    #[arg(long)]
    pub rate: Option<f64>,
    /// fanout: the channel. idle, churn, ramp: the prefix of the channels subscribed to (see
    /// --channels).
    #[arg(long, default_value = "fanout")]
    pub channel: String,
    /// idle, churn, ramp, fanout (v1): subscribe connection i to channel `<--channel>-<i mod N>` after
    /// it is set up [default: pusher 100; v1: no subscription; fanout: one channel, --channel].
    #[arg(long)]
    pub channels: Option<u64>,
    /// The protocol spoken: `v1` (the gateway's own) or `pusher` (Pusher Channels protocol 7: idle,
    /// fanout, churn and ramp). With pusher, a --url without a path gets `/app/<key>?protocol=7&...`.
    #[arg(long, value_enum, default_value_t = Protocol::V1)]
    pub protocol: Protocol,
    /// pusher: the app id (the HTTP API's /apps/<id>/events).
    #[arg(long, default_value = "app-1")]
    pub pusher_app_id: String,
    /// pusher: the app key (what clients connect with).
    #[arg(long, default_value = "key-1")]
    pub pusher_key: String,
    /// pusher: the app secret (signs the HTTP API triggers).
    #[arg(long, default_value = "secret-1")]
    pub pusher_secret: String,
    /// pusher fanout: where the HTTP API triggers go, http://HOST:PORT (loopback) [default: the
    /// --url's host and port]. Another node of the cluster sends the publishes across nodes.
    #[arg(long)]
    pub api_url: Option<String>,
    /// More server processes (besides --pid) whose CPU time over the measuring phase is reported.
    #[arg(long)]
    pub cpu_pid: Vec<u32>,
}

/// The protocol a run speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize, clap::ValueEnum)]
#[serde(rename_all = "snake_case")]
pub enum Protocol {
    /// The gateway's protocol v1 (identify, subscribe, publish over the WebSocket).
    V1,
    /// Pusher Channels protocol 7 (public channels; publishes through the signed HTTP API).
    Pusher,
}

/// Channels a pusher idle, churn or ramp run spreads its connections over when --channels is not
/// given.
pub const DEFAULT_PUSHER_CHANNELS: u64 = 100;

/// Where to connect, checked to be loopback.
#[derive(Clone, Debug, Serialize, Deserialize)]
pub struct Target {
    /// The URL as given (sent in the handshake request).
    pub url: String,
    /// The resolved server address.
    pub addr: SocketAddr,
}

/// Most bytes `--size` accepts.
const MAX_SIZE: usize = 16 << 20;

impl Options {
    /// `--rate` or the scenario's default.
    pub fn rate(&self, s: Scenario) -> f64 {
        self.rate.unwrap_or(s.default_rate())
    }

    /// `--connections` or the scenario's default.
    pub fn connections(&self, s: Scenario) -> u64 {
        self.connections.unwrap_or(s.default_connections())
    }

    /// The channel connection `i` subscribes to in idle, churn and ramp: `<--channel>-<i mod N>`, or
    /// none (v1 without --channels).
    pub fn channel_of(&self, i: u64) -> Option<String> {
        let n = match (self.channels, self.protocol) {
            (Some(n), _) => n,
            (None, Protocol::Pusher) => DEFAULT_PUSHER_CHANNELS,
            (None, Protocol::V1) => return None,
        };
        Some(format!("{}-{}", self.channel, i % n.max(1)))
    }

    /// Checks the options for scenario `s` and returns the servers, one per `--url` (only crossnode
    /// takes several); the message explains a usage error.
    pub fn validate(&self, s: Scenario) -> Result<Vec<Target>, String> {
        let mut targets = self
            .url
            .iter()
            .map(|u| parse_url(u))
            .collect::<Result<Vec<_>, _>>()?;
        if self.protocol == Protocol::Pusher {
            self.check_pusher(s)?;
            for t in &mut targets {
                t.url = pusher_url(&t.url, &self.pusher_key);
            }
        } else if self.api_url.is_some() {
            return Err("--api-url is for --protocol pusher".into());
        }
        if self.channels == Some(0) {
            return Err("--channels must be at least 1".into());
        }
        if s == Scenario::Fanout && self.protocol == Protocol::Pusher && self.channels.is_some() {
            return Err("--channels with fanout is for --protocol v1".into());
        }
        check_nodes(s, &targets)?;
        if !(self.duration.is_finite() && self.duration > 0.0 && self.duration <= 86_400.0) {
            return Err("--duration must be in (0, 86400] seconds".into());
        }
        let rate = self.rate(s);
        if !(rate.is_finite() && rate >= 0.0) {
            return Err("--rate must be a number >= 0".into());
        }
        if matches!(s, Scenario::Churn | Scenario::Ramp) && rate == 0.0 {
            return Err(format!("{} needs --rate > 0", s.name()));
        }
        if !(self.connect_rate.is_finite() && self.connect_rate >= 0.0) {
            return Err("--connect-rate must be a number >= 0".into());
        }
        let n = self.connections(s);
        if n == 0 {
            return Err("--connections must be at least 1".into());
        }
        if s == Scenario::Dm && n < 2 {
            return Err("dm needs --connections >= 2 (one sender/receiver pair)".into());
        }
        let nodes = targets.len() as u64;
        if s == Scenario::Crossnode && n < 2 * nodes {
            return Err(format!(
                "crossnode needs --connections >= {} (a sender and a receiver on each of {nodes} nodes)",
                2 * nodes
            ));
        }
        if self.size == 0 || self.size > MAX_SIZE {
            return Err(format!("--size must be in 1..={MAX_SIZE}"));
        }
        if self.window == 0 || self.window > 65_536 {
            return Err("--window must be in 1..=65536".into());
        }
        if self.processes == Some(0) || self.sources == Some(0) {
            return Err("--processes and --sources must be at least 1".into());
        }
        if self.raw && (s.pairs() || s == Scenario::Fanout) {
            return Err(format!(
                "{} needs the protocol: --raw is not allowed",
                s.name()
            ));
        }
        let channel_ok = !self.channel.is_empty()
            && self.channel.len() <= 128
            && !self.channel.chars().any(char::is_control);
        if !channel_ok {
            return Err("--channel must be 1..=128 bytes without control characters".into());
        }
        Ok(targets)
    }
}

/// Checks the number of servers: two or more distinct ones for crossnode, one or more distinct ones
/// for idle (connections spread over them), exactly one otherwise.
fn check_nodes(s: Scenario, targets: &[Target]) -> Result<(), String> {
    let several = matches!(s, Scenario::Idle | Scenario::Fanout);
    if s != Scenario::Crossnode && (!several || targets.len() < 2) {
        return match targets.len() {
            1 => Ok(()),
            n => Err(format!(
                "{} takes one --url (given {n}); several nodes are for crossnode, idle and fanout",
                s.name()
            )),
        };
    }
    if targets.len() < 2 {
        return Err("crossnode needs --url once per node, two nodes or more".into());
    }
    for (i, t) in targets.iter().enumerate() {
        if targets[..i].iter().any(|o| o.addr == t.addr) {
            return Err(format!(
                "--url {:?}: {} is given twice; {} needs distinct nodes",
                t.url,
                t.addr,
                s.name()
            ));
        }
    }
    Ok(())
}

/// Parses `ws://host[:port][/path]` and refuses hosts that are not loopback.
pub fn parse_url(url: &str) -> Result<Target, String> {
    let Some(rest) = url.strip_prefix("ws://") else {
        return Err(format!(
            "--url {url:?}: only ws:// URLs are supported (no TLS)"
        ));
    };
    let authority = rest.split(['/', '?']).next().unwrap_or_default();
    let (host, port) = if let Some(v6) = authority.strip_prefix('[') {
        let (h, tail) = v6
            .split_once(']')
            .ok_or_else(|| format!("--url {url:?}: bad IPv6 host"))?;
        (h, tail.strip_prefix(':'))
    } else {
        match authority.rsplit_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (authority, None),
        }
    };
    let port: u16 = match port {
        None => 80,
        Some(p) => p
            .parse()
            .map_err(|_| format!("--url {url:?}: bad port {p:?}"))?,
    };
    let ip: IpAddr = if host.eq_ignore_ascii_case("localhost") {
        IpAddr::V4(Ipv4Addr::LOCALHOST)
    } else {
        host.parse()
            .map_err(|_| format!("--url {url:?}: host must be a loopback address or localhost"))?
    };
    let loopback = match ip {
        IpAddr::V4(v4) => v4.is_loopback(),
        IpAddr::V6(v6) => v6 == Ipv6Addr::LOCALHOST,
    };
    if !loopback {
        return Err(format!(
            "--url {url:?}: {ip} is not loopback; loadtest only targets 127.0.0.0/8, ::1 or localhost"
        ));
    }
    Ok(Target {
        url: url.to_string(),
        addr: SocketAddr::new(ip, port),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_urls_only() {
        let t = parse_url("ws://127.0.0.1:8080/ws").unwrap();
        assert_eq!(t.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(parse_url("ws://127.9.8.7").unwrap().addr.port(), 80);
        assert_eq!(
            parse_url("ws://localhost:1/?x=1").unwrap().addr,
            "127.0.0.1:1".parse().unwrap()
        );
        assert_eq!(parse_url("ws://[::1]:9/ws").unwrap().addr.port(), 9);
        for bad in [
            "ws://10.0.0.1:80/",
            "ws://example.com/",
            "wss://127.0.0.1/",
            "http://127.0.0.1/",
            "ws://[::2]:80/",
            "ws://127.0.0.1:99999/",
            "ws://0.0.0.0:80/",
        ] {
            assert!(parse_url(bad).is_err(), "{bad}");
        }
    }

    /// The options of `loadtest <scenario> --url ws://127.0.0.1:1/ws <args>` (dm or crossnode).
    fn options(scenario: &str, args: &[&str]) -> Options {
        let mut v = vec!["loadtest", scenario, "--url", "ws://127.0.0.1:1/ws"];
        v.extend_from_slice(args);
        match Cli::try_parse_from(v).unwrap().command {
            Command::Dm(o) | Command::Crossnode(o) => o,
            _ => unreachable!(),
        }
    }

    #[test]
    fn usage_errors() {
        let opts = |args: &[&str]| options("dm", args);
        assert!(opts(&[]).validate(Scenario::Dm).is_ok());
        assert!(opts(&["--raw"]).validate(Scenario::Dm).is_err());
        assert!(
            opts(&["--connections", "1"])
                .validate(Scenario::Dm)
                .is_err()
        );
        assert!(opts(&["--duration", "0"]).validate(Scenario::Dm).is_err());
        assert!(opts(&["--size", "0"]).validate(Scenario::Echo).is_err());
        assert!(opts(&["--rate", "0"]).validate(Scenario::Churn).is_err());
        assert!(opts(&["--rate", "0"]).validate(Scenario::Fanout).is_ok());
        assert!(
            opts(&["--processes", "0"])
                .validate(Scenario::Idle)
                .is_err()
        );
    }

    #[test]
    fn only_crossnode_takes_several_distinct_urls() {
        let opts = |args: &[&str]| options("crossnode", args);
        let two = opts(&["--url", "ws://127.0.0.1:2/ws"]);
        assert_eq!(two.validate(Scenario::Crossnode).unwrap().len(), 2);
        assert!(two.validate(Scenario::Dm).is_err());
        assert!(opts(&[]).validate(Scenario::Crossnode).is_err());
        let same = opts(&["--url", "ws://localhost:1/other"]);
        assert!(same.validate(Scenario::Crossnode).is_err());
        let three = opts(&["--url", "ws://127.0.0.1:2/", "--url", "ws://127.0.0.1:3/"]);
        assert!(three.validate(Scenario::Crossnode).is_ok());
        // 5 connections cannot put a sender and a receiver on each of 3 nodes.
        let three = opts(&[
            "--url",
            "ws://127.0.0.1:2/",
            "--url",
            "ws://127.0.0.1:3/",
            "--connections",
            "5",
        ]);
        assert!(three.validate(Scenario::Crossnode).is_err());
        assert!(
            opts(&["--url", "ws://127.0.0.1:2/", "--raw"])
                .validate(Scenario::Crossnode)
                .is_err()
        );
    }
}
