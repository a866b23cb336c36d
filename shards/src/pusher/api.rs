//! The Pusher HTTP API's routes: signed requests of the server SDKs, answered by the shard that
//! accepted them.
//!
//! Triggers enter the node exactly as a v1 publish does (the channel's owner shard, then its
//! subscribers, and the Redis bridge in cluster mode), encoded once in Pusher's format on an app's
//! internal channel name. A `socket_id` names the connection to skip; it is skipped wherever it is.

use std::sync::Arc;

use simd_json::{BorrowedValue, prelude::*};

use super::{
    apps::App,
    frames,
    http::{Request, Response},
    names, signature,
    subscribe::SERVER_TO_USER,
};
use crate::{
    ids::ConnId,
    messages::Origin,
    route,
    shard::{Shard, ShardState},
};

/// Largest `data` of one event (Pusher's own limit is 10 KB; self-hosted peers allow 100 KB).
pub const MAX_DATA_BYTES: usize = 100 * 1024;
/// Longest event name.
const MAX_EVENT_NAME_BYTES: usize = 200;
/// Most channels one trigger may name.
const MAX_TRIGGER_CHANNELS: usize = 100;
/// Most events one batch may hold.
const MAX_BATCH_EVENTS: usize = 10;

/// Answers a complete HTTP API request, or gives back the channel query whose answer comes later to
/// the waiting connection `conn`.
pub fn answer(
    shard: &Shard,
    st: &mut ShardState,
    conn: ConnId,
    req: &Request<'_>,
    now: u64,
) -> Result<Response, Box<super::query::Query>> {
    let Some(rest) = req.path.strip_prefix("/apps/") else {
        return Ok(Response::error(404, "not found"));
    };
    let (app_id, route) = rest.split_once('/').unwrap_or((rest, ""));
    let Some((_, app)) = shard.config.pusher.by_id(app_id) else {
        return Ok(Response::error(404, "unknown app"));
    };
    let app = app.clone();
    let query: Vec<(&str, &str)> = req
        .query
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let unix_now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let signed = signature::verify_api_request(
        (&app.key, &app.secret),
        (req.method, req.path),
        &query,
        req.body,
        unix_now,
    );
    if let Err(e) = signed {
        shard.metrics.forbidden("publish");
        let status = if matches!(e, signature::ApiAuthError::Missing(_)) {
            400
        } else {
            401
        };
        return Ok(Response::error(status, e.message()));
    }
    if !app.enabled {
        return Ok(Response::error(403, "app disabled"));
    }
    Ok(match (req.method, route) {
        ("POST", "events") => match events(shard, st, &app, req.body, now) {
            Ok(response) => response,
            Err(asked) => {
                // `info`: the answer waits for the counts of every channel.
                let info = asked.1.split(',').map(|s| s.trim().to_owned()).collect();
                return Err(Box::new(super::query::Query {
                    ask: super::query::Ask::Several(asked.0),
                    info,
                    facts: Default::default(),
                    reply: (shard.id, conn),
                }));
            }
        },
        ("POST", "batch_events") => batch(shard, st, &app, req.body, now),
        ("GET", r) if r == "channels" || r.starts_with("channels/") => {
            match super::query::parse(&app.id, r, &query, (shard.id, conn)) {
                Ok(q) => return Err(Box::new(q)),
                Err(refused) => refused,
            }
        }
        ("POST", r) if r.starts_with("users/") && r.ends_with("/terminate_connections") => {
            // `users/terminate_connections` has no user: strip each end separately, never slice.
            let user = r
                .strip_prefix("users/")
                .and_then(|u| u.strip_suffix("/terminate_connections"))
                .unwrap_or("");
            terminate(shard, st, &app, user, now)
        }
        (_, "events" | "batch_events") => Response::error(405, "use POST"),
        _ => Response::error(404, "not found"),
    })
}

/// Published, or published with `info` asked: the channels (internal names) and the attributes.
type Published = Result<Response, (Vec<Arc<str>>, String)>;

/// `POST /apps/{id}/events`: one event to up to 100 channels.
fn events(shard: &Shard, st: &mut ShardState, app: &App, body: &[u8], now: u64) -> Published {
    let r = |response| Ok(response);
    let mut body = body.to_vec();
    let Ok(v) = simd_json::to_borrowed_value(&mut body) else {
        return r(Response::error(400, "body is not JSON"));
    };
    let channels: Vec<&str> = match (v.get("channels"), v.get("channel")) {
        (Some(list), None) => match list.as_array() {
            Some(list) => match list.iter().map(|c| c.as_str()).collect::<Option<_>>() {
                Some(names) => names,
                None => return r(Response::error(400, "channels must be strings")),
            },
            None => return r(Response::error(400, "channels must be an array")),
        },
        (None, Some(one)) => match one.as_str() {
            Some(c) => vec![c],
            None => return r(Response::error(400, "channel must be a string")),
        },
        _ => return r(Response::error(400, "give either channels or channel")),
    };
    if channels.is_empty() || channels.len() > MAX_TRIGGER_CHANNELS {
        return r(Response::error(400, "an event goes to 1 to 100 channels"));
    }
    let info = match v.get("info").map(|i| i.as_str()) {
        None => None,
        Some(Some(i))
            if i.split(',')
                .all(|a| matches!(a.trim(), "user_count" | "subscription_count")) =>
        {
            Some(i.to_owned())
        }
        Some(_) => {
            return r(Response::error(
                400,
                "info takes user_count and subscription_count",
            ));
        }
    };
    match check_event(&v, &channels) {
        Ok(event) => {
            publish(shard, st, app, &event, &channels, now);
            match info {
                None => r(Response::ok("{}")),
                Some(info) => {
                    let internal = channels
                        .iter()
                        .map(|c| Arc::from(names::internal(&app.id, c)))
                        .collect();
                    Err((internal, info))
                }
            }
        }
        Err(message) => r(Response::error(400, message)),
    }
}

/// `POST /apps/{id}/batch_events`: up to 10 events, each to one channel.
fn batch(shard: &Shard, st: &mut ShardState, app: &App, body: &[u8], now: u64) -> Response {
    let mut body = body.to_vec();
    let Ok(v) = simd_json::to_borrowed_value(&mut body) else {
        return Response::error(400, "body is not JSON");
    };
    let Some(list) = v.get("batch").and_then(|b| b.as_array()) else {
        return Response::error(400, "batch must be an array");
    };
    if list.is_empty() || list.len() > MAX_BATCH_EVENTS {
        return Response::error(400, "a batch holds 1 to 10 events");
    }
    // Every event is checked before any is published: a batch is refused whole.
    let mut checked = Vec::with_capacity(list.len());
    for item in list {
        let Some(channel) = item.get("channel").and_then(|c| c.as_str()) else {
            return Response::error(400, "every batch event needs a channel");
        };
        match check_event(item, &[channel]) {
            Ok(event) => checked.push((event, channel)),
            Err(message) => return Response::error(400, message),
        }
    }
    for (event, channel) in checked {
        publish(shard, st, app, &event, &[channel], now);
    }
    Response::ok("{}")
}

/// A validated event.
struct Event<'v> {
    /// The event name.
    name: &'v str,
    /// Its data, relayed as given.
    data: &'v BorrowedValue<'v>,
    /// The socket to skip.
    socket_id: Option<&'v str>,
}

/// Checks an event object's name, data, socket id and channel names.
fn check_event<'v>(v: &'v BorrowedValue<'v>, channels: &[&str]) -> Result<Event<'v>, &'static str> {
    let name = v
        .get("name")
        .and_then(|n| n.as_str())
        .ok_or("name must be a string")?;
    if name.is_empty() || name.len() > MAX_EVENT_NAME_BYTES {
        return Err("name must be 1 to 200 bytes");
    }
    let data = v.get("data").ok_or("data is missing")?;
    let size = data.as_str().map_or_else(|| data.encode().len(), str::len);
    if size > MAX_DATA_BYTES {
        return Err("data over 100 KiB");
    }
    let socket_id = match v.get("socket_id") {
        None => None,
        Some(s) => match s.as_str() {
            Some(s) if names::parse_socket_id(s).is_some() => Some(s),
            _ => return Err("socket_id must look like 123.456"),
        },
    };
    let valid = |c: &str| match c.strip_prefix(SERVER_TO_USER) {
        Some(user) => user_ok(user),
        None => names::channel_ok(c),
    };
    if !channels.iter().all(|c| valid(c)) {
        return Err("invalid channel name");
    }
    Ok(Event {
        name,
        data,
        socket_id,
    })
}

/// Whether `user` may be a user id in a path or a `#server-to-user-` channel.
fn user_ok(user: &str) -> bool {
    !user.is_empty() && user.len() <= 128 && !user.chars().any(|c| c.is_control() || c == '/')
}

/// `POST /apps/{id}/users/{user}/terminate_connections`: every socket signed in as `user` is closed
/// (4009: pusher-js does not reconnect), on every shard of this node and, in cluster mode, on the
/// other nodes.
fn terminate(shard: &Shard, st: &mut ShardState, app: &App, user: &str, now: u64) -> Response {
    if !user_ok(user) {
        return Response::error(400, "invalid user id");
    }
    let user: Arc<str> = Arc::from(names::user(&app.id, user));
    for target in 0..shard.config.shards {
        let name = user.clone();
        let close: crate::messages::Invocation = Box::new(move |_, st, now| {
            crate::control::disconnect_user(st, &name, crate::ws::CloseReason::Disconnected, now);
        });
        if target == shard.id {
            close(shard, st, now);
        } else {
            st.mesh
                .send(target, crate::messages::NodeMsg::Invoke(close));
        }
    }
    if let Some(link) = &shard.config.cluster {
        link.disconnect_remote(user);
    }
    Response::ok("{}")
}

/// Publishes `event` on `channels` of `app`, skipping its `socket_id` when it is on this node.
fn publish(
    shard: &Shard,
    st: &mut ShardState,
    app: &App,
    event: &Event<'_>,
    channels: &[&str],
    now: u64,
) {
    for channel in channels {
        let frame = frames::event(event.name, channel, event.data, None);
        if let Some(user) = channel.strip_prefix(SERVER_TO_USER) {
            // `sendToUser`: every socket signed in as the user, on every node.
            let to: Arc<str> = Arc::from(names::user(&app.id, user));
            route::send_to_user(
                shard,
                st,
                to,
                frame,
                Origin::External(Box::new(|_| {})),
                now,
            );
            continue;
        }
        let internal: Arc<str> = Arc::from(names::internal(&app.id, channel));
        let origin = match event.socket_id {
            // Skipped wherever it is: here, or on the node its id names.
            Some(socket) => Origin::Skip {
                socket: Arc::from(socket),
                then: Box::new(|_| {}),
            },
            None => Origin::External(Box::new(|_| {})),
        };
        route::publish(shard, st, internal, frame, origin, now);
    }
}
