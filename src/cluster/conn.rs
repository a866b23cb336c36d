//! The cluster layer's connection to Redis: one server (`redis://`, or the master Sentinel names) or a
//! Redis Cluster (`redis+cluster://`), behind one type so the stores, the relay and the bridge are
//! written once.
//!
//! Why a type of our own rather than the `redis` crate's cluster connection as it is: the stores batch
//! their writes in pipelines (a thousand users' presence in one round trip), and the crate's cluster
//! connection refuses a pipeline whose commands fall in different hash slots. Here a plain (non-atomic)
//! pipeline is split by master (the slot map of [`super::slots`]), the parts run concurrently, and the
//! replies come back in the pipeline's order, so callers keep one pipelined round trip per batch (per
//! master, in parallel) and stay unaware of the topology. The commands of one slot keep their order
//! (they go in one part, to one server), which is the order the relay needs: every message to one
//! node or one channel goes through one slot. A transaction (`MULTI`) is never split: its keys must
//! share a slot, which [`super::keys`] arranges with hash tags.

use std::time::Duration;

use futures_util::future::try_join_all;
use redis::{
    Cmd, Pipeline, RedisFuture, Value,
    aio::{ConnectionLike, ConnectionManager},
    cluster_async::ClusterConnection,
    cluster_routing::SingleNodeRoutingInfo,
};

use super::slots;

/// A connection to the Redis the bridge uses: cheap to clone (every clone shares the connection).
#[derive(Clone)]
pub enum Conn {
    /// One server: `redis://`, or the master Sentinel names.
    Single(ConnectionManager),
    /// A Redis Cluster: commands go to the master of their key's slot (MOVED and ASK followed).
    Cluster(ClusterConn),
}

/// The crate's cluster connection and the slot map pipelines are grouped by.
#[derive(Clone)]
pub struct ClusterConn {
    conn: ClusterConnection,
    slots: slots::Shared,
}

impl From<ConnectionManager> for Conn {
    fn from(conn: ConnectionManager) -> Self {
        Conn::Single(conn)
    }
}

impl From<ClusterConnection> for Conn {
    fn from(conn: ClusterConnection) -> Self {
        Conn::Cluster(ClusterConn {
            conn,
            slots: slots::Shared::default(),
        })
    }
}

impl ConnectionLike for Conn {
    fn req_packed_command<'a>(&'a mut self, cmd: &'a Cmd) -> RedisFuture<'a, Value> {
        match self {
            Conn::Single(c) => c.req_packed_command(cmd),
            Conn::Cluster(c) => c.conn.req_packed_command(cmd),
        }
    }

    fn req_packed_commands<'a>(
        &'a mut self,
        pipeline: &'a Pipeline,
        offset: usize,
        count: usize,
    ) -> RedisFuture<'a, Vec<Value>> {
        match self {
            Conn::Single(c) => c.req_packed_commands(pipeline, offset, count),
            Conn::Cluster(c) => {
                if pipeline.is_transaction() {
                    Box::pin(transaction(c.clone(), pipeline, offset, count))
                } else {
                    Box::pin(split_by_master(c.clone(), pipeline))
                }
            }
        }
    }

    fn get_db(&self) -> i64 {
        match self {
            Conn::Single(c) => c.get_db(),
            Conn::Cluster(c) => c.conn.get_db(),
        }
    }
}

/// Runs a plain pipeline on a cluster as one pipeline per master, concurrently, and returns the
/// replies in the pipeline's order. Commands without a key (`TIME`) ride with the first master's
/// part; `SCRIPT LOAD` goes first, to every master. A failed part makes the slot map stale.
async fn split_by_master(c: ClusterConn, pipeline: &Pipeline) -> redis::RedisResult<Vec<Value>> {
    let ClusterConn { mut conn, slots } = c;
    let cmds: Vec<&Cmd> = pipeline.cmd_iter().collect();
    let mut out = vec![Value::Nil; cmds.len()];
    // `SCRIPT LOAD` goes to every master first (the crate routes it so on its own): the scripts the
    // other commands run must be on whichever master their slot is.
    let mut rest = Vec::with_capacity(cmds.len());
    for (i, cmd) in cmds.iter().enumerate() {
        if is_script_load(cmd) {
            out[i] = conn.req_packed_command(cmd).await?;
        } else {
            rest.push(i);
        }
    }
    let map = slots.get(&mut conn).await?;
    let mut targets = Vec::with_capacity(rest.len());
    for &i in &rest {
        targets.push(match slot_of(cmds[i]) {
            None => None,
            // A replica takes an SPUBLISH and tells its own subscribers only: with a map gone stale
            // by a failover, publications would vanish on the old master. The crate routes them by
            // its own map, which it corrects on every MOVED.
            Some(slot) if is_spublish(cmds[i]) => Some(Part::Slot(slot)),
            Some(slot) => Some(Part::Master(map.master_of(slot).ok_or_else(|| {
                slots.stale();
                redis::RedisError::from(std::io::Error::other(format!(
                    "no master serves slot {slot}"
                )))
            })?)),
        });
    }
    let parts: Vec<(Option<Part>, Vec<usize>)> = group(targets.into_iter())
        .into_iter()
        .map(|(m, part)| (m, part.into_iter().map(|j| rest[j]).collect()))
        .collect();
    let runs = parts.iter().map(|(target, indices)| {
        let mut part = redis::pipe();
        for &i in indices {
            part.add_command(cmds[i].clone());
        }
        let route = match target {
            Some(Part::Master(m)) => {
                let (host, port) = map.masters[*m].clone();
                Some(SingleNodeRoutingInfo::ByAddress { host, port })
            }
            // One slot, or keyless commands only: the crate routes them.
            _ => None,
        };
        let mut conn = conn.clone();
        let (cmds, slots) = (&cmds, &slots);
        async move {
            let n = indices.len();
            match route {
                Some(route) => match conn.route_pipeline(part, 0, n, route).await {
                    // A slot of the part moved or is moving (a resharding): the crate sends the whole
                    // part after the redirection, where the other slots' commands are redirected in
                    // turn, until its retries run out. Or the crate has no connection to that master
                    // right now (it is refreshing its own map after a failover): nothing was sent.
                    // Sent again one slot per pipeline through the crate's routing, each follows
                    // its own redirection.
                    Err(e) if e.is_cluster_error() || not_connected(&e) => {
                        slots.stale();
                        metrics::counter!("gateway_cluster_pipelines_split_by_slot_total")
                            .increment(1);
                        by_slot(&mut conn, cmds, indices).await
                    }
                    replies => replies,
                },
                None => conn.req_packed_commands(&part, 0, n).await,
            }
        }
    });
    let replies = try_join_all(runs).await.inspect_err(|_| slots.stale())?;
    for ((_, indices), values) in parts.iter().zip(replies) {
        for (&i, v) in indices.iter().zip(values) {
            out[i] = v;
        }
    }
    Ok(out)
}

/// Attempts of a transaction refused because its slot moved or is moving, and the wait before the
/// first (doubled each time: 0.6 s in all, far longer than migrating one slot of a few keys takes).
const TX_ATTEMPTS: u32 = 6;
const TX_FIRST_WAIT: Duration = Duration::from_millis(20);

/// Runs a transaction (one slot, [`super::keys`] arranges it). Redis refuses a transaction whose slot
/// moved (MOVED) or is being migrated (ASK, TRYAGAIN) as a whole, before any of it runs, and the crate
/// does not follow such a refusal: it is sent again to the slot's master in a fresh slot map, after a
/// short wait while a migration may still be under way.
async fn transaction(
    c: ClusterConn,
    pipeline: &Pipeline,
    offset: usize,
    count: usize,
) -> redis::RedisResult<Vec<Value>> {
    let ClusterConn { mut conn, slots } = c;
    let mut result = conn.req_packed_commands(pipeline, offset, count).await;
    let slot = pipeline.cmd_iter().find_map(slot_of);
    let mut wait = TX_FIRST_WAIT;
    for _ in 1..TX_ATTEMPTS {
        match &result {
            // Refused whole, or not sent (no connection to that master right now).
            Err(e) if refused_by_topology(e) || not_connected(e) => {}
            _ => break,
        }
        slots.stale();
        metrics::counter!("gateway_cluster_transactions_redirected_total").increment(1);
        tokio::time::sleep(wait).await;
        wait *= 2;
        let map = slots.get(&mut conn).await?;
        result = match slot.and_then(|s| map.master_of(s)) {
            Some(m) => {
                let (host, port) = map.masters[m].clone();
                let route = SingleNodeRoutingInfo::ByAddress { host, port };
                conn.route_pipeline(pipeline.clone(), offset, count, route)
                    .await
            }
            None => conn.req_packed_commands(pipeline, offset, count).await,
        };
    }
    result
}

/// True when Redis refused a command (or a whole transaction, nothing of it run) because its slot is
/// served elsewhere or is moving.
fn refused_by_topology(e: &redis::RedisError) -> bool {
    use redis::{ErrorKind, ServerErrorKind};
    if e.is_cluster_error() {
        return true;
    }
    e.kind() == ErrorKind::Server(ServerErrorKind::ExecAbort)
        && e.clone().into_server_errors().is_some_and(|errs| {
            errs.iter().any(|(_, err)| {
                matches!(
                    err.kind(),
                    Some(ServerErrorKind::Moved | ServerErrorKind::Ask | ServerErrorKind::TryAgain)
                )
            })
        })
}

/// Runs the commands at `indices` as one pipeline per slot, concurrently, through the crate's routing
/// (which follows MOVED and ASK for a pipeline of one slot), and returns their replies in `indices`'
/// order. The commands of one slot keep their order.
async fn by_slot(
    conn: &mut ClusterConnection,
    cmds: &[&Cmd],
    indices: &[usize],
) -> redis::RedisResult<Vec<Value>> {
    let groups = group(indices.iter().map(|&i| slot_of(cmds[i])));
    let runs = groups.iter().map(|(_, members)| {
        let mut part = redis::pipe();
        for &j in members {
            part.add_command(cmds[indices[j]].clone());
        }
        let mut conn = conn.clone();
        async move { conn.req_packed_commands(&part, 0, members.len()).await }
    });
    let replies = try_join_all(runs).await?;
    let mut out = vec![Value::Nil; indices.len()];
    for ((_, members), values) in groups.iter().zip(replies) {
        for (&j, v) in members.iter().zip(values) {
            out[j] = v;
        }
    }
    Ok(out)
}

/// True when the crate had no connection to the address a part was routed to (nothing was sent).
fn not_connected(e: &redis::RedisError) -> bool {
    e.kind() == redis::ErrorKind::ClusterConnectionNotFound
}

/// True for `SCRIPT LOAD`.
fn is_script_load(cmd: &Cmd) -> bool {
    let mut args = cmd.args_iter().filter_map(|a| match a {
        redis::Arg::Simple(bytes) => Some(bytes),
        _ => None,
    });
    matches!((args.next(), args.next()), (Some(a), Some(b))
        if a.eq_ignore_ascii_case(b"SCRIPT") && b.eq_ignore_ascii_case(b"LOAD"))
}

/// Where a part of a pipeline goes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Part {
    /// To this master of the slot map, in one pipeline.
    Master(usize),
    /// To this slot's master as the crate knows it.
    Slot(u16),
}

/// True for `SPUBLISH`.
fn is_spublish(cmd: &Cmd) -> bool {
    matches!(cmd.args_iter().next(), Some(redis::Arg::Simple(name)) if name.eq_ignore_ascii_case(b"SPUBLISH"))
}

/// Groups command indices by target, in order of first appearance; keyless commands (`None`) join the
/// first group.
fn group<K: Copy + PartialEq>(
    targets: impl Iterator<Item = Option<K>>,
) -> Vec<(Option<K>, Vec<usize>)> {
    let mut groups: Vec<(Option<K>, Vec<usize>)> = Vec::new();
    let mut keyless = Vec::new();
    for (i, target) in targets.enumerate() {
        match target {
            None => keyless.push(i),
            Some(m) => match groups.iter_mut().find(|(g, _)| *g == Some(m)) {
                Some((_, members)) => members.push(i),
                None => groups.push((Some(m), vec![i])),
            },
        }
    }
    if groups.is_empty() {
        return if keyless.is_empty() {
            Vec::new()
        } else {
            vec![(None, keyless)]
        };
    }
    if !keyless.is_empty() {
        let first = &mut groups[0].1;
        first.extend(keyless);
        first.sort_unstable();
    }
    groups
}

/// The hash slot a command's (first) key falls in; `None` for a command without a key. Covers the
/// commands this crate sends: scripts (`EVALSHA sha numkeys key...`), server commands, and key-first
/// commands (classic `PUBLISH` included: a cluster broadcasts it from any server, and the `redis`
/// crate routes it by its channel, so it is grouped the same way).
fn slot_of(cmd: &Cmd) -> Option<u16> {
    let mut args = cmd.args_iter().map(|a| match a {
        redis::Arg::Simple(bytes) => bytes,
        _ => &b""[..],
    });
    let name = args.next()?.to_ascii_uppercase();
    match &name[..] {
        b"TIME" | b"PING" | b"COMMAND" | b"INFO" | b"ROLE" | b"SCRIPT" | b"ECHO" | b"CLUSTER" => {
            None
        }
        b"EVALSHA" | b"EVAL" | b"EVALSHA_RO" | b"EVAL_RO" | b"FCALL" => {
            let _script = args.next()?;
            let keys: usize = std::str::from_utf8(args.next()?).ok()?.parse().ok()?;
            if keys == 0 {
                None
            } else {
                args.next().map(key_slot)
            }
        }
        _ => args.next().map(key_slot),
    }
}

/// The hash slot of `key`: CRC16 (XMODEM) of its hash tag (the part between the first `{` and the
/// next `}`, when not empty) or of the whole key, modulo 16,384 (the Redis Cluster specification).
pub fn key_slot(key: &[u8]) -> u16 {
    let hashed = key
        .iter()
        .position(|&b| b == b'{')
        .and_then(|open| {
            let rest = &key[open + 1..];
            let close = rest.iter().position(|&b| b == b'}')?;
            (close > 0).then(|| &rest[..close])
        })
        .unwrap_or(key);
    crc16_xmodem(hashed) % 16384
}

fn crc16_xmodem(data: &[u8]) -> u16 {
    let mut crc: u16 = 0;
    for &byte in data {
        crc ^= u16::from(byte) << 8;
        for _ in 0..8 {
            crc = if crc & 0x8000 != 0 {
                (crc << 1) ^ 0x1021
            } else {
                crc << 1
            };
        }
    }
    crc
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn slots_match_the_cluster_specification() {
        // The specification's check value and `CLUSTER KEYSLOT` answers from Redis 7.
        assert_eq!(crc16_xmodem(b"123456789"), 0x31C3);
        assert_eq!(key_slot(b"foo"), 12182);
        assert_eq!(key_slot(b"bar"), 5061);
        assert_eq!(key_slot(b"{user1000}.following"), key_slot(b"user1000"));
        assert_eq!(key_slot(b"foo{}{bar}"), key_slot(b"foo{}{bar}"));
        assert_ne!(key_slot(b"foo{}{bar}"), key_slot(b"bar"));
        assert_eq!(key_slot(b"foo{{bar}}zap"), key_slot(b"{bar"));
        assert_eq!(key_slot(b"foo{bar}{zap}"), key_slot(b"bar"));
    }

    #[test]
    fn commands_are_routed_by_their_key() {
        let mut eval = redis::cmd("EVALSHA");
        eval.arg("abc").arg(2).arg("{u}:a").arg("{u}:b").arg("x");
        assert_eq!(slot_of(&eval), Some(key_slot(b"u")));
        let mut none = redis::cmd("EVALSHA");
        none.arg("abc").arg(0).arg("x");
        assert_eq!(slot_of(&none), None);
        assert_eq!(slot_of(&redis::cmd("TIME")), None);
        let mut publish = redis::cmd("PUBLISH");
        publish.arg("chan").arg("m");
        assert_eq!(slot_of(&publish), Some(key_slot(b"chan")));
        let mut hset = redis::cmd("hset");
        hset.arg("k").arg("f").arg("v");
        assert_eq!(slot_of(&hset), Some(key_slot(b"k")));
    }

    #[test]
    fn groups_keep_order_and_keyless_commands_ride_with_the_first() {
        let groups = group([None, Some(5), Some(7), Some(5), None, Some(7)].into_iter());
        assert_eq!(
            groups,
            vec![(Some(5), vec![0, 1, 3, 4]), (Some(7), vec![2, 5])]
        );
        assert_eq!(
            group([None::<usize>, None].into_iter()),
            vec![(None, vec![0, 1])]
        );
        assert!(group(std::iter::empty::<Option<usize>>()).is_empty());
    }
}
