//! The HTTP API for backends, served under `/v1/` on the admin port (docs/API.md).
//!
//! Backends publish to channels, send to users, ask about presence and disconnect or shed clients. Each
//! request becomes a message in a shard's inbox (`UserMsg::Route`, `ChannelMsg::Publish`, or an `NodeMsg::Invoke` of a
//! `shards::control` operation), and its answer comes back on a oneshot channel. The control thread never
//! blocks a shard and never holds shard state: it is another sender into the same inboxes the shards use.

use std::{sync::Arc, time::Duration};

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::{
    Method, Request, Response, StatusCode,
    body::Incoming,
    header::{AUTHORIZATION, CONTENT_TYPE, HeaderValue, WWW_AUTHENTICATE},
};
use serde::Deserialize;
use serde_json::{json, value::RawValue};
use shards::{
    control,
    ids::owner_of,
    inbox::Inbox,
    messages::{Ack, ChannelMsg, NodeMsg, Origin, ShardMsg, UserMsg},
    protocol::{encode, parse::check_name},
    ws::CloseReason,
};
use tokio::sync::oneshot;

/// Largest request body accepted.
const MAX_BODY_BYTES: usize = 1024 * 1024;
/// How long a request waits for the shards' answer before 504.
const ANSWER_TIMEOUT: Duration = Duration::from_secs(5);

/// What the API needs: the shards' inboxes and the key.
pub struct Api {
    /// Every shard's inbox, by shard index.
    inboxes: Arc<[Arc<Inbox>]>,
    /// Bearer key; `None`: no key required.
    key: Option<String>,
    /// Cluster mode's view (registry); `None` in embedded mode.
    cluster: Option<Arc<crate::bridge::ClusterView>>,
    /// Starts the node's paced drain (`POST /v1/drain`); `None` where the node cannot drain.
    drain: Option<Arc<crate::drain::DrainSwitch>>,
}

/// A refused request: status and message.
struct Refusal(StatusCode, String);

type Answer = Result<serde_json::Value, Refusal>;

impl Api {
    /// An API over `inboxes`, requiring `key` when it is non-empty.
    pub fn new(
        inboxes: Arc<[Arc<Inbox>]>,
        key: &str,
        cluster: Option<Arc<crate::bridge::ClusterView>>,
        drain: Option<Arc<crate::drain::DrainSwitch>>,
    ) -> Self {
        Api {
            inboxes,
            key: (!key.is_empty()).then(|| key.to_string()),
            cluster,
            drain,
        }
    }

    /// Answers one `/v1/` request.
    pub async fn handle(&self, req: Request<Incoming>) -> Response<Full<Bytes>> {
        if let Err(refusal) = self.authorize(&req) {
            let mut response = reply(Err(refusal));
            response
                .headers_mut()
                .insert(WWW_AUTHENTICATE, HeaderValue::from_static("Bearer"));
            return response;
        }
        let method = req.method().clone();
        let path = req.uri().path().to_string();
        let answer = match (method, path.as_str()) {
            (Method::POST, "/v1/publish") => self.publish(req).await,
            (Method::POST, "/v1/send") => self.send(req).await,
            (Method::POST, "/v1/disconnect") => self.disconnect(req).await,
            (Method::POST, "/v1/close") => self.close(req).await,
            (Method::POST, "/v1/drain") => self.drain(),
            (Method::GET, "/v1/nodes") => self.nodes(),
            (Method::GET, p) if p.starts_with("/v1/presence/") => {
                self.presence(&p["/v1/presence/".len()..]).await
            }
            (_, "/v1/publish" | "/v1/send" | "/v1/disconnect" | "/v1/close" | "/v1/drain") => {
                Err(Refusal(StatusCode::METHOD_NOT_ALLOWED, "use POST".into()))
            }
            (_, p) if p.starts_with("/v1/presence/") => {
                Err(Refusal(StatusCode::METHOD_NOT_ALLOWED, "use GET".into()))
            }
            _ => Err(Refusal(
                StatusCode::NOT_FOUND,
                "no such API endpoint".into(),
            )),
        };
        reply(answer)
    }

    /// Checks the bearer key, in constant time.
    fn authorize(&self, req: &Request<Incoming>) -> Result<(), Refusal> {
        let Some(key) = &self.key else { return Ok(()) };
        let given = req
            .headers()
            .get(AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .unwrap_or("");
        let same_len = given.len() == key.len();
        let diff = given
            .bytes()
            .zip(key.bytes())
            .fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if same_len && diff == 0 {
            Ok(())
        } else {
            Err(Refusal(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer key".into(),
            ))
        }
    }

    /// `POST /v1/publish {"channel","data"}` → `{"status":"published","conns":N}`.
    async fn publish(&self, req: Request<Incoming>) -> Answer {
        #[derive(Deserialize)]
        struct Body {
            channel: String,
            data: Box<RawValue>,
        }
        let body: Body = read_json(req).await?;
        valid_name(&body.channel, "channel")?;
        let frame = encode::backend_message(Some(&body.channel), body.data.get());
        let channel: Arc<str> = Arc::from(body.channel.as_str());
        let owner = owner_of(&channel, self.inboxes.len());
        let (sink, rx) = ack_channel();
        self.submit(
            owner,
            ChannelMsg::Publish {
                channel,
                frame,
                reply: Origin::External(sink),
                self_subscribed: false,
                local_only: false,
                seq: 0,
            },
        )?;
        let ack = wait(rx).await?;
        Ok(json!({"status": ack.status, "conns": ack.conns}))
    }

    /// `POST /v1/send {"user","data"}` → `{"status":"delivered"|"stored"|"offline","conns":N}`.
    async fn send(&self, req: Request<Incoming>) -> Answer {
        #[derive(Deserialize)]
        struct Body {
            user: String,
            data: Box<RawValue>,
        }
        let body: Body = read_json(req).await?;
        valid_name(&body.user, "user")?;
        let frame = encode::backend_message(None, body.data.get());
        let to: Arc<str> = Arc::from(body.user.as_str());
        let owner = owner_of(&to, self.inboxes.len());
        let (sink, rx) = ack_channel();
        self.submit(
            owner,
            UserMsg::Route {
                to,
                frame,
                reply: Origin::External(sink),
                local_only: false,
                seq: 0,
            },
        )?;
        let ack = wait(rx).await?;
        Ok(json!({"status": ack.status, "conns": ack.conns}))
    }

    /// `GET /v1/presence/<user>` → `{"user","online","conns"}`, from the user's owner shard.
    async fn presence(&self, raw_user: &str) -> Answer {
        let user = percent_decode(raw_user).ok_or_else(|| bad("user: invalid percent-encoding"))?;
        valid_name(&user, "user")?;
        let owner = owner_of(&user, self.inboxes.len());
        let (tx, rx) = oneshot::channel();
        let name = user.clone();
        self.submit(
            owner,
            NodeMsg::Invoke(Box::new(move |_, st, _| {
                let _ = tx.send(control::user_connections(st, &name));
            })),
        )?;
        let local = wait(rx).await?;
        let mut nodes = Vec::new();
        let mut conns = local;
        if let Some(cluster) = &self.cluster {
            if local > 0 {
                nodes.push(json!({"node": cluster.node_id(), "conns": local}));
            }
            // Other nodes from Redis; this node's own count is exact from its shard.
            if let Some(remote) = cluster.remote_holders(&user).await {
                for (node, n) in remote {
                    conns += n as u64;
                    nodes.push(json!({"node": node, "conns": n}));
                }
            }
            return Ok(json!({"user": user, "online": conns > 0, "conns": conns, "nodes": nodes}));
        }
        Ok(json!({"user": user, "online": conns > 0, "conns": conns}))
    }

    /// `POST /v1/disconnect {"user"}` → `{"closed":N}`: every connection of the user gets 4010.
    async fn disconnect(&self, req: Request<Incoming>) -> Answer {
        #[derive(Deserialize)]
        struct Body {
            user: String,
        }
        let body: Body = read_json(req).await?;
        valid_name(&body.user, "user")?;
        let mut closed = 0;
        for shard in 0..self.inboxes.len() {
            let (tx, rx) = oneshot::channel();
            let user = body.user.clone();
            self.submit(
                shard,
                NodeMsg::Invoke(Box::new(move |_, st, now| {
                    let _ = tx.send(control::disconnect_user(
                        st,
                        &user,
                        CloseReason::Disconnected,
                        now,
                    ));
                })),
            )?;
            closed += wait(rx).await?;
        }
        if let Some(cluster) = &self.cluster {
            closed += cluster.disconnect_remote(&body.user).await.unwrap_or(0) as usize;
        }
        Ok(json!({"closed": closed}))
    }

    /// `POST /v1/close {"count":N}` → `{"closed":M}`: up to N connections of this node get 1001.
    async fn close(&self, req: Request<Incoming>) -> Answer {
        #[derive(Deserialize)]
        struct Body {
            count: usize,
        }
        let body: Body = read_json(req).await?;
        let mut closed = 0;
        for shard in 0..self.inboxes.len() {
            let left = body.count - closed;
            if left == 0 {
                break;
            }
            let (tx, rx) = oneshot::channel();
            self.submit(
                shard,
                NodeMsg::Invoke(Box::new(move |shard, st, now| {
                    let _ = tx.send(control::close_connections(
                        shard,
                        st,
                        left,
                        CloseReason::GoingAway,
                        now,
                    ));
                })),
            )?;
            closed += wait(rx).await?;
        }
        Ok(json!({"closed": closed}))
    }

    /// `POST /v1/drain` → `{"draining":true}`: starts the paced drain, as SIGTERM does (idempotent).
    fn drain(&self) -> Answer {
        match &self.drain {
            Some(switch) => {
                switch.request();
                Ok(json!({"draining": true}))
            }
            None => Err(Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "this process cannot drain".into(),
            )),
        }
    }

    /// `GET /v1/nodes` → `{"nodes":[{"id","state","ws","admin","started_ms","heartbeat_ms"}]}` as of the
    /// bridge's last heartbeat; 503 in embedded mode.
    fn nodes(&self) -> Answer {
        let Some(cluster) = &self.cluster else {
            return Err(Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "not in cluster mode (no redis_url)".into(),
            ));
        };
        let nodes: Vec<_> = cluster
            .nodes()
            .into_iter()
            .map(|n| {
                json!({"id": n.id, "state": n.state.as_str(), "ws": n.ws, "admin": n.admin,
                       "started_ms": n.started_ms, "heartbeat_ms": n.heartbeat_ms,
                       "connections": n.connections, "shards": n.shards})
            })
            .collect();
        Ok(json!({"nodes": nodes, "redis_up": cluster.redis_up()}))
    }

    /// Pushes `msg` into shard `shard`'s inbox; a full inbox is 503 (the node is overloaded).
    fn submit(&self, shard: usize, msg: impl Into<ShardMsg>) -> Result<(), Refusal> {
        self.inboxes[shard].send(msg).map_err(|_| {
            Refusal(
                StatusCode::SERVICE_UNAVAILABLE,
                "shard inbox full; retry later".into(),
            )
        })
    }
}

/// An ack sink for a routed message and the receiver the handler awaits.
fn ack_channel() -> (Box<dyn FnOnce(Ack) + Send>, oneshot::Receiver<Ack>) {
    let (tx, rx) = oneshot::channel();
    (
        Box::new(move |ack| {
            let _ = tx.send(ack);
        }),
        rx,
    )
}

/// Waits for a shard's answer, bounded.
async fn wait<T>(rx: oneshot::Receiver<T>) -> Result<T, Refusal> {
    match tokio::time::timeout(ANSWER_TIMEOUT, rx).await {
        Ok(Ok(v)) => Ok(v),
        Ok(Err(_)) => Err(Refusal(
            StatusCode::SERVICE_UNAVAILABLE,
            "the shard stopped before answering".into(),
        )),
        Err(_) => Err(Refusal(
            StatusCode::GATEWAY_TIMEOUT,
            "no answer from the shard in time".into(),
        )),
    }
}

/// Reads and parses a JSON body of at most [`MAX_BODY_BYTES`].
async fn read_json<T: serde::de::DeserializeOwned>(req: Request<Incoming>) -> Result<T, Refusal> {
    let body = Limited::new(req.into_body(), MAX_BODY_BYTES)
        .collect()
        .await
        .map_err(|_| {
            Refusal(
                StatusCode::PAYLOAD_TOO_LARGE,
                format!("body over {MAX_BODY_BYTES} bytes"),
            )
        })?
        .to_bytes();
    serde_json::from_slice(&body).map_err(|e| bad(&format!("invalid JSON body: {e}")))
}

/// Checks a user or channel name against the protocol's rule.
fn valid_name(name: &str, what: &str) -> Result<(), Refusal> {
    check_name(name).map_err(|(_, msg)| bad(&format!("{what}: {msg}")))
}

/// A 400 with `message`.
fn bad(message: &str) -> Refusal {
    Refusal(StatusCode::BAD_REQUEST, message.to_string())
}

/// Decodes `%XX` escapes of a path segment; `None` on a malformed escape or non-UTF-8 result.
fn percent_decode(s: &str) -> Option<String> {
    let bytes = s.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = s.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The JSON response for an answer: 200 with the value, or the refusal's status with `{"error":...}`.
fn reply(answer: Answer) -> Response<Full<Bytes>> {
    let (status, body) = match answer {
        Ok(value) => (StatusCode::OK, value),
        Err(Refusal(status, message)) => (status, json!({"error": message})),
    };
    let mut response = Response::new(Full::new(Bytes::from(body.to_string())));
    *response.status_mut() = status;
    response
        .headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percent_decoding() {
        assert_eq!(percent_decode("alice").as_deref(), Some("alice"));
        assert_eq!(percent_decode("a%20b%3Ac").as_deref(), Some("a b:c"));
        assert_eq!(percent_decode("%C3%A9").as_deref(), Some("é"));
        assert_eq!(percent_decode("%2"), None);
        assert_eq!(percent_decode("%zz"), None);
        assert_eq!(percent_decode("%ff"), None);
    }
}
