//! The WebSocket frame codec (`shards::ws::decode`, `shards::ws::encode`) on arbitrary bytes.
//!
//! Input: byte 0 picks the limits (`max_frame_bytes`, `max_message_bytes`, `max_fragments`), byte 1
//! the read sizes, the rest is what a client sends (masks and cut points follow a hash of the input).
//! Checks:
//!
//! - the decoder agrees with a small reference decoder written here from RFC 6455 and
//!   docs/PROTOCOL.md section 2: the same events (payloads included), the same error, the same
//!   incomplete tail; never a panic. That includes 1002 for a 64-bit length with its top bit set or a
//!   length not in its shortest form, 1009 for a fragmented message of more than `max_fragments`
//!   frames, and 1007 at the first fragment that makes a text message invalid UTF-8;
//! - fed in any chunking (whole, byte by byte, small or large reads), it gives the same events and
//!   the same result; a message is never longer than `max_message_bytes`, a ping payload never over
//!   125 bytes; an idle decoder (nothing incomplete) holds no heap;
//! - while decoding, the heap it holds never exceeds a bound set by the limits and the read size
//!   (a counting allocator measures it), whatever length a frame header announces;
//! - round trips: every server frame the encoder builds (text, binary, ping, pong, every close frame,
//!   close replies, long payloads with 16- and 64-bit lengths) has a minimal, unmasked header and,
//!   once masked as a client would, decodes to the same payload or code; the same frame with its
//!   length in a longer form than needed, or with the top bit of a 64-bit length set, is refused
//!   with 1002; a message split into fragments with pings between them comes out whole, or fails
//!   with the error of the first fragment over a limit or breaking its UTF-8.

#![no_main]

use std::{
    alloc::{GlobalAlloc, Layout, System},
    sync::atomic::{AtomicUsize, Ordering::Relaxed},
};

use libfuzzer_sys::fuzz_target;
use shards::ws::{
    CloseReason,
    decode::{DecodeError, DecodeLimits, Decoder, Event, Flow},
    encode,
};
use tungstenite::protocol::frame::coding::{Control, Data, OpCode};

/// The system allocator, counting the bytes live and the most live since the last reset.
struct Counting;

static LIVE: AtomicUsize = AtomicUsize::new(0);
static PEAK: AtomicUsize = AtomicUsize::new(0);

// SAFETY: every call is forwarded unchanged to `System`, which upholds the `GlobalAlloc` contract; the
// counters are only statistics and never influence what is returned.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours: `layout` has a non-zero size.
        let p = unsafe { System.alloc(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: as for `alloc`.
        let p = unsafe { System.alloc_zeroed(layout) };
        if !p.is_null() {
            grew(layout.size());
        }
        p
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size(), Relaxed);
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `ptr` was allocated by `System` (through us) with `layout`; `new_size` is non-zero.
        let p = unsafe { System.realloc(ptr, layout, new_size) };
        if !p.is_null() {
            LIVE.fetch_sub(layout.size(), Relaxed);
            grew(new_size);
        }
        p
    }
}

fn grew(size: usize) {
    let live = LIVE.fetch_add(size, Relaxed) + size;
    PEAK.fetch_max(live, Relaxed);
}

#[global_allocator]
static ALLOC: Counting = Counting;

/// Limit values byte 0 chooses from (3 bits each for the frame and the message limit).
const LIMIT_CHOICES: [usize; 8] = [0, 7, 125, 126, 1024, 65535, 65536, 1 << 20];

/// `max_fragments` values byte 0's top two bits choose from: the gateway's default (1024), then the
/// smallest the configuration allows and two more, under the five frames `round_trips` cuts into.
const FRAGMENT_CHOICES: [usize; 4] = [1024, 1, 2, 4];

fuzz_target!(|data: &[u8]| {
    let (params, stream) = data.split_at(data.len().min(2));
    let p0 = params.first().copied().unwrap_or(0);
    let p1 = params.get(1).copied().unwrap_or(0);
    let limits = DecodeLimits {
        max_frame_bytes: LIMIT_CHOICES[(p0 & 7) as usize],
        max_message_bytes: LIMIT_CHOICES[((p0 >> 3) & 7) as usize],
        max_fragments: FRAGMENT_CHOICES[(p0 >> 6) as usize],
    };
    let mut rng = Rng(fnv1a(data) | 1);

    check_stream(stream, limits, p1, &mut rng);
    round_trips(stream, limits, p0, p1, &mut rng);
});

/// An event with its payload copied out, for comparing runs.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Ev {
    Text(Vec<u8>),
    Binary(Vec<u8>),
    Ping(Vec<u8>),
    Pong,
    Close(Option<u16>),
}

impl Ev {
    fn of(ev: &Event<'_>) -> Ev {
        match ev {
            Event::Text(p) => Ev::Text(p.to_vec()),
            Event::Binary(p) => Ev::Binary(p.to_vec()),
            Event::Ping(p) => Ev::Ping(p.to_vec()),
            Event::Pong => Ev::Pong,
            Event::Close(c) => Ev::Close(*c),
        }
    }

    /// Compares without allocating (the heap is being measured while this runs).
    fn matches(&self, ev: &Event<'_>) -> bool {
        match (self, ev) {
            (Ev::Text(a), Event::Text(b)) | (Ev::Binary(a), Event::Binary(b)) => a[..] == b[..],
            (Ev::Ping(a), Event::Ping(b)) => a[..] == b[..],
            (Ev::Pong, Event::Pong) => true,
            (Ev::Close(a), Event::Close(b)) => a == b,
            _ => false,
        }
    }
}

/// How a run ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum End {
    /// Input exhausted; `true` when an incomplete frame is left.
    Ok { partial: bool },
    /// A close frame was decoded; the rest is not read.
    Closed,
    /// Decoding failed.
    Err(DecodeError),
}

/// Decodes `stream` whole, against the reference, then in chunks, measuring the heap.
fn check_stream(stream: &[u8], limits: DecodeLimits, p1: u8, rng: &mut Rng) -> (Vec<Ev>, End) {
    // Whole, as one read.
    let mut dec = Decoder::default();
    let mut events = Vec::new();
    let mut closed = false;
    let mut buf = stream.to_vec();
    let result = dec.feed(&mut buf, limits, |ev| {
        events.push(Ev::of(&ev));
        if matches!(ev, Event::Close(_)) {
            closed = true;
            return Flow::Stop;
        }
        Flow::Continue
    });
    let end = match result {
        Err(e) => End::Err(e),
        Ok(()) if closed => End::Closed,
        Ok(()) => End::Ok {
            partial: dec.has_partial(),
        },
    };

    let reference = reference_decode(stream, limits);
    assert_eq!(events, reference.events, "events differ from the reference");
    assert_eq!(end, reference.end, "result differs from the reference");
    if end == (End::Ok { partial: false }) && !reference.fragment_open {
        assert_eq!(dec.heap_bytes(), 0, "an idle decoder holds heap");
    }
    for ev in &events {
        match ev {
            Ev::Text(p) | Ev::Binary(p) => assert!(p.len() <= limits.max_message_bytes),
            Ev::Ping(p) => assert!(p.len() <= 125),
            _ => {}
        }
    }
    drop(dec);

    // In chunks: byte 1 picks the read sizes.
    let max_chunk = match p1 & 3 {
        0 => stream.len().max(1),
        1 if stream.len() <= 512 => 1,
        1 => 16,
        2 => 16,
        _ => 600,
    };
    let mut buf = stream.to_vec();
    let mut dec = Decoder::default();
    let mut seen = 0;
    let mut closed = false;
    let mut result = Ok(());
    let base = LIVE.load(Relaxed);
    PEAK.store(base, Relaxed);
    let mut pos = 0;
    while pos < buf.len() && !closed && result.is_ok() {
        let n = if max_chunk == 1 {
            1
        } else {
            1 + rng.below(max_chunk)
        };
        let end = (pos + n).min(buf.len());
        result = dec.feed(&mut buf[pos..end], limits, |ev| {
            assert!(
                events.get(seen).is_some_and(|want| want.matches(&ev)),
                "chunked event {seen} differs: {ev:?}"
            );
            seen += 1;
            if matches!(ev, Event::Close(_)) {
                closed = true;
                return Flow::Stop;
            }
            Flow::Continue
        });
        pos = end;
    }
    let held = PEAK.load(Relaxed) - base;
    // The carried frame (header + payload) with one read appended to it, twice for the vector's
    // growth; a fragmented message under assembly, twice for growth; a little bookkeeping.
    let frame = 14 + limits.max_frame_bytes.min(limits.max_message_bytes);
    let bound = 2 * (frame + max_chunk) + 2 * limits.max_message_bytes + 256;
    assert!(held <= bound, "decoder held {held} bytes, bound {bound}");
    let chunked_end = match result {
        Err(e) => End::Err(e),
        Ok(()) if closed => End::Closed,
        Ok(()) => End::Ok {
            partial: dec.has_partial(),
        },
    };
    assert_eq!(seen, events.len(), "chunked run saw fewer events");
    assert_eq!(chunked_end, end, "chunked run ended differently");
    (events, end)
}

/// Server frames from the encoder, masked as a client would, decode to what was encoded.
fn round_trips(stream: &[u8], limits: DecodeLimits, p0: u8, p1: u8, rng: &mut Rng) {
    let mut payload = stream.to_vec();
    // Now and then (1 input in 64: it is slow) a long payload, for the 64-bit length form.
    if p0 & 0xc0 == 0xc0 && p1 & 0xf0 == 0xf0 {
        let len = 65_536 + (p1 as usize) * 3;
        payload = stream.iter().copied().cycle().take(len).collect();
        payload.resize(len, b'x');
    }
    let fits = |len: usize| len <= limits.max_frame_bytes && len <= limits.max_message_bytes;
    let too_big = |len: usize| -> Option<(Vec<Ev>, End)> {
        (!fits(len)).then(|| (vec![], End::Err(DecodeError::TooBig)))
    };

    for (opcode, text) in [(Data::Text, true), (Data::Binary, false)] {
        let frame = encode::frame(OpCode::Data(opcode), &payload);
        let client = to_client(&frame, rng.mask(), 0x80 | u8::from(OpCode::Data(opcode)));
        let want =
            too_big(payload.len()).unwrap_or_else(|| match (text, std::str::from_utf8(&payload)) {
                (true, Ok(_)) => (vec![Ev::Text(payload.clone())], End::Ok { partial: false }),
                (true, Err(_)) => (vec![], End::Err(DecodeError::InvalidUtf8)),
                (false, _) => (
                    vec![Ev::Binary(payload.clone())],
                    End::Ok { partial: false },
                ),
            });
        assert_eq!(
            check_stream(&client, limits, p1, rng),
            want,
            "{opcode:?} round trip"
        );

        // The same frame with its length in a longer form than it needs: a protocol error, checked
        // before the length is held against the limits.
        let first = 0x80 | u8::from(OpCode::Data(opcode));
        let non_minimal = (vec![], End::Err(DecodeError::Protocol(NOT_SHORTEST)));
        for form in [LengthForm::Bits16, LengthForm::Bits64] {
            if form > LengthForm::shortest(payload.len()) {
                let client = client_frame_in(form, first, &payload, rng.mask());
                assert_eq!(
                    check_stream(&client, limits, p1, rng),
                    non_minimal,
                    "{opcode:?} in a {form:?} length"
                );
            }
        }
        // A 64-bit length with its most significant bit set, the rest of it the payload's length.
        let mut top_bit = vec![first, 0x80 | 127];
        top_bit.extend_from_slice(&(payload.len() as u64 | 1 << 63).to_be_bytes());
        top_bit.extend_from_slice(&rng.mask());
        top_bit.extend_from_slice(&payload[..payload.len().min(64)]);
        assert_eq!(
            check_stream(&top_bit, limits, p1, rng),
            (vec![], End::Err(DecodeError::Protocol(TOP_BIT))),
            "{opcode:?} with the length's top bit set"
        );
    }

    let control = &payload[..payload.len().min(125)];
    let ping = encode::frame(OpCode::Control(Control::Ping), control);
    let client = to_client(&ping, rng.mask(), 0x89);
    let want = too_big(control.len())
        .unwrap_or_else(|| (vec![Ev::Ping(control.to_vec())], End::Ok { partial: false }));
    assert_eq!(
        check_stream(&client, limits, p1, rng),
        want,
        "ping round trip"
    );

    let pong = encode::pong_frame(control);
    let client = to_client(&pong, rng.mask(), 0x8a);
    let want = too_big(control.len()).unwrap_or((vec![Ev::Pong], End::Ok { partial: false }));
    assert_eq!(
        check_stream(&client, limits, p1, rng),
        want,
        "pong round trip"
    );

    let heartbeat = to_client(&encode::ping_frame(), rng.mask(), 0x89);
    let want = too_big(0).unwrap_or((vec![Ev::Ping(vec![])], End::Ok { partial: false }));
    assert_eq!(
        check_stream(&heartbeat, limits, p1, rng),
        want,
        "heartbeat ping"
    );

    // Every close frame the server sends is one a peer accepts: a valid code, UTF-8 text.
    let text = String::from_utf8_lossy(stream);
    let reason = CloseReason::ALL[rng.below(CloseReason::ALL.len())];
    let closes = [
        (encode::close_frame(reason), Some(reason.code())),
        (encode::close_frame_with(reason, &text), Some(reason.code())),
        (encode::close_reply(None), None),
        (
            encode::close_reply(Some(valid_close_code(p1))),
            Some(valid_close_code(p1)),
        ),
    ];
    for (frame, code) in closes {
        let client = to_client(&frame, rng.mask(), 0x88);
        let len = client.len() - header_len(&client);
        let want = too_big(len).unwrap_or((vec![Ev::Close(code)], End::Closed));
        assert_eq!(
            check_stream(&client, limits, p1, rng),
            want,
            "close frame {frame:?}"
        );
    }
    let with_text = encode::close_frame_with(reason, &text);
    let shown = &with_text[header_len(&with_text) + 2..];
    assert!(
        text.as_bytes().starts_with(shown),
        "close reason is not a prefix of the text"
    );

    // The payload as a fragmented message with pings between the fragments. As text, it may be
    // invalid UTF-8: it must then fail at the first fragment after which no valid text can begin
    // with what came so far, and nothing after that fragment is decoded.
    let text_msg = p1 & 4 != 0;
    let pieces = 1 + rng.below(5);
    let mut cuts: Vec<usize> = (1..pieces).map(|_| rng.below(payload.len() + 1)).collect();
    cuts.sort_unstable();
    cuts.insert(0, 0);
    cuts.push(payload.len());
    let mut wire = Vec::new();
    let mut want_events = Vec::new();
    let mut want_end = End::Ok { partial: false };
    for (i, w) in cuts.windows(2).enumerate() {
        let piece = &payload[w[0]..w[1]];
        let last = i + 2 == cuts.len();
        let op = match (i, text_msg) {
            (0, true) => 0x1,
            (0, false) => 0x2,
            _ => 0x0,
        };
        wire.extend(client_frame(
            if last { 0x80 | op } else { op },
            piece,
            rng.mask(),
        ));
        // Checked in this order: the frame's own size, the message so far against the message limit,
        // the number of frames (the first one included), then the text so far.
        if want_end == (End::Ok { partial: false }) {
            if !fits(piece.len()) || w[1] > limits.max_message_bytes {
                want_end = End::Err(DecodeError::TooBig);
            } else if i + 1 > limits.max_fragments {
                want_end = End::Err(DecodeError::TooManyFragments);
            } else if text_msg && !utf8_so_far(&payload[..w[1]], last) {
                want_end = End::Err(DecodeError::InvalidUtf8);
            } else if last {
                want_events.push(if text_msg {
                    Ev::Text(payload.clone())
                } else {
                    Ev::Binary(payload.clone())
                });
            }
        }
        if !last {
            let ping = &piece[..piece.len().min(125).min(i)];
            wire.extend(client_frame(0x89, ping, rng.mask()));
            if want_end == (End::Ok { partial: false }) {
                if fits(ping.len()) {
                    want_events.push(Ev::Ping(ping.to_vec()));
                } else {
                    want_end = End::Err(DecodeError::TooBig);
                }
            }
        }
    }
    let got = check_stream(&wire, limits, p1, rng);
    assert_eq!(got, (want_events, want_end), "fragmented message");
}

/// True when `text`, the start of a text message, can still be valid UTF-8: valid, or (while more
/// fragments are to come) valid up to the first bytes of a character cut at its end.
fn utf8_so_far(text: &[u8], last: bool) -> bool {
    match std::str::from_utf8(text) {
        Ok(_) => true,
        Err(e) => !last && e.error_len().is_none(),
    }
}

/// The decoder's reasons for the two length errors (compared as part of `DecodeError::Protocol`).
const TOP_BIT: &str = "64-bit length with its most significant bit set";
const NOT_SHORTEST: &str = "length not in its shortest encoding";

/// The three forms of a frame's payload length (RFC 6455 section 5.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum LengthForm {
    /// In the second header byte: up to 125.
    Bits7,
    /// 126, then 16 bits.
    Bits16,
    /// 127, then 64 bits.
    Bits64,
}

impl LengthForm {
    /// The form a length must be sent in.
    fn shortest(len: usize) -> LengthForm {
        match len {
            0..126 => LengthForm::Bits7,
            126..65_536 => LengthForm::Bits16,
            _ => LengthForm::Bits64,
        }
    }
}

/// A close code the decoder accepts, chosen by `b`.
fn valid_close_code(b: u8) -> u16 {
    const CODES: [u16; 6] = [1000, 1001, 1003, 1011, 3000, 4999];
    CODES[b as usize % CODES.len()]
}

/// Length of the header of an unmasked (server) or masked (client) frame.
fn header_len(frame: &[u8]) -> usize {
    let masked = if frame[1] & 0x80 != 0 { 4 } else { 0 };
    masked
        + match frame[1] & 0x7f {
            126 => 4,
            127 => 10,
            _ => 2,
        }
}

/// Checks a server frame's header (final, unmasked, `first` byte, shortest length form, length equal
/// to the payload's) and returns the same frame masked with `mask`, as a client sends it.
fn to_client(frame: &[u8], mask: [u8; 4], first: u8) -> Vec<u8> {
    assert_eq!(frame[0], first, "first header byte");
    assert_eq!(frame[1] & 0x80, 0, "server frame masked");
    let head = header_len(frame);
    let len = match frame[1] & 0x7f {
        126 => u16::from_be_bytes([frame[2], frame[3]]) as u64,
        127 => u64::from_be_bytes(frame[2..10].try_into().unwrap()),
        n => n as u64,
    };
    let payload = &frame[head..];
    assert_eq!(len, payload.len() as u64, "header length");
    let minimal = match head {
        2 => len < 126,
        4 => (126..65_536).contains(&len),
        _ => len >= 65_536 && len >> 63 == 0,
    };
    assert!(minimal, "length {len} in a {head}-byte header");
    client_frame(first, payload, mask)
}

/// A masked client frame, written here from RFC 6455 section 5.2 (not by the code under test).
fn client_frame(first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    client_frame_in(LengthForm::shortest(payload.len()), first, payload, mask)
}

/// A masked client frame with its length in `form` (which must hold it).
fn client_frame_in(form: LengthForm, first: u8, payload: &[u8], mask: [u8; 4]) -> Vec<u8> {
    let mut out = vec![first];
    let len = payload.len();
    match form {
        LengthForm::Bits7 => {
            assert!(len < 126, "a 7-bit length");
            out.push(0x80 | len as u8);
        }
        LengthForm::Bits16 => {
            out.push(0x80 | 126);
            let len = u16::try_from(len).expect("a 16-bit length");
            out.extend_from_slice(&len.to_be_bytes());
        }
        LengthForm::Bits64 => {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
    }
    out.extend_from_slice(&mask);
    out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    out
}

/// What the reference decoder makes of a stream.
struct Reference {
    events: Vec<Ev>,
    end: End,
    /// A fragmented message is open at the end.
    fragment_open: bool,
}

/// RFC 6455 server-side decoding with the gateway's limits (docs/PROTOCOL.md section 2), written
/// plainly: one frame at a time, the whole message so far re-validated at each fragment. Checks in the
/// order the decoder makes them. On the header, once it is complete: opcode, the length's form (top
/// bit, shortest encoding), reserved bits, mask, control rules, size limits. Then on the payload: the
/// fragment sequence, the message limit, the fragment count, UTF-8, the close payload.
fn reference_decode(input: &[u8], limits: DecodeLimits) -> Reference {
    use DecodeError::{InvalidUtf8, Protocol, TooBig, TooManyFragments};
    let mut events = Vec::new();
    // The open fragmented message: text or binary, its payload so far, its frames so far.
    let mut fragments: Option<(bool, Vec<u8>, usize)> = None;
    let mut pos = 0;
    let end = loop {
        let rest = &input[pos..];
        if rest.len() < 2 {
            break End::Ok {
                partial: !rest.is_empty(),
            };
        }
        let (b0, b1) = (rest[0], rest[1]);
        let ext = match b1 & 0x7f {
            126 => 2,
            127 => 8,
            _ => 0,
        };
        let masked = b1 & 0x80 != 0;
        let head = 2 + ext + if masked { 4 } else { 0 };
        if rest.len() < head {
            break End::Ok { partial: true };
        }
        let len = match ext {
            2 => u16::from_be_bytes([rest[2], rest[3]]) as u64,
            8 => u64::from_be_bytes(rest[2..10].try_into().unwrap()),
            _ => (b1 & 0x7f) as u64,
        };
        let shortest = match ext {
            2 => len >= 126,
            8 => len >= 65_536,
            _ => true,
        };
        let (fin, opcode) = (b0 & 0x80 != 0, b0 & 0x0f);
        let control = opcode >= 8;
        let error = if matches!(opcode, 3..=7 | 0xb..=0xf) {
            Some(Protocol("invalid opcode"))
        } else if len >= 1 << 63 {
            Some(Protocol(TOP_BIT))
        } else if !shortest {
            Some(Protocol(NOT_SHORTEST))
        } else if b0 & 0x70 != 0 {
            Some(Protocol("reserved bits set"))
        } else if !masked {
            Some(Protocol("client frame not masked"))
        } else if control && !fin {
            Some(Protocol("fragmented control frame"))
        } else if control && len > 125 {
            Some(Protocol("control frame over 125 bytes"))
        } else if len > limits.max_frame_bytes as u64 || len > limits.max_message_bytes as u64 {
            Some(TooBig)
        } else {
            None
        };
        if let Some(e) = error {
            break End::Err(e);
        }
        let len = len as usize;
        if rest.len() - head < len {
            break End::Ok { partial: true };
        }
        let mask = &rest[head - 4..head];
        let payload: Vec<u8> = rest[head..head + len]
            .iter()
            .enumerate()
            .map(|(i, b)| b ^ mask[i % 4])
            .collect();
        pos += head + len;
        let message = match opcode {
            1 | 2 if fragments.is_some() => {
                break End::Err(Protocol("new message inside a fragmented one"));
            }
            1 | 2 if fin => Some((opcode == 1, payload)),
            1 | 2 => {
                // The first fragment: one frame so far, its text checked at once.
                if opcode == 1 && !utf8_so_far(&payload, false) {
                    break End::Err(InvalidUtf8);
                }
                fragments = Some((opcode == 1, payload, 1));
                None
            }
            0 => {
                let Some((text, mut so_far, frames)) = fragments.take() else {
                    break End::Err(Protocol("continuation without a message"));
                };
                if so_far.len() + payload.len() > limits.max_message_bytes {
                    break End::Err(TooBig);
                }
                if frames + 1 > limits.max_fragments {
                    break End::Err(TooManyFragments);
                }
                so_far.extend_from_slice(&payload);
                if text && !utf8_so_far(&so_far, fin) {
                    break End::Err(InvalidUtf8);
                }
                if fin {
                    Some((text, so_far))
                } else {
                    fragments = Some((text, so_far, frames + 1));
                    None
                }
            }
            9 => {
                events.push(Ev::Ping(payload));
                None
            }
            10 => {
                events.push(Ev::Pong);
                None
            }
            _ => {
                // 8: close.
                let code = match payload.len() {
                    0 => None,
                    1 => break End::Err(Protocol("close payload of one byte")),
                    _ => {
                        let code = u16::from_be_bytes([payload[0], payload[1]]);
                        if !matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999) {
                            break End::Err(Protocol("invalid close code"));
                        }
                        if std::str::from_utf8(&payload[2..]).is_err() {
                            break End::Err(InvalidUtf8);
                        }
                        Some(code)
                    }
                };
                events.push(Ev::Close(code));
                break End::Closed;
            }
        };
        if let Some((text, payload)) = message {
            if text && std::str::from_utf8(&payload).is_err() {
                break End::Err(InvalidUtf8);
            }
            events.push(if text {
                Ev::Text(payload)
            } else {
                Ev::Binary(payload)
            });
        }
    };
    Reference {
        events,
        end,
        fragment_open: fragments.is_some(),
    }
}

/// xorshift64: read sizes, masks and cut points that follow the input, so a crash replays.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn mask(&mut self) -> [u8; 4] {
        (self.next() as u32).to_le_bytes()
    }
}

fn fnv1a(data: &[u8]) -> u64 {
    data.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| {
        (h ^ b as u64).wrapping_mul(0x0100_0000_01b3)
    })
}
