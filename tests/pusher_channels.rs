//! Pusher presence channels, client events and sign-in at the protocol level, on one node: member
//! counting across sockets, the member cap, the rules and limits of client events, and who may read a
//! user's own channel. The real client libraries run the same features in tests/pusher_clients.rs.

mod common;

use common::pusher::{api, connect, data, subscribe, subscribe_with};
use common::{Client, Node, NodeOpts};
use serde_json::{Value, json};
use shards::pusher::signature::channel_auth;

const APP: (&str, &str, &str) = ("1", "k1", "s1");

fn node() -> Node {
    Node::start(NodeOpts::new().shards(2).set(
        "pusher.apps",
        r#"[{ id = "1", key = "k1", secret = "s1", max_presence_members = 2 },
            { id = "2", key = "k2", secret = "s2", client_events = false }]"#,
    ))
}

/// Joins `channel` as `user_id` with `info`; returns the `subscription_succeeded` presence data.
fn join(c: &mut Client, socket_id: &str, channel: &str, user_id: &str, info: Value) -> Value {
    let cd = json!({"user_id": user_id, "user_info": info}).to_string();
    let auth = channel_auth("k1", "s1", socket_id, channel, Some(&cd));
    let ok = subscribe_with(c, channel, Some(&auth), Some(&cd));
    assert_eq!(
        ok["event"], "pusher_internal:subscription_succeeded",
        "{ok}"
    );
    data(&ok)["presence"].clone()
}

/// The next frame, which must be `event`; returns its decoded data.
fn expect(c: &mut Client, event: &str) -> Value {
    let f = c.recv_json();
    assert_eq!(f["event"], event, "{f}");
    data(&f)
}

/// Asserts nothing but the pong to a ping is pending on `c`.
fn nothing_pending(c: &mut Client) {
    c.send_json(&json!({"event": "pusher:ping"}));
    let f = c.recv_json();
    assert_eq!(f["event"], "pusher:pong", "unexpected frame {f}");
}

#[test]
fn presence_counts_a_user_once_however_many_sockets() {
    let node = node();
    let (mut obs, obs_id) = connect(&node, "k1");
    let p = join(
        &mut obs,
        &obs_id,
        "presence-room",
        "obs",
        json!({"name": "O"}),
    );
    assert_eq!(p["count"], 1);
    // Two tabs of Ann: one member_added, and the second tab sees both members.
    let (mut tab1, id1) = connect(&node, "k1");
    let p = join(
        &mut tab1,
        &id1,
        "presence-room",
        "ann",
        json!({"name": "Ann"}),
    );
    assert_eq!(
        (p["count"].as_u64(), p["hash"]["obs"]["name"].as_str()),
        (Some(2), Some("O"))
    );
    let added = expect(&mut obs, "pusher_internal:member_added");
    assert_eq!(
        added,
        json!({"user_id": "ann", "user_info": {"name": "Ann"}})
    );
    let (mut tab2, id2) = connect(&node, "k1");
    let p = join(
        &mut tab2,
        &id2,
        "presence-room",
        "ann",
        json!({"name": "Ann"}),
    );
    assert_eq!(p["count"], 2, "{p}");
    let mut ids: Vec<String> = serde_json::from_value(p["ids"].clone()).unwrap();
    ids.sort();
    assert_eq!(ids, ["ann", "obs"]);
    nothing_pending(&mut obs);
    nothing_pending(&mut tab1);
    // A third member is over the cap of 2: refused, and nobody hears of it.
    let (mut third, id3) = connect(&node, "k1");
    let cd = json!({"user_id": "zed"}).to_string();
    let auth = channel_auth("k1", "s1", &id3, "presence-room", Some(&cd));
    let e = subscribe_with(&mut third, "presence-room", Some(&auth), Some(&cd));
    assert_eq!(
        (e["event"].as_str(), e["data"]["status"].as_u64()),
        (Some("pusher:subscription_error"), Some(403)),
        "{e}"
    );
    nothing_pending(&mut obs);
    // Ann's first tab leaves: she is still there. Her last tab leaves: member_removed, once.
    tab1.close();
    nothing_pending(&mut obs);
    tab2.send_json(&json!({"event": "pusher:unsubscribe", "data": {"channel": "presence-room"}}));
    let removed = expect(&mut obs, "pusher_internal:member_removed");
    assert_eq!(removed, json!({"user_id": "ann"}));
    nothing_pending(&mut obs);
    // Now there is room: the third member joins.
    let p = join(&mut third, &id3, "presence-room", "zed", json!(null));
    assert_eq!(p["count"], 2);
    assert_eq!(
        expect(&mut obs, "pusher_internal:member_added")["user_id"],
        "zed"
    );
}

#[test]
fn presence_signatures_bind_the_member() {
    let node = node();
    let (mut c, id) = connect(&node, "k1");
    let signed = json!({"user_id": "u1"}).to_string();
    let claimed = json!({"user_id": "admin"}).to_string();
    let auth = channel_auth("k1", "s1", &id, "presence-x", Some(&signed));
    for (auth, cd) in [
        (auth.as_str(), claimed.as_str()),
        (auth.as_str(), "not json"),
        ("", signed.as_str()),
    ] {
        let e = subscribe_with(&mut c, "presence-x", Some(auth), Some(cd));
        assert_eq!(e["event"], "pusher:subscription_error", "{e}");
    }
    let e = subscribe_with(&mut c, "presence-x", Some(&auth), None);
    assert_eq!(e["data"]["status"], 400, "no channel_data: {e}");
}

#[test]
fn client_events_go_to_the_others_only_where_allowed() {
    let node = node();
    let (mut a, id_a) = connect(&node, "k1");
    let (mut b, id_b) = connect(&node, "k1");
    for (c, id) in [(&mut a, &id_a), (&mut b, &id_b)] {
        subscribe(
            c,
            "private-chat",
            Some(&channel_auth("k1", "s1", id, "private-chat", None)),
        );
        subscribe(c, "news", None);
        let enc = "private-encrypted-x";
        subscribe(c, enc, Some(&channel_auth("k1", "s1", id, enc, None)));
    }
    a.send_json(&json!({"event": "client-typing", "channel": "private-chat", "data": {"x": 1}}));
    let got = b.recv_json();
    assert_eq!(
        (got["event"].as_str(), &got["data"]),
        (Some("client-typing"), &json!({"x": 1})),
        "{got}"
    );
    assert!(
        got.get("user_id").is_none(),
        "no user_id off presence: {got}"
    );
    nothing_pending(&mut a);
    // Refused on public and encrypted channels, and on channels not subscribed.
    for channel in ["news", "private-encrypted-x", "private-other"] {
        a.send_json(&json!({"event": "client-x", "channel": channel, "data": {}}));
        assert_eq!(a.recv_json()["event"], "pusher:error", "{channel}");
    }
    nothing_pending(&mut b);
    // Over 10 per second: 4301, and the excess is dropped.
    for i in 0..15 {
        a.send_json(&json!({"event": "client-n", "channel": "private-chat", "data": {"i": i}}));
    }
    a.send_json(&json!({"event": "pusher:ping"}));
    let mut errors = 0;
    loop {
        let f = a.recv_json();
        if f["event"] == "pusher:pong" {
            break;
        }
        assert_eq!(f["data"]["code"], 4301, "{f}");
        errors += 1;
    }
    // A burst of 10 (one spent on client-typing above), then 10 per second: 6 refused when the 15
    // arrive at once, fewer if they spread.
    assert!((1..=6).contains(&errors), "{errors} refusals of 15 at 10/s");
    // B gets exactly the events that were not refused (they may cross shards: read, then check
    // that nothing else follows).
    for _ in 0..15 - errors {
        assert_eq!(b.recv_json()["event"], "client-n");
    }
    nothing_pending(&mut b);
    // An app with client events off refuses them.
    let (mut c, id) = connect(&node, "k2");
    subscribe(
        &mut c,
        "private-chat",
        Some(&channel_auth("k2", "s2", &id, "private-chat", None)),
    );
    c.send_json(&json!({"event": "client-x", "channel": "private-chat", "data": {}}));
    assert_eq!(c.recv_json()["event"], "pusher:error");
}

#[test]
fn presence_client_events_carry_the_sender_s_user_id() {
    let node = node();
    let (mut a, id_a) = connect(&node, "k1");
    let (mut b, id_b) = connect(&node, "k1");
    join(&mut a, &id_a, "presence-p", "alice", json!({}));
    join(&mut b, &id_b, "presence-p", "bob", json!({}));
    expect(&mut a, "pusher_internal:member_added");
    b.send_json(&json!({"event": "client-hi", "channel": "presence-p", "data": "yo"}));
    let got = a.recv_json();
    assert_eq!(
        (got["event"].as_str(), got["user_id"].as_str()),
        (Some("client-hi"), Some("bob")),
        "{got}"
    );
}

#[test]
fn a_user_s_own_channel_needs_a_sign_in_and_reaches_every_socket() {
    let node = node();
    let (mut c, _) = connect(&node, "k1");
    let e = subscribe_with(&mut c, "#server-to-user-u1", None, None);
    assert_eq!(e["data"]["status"], 403, "not signed in: {e}");
    // Bad signatures are refused; a good one signs in, once.
    let user_data = json!({"id": "u1", "name": "Ann"}).to_string();
    let (mut tabs, mut ids) = (Vec::new(), Vec::new());
    for _ in 0..2 {
        let (c, id) = connect(&node, "k1");
        tabs.push(c);
        ids.push(id);
    }
    let sign = |id: &str, secret: &str| {
        let sig = shards::pusher::signature::user_auth("k1", secret, id, &user_data);
        json!({"event": "pusher:signin", "data": {"auth": sig, "user_data": user_data}})
    };
    tabs[0].send_json(&sign(&ids[1], "s1"));
    assert_eq!(
        tabs[0].recv_json()["event"],
        "pusher:error",
        "another socket's signature"
    );
    for (c, id) in tabs.iter_mut().zip(&ids) {
        c.send_json(&sign(id, "s1"));
        let ok = expect(c, "pusher:signin_success");
        assert_eq!(ok["user_data"], user_data.as_str());
        subscribe(c, "#server-to-user-u1", None);
    }
    tabs[0].send_json(&sign(&ids[0], "s1"));
    assert_eq!(
        tabs[0].recv_json()["event"],
        "pusher:error",
        "signed in twice"
    );
    let e = subscribe_with(&mut tabs[0], "#server-to-user-u2", None, None);
    assert_eq!(e["data"]["status"], 403, "someone else's channel: {e}");
    // sendToUser is a trigger on the user's channel: both tabs get it.
    let body = json!({"name": "hello", "channel": "#server-to-user-u1", "data": "{\"a\":1}"});
    assert_eq!(api(&node, APP, "POST", "/events", &body.to_string()).0, 200);
    for c in &mut tabs {
        let got = c.recv_json();
        assert_eq!(
            (got["event"].as_str(), got["channel"].as_str()),
            (Some("hello"), Some("#server-to-user-u1")),
            "{got}"
        );
    }
    // terminate_connections closes both with 4009 (pusher-js does not reconnect).
    assert_eq!(
        api(&node, APP, "POST", "/users/u1/terminate_connections", "").0,
        200
    );
    for c in &mut tabs {
        c.expect_close(4009);
    }
    nothing_pending(&mut c);
}

#[test]
fn channel_queries_answer_from_every_shard() {
    let node = node();
    let (mut a, id_a) = connect(&node, "k1");
    let (mut b, id_b) = connect(&node, "k1");
    join(&mut a, &id_a, "presence-room", "ann", json!({}));
    join(&mut b, &id_b, "presence-room", "bob", json!({}));
    expect(&mut a, "pusher_internal:member_added");
    for c in [&mut a, &mut b] {
        subscribe(c, "news", None);
        subscribe(c, "news-2", None);
    }
    let get = |path: &str| api(&node, APP, "GET", path, "");
    let (status, v) = get("/channels");
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"channels": {"news": {}, "news-2": {}, "presence-room": {}}})
    );
    let (_, v) = get("/channels?filter_by_prefix=presence-&info=user_count");
    assert_eq!(v, json!({"channels": {"presence-room": {"user_count": 2}}}));
    let (_, v) = get("/channels/news?info=subscription_count");
    assert_eq!(v, json!({"occupied": true, "subscription_count": 2}));
    let (_, v) = get("/channels/presence-room?info=user_count,subscription_count");
    assert_eq!(
        v,
        json!({"occupied": true, "user_count": 2, "subscription_count": 2})
    );
    let (_, v) = get("/channels/empty");
    assert_eq!(v, json!({"occupied": false}));
    let (_, v) = get("/channels/presence-room/users");
    assert_eq!(v, json!({"users": [{"id": "ann"}, {"id": "bob"}]}));
    // A trigger asking for `info` gets each channel's counts (user_count on presence channels only).
    let body = json!({"name": "e", "channels": ["news", "presence-room", "empty"], "data": "x",
        "info": "subscription_count,user_count"});
    let (status, v) = api(&node, APP, "POST", "/events", &body.to_string());
    assert_eq!(status, 200, "{v}");
    assert_eq!(
        v,
        json!({"channels": {
            "news": {"subscription_count": 2},
            "presence-room": {"subscription_count": 2, "user_count": 2},
            "empty": {"subscription_count": 0}
        }})
    );
    let body = json!({"name": "e", "channel": "news", "data": "x", "info": "bogus"});
    assert_eq!(api(&node, APP, "POST", "/events", &body.to_string()).0, 400);
    // Another app sees none of it.
    let (_, v) = api(&node, ("2", "k2", "s2"), "GET", "/channels", "");
    assert_eq!(v, json!({"channels": {}}));
    // What Pusher refuses, refused.
    for bad in [
        "/channels?info=user_count",
        "/channels/news?info=user_count",
        "/channels/news/users",
        "/channels?info=bogus",
    ] {
        assert_eq!(get(bad).0, 400, "{bad}");
    }
    assert_eq!(get("/channels/bad%20name").0, 404);
}
