//! Pusher Channels protocol 7 compatibility (issue 13): pusher-js, Laravel Echo and the Pusher server
//! SDKs pointed at the gateway unchanged, served by the same shards, routing and bridge as protocol v1.
//!
//! - [`apps`]: the apps (tenants) a node serves, by key and id;
//! - [`names`]: channel name rules, the internal names that keep apps apart, socket ids;
//! - [`conn`]: a Pusher connection's record, opening, close codes and cleanup;
//! - [`dispatch`]: the client's frames (`pusher:subscribe`, `pusher:ping`, ...);
//! - [`frames`]: the server's frames, encoded once;
//! - [`http`] and [`api`]: the HTTP API on the WebSocket listener;
//! - [`signature`]: channel authorization, user authentication, signed API requests, webhooks.

pub mod api;
pub mod apps;
pub mod client_events;
pub mod conn;
pub mod dispatch;
pub mod frames;
pub mod gather;
pub mod http;
pub mod http_message;
pub mod names;
pub mod presence;
pub mod query;
pub mod record;
pub mod signature;
pub mod signin;
pub mod socket;
pub mod subscribe;
