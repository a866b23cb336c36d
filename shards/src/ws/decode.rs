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
mod tests;
