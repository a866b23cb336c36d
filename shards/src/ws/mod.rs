//! The WebSocket layer (RFC 6455, server role) sized for a million idle connections.
//!
//! tungstenite supplies the wire pieces (frame header parsing and formatting, masking, the accept key);
//! this module owns the buffers. An idle connection holds no read buffer: bytes are read into the
//! shard's scratch buffer and only an incomplete frame is kept per connection. Outgoing frames are built
//! once into `Bytes` ([`encode`]) and shared by every recipient.

pub mod close;
pub mod decode;
pub mod encode;
pub mod handshake;

pub use close::CloseReason;
