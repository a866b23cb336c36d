//! The HTTP API's channel queries: `GET /apps/{id}/channels`, `/channels/{name}` and
//! `/channels/{name}/users`, answered from the shards that own the channels and, in cluster mode,
//! completed with the other nodes' entries in Redis by the bridge.
//!
//! The query, its parsing and its answer are here; the shards gather what they know in
//! [`super::gather`]. A query never blocks a shard: the request's connection waits (`Phase::Answering`), the owner
//! shards add what they know through their inboxes, and whoever completes the answer (the last shard,
//! or the bridge) sends it back to the connection's shard as an invocation that writes the response.

use std::sync::Arc;

use super::{http_message::Response, names};
use crate::ids::ConnId;

/// What is asked.
#[derive(Clone, Debug)]
pub enum Ask {
    /// One channel (internal name): `occupied`, `subscription_count`, `user_count`.
    Channel(Arc<str>),
    /// The app's occupied channels whose name starts with the prefix, with their member counts.
    Channels {
        /// The app id.
        app: Arc<str>,
        /// `filter_by_prefix` (may be empty).
        prefix: String,
    },
    /// The members of a presence channel (internal name).
    Users(Arc<str>),
    /// Several channels (internal names), for a trigger's `info`: each one's `subscription_count`
    /// and `user_count`.
    Several(Vec<Arc<str>>),
}

/// What is known so far: this node's answer, then the cluster's.
#[derive(Clone, Debug, Default)]
pub struct Facts {
    /// One channel: subscribed sockets.
    pub subscriptions: u64,
    /// One channel: distinct members (presence) or subscribing users.
    pub users: Vec<Arc<str>>,
    /// Channels: internal name → member names (presence channels) or nothing.
    pub channels: Vec<(Arc<str>, Vec<Arc<str>>)>,
    /// Several channels: internal name → subscribed sockets (one entry per node that has some).
    pub counts: Vec<(Arc<str>, u64)>,
}

/// A query under way.
pub struct Query {
    /// What is asked.
    pub ask: Ask,
    /// Which `info` attributes the answer carries (`user_count`, `subscription_count`).
    pub info: Vec<String>,
    /// What is known.
    pub facts: Facts,
    /// The waiting connection: its shard and id.
    pub reply: (usize, ConnId),
}

impl Query {
    /// The HTTP answer from what is known.
    pub fn response(&self) -> Response {
        let wants = |attr: &str| self.info.iter().any(|i| i == attr);
        match &self.ask {
            Ask::Channel(_) => {
                let f = &self.facts;
                let mut body = format!("{{\"occupied\":{}", f.subscriptions > 0);
                if wants("user_count") {
                    body.push_str(&format!(",\"user_count\":{}", distinct(&f.users)));
                }
                if wants("subscription_count") {
                    body.push_str(&format!(",\"subscription_count\":{}", f.subscriptions));
                }
                body.push('}');
                Response::ok(body)
            }
            Ask::Channels { .. } => {
                // Each node lists a channel with its own members: the union counts.
                let mut channels: std::collections::BTreeMap<&str, Vec<Arc<str>>> =
                    Default::default();
                for (c, users) in &self.facts.channels {
                    if let Some((_, name)) = names::external(c) {
                        channels
                            .entry(name)
                            .or_default()
                            .extend(users.iter().cloned());
                    }
                }
                let mut body = String::from("{\"channels\":{");
                for (i, (name, users)) in channels.iter().enumerate() {
                    let users = distinct(users);
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(&json_str(name));
                    if wants("user_count") {
                        body.push_str(&format!(":{{\"user_count\":{users}}}"));
                    } else {
                        body.push_str(":{}");
                    }
                }
                body.push_str("}}");
                Response::ok(body)
            }
            Ask::Several(asked) => {
                let mut body = String::from("{\"channels\":{");
                for (i, channel) in asked.iter().enumerate() {
                    let name = names::external(channel).map_or(&**channel, |(_, n)| n);
                    let subs: u64 = self
                        .facts
                        .counts
                        .iter()
                        .filter(|(c, _)| c == channel)
                        .map(|(_, n)| n)
                        .sum();
                    let users: Vec<Arc<str>> = self
                        .facts
                        .channels
                        .iter()
                        .filter(|(c, _)| c == channel)
                        .flat_map(|(_, u)| u.iter().cloned())
                        .collect();
                    let mut attrs = Vec::new();
                    if wants("subscription_count") {
                        attrs.push(format!("\"subscription_count\":{subs}"));
                    }
                    if wants("user_count") && super::presence::is_presence(channel) {
                        attrs.push(format!("\"user_count\":{}", distinct(&users)));
                    }
                    if i > 0 {
                        body.push(',');
                    }
                    body.push_str(&format!("{}:{{{}}}", json_str(name), attrs.join(",")));
                }
                body.push_str("}}");
                Response::ok(body)
            }
            Ask::Users(_) => {
                let mut ids: Vec<&str> = self
                    .facts
                    .users
                    .iter()
                    .filter_map(|m| names::external(m).map(|(_, id)| id))
                    .collect();
                ids.sort_unstable();
                ids.dedup();
                let users: Vec<String> = ids
                    .iter()
                    .map(|id| format!("{{\"id\":{}}}", json_str(id)))
                    .collect();
                Response::ok(format!("{{\"users\":[{}]}}", users.join(",")))
            }
        }
    }
}

/// The query of `GET /apps/{app}/{route}` (`route` starts with `channels`), with the request's
/// parameters, answered to `reply`; or the 400/404 it gets.
pub fn parse(
    app: &str,
    route: &str,
    params: &[(&str, &str)],
    reply: (usize, ConnId),
) -> Result<Query, Response> {
    let param = |name: &str| params.iter().find(|(k, _)| *k == name).map(|(_, v)| *v);
    let info: Vec<String> = param("info")
        .map(|i| {
            i.split(',')
                .map(|s| s.trim().to_owned())
                .filter(|s| !s.is_empty())
                .collect()
        })
        .unwrap_or_default();
    if let Some(bad) = info
        .iter()
        .find(|i| *i != "user_count" && *i != "subscription_count")
    {
        return Err(Response::error(
            400,
            &format!("unknown info attribute {bad}"),
        ));
    }
    let wants_users = info.iter().any(|i| i == "user_count");
    let rest = route.strip_prefix("channels").unwrap_or(route);
    let ask = match rest.strip_prefix('/') {
        None if rest.is_empty() => {
            let prefix = param("filter_by_prefix").unwrap_or("").to_owned();
            if wants_users && !prefix.starts_with("presence-") {
                return Err(Response::error(
                    400,
                    "info=user_count needs filter_by_prefix=presence-",
                ));
            }
            if info.iter().any(|i| i == "subscription_count") {
                return Err(Response::error(
                    400,
                    "subscription_count is for one channel",
                ));
            }
            Ask::Channels {
                app: Arc::from(app),
                prefix,
            }
        }
        Some(rest) => {
            let (name, users) = match rest.strip_suffix("/users") {
                Some(name) => (name, true),
                None => (rest, false),
            };
            if !names::channel_ok(name) {
                return Err(Response::error(404, "no such channel"));
            }
            let presence = name.starts_with("presence-");
            if (users || wants_users) && !presence {
                return Err(Response::error(
                    400,
                    "members are for presence channels only",
                ));
            }
            let channel: Arc<str> = Arc::from(names::internal(app, name));
            if users {
                Ask::Users(channel)
            } else {
                Ask::Channel(channel)
            }
        }
        None => return Err(Response::error(404, "not found")),
    };
    Ok(Query {
        ask,
        info,
        facts: Facts::default(),
        reply,
    })
}

/// Distinct names.
fn distinct(users: &[Arc<str>]) -> usize {
    let mut v: Vec<&str> = users.iter().map(|u| &**u).collect();
    v.sort_unstable();
    v.dedup();
    v.len()
}

/// `s` as a JSON string literal.
fn json_str(s: &str) -> String {
    let mut b = bytes::BytesMut::new();
    crate::protocol::encode::write_json_str(&mut b, s);
    String::from_utf8_lossy(&b).into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn query(ask: Ask, info: &[&str], facts: Facts) -> serde_json::Value {
        let q = Query {
            ask,
            info: info.iter().map(|s| s.to_string()).collect(),
            facts,
            reply: (
                0,
                ConnId {
                    index: 0,
                    generation: 0,
                },
            ),
        };
        serde_json::from_str(&q.response().body).unwrap()
    }

    #[test]
    fn answers_have_pusher_s_shapes() {
        let ch: Arc<str> = names::internal("1", "presence-r").into();
        let (a, b): (Arc<str>, Arc<str>) =
            (names::user("1", "a").into(), names::user("1", "b").into());
        let facts = Facts {
            subscriptions: 3,
            users: vec![a.clone(), b.clone(), a.clone()],
            ..Default::default()
        };
        let v = query(
            Ask::Channel(ch.clone()),
            &["user_count", "subscription_count"],
            facts.clone(),
        );
        assert_eq!(
            v,
            serde_json::json!({"occupied": true, "user_count": 2, "subscription_count": 3})
        );
        assert_eq!(
            query(Ask::Channel(ch.clone()), &[], Facts::default()),
            serde_json::json!({"occupied": false})
        );
        let v = query(Ask::Users(ch.clone()), &[], facts);
        assert_eq!(v, serde_json::json!({"users": [{"id": "a"}, {"id": "b"}]}));
        let other: Arc<str> = names::internal("1", "news").into();
        let facts = Facts {
            channels: vec![
                (ch.clone(), vec![a.clone()]),
                (other, vec![]),
                (ch, vec![a, b]),
            ],
            ..Default::default()
        };
        let ask = Ask::Channels {
            app: "1".into(),
            prefix: String::new(),
        };
        let v = query(ask.clone(), &["user_count"], facts.clone());
        assert_eq!(
            v,
            serde_json::json!({"channels": {"news": {"user_count": 0}, "presence-r": {"user_count": 2}}})
        );
        assert_eq!(
            query(ask, &[], facts),
            serde_json::json!({"channels": {"news": {}, "presence-r": {}}})
        );
    }
}
