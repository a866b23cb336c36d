//! The gateway's control plane: command line, configuration, node start-up and the admin HTTP server.
//!
//! The data plane (shards, connections, protocol) lives in the `shards` crate; this library holds what the
//! `gateway` binary needs around it: [`config`] decides every setting (defaults, TOML file, `GATEWAY_*`
//! environment), [`limits`] reads what the process may open and lock, [`node`] starts shards and the
//! admin server and shuts them down on a signal, [`admin`] serves `/healthz`, `/readyz`, `/metrics`
//! and the live [`dashboard`] on the control thread, and [`check`] tells an operator whether this host's
//! limits allow N connections. [`cluster`] holds the Redis side of cluster mode (presence, node
//! registry), driven by the bridge thread.

pub mod admin;
pub mod api;
pub mod bridge;
pub mod check;
pub mod cli;
pub mod cluster;
pub mod config;
pub mod dashboard;
pub mod drain;
pub mod limits;
pub mod node;
pub mod relay;
pub mod webhooks;
