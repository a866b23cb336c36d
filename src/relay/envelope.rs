//! The messages nodes exchange over Redis pub/sub, and their wire format.
//!
//! Text headers separated by `\n`, then the payload as raw bytes (already the encoded WebSocket frame,
//! so a receiving node forwards it without re-encoding). Node ids, user and channel names never contain
//! a newline (names are checked by the protocol), so the headers split unambiguously and the payload
//! may contain anything. Part of the cluster's interface, like the key names in `cluster::keys`.
//!
//! | kind   | on                   | layout                                              |
//! |--------|----------------------|-----------------------------------------------------|
//! | `dm`   | `gateway:node:<id>`  | `dm\n<corr>\n<origin node>\n<user>\n<frame>`        |
//! | `pub`  | `gateway:ch:<name>`  | `pub\n<corr>\n<origin node>\n<channel>\n<frame>`    |
//! | `hdm`  | `gateway:node:<id>`  | `hdm\n<corr>\n<origin node>\n<user>\n<seq>\n<epoch>\n<frame>`: a direct message with history, numbered; `<frame>` without `seq`/`epoch` (written by `append.lua`) |
//! | `hpub` | `gateway:ch:<name>`  | `hpub\n<corr>\n<origin node>\n<channel>\n<seq>\n<epoch>\n<frame>`: a publication to a channel with history, numbered, as `hdm` |
//! | `xpub` | `gateway:ch:<name>`  | `xpub\n<corr>\n<origin node>\n<channel>\n<socket id>\n<frame>`: a publication that skips the Pusher socket `<socket id>` (on whichever node holds it) |
//! | `disc` | `gateway:node:<id>`  | `disc\n<corr>\n<origin node>\n<user>`               |
//! | `ack`  | `gateway:node:<id>`  | `ack\n<corr>\n<conns>`: the answer to any of the above |

/// A parsed cluster message.
#[derive(Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// A direct message for `to`'s connections on the receiving node.
    Dm {
        corr: u64,
        origin: &'a str,
        to: &'a str,
        frame: &'a [u8],
    },
    /// A publication to `channel` for the receiving node's subscribers.
    Pub {
        corr: u64,
        origin: &'a str,
        channel: &'a str,
        frame: &'a [u8],
    },
    /// A direct message for `to`'s connections on the receiving node, numbered `seq` in `to`'s stream
    /// `epoch`; `frame` is unnumbered (the receiver inserts `seq` and `epoch`).
    NumberedDm {
        corr: u64,
        origin: &'a str,
        to: &'a str,
        seq: u64,
        epoch: &'a str,
        frame: &'a [u8],
    },
    /// A publication to `channel` (a channel with history) numbered `seq` in stream `epoch`; `frame`
    /// is unnumbered (the receiver inserts `seq` and `epoch`).
    NumberedPub {
        corr: u64,
        origin: &'a str,
        channel: &'a str,
        seq: u64,
        epoch: &'a str,
        frame: &'a [u8],
    },
    /// A publication to `channel` that skips the Pusher socket `socket` (an HTTP trigger's `socket_id`).
    SkippingPub {
        corr: u64,
        origin: &'a str,
        channel: &'a str,
        socket: &'a str,
        frame: &'a [u8],
    },
    /// Close `user`'s connections on the receiving node (4010).
    Disconnect {
        corr: u64,
        origin: &'a str,
        user: &'a str,
    },
    /// The receiving node's answer to `corr`: connections reached (or closed).
    Ack { corr: u64, conns: u64 },
}

/// `dm\n<corr>\n<origin>\n<user>\n<frame>`.
pub fn dm(corr: u64, origin: &str, to: &str, frame: &[u8]) -> Vec<u8> {
    with_payload("dm", corr, origin, to, frame)
}

/// `pub\n<corr>\n<origin>\n<channel>\n<frame>`.
pub fn publication(corr: u64, origin: &str, channel: &str, frame: &[u8]) -> Vec<u8> {
    with_payload("pub", corr, origin, channel, frame)
}

/// `xpub\n<corr>\n<origin>\n<channel>\n<socket>\n<frame>`.
pub fn skipping_publication(
    corr: u64,
    origin: &str,
    channel: &str,
    socket: &str,
    frame: &[u8],
) -> Vec<u8> {
    let name = format!("{channel}\n{socket}");
    with_payload("xpub", corr, origin, &name, frame)
}

/// The head of an `hpub` envelope, `hpub\n<corr>\n<origin>\n<channel>\n`: the append script adds
/// `<seq>\n<epoch>\n<frame>`.
pub fn numbered_publication_head(corr: u64, origin: &str, channel: &str) -> Vec<u8> {
    format!("hpub\n{corr}\n{origin}\n{channel}\n").into_bytes()
}

/// The head of an `hdm` envelope, `hdm\n<corr>\n<origin>\n<user>\n`: the append script adds
/// `<seq>\n<epoch>\n<frame>`.
pub fn numbered_dm_head(corr: u64, origin: &str, to: &str) -> Vec<u8> {
    format!("hdm\n{corr}\n{origin}\n{to}\n").into_bytes()
}

/// `disc\n<corr>\n<origin>\n<user>`.
pub fn disconnect(corr: u64, origin: &str, user: &str) -> Vec<u8> {
    format!("disc\n{corr}\n{origin}\n{user}").into_bytes()
}

/// `ack\n<corr>\n<conns>`.
pub fn ack(corr: u64, conns: u64) -> Vec<u8> {
    format!("ack\n{corr}\n{conns}").into_bytes()
}

fn with_payload(kind: &str, corr: u64, origin: &str, name: &str, frame: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(kind.len() + origin.len() + name.len() + frame.len() + 24);
    out.extend_from_slice(format!("{kind}\n{corr}\n{origin}\n{name}\n").as_bytes());
    out.extend_from_slice(frame);
    out
}

/// Parses a cluster message; `None` for anything malformed.
pub fn parse(payload: &[u8]) -> Option<Envelope<'_>> {
    let mut parts = payload.splitn(7, |b| *b == b'\n');
    let kind = parts.next()?;
    let corr: u64 = text(parts.next()?)?.parse().ok()?;
    match kind {
        b"dm" | b"pub" => {
            // The frame is everything after the fourth newline, newlines included.
            let mut parts = payload.splitn(5, |b| *b == b'\n').skip(2);
            let origin = text(parts.next()?)?;
            let name = text(parts.next()?)?;
            let frame = parts.next()?;
            Some(if kind == b"dm" {
                Envelope::Dm {
                    corr,
                    origin,
                    to: name,
                    frame,
                }
            } else {
                Envelope::Pub {
                    corr,
                    origin,
                    channel: name,
                    frame,
                }
            })
        }
        b"hpub" | b"hdm" => {
            let origin = text(parts.next()?)?;
            let name = text(parts.next()?)?;
            let seq = text(parts.next()?)?.parse().ok()?;
            let epoch = text(parts.next()?)?;
            let frame = parts.next()?;
            Some(if kind == b"hdm" {
                Envelope::NumberedDm {
                    corr,
                    origin,
                    to: name,
                    seq,
                    epoch,
                    frame,
                }
            } else {
                Envelope::NumberedPub {
                    corr,
                    origin,
                    channel: name,
                    seq,
                    epoch,
                    frame,
                }
            })
        }
        b"xpub" => {
            // The frame is everything after the fifth newline, newlines included.
            let mut parts = payload.splitn(6, |b| *b == b'\n').skip(2);
            let origin = text(parts.next()?)?;
            let channel = text(parts.next()?)?;
            let socket = text(parts.next()?)?;
            let frame = parts.next()?;
            Some(Envelope::SkippingPub {
                corr,
                origin,
                channel,
                socket,
                frame,
            })
        }
        b"disc" => {
            let origin = text(parts.next()?)?;
            let user = text(parts.next()?)?;
            Some(Envelope::Disconnect { corr, origin, user })
        }
        b"ack" => {
            let conns = text(parts.next()?)?.parse().ok()?;
            Some(Envelope::Ack { corr, conns })
        }
        _ => None,
    }
}

fn text(bytes: &[u8]) -> Option<&str> {
    std::str::from_utf8(bytes).ok()
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_skipping_publication_round_trips_with_newlines_in_its_frame() {
        let frame = b"a\nb\n\nc";
        let env = skipping_publication(7, "node-a", "\u{1}1\u{1}news", "123.456", frame);
        assert_eq!(
            parse(&env),
            Some(Envelope::SkippingPub {
                corr: 7,
                origin: "node-a",
                channel: "\u{1}1\u{1}news",
                socket: "123.456",
                frame,
            })
        );
    }

    use super::*;

    #[test]
    fn envelopes_round_trip() {
        let frame = b"\x81\x05hello\nwith newline";
        assert_eq!(
            parse(&dm(7, "node-a", "bob", frame)),
            Some(Envelope::Dm {
                corr: 7,
                origin: "node-a",
                to: "bob",
                frame
            })
        );
        assert_eq!(
            parse(&publication(8, "node-a", "room:1", frame)),
            Some(Envelope::Pub {
                corr: 8,
                origin: "node-a",
                channel: "room:1",
                frame
            })
        );
        assert_eq!(
            parse(&disconnect(9, "node-b", "amy")),
            Some(Envelope::Disconnect {
                corr: 9,
                origin: "node-b",
                user: "amy"
            })
        );
        assert_eq!(parse(&ack(7, 3)), Some(Envelope::Ack { corr: 7, conns: 3 }));
        let mut numbered = numbered_publication_head(10, "node-a", "room:1");
        numbered.extend_from_slice(b"42\n00ff\n");
        numbered.extend_from_slice(frame);
        assert_eq!(
            parse(&numbered),
            Some(Envelope::NumberedPub {
                corr: 10,
                origin: "node-a",
                channel: "room:1",
                seq: 42,
                epoch: "00ff",
                frame
            })
        );
        let mut numbered = numbered_dm_head(11, "node-b", "amy");
        numbered.extend_from_slice(b"7\n00ee\n");
        numbered.extend_from_slice(frame);
        assert_eq!(
            parse(&numbered),
            Some(Envelope::NumberedDm {
                corr: 11,
                origin: "node-b",
                to: "amy",
                seq: 7,
                epoch: "00ee",
                frame
            })
        );
        // A frame with many newlines stays whole.
        let frame = b"a\nb\nc\nd\ne";
        assert_eq!(
            parse(&publication(0, "n", "c", frame)),
            Some(Envelope::Pub {
                corr: 0,
                origin: "n",
                channel: "c",
                frame
            })
        );
    }

    #[test]
    fn malformed_messages_are_refused() {
        assert_eq!(parse(b"ack\nx\n3"), None);
        assert_eq!(parse(b"what\n1\n"), None);
        assert_eq!(parse(b""), None);
        assert_eq!(parse(b"dm\n1\nnode"), None);
        assert_eq!(parse(b"disc\n1\nnode"), None);
        assert_eq!(parse(b"pub\n1\n\xff\nch\nframe"), None);
        assert_eq!(parse(b"hpub\n1\nn\nch\nx\ne\nframe"), None);
        assert_eq!(parse(b"hpub\n1\nn\nch\n3\ne"), None);
        assert_eq!(parse(b"hdm\n1\nn\nu\n-3\ne\nframe"), None);
    }
}
