//! Authorization benches: what a `subscribe` costs before and after the access decision.
//!
//! "before" is the subscribe request as the shard handled it before authorization existed: the frame
//! parsed and its fields checked. "after" adds the decision the shard now makes on every subscribe,
//! with the rule sets operators run: dev mode's open default, JWT mode with a grant claim matched
//! among 16 patterns after 64 namespaces, and a user-limited channel. The decision alone is measured
//! too. (That a decision allocates nothing is asserted by `shards/tests/access_alloc.rs`.)

use std::hint::black_box;

use criterion::{BatchSize, Criterion, criterion_group, criterion_main};
use shards::{
    access::{
        Access, SendRule,
        grants::Grants,
        rules::{ChannelOp, ChannelRules, Perms, Rule},
    },
    protocol::{Request, parse_value},
};

const SUBSCRIBE: &[u8] = br#"{"op":"subscribe","id":"s1","channel":"room:4242"}"#;
const SUBSCRIBE_DM: &[u8] = br#"{"op":"subscribe","id":"s1","channel":"dm:#alice,bob"}"#;

/// 64 namespaces that do not match `room:*`, then `dm:*` (user) and `room:*` (grant).
fn many_namespaces() -> Access {
    let mut namespaces: Vec<(String, Perms)> = (0..64)
        .map(|i| (format!("team{i}:*:feed"), Perms::OPEN))
        .collect();
    let user = Perms {
        subscribe: Rule::User,
        ..Perms::JWT
    };
    namespaces.push(("dm:*".into(), user));
    namespaces.push(("room:*".into(), Perms::JWT));
    Access {
        channels: ChannelRules::new(namespaces, Perms::JWT).unwrap(),
        client_send: SendRule::None,
    }
}

/// A token's grants: 15 patterns that miss, then `room:*`.
fn grants() -> Grants {
    let mut channels: Vec<String> = (0..15).map(|i| format!("org{i}:*")).collect();
    channels.push("room:*".into());
    Grants::from_claims(Some(channels), None, None).unwrap()
}

/// Parses a subscribe frame and returns its channel (the "before" work).
fn parse_subscribe(buf: &mut [u8], out: &mut dyn FnMut(&str)) {
    let value = parse_value(buf).unwrap();
    match Request::from_value(&value) {
        Ok((_, Request::Subscribe { channel, .. })) => out(channel),
        other => panic!("{other:?}"),
    }
}

fn subscribe(c: &mut Criterion) {
    let open = Access::open();
    let jwt = many_namespaces();
    let g = grants();
    let mut group = c.benchmark_group("subscribe request");
    group.bench_function("before: parse + field checks", |b| {
        b.iter_batched_ref(
            || SUBSCRIBE.to_vec(),
            |buf| {
                parse_subscribe(buf, &mut |ch| {
                    black_box(ch);
                })
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function("after: + decision, dev defaults", |b| {
        b.iter_batched_ref(
            || SUBSCRIBE.to_vec(),
            |buf| {
                parse_subscribe(buf, &mut |ch| {
                    let d = open.channel(ChannelOp::Subscribe, ch, "alice", None);
                    assert!(black_box(d).is_ok());
                })
            },
            BatchSize::SmallInput,
        )
    });
    group.bench_function(
        "after: + decision, JWT, 66 namespaces, grant 16th of 16",
        |b| {
            b.iter_batched_ref(
                || SUBSCRIBE.to_vec(),
                |buf| {
                    parse_subscribe(buf, &mut |ch| {
                        let d = jwt.channel(ChannelOp::Subscribe, ch, "alice", Some(&g));
                        assert!(black_box(d).is_ok());
                    })
                },
                BatchSize::SmallInput,
            )
        },
    );
    group.bench_function("after: + decision, JWT, user-limited channel", |b| {
        b.iter_batched_ref(
            || SUBSCRIBE_DM.to_vec(),
            |buf| {
                parse_subscribe(buf, &mut |ch| {
                    let d = jwt.channel(ChannelOp::Subscribe, ch, "bob", None);
                    assert!(black_box(d).is_ok());
                })
            },
            BatchSize::SmallInput,
        )
    });
    group.finish();

    let mut group = c.benchmark_group("access decision alone");
    group.bench_function("dev defaults", |b| {
        b.iter(|| open.channel(ChannelOp::Subscribe, black_box("room:4242"), "alice", None))
    });
    group.bench_function("JWT, 66 namespaces, grant 16th of 16", |b| {
        b.iter(|| {
            jwt.channel(
                ChannelOp::Subscribe,
                black_box("room:4242"),
                "alice",
                Some(&g),
            )
        })
    });
    group.bench_function("JWT, refused (no grant)", |b| {
        b.iter(|| jwt.channel(ChannelOp::Subscribe, black_box("room:4242"), "alice", None))
    });
    group.finish();
}

criterion_group!(benches, subscribe);
criterion_main!(benches);
