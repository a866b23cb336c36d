//! Protocol v1: the JSON frames clients and the gateway exchange (docs/PROTOCOL.md).
//!
//! [`parse`] turns a client frame (parsed in place by simd-json) into a typed [`Request`] or a
//! [`RequestError`] that already says which error frame to send. [`encode`] writes every server frame
//! straight into a WebSocket frame in `Bytes`, serialised once however many connections receive it.

pub mod client;
pub mod encode;
pub mod error;
pub mod parse;
pub mod reconnect;

pub use error::{ErrorCode, RequestError};
pub use parse::{Request, parse_value};
