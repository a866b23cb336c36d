//! An HTTP API request as the transport framed it, and the response it gets: shared by the transport
//! ([`super::http`]), the API's handlers and the channel queries, which answer from other shards or
//! from the bridge.

/// A complete HTTP API request.
pub struct Request<'a> {
    /// `GET`, `POST`, ...
    pub method: &'a str,
    /// The path, without the query string.
    pub path: &'a str,
    /// The query parameters, percent-decoded, in order.
    pub query: Vec<(String, String)>,
    /// The body (`Content-Length` bytes).
    pub body: &'a [u8],
}

/// An answer: status and JSON body.
pub struct Response {
    /// HTTP status code.
    pub status: u16,
    /// The JSON body.
    pub body: String,
}

impl Response {
    /// A 200 with `body`.
    pub fn ok(body: impl Into<String>) -> Self {
        Response {
            status: 200,
            body: body.into(),
        }
    }

    /// An error: `status` and `{"error":"<message>"}`.
    pub fn error(status: u16, message: &str) -> Self {
        Response {
            status,
            body: {
                let mut b = bytes::BytesMut::with_capacity(message.len() + 16);
                b.extend_from_slice(b"{\"error\":");
                crate::protocol::encode::write_json_str(&mut b, message);
                b.extend_from_slice(b"}");
                String::from_utf8_lossy(&b).into_owned()
            },
        }
    }
}
