//! Pusher Channels protocol 7 compatibility (issue 13), built up in steps. This first step holds the
//! signatures every part of it rests on ([`signature`]): channel authorization (private and presence
//! channels), user authentication (`pusher:signin`), the signed HTTP API requests of the server SDKs,
//! and webhook bodies. The WebSocket endpoint, the HTTP API and webhooks come in later steps.

pub mod signature;
