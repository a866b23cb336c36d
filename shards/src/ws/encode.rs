//! Server frames built once into `Bytes`.
//!
//! A frame is serialised a single time, header included, into one `Bytes`; fan-out clones the handle
//! (a reference-count increment), never the payload, across connections and across shards. The payload
//! is written first after room reserved for the largest server header (10 bytes); the header is then
//! formatted right in front of it, so no copy is made to prepend it.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use tungstenite::protocol::frame::{
    FrameHeader,
    coding::{Control, Data, OpCode},
};

use super::CloseReason;

/// Largest header of an unmasked server frame: 2 bytes + 8 bytes of extended length.
const MAX_HEADER: usize = 10;

/// Writes one frame's payload, then seals it with its header.
#[derive(Debug)]
pub struct FrameBuilder {
    /// Header room followed by the payload written so far.
    buf: BytesMut,
}

impl FrameBuilder {
    /// A builder with room for about `payload_hint` bytes of payload.
    pub fn with_capacity(payload_hint: usize) -> Self {
        let mut buf = BytesMut::with_capacity(MAX_HEADER + payload_hint);
        buf.put_bytes(0, MAX_HEADER);
        FrameBuilder { buf }
    }

    /// The payload buffer to append to.
    pub fn payload(&mut self) -> &mut BytesMut {
        &mut self.buf
    }

    /// Payload bytes written so far.
    pub fn payload_len(&self) -> usize {
        self.buf.len() - MAX_HEADER
    }

    /// Seals the frame as a final frame of `opcode`.
    pub fn finish(mut self, opcode: OpCode) -> Bytes {
        let len = self.payload_len() as u64;
        let header = FrameHeader {
            opcode,
            ..FrameHeader::default()
        };
        let head_len = header.len(len);
        let start = MAX_HEADER - head_len;
        let mut head = &mut self.buf[start..MAX_HEADER];
        header
            .format(len, &mut head)
            .expect("header fits the reserved room");
        let mut frame = self.buf.freeze();
        frame.advance(start);
        frame
    }

    /// Seals the frame as a text frame.
    pub fn finish_text(self) -> Bytes {
        self.finish(OpCode::Data(Data::Text))
    }
}

/// A complete frame of `opcode` around `payload`.
pub fn frame(opcode: OpCode, payload: &[u8]) -> Bytes {
    let mut b = FrameBuilder::with_capacity(payload.len());
    b.payload().extend_from_slice(payload);
    b.finish(opcode)
}

/// A close frame carrying `reason`'s code and text.
pub fn close_frame(reason: CloseReason) -> Bytes {
    let mut b = FrameBuilder::with_capacity(2 + reason.text().len());
    b.payload().put_u16(reason.code());
    b.payload().extend_from_slice(reason.text().as_bytes());
    b.finish(OpCode::Control(Control::Close))
}

/// A close frame with `reason`'s code and a custom reason text (at most 123 bytes, cut beyond at a
/// character boundary: the reason must stay UTF-8, or the peer fails the connection with 1007).
pub fn close_frame_with(reason: CloseReason, text: &str) -> Bytes {
    let mut end = text.len().min(123);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    let text = &text.as_bytes()[..end];
    let mut b = FrameBuilder::with_capacity(2 + text.len());
    b.payload().put_u16(reason.code());
    b.payload().extend_from_slice(text);
    b.finish(OpCode::Control(Control::Close))
}

/// A close frame echoing the client's code (or none), as the reply to a client-initiated close.
pub fn close_reply(code: Option<u16>) -> Bytes {
    match code {
        Some(code) => frame(OpCode::Control(Control::Close), &code.to_be_bytes()),
        None => frame(OpCode::Control(Control::Close), &[]),
    }
}

/// The server's heartbeat ping (empty payload); shared, never allocated.
pub fn ping_frame() -> Bytes {
    Bytes::from_static(&[0x89, 0x00])
}

/// A pong echoing a ping's payload.
pub fn pong_frame(payload: &[u8]) -> Bytes {
    frame(OpCode::Control(Control::Pong), payload)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(frame: &[u8]) -> (FrameHeader, Vec<u8>) {
        let mut c = std::io::Cursor::new(frame);
        let (h, len) = FrameHeader::parse(&mut c).unwrap().unwrap();
        let start = c.position() as usize;
        assert_eq!(frame.len() - start, len as usize);
        (h, frame[start..].to_vec())
    }

    #[test]
    fn frames_of_every_length_format_round_trip() {
        for len in [0usize, 1, 125, 126, 65535, 65536, 100_000] {
            let payload = vec![b'x'; len];
            let f = frame(OpCode::Data(Data::Binary), &payload);
            let (h, p) = parse(&f);
            assert!(h.is_final && h.mask.is_none());
            assert_eq!(h.opcode, OpCode::Data(Data::Binary));
            assert_eq!(p, payload);
        }
    }

    #[test]
    fn builder_writes_payload_in_place() {
        let mut b = FrameBuilder::with_capacity(8);
        b.payload().extend_from_slice(b"{\"op\":1}");
        let f = b.finish_text();
        assert_eq!(&f[..], b"\x81\x08{\"op\":1}");
    }

    #[test]
    fn close_frames_carry_code_and_reason() {
        let f = close_frame(CloseReason::SlowConsumer);
        let (h, p) = parse(&f);
        assert_eq!(h.opcode, OpCode::Control(Control::Close));
        assert_eq!(u16::from_be_bytes([p[0], p[1]]), 4008);
        assert_eq!(&p[2..], b"slow consumer");
        assert_eq!(&close_reply(Some(1000))[..], &[0x88, 0x02, 0x03, 0xe8]);
        assert_eq!(&ping_frame()[..], &[0x89, 0x00]);
    }

    #[test]
    fn close_reason_text_is_cut_at_a_character_boundary() {
        // Found by fuzz/fuzz_targets/frame_codec.rs (fuzz/corpus/frame_codec/crash-close-reason-utf8):
        // the target turns the input after its two parameter bytes into text, lossily. 41 U+FFFD
        // (3 bytes each) and an `E` make 124 bytes; a cut at 123 bytes split the last character, and
        // the peer's decoder refused the close frame as invalid UTF-8.
        let input: &[u8] = b"\xff\xff\xff\xff\xff\xff\xff\x45\xff\xff\xff\xff\xff\xff\xff\xff\xff\
            \xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\xff\
            \xff\xff\xff\xff\xff\xff\xff\xff\xff";
        let text = String::from_utf8_lossy(&input[2..]);
        assert_eq!(text.len(), 124);
        for reason in CloseReason::ALL {
            let f = close_frame_with(reason, &text);
            let (h, p) = parse(&f);
            assert_eq!(h.opcode, OpCode::Control(Control::Close));
            assert_eq!(u16::from_be_bytes([p[0], p[1]]), reason.code());
            let shown = std::str::from_utf8(&p[2..]).expect("reason is UTF-8");
            assert_eq!(shown.len(), 121);
            assert!(text.starts_with(shown));

            // The decoder, as the peer, accepts it once masked.
            let mut client = vec![0x88, 0x80 | p.len() as u8, 0, 0, 0, 0];
            client.extend_from_slice(&p);
            let limits = crate::ws::decode::DecodeLimits {
                max_frame_bytes: 125,
                max_message_bytes: 125,
                max_fragments: 1,
            };
            let mut code = None;
            crate::ws::decode::Decoder::default()
                .feed(&mut client, limits, |ev| {
                    if let crate::ws::decode::Event::Close(c) = ev {
                        code = c;
                    }
                    crate::ws::decode::Flow::Stop
                })
                .expect("the close frame decodes");
            assert_eq!(code, Some(reason.code()));
        }
        let ascii = "a".repeat(200);
        assert_eq!(
            close_frame_with(CloseReason::Restart, &ascii).len(),
            2 + 125
        );
    }
}
