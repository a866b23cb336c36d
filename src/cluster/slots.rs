//! Which master serves each hash slot of a Redis Cluster, as `CLUSTER SLOTS` says: what lets
//! [`super::conn`] send one pipeline per master instead of one per slot.
//!
//! Why we keep our own copy: the `redis` crate's cluster connection has the map but does not show it,
//! and refuses a pipeline that spans slots. A batch of 1,000 users' presence then became about 1,000
//! single-command requests (one per slot); grouped by master it is one pipeline per master, as with
//! one server. A master checks each command's slot itself: when the map is stale (a failover, a
//! resharding) the commands of moved slots are answered MOVED, the batch fails, and the map is read
//! again before the next one (the bridge's session starts again on errors anyway); it is also read
//! again every second. `SPUBLISH`, which a replica takes silently, is left to the crate's routing.

use std::{
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use redis::{RedisResult, Value, aio::ConnectionLike};

/// Slots in a Redis Cluster.
const SLOTS: usize = 16384;

/// The master of every slot: an index into `masters`, or `u16::MAX` for a slot nobody serves.
#[derive(Debug, PartialEq, Eq)]
pub struct SlotMap {
    owner: Vec<u16>,
    /// `(host, port)` of each master.
    pub masters: Vec<(String, u16)>,
}

impl SlotMap {
    /// The index in [`masters`](Self::masters) of the master serving `slot`.
    pub fn master_of(&self, slot: u16) -> Option<usize> {
        match self.owner.get(usize::from(slot)) {
            Some(&i) if i != u16::MAX => Some(usize::from(i)),
            _ => None,
        }
    }

    /// Reads `CLUSTER SLOTS` through `conn`.
    pub async fn load(conn: &mut impl ConnectionLike) -> RedisResult<SlotMap> {
        let reply: Value = redis::cmd("CLUSTER").arg("SLOTS").query_async(conn).await?;
        parse(reply).ok_or_else(|| {
            redis::RedisError::from(std::io::Error::other("unreadable CLUSTER SLOTS reply"))
        })
    }
}

/// Parses `CLUSTER SLOTS`: `[[start, end, [host, port, id, ...], replicas...], ...]`.
fn parse(reply: Value) -> Option<SlotMap> {
    let Value::Array(ranges) = reply else {
        return None;
    };
    let mut map = SlotMap {
        owner: vec![u16::MAX; SLOTS],
        masters: Vec::new(),
    };
    for range in ranges {
        let Value::Array(parts) = range else {
            return None;
        };
        let (Some(Value::Int(start)), Some(Value::Int(end)), Some(Value::Array(master))) =
            (parts.first(), parts.get(1), parts.get(2))
        else {
            return None;
        };
        let host = match master.first()? {
            Value::BulkString(b) => String::from_utf8(b.clone()).ok()?,
            Value::SimpleString(s) => s.clone(),
            _ => return None,
        };
        let Value::Int(port) = master.get(1)? else {
            return None;
        };
        let addr = (host, u16::try_from(*port).ok()?);
        let index = match map.masters.iter().position(|m| *m == addr) {
            Some(i) => i,
            None => {
                map.masters.push(addr);
                map.masters.len() - 1
            }
        };
        let (start, end) = (usize::try_from(*start).ok()?, usize::try_from(*end).ok()?);
        if start > end || end >= SLOTS {
            return None;
        }
        for slot in &mut map.owner[start..=end] {
            *slot = u16::try_from(index).ok()?;
        }
    }
    Some(map)
}

/// Longest a map is used before it is read again, whatever happened: a failover the batches did not
/// run into (a replica answers MOVED to the commands grouped here, which marks the map stale) is
/// noticed within this.
const MAX_AGE: Duration = Duration::from_secs(1);

/// A map and when it was read.
type Dated = (Instant, Arc<SlotMap>);

/// The map a connection uses, read again once marked stale or [`MAX_AGE`] old.
#[derive(Clone, Default)]
pub struct Shared {
    current: Arc<Mutex<Option<Dated>>>,
}

impl Shared {
    /// The current map, reading it first when there is none or it is too old.
    pub async fn get(&self, conn: &mut impl ConnectionLike) -> RedisResult<Arc<SlotMap>> {
        let fresh = self.current.lock().ok().and_then(|m| {
            m.as_ref()
                .filter(|(at, _)| at.elapsed() < MAX_AGE)
                .map(|(_, map)| map.clone())
        });
        if let Some(map) = fresh {
            return Ok(map);
        }
        let map = Arc::new(SlotMap::load(conn).await?);
        if let Ok(mut current) = self.current.lock() {
            *current = Some((Instant::now(), map.clone()));
        }
        Ok(map)
    }

    /// Forgets the map: the next batch reads it again.
    pub fn stale(&self) {
        if let Ok(mut current) = self.current.lock() {
            *current = None;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(host: &str, port: i64) -> Value {
        Value::Array(vec![
            Value::BulkString(host.as_bytes().to_vec()),
            Value::Int(port),
            Value::BulkString(b"id".to_vec()),
        ])
    }

    #[test]
    fn cluster_slots_reply_maps_every_slot_to_its_master() {
        let reply = Value::Array(vec![
            Value::Array(vec![
                Value::Int(0),
                Value::Int(5460),
                node("10.0.0.1", 7000),
                node("10.0.0.4", 7003),
            ]),
            Value::Array(vec![
                Value::Int(5461),
                Value::Int(10922),
                node("10.0.0.2", 7001),
            ]),
            Value::Array(vec![
                Value::Int(10923),
                Value::Int(16000),
                node("10.0.0.1", 7000),
            ]),
        ]);
        let map = parse(reply).expect("parsed");
        assert_eq!(
            map.masters,
            [
                ("10.0.0.1".to_string(), 7000),
                ("10.0.0.2".to_string(), 7001)
            ]
        );
        assert_eq!(map.master_of(0), Some(0));
        assert_eq!(map.master_of(5461), Some(1));
        assert_eq!(map.master_of(12000), Some(0));
        assert_eq!(map.master_of(16383), None);
        assert!(parse(Value::Array(vec![Value::Int(1)])).is_none());
        assert!(
            parse(Value::Array(vec![Value::Array(vec![
                Value::Int(5),
                Value::Int(16384),
                node("h", 1),
            ])]))
            .is_none()
        );
    }
}
