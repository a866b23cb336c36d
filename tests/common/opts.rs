//! `NodeOpts`: what a test wants from the node it starts (subcommand, shards, config keys rendered as a
//! TOML file, environment, an optional open-file limit).

use std::collections::BTreeMap;
use std::fmt::Display;

/// How to start a node: shard count, config keys, extra environment and an optional `prlimit` wrapper.
#[derive(Clone, Debug)]
pub struct NodeOpts {
    /// Value of `--shards`.
    pub shards: usize,
    /// Config entries: section ("" for top level) -> key -> raw TOML value.
    pub config: BTreeMap<String, BTreeMap<String, String>>,
    /// Extra environment variables for the child.
    pub env: Vec<(String, String)>,
    /// When set, the child runs as `prlimit --nofile=SOFT:HARD gateway ...`.
    pub nofile: Option<(u64, u64)>,
    /// Whether [`Node::start`](super::Node::start) waits for `/readyz` to answer 200 (default true); a
    /// test of a node that must start unready turns it off and polls `/readyz` itself.
    pub wait_ready: bool,
    /// The `gateway` subcommand: `serve` (default) or `echo` (the raw echo server, no protocol).
    pub subcommand: &'static str,
}

impl Default for NodeOpts {
    fn default() -> Self {
        Self::new()
    }
}

impl NodeOpts {
    /// One shard, server defaults for everything else.
    pub fn new() -> Self {
        NodeOpts {
            shards: 1,
            config: BTreeMap::new(),
            env: Vec::new(),
            nofile: None,
            wait_ready: true,
            subcommand: "serve",
        }
        // A short drain, so that SIGTERM tests finish quickly (tests of the drain set their own).
        .set("shutdown.drain_delay_ms", 100)
        .set("shutdown.drain_window_ms", 500)
        .set("shutdown.drain_interval_ms", 50)
    }

    /// Cluster mode on `redis_url` with timings fit for tests: presence TTL 5 s refreshed every 300 ms,
    /// a registry heartbeat every 200 ms, a node dead 1 s after its last one, and `/readyz` only with
    /// Redis reachable (so `Node::start` returns once the node is in the cluster). Keys set afterwards
    /// override these.
    #[allow(dead_code)]
    pub fn cluster(self, redis_url: &str) -> Self {
        // Ready once the bridge's Redis session is up: a test's first cross-node step (a resume, a
        // send to another node) must not race the connection to Redis.
        self.set_str("redis_url", redis_url)
            .set("cluster.require_redis_for_ready", true)
            .set("cluster.presence_ttl_ms", 5_000)
            .set("cluster.presence_refresh_ms", 300)
            .set("cluster.heartbeat_interval_ms", 200)
            .set("cluster.node_ttl_ms", 1_000)
    }

    /// Sets `--shards`.
    pub fn shards(mut self, n: usize) -> Self {
        self.shards = n;
        self
    }

    /// Sets a config key (`"section.key"` or a top-level `"key"`) to a raw TOML value (`5`, `true`, ...).
    pub fn set(mut self, key: &str, raw: impl Display) -> Self {
        let (section, key) = match key.split_once('.') {
            Some((s, k)) => (s.to_string(), k.to_string()),
            None => (String::new(), key.to_string()),
        };
        self.config
            .entry(section)
            .or_default()
            .insert(key, raw.to_string());
        self
    }

    /// Sets a config key to a TOML string value.
    pub fn set_str(self, key: &str, value: &str) -> Self {
        let quoted = toml_string(value);
        self.set(key, quoted)
    }

    /// Adds an environment variable for the child.
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_string(), value.to_string()));
        self
    }

    /// Runs the child under `prlimit --nofile=soft:hard`.
    pub fn nofile(mut self, soft: u64, hard: u64) -> Self {
        self.nofile = Some((soft, hard));
        self
    }

    /// Runs `gateway echo` instead of `gateway serve`: every text and binary message is sent back.
    pub fn echo(mut self) -> Self {
        self.subcommand = "echo";
        self
    }

    /// Makes [`Node::start`](super::Node::start) return once the listening line is printed, without
    /// waiting for `/readyz` to answer 200.
    pub fn no_wait_ready(mut self) -> Self {
        self.wait_ready = false;
        self
    }

    /// Renders the TOML config file: top-level keys first, then one table per section.
    pub fn render_config(&self) -> String {
        let mut out = String::new();
        if let Some(top) = self.config.get("") {
            for (k, v) in top {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        for (section, keys) in &self.config {
            if section.is_empty() {
                continue;
            }
            out.push_str(&format!("\n[{section}]\n"));
            for (k, v) in keys {
                out.push_str(&format!("{k} = {v}\n"));
            }
        }
        out
    }
}

/// Quotes `s` as a TOML basic string.
pub fn toml_string(s: &str) -> String {
    let mut out = String::from("\"");
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            c if c.is_control() => out.push_str(&format!("\\u{:04X}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
