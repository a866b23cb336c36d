//! Incremental decoder for client frames: limits first, then unmasking in place, then events.
//!
//! The decoder keeps per-connection state only while a frame or a fragmented message is incomplete:
//! an idle connection's [`Decoder`] is two empty fields (no heap). Limits are checked on the header,
//! before any payload is buffered, so a frame announcing 2^62 bytes costs nothing but its header. Text
//! is checked as UTF-8 frame by frame: a fragmented message that can no longer be valid fails at the
//! fragment that breaks it, not when its last fragment arrives.

use tungstenite::protocol::frame::{
    FrameHeader,
    coding::{Control, Data, OpCode},
};

use super::CloseReason;

/// Size limits enforced by the decoder.
#[derive(Clone, Copy, Debug)]
pub struct DecodeLimits {
    /// Largest payload of a single frame; larger: close 1009.
    pub max_frame_bytes: usize,
    /// Largest message (all fragments together); larger: close 1009.
    pub max_message_bytes: usize,
    /// Most frames in one fragmented message; more: close 1009. Bounds the work of a flood of empty
    /// continuation frames, which the byte limit alone never stops.
    pub max_fragments: usize,
}

/// A complete event decoded from the client.
#[derive(Debug)]
pub enum Event<'a> {
    /// A complete text message (UTF-8 already validated), unmasked, mutable for in-place JSON parsing.
    Text(&'a mut [u8]),
    /// A complete binary message.
    Binary(&'a mut [u8]),
    /// A ping with its payload (to be echoed in a pong).
    Ping(&'a [u8]),
    /// A pong (only activity).
    Pong,
    /// The client's close frame with its code, if any.
    Close(Option<u16>),
}

/// What the event handler wants next.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Flow {
    /// Decode the next frame.
    Continue,
    /// Stop decoding (the connection is closing); remaining input is dropped.
    Stop,
}

/// Why decoding failed; each maps to a close code.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DecodeError {
    /// RFC 6455 violated (close 1002); the text says how.
    Protocol(&'static str),
    /// Frame or message over the limit (close 1009).
    TooBig,
    /// Text that is not UTF-8 (close 1007).
    InvalidUtf8,
    /// A fragmented message of more than `max_fragments` frames (close 1009).
    TooManyFragments,
}

impl DecodeError {
    /// The close reason to send for this error.
    pub fn close_reason(self) -> CloseReason {
        match self {
            DecodeError::Protocol(_) => CloseReason::ProtocolError,
            DecodeError::TooBig => CloseReason::TooBig,
            DecodeError::InvalidUtf8 => CloseReason::InvalidUtf8,
            DecodeError::TooManyFragments => CloseReason::TooManyFragments,
        }
    }
}

/// A fragmented data message being assembled.
#[derive(Debug)]
struct Fragments {
    /// True for a text message (validated as UTF-8 fragment by fragment).
    text: bool,
    /// Bytes at the start of `payload` already validated as UTF-8 (text only). What follows them is at
    /// most the first bytes of a character whose rest is in a later fragment.
    valid: usize,
    /// Payload of the fragments received so far.
    payload: Vec<u8>,
    /// Frames received so far, the first included.
    frames: usize,
}

impl Fragments {
    /// Validates the text received since the last check, so that invalid UTF-8 fails the connection at
    /// the fragment that holds it rather than at the end of the message. Each byte is validated once,
    /// except the few of a character split across fragments. A character may stay incomplete only while
    /// more fragments are to come (`last` false).
    fn check_utf8(&mut self, last: bool) -> Result<(), DecodeError> {
        if !self.text {
            return Ok(());
        }
        match std::str::from_utf8(&self.payload[self.valid..]) {
            Ok(_) => self.valid = self.payload.len(),
            Err(e) if e.error_len().is_none() && !last => self.valid += e.valid_up_to(),
            Err(_) => return Err(DecodeError::InvalidUtf8),
        }
        Ok(())
    }

    /// The complete message as an event (its text already validated).
    fn event(&mut self) -> Event<'_> {
        if self.text {
            Event::Text(&mut self.payload)
        } else {
            Event::Binary(&mut self.payload)
        }
    }
}

/// Per-connection decoder state: one pointer, `None` while idle (no incomplete frame, no open
/// fragmented message), so an idle connection pays 8 bytes for its decoder.
#[derive(Debug, Default)]
pub struct Decoder(Option<Box<Held>>);

/// What a decoder holds between reads.
#[derive(Debug, Default)]
struct Held {
    /// Bytes of an incomplete frame carried over to the next read.
    partial: Vec<u8>,
    /// The message being assembled from fragments; `None` while no fragmented message is open.
    fragments: Option<Fragments>,
}

impl Decoder {
    /// Heap bytes this decoder holds (for per-connection memory accounting).
    pub fn heap_bytes(&self) -> usize {
        self.0.as_ref().map_or(0, |h| {
            size_of::<Held>()
                + h.partial.capacity()
                + h.fragments.as_ref().map_or(0, |f| f.payload.capacity())
        })
    }

    /// True when bytes of an incomplete frame are buffered.
    pub fn has_partial(&self) -> bool {
        self.0.as_ref().is_some_and(|h| !h.partial.is_empty())
    }

    /// The held state, boxed on first use.
    fn held(&mut self) -> &mut Held {
        self.0.get_or_insert_with(Box::default)
    }

    /// Frees the held state once it holds nothing.
    fn release_if_idle(&mut self) {
        if self
            .0
            .as_ref()
            .is_some_and(|h| h.partial.is_empty() && h.fragments.is_none())
        {
            self.0 = None;
        }
    }

    /// True while a fragmented message is open.
    fn in_message(&self) -> bool {
        self.0.as_ref().is_some_and(|h| h.fragments.is_some())
    }

    /// Decodes freshly read bytes. `input` is mutated (unmasked in place). Calls `on_event` for every
    /// complete event until it returns [`Flow::Stop`] or the input is exhausted; an incomplete tail is
    /// kept for the next call.
    pub fn feed(
        &mut self,
        input: &mut [u8],
        limits: DecodeLimits,
        mut on_event: impl FnMut(Event<'_>) -> Flow,
    ) -> Result<(), DecodeError> {
        let held = self.0.as_mut().map(|h| std::mem::take(&mut h.partial));
        match held {
            Some(mut buf) if !buf.is_empty() => {
                buf.extend_from_slice(input);
                let (used, frame_len) = self.decode(&mut buf, limits, &mut on_event)?;
                if used < buf.len() {
                    buf.drain(..used);
                    // As below, on the buffer that is kept.
                    buf.reserve_exact(frame_len.saturating_sub(buf.len()));
                    self.held().partial = buf;
                }
            }
            _ => {
                let (used, frame_len) = self.decode(input, limits, &mut on_event)?;
                if used < input.len() {
                    // An incomplete frame is left. Once its header is in (and has passed the limits,
                    // so `frame_len` is at most `max_frame_bytes` + 14), room for the whole frame is
                    // reserved at once instead of growing read by read.
                    let partial = &mut self.held().partial;
                    partial.reserve_exact(frame_len);
                    partial.extend_from_slice(&input[used..]);
                }
            }
        }
        self.release_if_idle();
        Ok(())
    }

    /// Decodes whole frames from `buf`; returns how many bytes were consumed, and the length (header
    /// included) of the incomplete frame left after them when its header is complete, else 0.
    fn decode(
        &mut self,
        buf: &mut [u8],
        limits: DecodeLimits,
        on_event: &mut impl FnMut(Event<'_>) -> Flow,
    ) -> Result<(usize, usize), DecodeError> {
        let mut pos = 0;
        while pos < buf.len() {
            let mut cursor = std::io::Cursor::new(&buf[pos..]);
            let (header, len) = match FrameHeader::parse(&mut cursor) {
                Ok(Some(h)) => h,
                Ok(None) => break,
                Err(_) => return Err(DecodeError::Protocol("invalid opcode")),
            };
            let head_len = cursor.position() as usize;
            check_length(buf[pos + 1], len)?;
            check_header(&header, len, limits)?;
            let len = len as usize;
            if buf.len() - pos - head_len < len {
                return Ok((pos, head_len + len));
            }
            let start = pos + head_len;
            let payload = &mut buf[start..start + len];
            if let Some(mask) = header.mask {
                apply_mask(payload, mask);
            }
            pos = start + len;
            if self.frame(&header, payload, limits, on_event)? == Flow::Stop {
                return Ok((buf.len(), 0));
            }
        }
        Ok((pos, 0))
    }

    /// Handles one complete, unmasked frame.
    fn frame(
        &mut self,
        header: &FrameHeader,
        payload: &mut [u8],
        limits: DecodeLimits,
        on_event: &mut impl FnMut(Event<'_>) -> Flow,
    ) -> Result<Flow, DecodeError> {
        match header.opcode {
            OpCode::Data(Data::Text) | OpCode::Data(Data::Binary) => {
                if self.in_message() {
                    return Err(DecodeError::Protocol("new message inside a fragmented one"));
                }
                let text = header.opcode == OpCode::Data(Data::Text);
                if header.is_final {
                    return deliver(text, payload, on_event);
                }
                let mut frag = Fragments {
                    text,
                    valid: 0,
                    payload: payload.to_vec(),
                    frames: 1,
                };
                frag.check_utf8(false)?;
                self.held().fragments = Some(frag);
                Ok(Flow::Continue)
            }
            OpCode::Data(Data::Continue) => {
                let Some(frag) = self.0.as_mut().and_then(|h| h.fragments.as_mut()) else {
                    return Err(DecodeError::Protocol("continuation without a message"));
                };
                if frag.payload.len() + payload.len() > limits.max_message_bytes {
                    return Err(DecodeError::TooBig);
                }
                frag.frames += 1;
                if frag.frames > limits.max_fragments {
                    return Err(DecodeError::TooManyFragments);
                }
                frag.payload.extend_from_slice(payload);
                frag.check_utf8(header.is_final)?;
                if !header.is_final {
                    return Ok(Flow::Continue);
                }
                let taken = self.0.as_mut().and_then(|h| h.fragments.take());
                let mut frag = taken.expect("checked above");
                Ok(on_event(frag.event()))
            }
            OpCode::Control(Control::Ping) => Ok(on_event(Event::Ping(payload))),
            OpCode::Control(Control::Pong) => Ok(on_event(Event::Pong)),
            OpCode::Control(Control::Close) => {
                let code = parse_close(payload)?;
                on_event(Event::Close(code));
                Ok(Flow::Stop)
            }
            _ => Err(DecodeError::Protocol("reserved opcode")),
        }
    }
}

/// Unmasks a payload in place, eight bytes at a time.
pub fn apply_mask(buf: &mut [u8], mask: [u8; 4]) {
    let m = u32::from_ne_bytes(mask) as u64;
    let m64 = m | (m << 32);
    let (chunks, rest) = buf.as_chunks_mut::<8>();
    for chunk in chunks {
        *chunk = (u64::from_ne_bytes(*chunk) ^ m64).to_ne_bytes();
    }
    // The tail starts at a multiple of 8, so the mask index restarts at 0.
    for (i, b) in rest.iter_mut().enumerate() {
        *b ^= mask[i % 4];
    }
}

/// RFC 6455 §5.2 on the payload length: a 64-bit length has its most significant bit clear, and the
/// length is encoded in the fewest bytes (126 and 127 only for lengths that need them). `second` is the
/// header's second byte (mask bit and 7-bit length).
fn check_length(second: u8, len: u64) -> Result<(), DecodeError> {
    let minimal = match second & 0x7f {
        126 => len >= 126,
        127 => len > u16::MAX as u64,
        _ => true,
    };
    if len >> 63 != 0 {
        return Err(DecodeError::Protocol(
            "64-bit length with its most significant bit set",
        ));
    }
    if !minimal {
        return Err(DecodeError::Protocol("length not in its shortest encoding"));
    }
    Ok(())
}

/// Header checks done before any payload is buffered.
fn check_header(header: &FrameHeader, len: u64, limits: DecodeLimits) -> Result<(), DecodeError> {
    if header.rsv1 || header.rsv2 || header.rsv3 {
        return Err(DecodeError::Protocol("reserved bits set"));
    }
    if header.mask.is_none() {
        return Err(DecodeError::Protocol("client frame not masked"));
    }
    if let OpCode::Control(_) = header.opcode {
        if !header.is_final {
            return Err(DecodeError::Protocol("fragmented control frame"));
        }
        if len > 125 {
            return Err(DecodeError::Protocol("control frame over 125 bytes"));
        }
    }
    if len > limits.max_frame_bytes as u64 || len > limits.max_message_bytes as u64 {
        return Err(DecodeError::TooBig);
    }
    Ok(())
}

/// Hands an unfragmented message to the handler, validating text as UTF-8.
fn deliver(
    text: bool,
    payload: &mut [u8],
    on_event: &mut impl FnMut(Event<'_>) -> Flow,
) -> Result<Flow, DecodeError> {
    if text {
        if std::str::from_utf8(payload).is_err() {
            return Err(DecodeError::InvalidUtf8);
        }
        Ok(on_event(Event::Text(payload)))
    } else {
        Ok(on_event(Event::Binary(payload)))
    }
}

/// Parses a close payload: empty, or a valid code followed by UTF-8 text.
fn parse_close(payload: &[u8]) -> Result<Option<u16>, DecodeError> {
    match payload.len() {
        0 => Ok(None),
        1 => Err(DecodeError::Protocol("close payload of one byte")),
        _ => {
            let code = u16::from_be_bytes([payload[0], payload[1]]);
            let valid = matches!(code, 1000..=1003 | 1007..=1014 | 3000..=4999);
            if !valid {
                return Err(DecodeError::Protocol("invalid close code"));
            }
            if std::str::from_utf8(&payload[2..]).is_err() {
                return Err(DecodeError::InvalidUtf8);
            }
            Ok(Some(code))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: DecodeLimits = DecodeLimits {
        max_frame_bytes: 1024,
        max_message_bytes: 2048,
        max_fragments: 16,
    };

    /// Builds a masked client frame.
    fn client_frame(first: u8, payload: &[u8]) -> Vec<u8> {
        let mask = [1u8, 2, 3, 4];
        let mut out = vec![first];
        let len = payload.len();
        if len < 126 {
            out.push(0x80 | len as u8);
        } else if len < 65536 {
            out.push(0x80 | 126);
            out.extend_from_slice(&(len as u16).to_be_bytes());
        } else {
            out.push(0x80 | 127);
            out.extend_from_slice(&(len as u64).to_be_bytes());
        }
        out.extend_from_slice(&mask);
        out.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
        out
    }

    /// Decodes `input` in chunks of `chunk` bytes; returns the events as strings.
    fn run(input: &[u8], chunk: usize) -> Result<Vec<String>, DecodeError> {
        let mut dec = Decoder::default();
        let mut events = Vec::new();
        for part in input.chunks(chunk.max(1)) {
            let mut part = part.to_vec();
            dec.feed(&mut part, LIMITS, |ev| {
                events.push(match ev {
                    Event::Text(t) => format!("text:{}", String::from_utf8_lossy(t)),
                    Event::Binary(b) => format!("bin:{}", b.len()),
                    Event::Ping(p) => format!("ping:{}", p.len()),
                    Event::Pong => "pong".into(),
                    Event::Close(c) => format!("close:{c:?}"),
                });
                Flow::Continue
            })?;
        }
        Ok(events)
    }

    #[test]
    fn whole_and_split_frames_decode_the_same() {
        let mut input = client_frame(0x81, b"hello");
        input.extend(client_frame(0x82, &[7u8; 300]));
        input.extend(client_frame(0x89, b"p"));
        input.extend(client_frame(0x8A, b""));
        let want = vec!["text:hello", "bin:300", "ping:1", "pong"];
        for chunk in [1, 2, 3, 7, 64, 10_000] {
            assert_eq!(run(&input, chunk).unwrap(), want, "chunk {chunk}");
        }
    }

    #[test]
    fn fragments_are_assembled_with_control_frames_between() {
        let mut input = client_frame(0x01, b"hel");
        input.extend(client_frame(0x89, b""));
        input.extend(client_frame(0x00, b"lo "));
        input.extend(client_frame(0x80, b"world"));
        for chunk in [1, 5, 1000] {
            assert_eq!(
                run(&input, chunk).unwrap(),
                vec!["ping:0", "text:hello world"]
            );
        }
    }

    #[test]
    fn idle_decoder_holds_no_heap() {
        let mut dec = Decoder::default();
        let mut input = client_frame(0x81, b"{}");
        dec.feed(&mut input, LIMITS, |_| Flow::Continue).unwrap();
        assert_eq!(dec.heap_bytes(), 0);
        assert!(!dec.has_partial());
    }

    #[test]
    fn a_frame_read_in_pieces_is_buffered_in_one_allocation() {
        // The whole frame is reserved once its header is in, on the buffer that is kept. Reads after
        // the first used to reserve it on a vector dropped at once, allocating the frame's size per
        // read while the kept buffer grew by doubling: the frame_codec fuzz target, which reads
        // 64 KiB frames byte by byte, ran at 50 inputs/s under AddressSanitizer because of it.
        let frame = client_frame(0x82, &[7u8; 1000]);
        let mut dec = Decoder::default();
        let mut got = 0;
        for (i, b) in frame.iter().enumerate() {
            let mut read = [*b];
            dec.feed(&mut read, LIMITS, |ev| {
                if let Event::Binary(p) = ev {
                    got = p.len();
                }
                Flow::Continue
            })
            .unwrap();
            if (7..frame.len() - 1).contains(&i) {
                // From the header's last byte (the 8th) on: one buffer of the frame's size (and the
                // boxed state that holds it).
                assert_eq!(
                    dec.heap_bytes(),
                    size_of::<Held>() + frame.len(),
                    "after {} bytes",
                    i + 1
                );
            }
        }
        assert_eq!(got, 1000);
        assert_eq!(dec.heap_bytes(), 0);
    }

    #[test]
    fn limits_are_enforced_on_the_header() {
        // 2^62 announced: rejected with only the header present.
        let mut huge = vec![0x82, 0x80 | 127];
        huge.extend_from_slice(&(1u64 << 62).to_be_bytes());
        huge.extend_from_slice(&[0, 0, 0, 0]);
        assert_eq!(run(&huge, 100), Err(DecodeError::TooBig));
        let big = client_frame(0x81, &[b'a'; 1025]);
        assert_eq!(run(&big[..20], 100), Err(DecodeError::TooBig));
        // Fragments adding up over the message limit.
        let mut frags = client_frame(0x01, &[b'a'; 1000]);
        frags.extend(client_frame(0x00, &[b'a'; 1000]));
        frags.extend(client_frame(0x80, &[b'a'; 1000]));
        assert_eq!(run(&frags, 4096), Err(DecodeError::TooBig));
    }

    #[test]
    fn protocol_violations_are_reported() {
        let unmasked = vec![0x81, 0x02, b'h', b'i'];
        assert!(matches!(run(&unmasked, 10), Err(DecodeError::Protocol(_))));
        assert!(matches!(
            run(&client_frame(0xC1, b"x"), 10),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            run(&client_frame(0x83, b"x"), 10),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            run(&client_frame(0x09, b"x"), 10),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            run(&client_frame(0x80, b"x"), 10),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            run(&client_frame(0x89, &[0; 126]), 200),
            Err(DecodeError::Protocol(_))
        ));
        let mut two_starts = client_frame(0x01, b"a");
        two_starts.extend(client_frame(0x81, b"b"));
        assert!(matches!(
            run(&two_starts, 10),
            Err(DecodeError::Protocol(_))
        ));
    }

    #[test]
    fn invalid_utf8_and_close_frames() {
        assert_eq!(
            run(&client_frame(0x81, &[0xff, 0xfe]), 10),
            Err(DecodeError::InvalidUtf8)
        );
        assert_eq!(
            run(&client_frame(0x88, &[0x03, 0xe8]), 10).unwrap(),
            vec!["close:Some(1000)"]
        );
        assert_eq!(
            run(&client_frame(0x88, b""), 10).unwrap(),
            vec!["close:None"]
        );
        assert!(matches!(
            run(&client_frame(0x88, &[0x03]), 10),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            run(&client_frame(0x88, &[0x03, 0xed]), 10),
            Err(DecodeError::Protocol(_))
        ));
        assert_eq!(
            run(&client_frame(0x88, &[0x03, 0xe8, 0xff]), 10),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn invalid_utf8_fails_at_the_fragment_that_holds_it() {
        // "caf" and the first byte of "é": valid so far. The next fragment cannot continue it, and the
        // error comes before the final fragment arrives.
        let mut input = client_frame(0x01, b"caf\xc3");
        input.extend(client_frame(0x00, b"\xff"));
        for chunk in [1, 1000] {
            assert_eq!(run(&input, chunk), Err(DecodeError::InvalidUtf8));
        }
        // Invalid in the first fragment already.
        assert_eq!(
            run(&client_frame(0x01, b"\xc0\xaf"), 100),
            Err(DecodeError::InvalidUtf8)
        );
    }

    #[test]
    fn characters_split_across_fragments_are_valid() {
        // The four bytes of U+1F600, one per fragment, then the rest of the text.
        let emoji = "\u{1f600}".as_bytes();
        let mut input = client_frame(0x01, &emoji[..1]);
        input.extend(client_frame(0x00, &emoji[1..2]));
        input.extend(client_frame(0x00, &emoji[2..3]));
        input.extend(client_frame(0x80, &[&emoji[3..], "é!".as_bytes()].concat()));
        assert_eq!(run(&input, 1000).unwrap(), vec!["text:\u{1f600}é!"]);
        // A character still incomplete when the message ends is invalid.
        let mut cut = client_frame(0x01, b"ok");
        cut.extend(client_frame(0x80, &emoji[..3]));
        assert_eq!(run(&cut, 1000), Err(DecodeError::InvalidUtf8));
    }

    #[test]
    fn binary_fragments_are_not_checked_as_text() {
        let mut input = client_frame(0x02, &[0xff]);
        input.extend(client_frame(0x80, &[0xc3]));
        assert_eq!(run(&input, 1000).unwrap(), vec!["bin:2"]);
    }

    #[test]
    fn unmasking_matches_the_bytewise_definition() {
        let mask = [0x12, 0x34, 0x56, 0x78];
        for len in 0..40 {
            let data: Vec<u8> = (0..len as u8).collect();
            let mut fast = data.clone();
            apply_mask(&mut fast, mask);
            let slow: Vec<u8> = data
                .iter()
                .enumerate()
                .map(|(i, b)| b ^ mask[i % 4])
                .collect();
            assert_eq!(fast, slow, "len {len}");
        }
    }

    #[test]
    fn lengths_must_be_minimal_with_the_top_bit_clear() {
        let masked = |second: u8, ext: &[u8]| {
            let mut f = vec![0x82, 0x80 | second];
            f.extend_from_slice(ext);
            f.extend_from_slice(&[0, 0, 0, 0]);
            f
        };
        // The most significant bit set: a protocol error, not "too big".
        for len in [1u64 << 63, u64::MAX] {
            assert!(matches!(
                run(&masked(127, &len.to_be_bytes()), 100),
                Err(DecodeError::Protocol(_))
            ));
        }
        // 2^63 - 1 and 2^62 are well-formed and over the limit.
        for len in [i64::MAX as u64, 1 << 62] {
            assert_eq!(
                run(&masked(127, &len.to_be_bytes()), 100),
                Err(DecodeError::TooBig)
            );
        }
        // Five bytes announced in the 16- and the 64-bit forms.
        assert!(matches!(
            run(&masked(126, &5u16.to_be_bytes()), 100),
            Err(DecodeError::Protocol(_))
        ));
        assert!(matches!(
            run(&masked(127, &5u64.to_be_bytes()), 100),
            Err(DecodeError::Protocol(_))
        ));
        // The shortest forms of 126 and 65536 bytes decode (the latter is over the limit).
        let mut ok = masked(126, &126u16.to_be_bytes());
        ok.extend_from_slice(&[0; 126]);
        assert_eq!(run(&ok, 1000).unwrap(), vec!["bin:126"]);
        assert_eq!(
            run(&masked(127, &65536u64.to_be_bytes()), 100),
            Err(DecodeError::TooBig)
        );
    }

    #[test]
    fn fragments_per_message_are_bounded() {
        let message = |continuations: usize| {
            let mut f = client_frame(0x01, b"a");
            for _ in 0..continuations {
                f.extend(client_frame(0x00, b""));
            }
            f.extend(client_frame(0x80, b"b"));
            f
        };
        // 16 frames in all: the first, 14 continuations and the final one.
        assert_eq!(run(&message(14), 1000).unwrap(), vec!["text:ab"]);
        assert_eq!(run(&message(15), 1000), Err(DecodeError::TooManyFragments));
        // The count starts again with every message.
        let mut two = message(14);
        two.extend(message(14));
        assert_eq!(run(&two, 7).unwrap(), vec!["text:ab", "text:ab"]);
    }

    #[test]
    fn nothing_after_close_is_decoded() {
        let mut input = client_frame(0x88, &[0x03, 0xe8]);
        input.extend(client_frame(0x81, b"late"));
        assert_eq!(run(&input, 1000).unwrap(), vec!["close:Some(1000)"]);
    }
}
