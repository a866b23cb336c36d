//! Error codes of protocol v1 and the error a bad request turns into.

use std::borrow::Cow;

/// The `code` of an `{"op":"error"}` frame. Every one leaves the connection open, but for the two
/// that say they are followed by a close.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ErrorCode {
    /// Malformed JSON, a missing or mistyped field, a name over its limit.
    BadRequest,
    /// `op` is not one of protocol v1's.
    UnknownOp,
    /// Any op but `identify` (and `ping`) before `identify`.
    NotIdentified,
    /// The identity was refused: at `identify`, followed by close 1008; at `refresh`, the connection
    /// keeps its current token.
    Unauthorized,
    /// A field or list over its documented size.
    TooLarge,
    /// The connection's message rate is over its token bucket.
    RateLimited,
    /// The connection may not do this (channel rules, grants, `auth.client_send`); it stays open.
    Forbidden,
    /// The user already holds `limits.max_connections_per_user` connections on this node (followed
    /// by close 1008).
    TooManyConnections,
}

impl ErrorCode {
    /// The wire name.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::BadRequest => "bad_request",
            ErrorCode::UnknownOp => "unknown_op",
            ErrorCode::NotIdentified => "not_identified",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::TooLarge => "too_large",
            ErrorCode::RateLimited => "rate_limited",
            ErrorCode::Forbidden => "forbidden",
            ErrorCode::TooManyConnections => "too_many_connections",
        }
    }
}

/// A request the gateway refuses, with everything the error frame needs.
#[derive(Debug, PartialEq, Eq)]
pub struct RequestError<'a> {
    /// The request's `id`, when it could be read.
    pub id: Option<&'a str>,
    /// What went wrong.
    pub code: ErrorCode,
    /// A human-readable explanation.
    pub message: Cow<'static, str>,
}

impl<'a> RequestError<'a> {
    /// An error with a fixed message.
    pub fn new(id: Option<&'a str>, code: ErrorCode, message: &'static str) -> Self {
        RequestError {
            id,
            code,
            message: Cow::Borrowed(message),
        }
    }
}
