//! The HTTP upgrade parser (`shards::ws::handshake`) on arbitrary bytes.
//!
//! The input is the bytes a client sends, as is (the seeds are real requests). The connection task
//! appends every read to one buffer, up to one byte over `max_header_bytes` (what a read brings past
//! that is kept aside), and calls `parse_request` on the whole buffer until it gets something other
//! than `Partial`; this target parses every prefix (after reads of random sizes for long inputs),
//! replays the task's bounded buffering, and checks that the answers agree with each other and with
//! the rules (docs/PROTOCOL.md, "Handshake outcomes"):
//!
//! - never a panic; never `Partial` once more than `max_header_bytes` are buffered (bounded memory);
//!   `TooLarge` only then;
//! - buffered as the task does it, never more than `max_header_bytes + 1` bytes are held, the answer
//!   agrees with the one for the whole input (as a prefix's must), and after `Done` the bytes that
//!   followed the head (read with it or set aside) come out whole and in order;
//! - once a prefix gets an answer, every longer prefix gets the same one: the same `Done`, or a
//!   rejection (of the same kind, unless the earlier one was `TooLarge`);
//! - `Done`: `consumed` is within the buffer and the limit, ends the head with a blank line, and
//!   neither the bytes after it nor a limit of exactly `consumed` change the answer, while a limit of
//!   `consumed - 1` gives `TooLarge`; the accept key is base64 of a SHA-1 (28 characters, one `=`); the
//!   101 response parses back with that key; the origin is trimmed and comes from the head;
//! - a rejection's response parses as HTTP with the status code the rejection names.

#![no_main]

use libfuzzer_sys::fuzz_target;
use shards::ws::handshake::{
    HandshakeLimits, Parse, Reject, Upgrade, accept_response, parse_request, reject_response,
};

/// Longest input checked at every cut point; longer ones are cut after reads of 1 to 64 bytes.
const ALL_CUTS_UP_TO: usize = 256;

fuzz_target!(|data: &[u8]| {
    let seed = fnv1a(data);
    // The default limit, and one derived from the input that lands around its length.
    let default = HandshakeLimits {
        max_header_bytes: 8192,
    };
    let small = HandshakeLimits {
        max_header_bytes: (seed % (data.len() as u64 + 32)) as usize,
    };
    for limits in [default, small] {
        let whole = check_one(data, &limits);
        check_prefixes(data, &limits, &whole, seed);
        check_bounded_reads(data, &limits, &whole, seed);
        if let Ok(Parse::Done { consumed, upgrade }) = &whole {
            check_done(data, &limits, *consumed, upgrade);
        }
    }
});

/// Parses `buf` and checks what holds for any single answer.
fn check_one(buf: &[u8], limits: &HandshakeLimits) -> Result<Parse, Reject> {
    let result = parse_request(buf, limits);
    let over = buf.len() > limits.max_header_bytes;
    match &result {
        Ok(Parse::Partial) => assert!(!over, "Partial with {} bytes buffered", buf.len()),
        Ok(Parse::Done { consumed, upgrade }) => {
            assert!(*consumed <= buf.len() && *consumed <= limits.max_header_bytes);
            check_upgrade(&buf[..*consumed], upgrade);
        }
        Err(reject) => {
            if *reject == Reject::TooLarge {
                assert!(over, "TooLarge with {} bytes buffered", buf.len());
            }
            check_reject_response(reject);
        }
    }
    result
}

/// Feeds growing prefixes the way the connection task sees reads, and checks they agree.
fn check_prefixes(buf: &[u8], limits: &HandshakeLimits, whole: &Result<Parse, Reject>, seed: u64) {
    let mut first: Option<Result<Parse, Reject>> = None;
    let mut check = |end: usize| {
        let r = check_one(&buf[..end], limits);
        if r == Ok(Parse::Partial) {
            assert!(
                first.is_none(),
                "Partial at {end} after an answer {first:?}"
            );
        } else if let Some(earlier) = &first {
            assert_consistent(earlier, &r, end);
        } else {
            first = Some(r);
        }
    };
    if buf.len() <= ALL_CUTS_UP_TO {
        (0..=buf.len()).for_each(&mut check);
    } else {
        // Reads of pseudo-random sizes, as a socket delivers them.
        let mut rng = seed | 1;
        let mut end = 0;
        while end < buf.len() {
            rng ^= rng << 13;
            rng ^= rng >> 7;
            rng ^= rng << 17;
            end = (end + 1 + (rng % 64) as usize).min(buf.len());
            check(end);
        }
    }
    match first {
        Some(earlier) => assert_consistent(&earlier, whole, buf.len()),
        None => assert_eq!(whole, &Ok(Parse::Partial)),
    }
}

/// Replays the connection task's buffering (`handshake_bytes` in shards/src/conn/task.rs) over reads
/// of 1 to 512 bytes: each read is appended up to `max_header_bytes + 1` bytes buffered, the rest of it
/// set aside; after `Done` the buffered bytes past the head and then those set aside are the client's
/// first frames.
fn check_bounded_reads(
    data: &[u8],
    limits: &HandshakeLimits,
    whole: &Result<Parse, Reject>,
    seed: u64,
) {
    let cap = limits.max_header_bytes + 1;
    let mut rng = seed.rotate_left(17) | 1;
    let mut buf = Vec::new();
    let mut end = 0;
    while end < data.len() {
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        let read = &data[end..(end + 1 + (rng % 512) as usize).min(data.len())];
        end += read.len();
        let room = cap.saturating_sub(buf.len());
        let (head, aside) = read.split_at(read.len().min(room));
        buf.extend_from_slice(head);
        assert!(buf.len() <= cap, "{} bytes buffered", buf.len());
        let r = parse_request(&buf, limits);
        match &r {
            Ok(Parse::Partial) => {
                assert!(aside.is_empty(), "Partial with bytes set aside");
                continue;
            }
            Ok(Parse::Done { consumed, .. }) => {
                let mut frames = buf[*consumed..].to_vec();
                frames.extend_from_slice(aside);
                assert_eq!(frames, &data[*consumed..end], "bytes after the head");
            }
            Err(_) => {}
        }
        // The answer to the bounded buffer stands for the whole input too.
        assert_consistent(&r, whole, data.len());
        return;
    }
    assert_eq!(whole, &Ok(Parse::Partial));
}

/// An answer for a shorter prefix (`earlier`) against the one for a longer prefix.
fn assert_consistent(earlier: &Result<Parse, Reject>, later: &Result<Parse, Reject>, end: usize) {
    match (earlier, later) {
        (Ok(Parse::Done { .. }), _) => assert_eq!(earlier, later, "prefix of {end} bytes"),
        (Err(a), Err(b)) => assert!(
            a == b || *a == Reject::TooLarge,
            "rejected as {a:?}, then as {b:?} with {end} bytes"
        ),
        _ => panic!("{earlier:?} then {later:?} with {end} bytes"),
    }
}

/// A complete request: the head alone, the head with other bytes after it, and limits around its
/// length give the same answer.
fn check_done(buf: &[u8], limits: &HandshakeLimits, consumed: usize, upgrade: &Upgrade) {
    let head = &buf[..consumed];
    assert!(
        head.ends_with(b"\n\n") || head.ends_with(b"\n\r\n"),
        "head ends without a blank line"
    );
    let want = Ok(Parse::Done {
        upgrade: upgrade.clone(),
        consumed,
    });
    assert_eq!(parse_request(head, limits), want);
    let mut pipelined = head.to_vec();
    pipelined.extend_from_slice(b"\x81\x85\x00\x00\x00\x00hello\r\n\r\nGET / HTTP/1.1\r\n\r\n");
    assert_eq!(parse_request(&pipelined, limits), want);
    let exact = HandshakeLimits {
        max_header_bytes: consumed,
    };
    assert_eq!(parse_request(buf, &exact), want);
    let one_less = HandshakeLimits {
        max_header_bytes: consumed - 1,
    };
    assert_eq!(parse_request(buf, &one_less), Err(Reject::TooLarge));
}

/// What an accepted request yields, against the head it came from.
fn check_upgrade(head: &[u8], upgrade: &Upgrade) {
    let key = upgrade.accept_key.as_bytes();
    assert_eq!(key.len(), 28, "accept key {:?}", upgrade.accept_key);
    assert!(
        key[..27]
            .iter()
            .all(|&b| b.is_ascii_alphanumeric() || b == b'+' || b == b'/')
    );
    assert_eq!(key[27], b'=');
    assert!(head.windows(3).any(|w| w.eq_ignore_ascii_case(b"GET")));
    assert!(contains_ignore_case(head, b"websocket") && contains_ignore_case(head, b"upgrade"));
    if let Some(origin) = &upgrade.origin {
        assert_eq!(
            origin.as_bytes(),
            origin.as_bytes().trim_ascii(),
            "origin not trimmed"
        );
        assert!(
            contains_ignore_case(head, origin.as_bytes()),
            "origin not from the head"
        );
    }

    let response = accept_response(&upgrade.accept_key);
    let parsed = parse_response(&response);
    assert_eq!(parsed.0, 101);
    assert_eq!(parsed.1.as_deref(), Some(upgrade.accept_key.as_str()));
}

/// A rejection's response is complete HTTP with the status the rejection names.
fn check_reject_response(reject: &Reject) {
    let response = reject_response(reject);
    let (code, _) = parse_response(response);
    assert_eq!(code, reject.status_code(), "{reject:?}");
    assert!(matches!(code, 400..=499));
}

/// Reads a response head written by the gateway: its status code and `Sec-WebSocket-Accept` value.
/// A small reader of our own (no HTTP crate here), strict about the shape the gateway writes: CRLF
/// line ends, `HTTP/1.1 <code> <text>`, `Name: value` headers, a blank line, and a body exactly as
/// long as `Content-Length` when there is one.
fn parse_response(resp: &[u8]) -> (u16, Option<String>) {
    let text = std::str::from_utf8(resp).expect("response is UTF-8");
    let (head, body) = text.split_once("\r\n\r\n").expect("response head ends");
    let mut lines = head.split("\r\n");
    let status = lines.next().expect("status line");
    let rest = status
        .strip_prefix("HTTP/1.1 ")
        .expect("HTTP/1.1 status line");
    let code: u16 = rest[..3].parse().expect("status code");
    assert_eq!(rest.as_bytes().get(3), Some(&b' '));
    let mut accept = None;
    let mut length = None;
    for line in lines {
        let (name, value) = line.split_once(": ").expect("header line");
        assert!(!name.is_empty() && name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'));
        if name.eq_ignore_ascii_case("sec-websocket-accept") {
            accept = Some(value.to_string());
        } else if name.eq_ignore_ascii_case("content-length") {
            length = Some(value.parse::<usize>().expect("Content-Length is a number"));
        }
    }
    assert_eq!(body.len(), length.unwrap_or(0), "body length");
    (code, accept)
}

fn contains_ignore_case(haystack: &[u8], needle: &[u8]) -> bool {
    needle.is_empty()
        || haystack
            .windows(needle.len())
            .any(|w| w.eq_ignore_ascii_case(needle))
}

/// FNV-1a of the input: the derived limit and read sizes follow the bytes, so a crash replays.
fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
