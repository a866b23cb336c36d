//! What a connection's bytes mean: the upgrade request, then WebSocket frames and their events.
//!
//! The shard's ring hands every read here ([`on_bytes`]), from the buffer the kernel filled (or the
//! scratch buffer on the poll path); only an incomplete frame is copied out, into the connection's
//! decoder. Nothing here touches a socket: replies are queued on the record and the I/O pass writes them.

use bytes::Bytes;

use tungstenite::protocol::frame::coding::{Data, OpCode};

use super::{Phase, stamp::Stamp};
use crate::{
    config::Mode,
    dispatch,
    ids::ConnId,
    shard::{Shard, ShardState},
    ws::{
        CloseReason,
        decode::{DecodeLimits, Event, Flow},
        encode::{close_reply, frame, pong_frame},
        handshake::{self, HandshakeLimits, Parse},
    },
};

/// Bytes just read: handshake or frames, depending on the phase.
pub fn on_bytes(shard: &Shard, st: &mut ShardState, id: ConnId, data: &mut [u8], now: u64) {
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    match conn.phase {
        Phase::Handshake(_) => handshake_bytes(shard, st, id, data, now),
        Phase::Closing { desync: true, .. } | Phase::Answering { .. } => {} // discard
        _ => frames(shard, st, id, data, now),
    }
}

/// Accumulates the upgrade request and answers it.
fn handshake_bytes(shard: &Shard, st: &mut ShardState, id: ConnId, data: &[u8], now: u64) {
    let cfg = &shard.config;
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    let Phase::Handshake(buf) = &mut conn.phase else {
        return;
    };
    if crate::pusher::http::is_api(buf, data) {
        return crate::pusher::http::on_bytes(shard, st, id, data, now);
    }
    // Never hold more than one byte over the limit (enough to tell "too large"); what a read brought
    // past it can only be frames pipelined after a complete head, kept aside in `tail`.
    let room = (cfg.max_header_bytes + 1).saturating_sub(buf.len());
    let (head, tail) = data.split_at(data.len().min(room));
    buf.extend_from_slice(head);
    let limits = HandshakeLimits {
        max_header_bytes: cfg.max_header_bytes,
    };
    let parsed = handshake::parse_request(buf, &limits);
    match parsed {
        Ok(Parse::Partial) => {}
        Ok(Parse::Done { upgrade, consumed }) => {
            let mut rest = buf.split_off(consumed);
            rest.extend_from_slice(tail);
            conn.phase = Phase::Open;
            conn.last_rx = Stamp::at(now);
            conn.last_ping = Stamp::at(now);
            conn.out
                .push(Bytes::from(handshake::accept_response(&upgrade.accept_key)));
            let origin_ok = cfg.allowed_origins.is_empty()
                || upgrade
                    .origin
                    .as_deref()
                    .is_some_and(|o| cfg.allowed_origins.iter().any(|a| a == o));
            let refused = conn.over_capacity.then_some(if conn.over_ip_limit {
                CloseReason::IpLimit
            } else {
                CloseReason::OverCapacity
            });
            // First visit: identify and heartbeat deadlines from now on.
            let first = now + cfg.auth_timeout.min(cfg.heartbeat_interval).as_millis() as u64;
            st.conns.schedule(id, first);
            if upgrade.pusher.is_some() && !origin_ok {
                st.conns.close(id, CloseReason::Policy, now);
            } else if let Some(target) = &upgrade.pusher {
                // Pusher's own refusals (4001, 4003, 4100, ...) come with `pusher:error`.
                let protocol = target.protocol.as_deref();
                crate::pusher::conn::open(shard, st, id, (&target.key, protocol), now);
                if st.conns.get(id).is_some_and(|c| c.pusher.is_some()) && !rest.is_empty() {
                    frames(shard, st, id, &mut rest, now);
                }
            } else if let Some(reason) = refused {
                st.conns.close(id, reason, now);
            } else if !origin_ok {
                st.conns.close(id, CloseReason::Policy, now);
            } else if !rest.is_empty() {
                frames(shard, st, id, &mut rest, now);
            }
        }
        Err(reject) => {
            shard.metrics.handshake_failed(reject.metric_reason());
            conn.out
                .push(Bytes::from_static(handshake::reject_response(&reject)));
            let deadline_ms = now + cfg.close_grace.as_millis() as u64;
            conn.phase = Phase::Closing {
                reason: CloseReason::PeerGone,
                deadline_ms,
                peer_done: true,
                desync: true,
                write_shut: false,
            };
            st.conns.schedule(id, deadline_ms);
        }
    }
}

/// Decodes frames and acts on each.
fn frames(shard: &Shard, st: &mut ShardState, id: ConnId, data: &mut [u8], now: u64) {
    let cfg = &shard.config;
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    let mut decoder = std::mem::take(&mut conn.decoder);
    let limits = DecodeLimits {
        max_frame_bytes: cfg.max_frame_bytes,
        max_message_bytes: cfg.max_message_bytes,
        max_fragments: cfg.max_fragments,
    };
    let result = decoder.feed(data, limits, |ev| on_event(shard, st, id, ev, now));
    let Some(conn) = st.conns.get_mut(id) else {
        return;
    };
    match result {
        Ok(()) => conn.decoder = decoder,
        Err(e) => {
            st.conns.close(id, e.close_reason(), now);
            if let Some(Phase::Closing { desync, .. }) = st.conns.get_mut(id).map(|c| &mut c.phase)
            {
                *desync = true;
            }
        }
    }
}

/// One decoded event.
fn on_event(shard: &Shard, st: &mut ShardState, id: ConnId, ev: Event<'_>, now: u64) -> Flow {
    shard.metrics.frames_in.increment(1);
    let Some(conn) = st.conns.get_mut(id) else {
        return Flow::Stop;
    };
    let closing = conn.is_closing();
    match ev {
        Event::Text(_) | Event::Binary(_) if closing => {}
        Event::Text(payload) if shard.config.mode == Mode::Echo => {
            st.conns
                .enqueue(id, frame(OpCode::Data(Data::Text), payload), now);
        }
        Event::Binary(payload) if shard.config.mode == Mode::Echo => {
            st.conns
                .enqueue(id, frame(OpCode::Data(Data::Binary), payload), now);
        }
        Event::Text(payload) | Event::Binary(payload) if conn.pusher.is_some() => {
            crate::pusher::dispatch::on_message(shard, st, id, payload, now)
        }
        Event::Text(payload) | Event::Binary(payload) => {
            dispatch::on_message(shard, st, id, payload, now)
        }
        Event::Ping(_) if !closing && !conn.pings.allow(shard.config.max_pings_per_sec, now) => {
            return ping_flood(st, id, now);
        }
        Event::Ping(payload) => {
            if !closing {
                st.conns.enqueue(id, pong_frame(payload), now);
            }
        }
        Event::Pong => {}
        Event::Close(code) => {
            match &mut conn.phase {
                Phase::Closing { peer_done, .. } => *peer_done = true,
                _ => {
                    let deadline_ms = now + shard.config.close_grace.as_millis() as u64;
                    conn.out.push(close_reply(code));
                    conn.phase = Phase::Closing {
                        reason: CloseReason::Normal,
                        deadline_ms,
                        peer_done: true,
                        desync: true,
                        write_shut: false,
                    };
                    st.conns.schedule(id, deadline_ms);
                }
            }
            return Flow::Stop;
        }
    }
    Flow::Continue
}

/// Pings over `limits.max_pings_per_sec`: close 1008. Each ping costs a pong written back, so a flood
/// is stopped rather than answered; what follows in the input is discarded (a lingering close). Pongs
/// are not counted: they answer the server's own heartbeat and cost no reply.
fn ping_flood(st: &mut ShardState, id: ConnId, now: u64) -> Flow {
    st.conns.close(id, CloseReason::PingFlood, now);
    if let Some(Phase::Closing { desync, .. }) = st.conns.get_mut(id).map(|c| &mut c.phase) {
        *desync = true;
    }
    Flow::Stop
}
