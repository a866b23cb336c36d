//! The gateway's data plane: shards, connections, the WebSocket codec, protocol v1 and routing.
//!
//! One shard per core, each a glommio executor that owns its listener, its connection table and its
//! share of the routing tables; shards share nothing and talk through lock-free inboxes. This crate
//! knows nothing of CLI, files or signals: the `gateway` crate fills a [`ShardConfig`] and calls
//! [`DataPlane::start`].

pub mod access;
pub mod admit;
pub mod auth;
pub mod authorize;
pub mod cluster;
pub mod config;
pub mod conn;
pub mod connect_rate;
pub mod control;
pub mod dispatch;
pub mod drain;
pub mod glob;
pub mod history;
pub mod ids;
pub mod inbox;
pub mod iplimit;
pub mod listener;
pub mod mesh;
pub mod messages;
pub mod metrics;
pub mod protocol;
pub mod pusher;
pub mod route;
pub mod routing;
pub mod runtime;
pub mod shard;
pub mod signal;
pub mod status;
pub mod timer;
pub mod uring;
pub mod webhooks;
pub mod ws;

pub use config::ShardConfig;
pub use runtime::DataPlane;
pub use status::NodeStatus;
