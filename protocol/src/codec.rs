//! The streaming frame codec: bytes in, frames out, and back.

use bytes::{Buf, BufMut, Bytes, BytesMut};

use crate::{Flags, Frame, FrameType, HEADER_LEN, RequestId};

/// The largest frame body either side accepts unless configured otherwise: 1 MiB.
pub const DEFAULT_MAX_FRAME_LEN: u32 = 1024 * 1024;

/// A frame that cannot be carried. Either way the stream cannot be trusted past this point:
/// the receiver closes the connection with FRAME_TOO_LARGE.
#[derive(Debug, thiserror::Error, PartialEq, Eq, Clone, Copy)]
pub enum FrameError {
    /// A header announced, or a sender tried to write, a body longer than the limit.
    #[error("frame body of {len} bytes exceeds the limit of {max} bytes")]
    TooLarge {
        /// The announced or attempted body length.
        len: u64,
        /// The limit in force.
        max: u32,
    },
}

/// Splits a byte stream into frames and writes frames into one.
///
/// Sans-IO: the caller owns the buffer, appends whatever its transport read, and calls
/// [`FrameCodec::decode`] until it returns `Ok(None)`. The body length is checked against the
/// limit before any allocation, so a hostile header cannot make the receiver reserve memory.
#[derive(Debug, Clone, Copy)]
pub struct FrameCodec {
    max_frame_len: u32,
}

impl Default for FrameCodec {
    fn default() -> Self {
        Self::new(DEFAULT_MAX_FRAME_LEN)
    }
}

impl FrameCodec {
    /// A codec that accepts bodies of at most `max_frame_len` bytes.
    pub const fn new(max_frame_len: u32) -> Self {
        Self { max_frame_len }
    }

    /// The body-length limit in force.
    pub const fn max_frame_len(&self) -> u32 {
        self.max_frame_len
    }

    /// Takes the next whole frame off the front of `buf`.
    ///
    /// Returns `Ok(None)` when `buf` holds less than a whole frame; the caller reads more and
    /// calls again. Bytes of an incomplete frame stay in `buf`.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] as soon as a header announces a body over the limit.
    pub fn decode(&self, buf: &mut BytesMut) -> Result<Option<Frame>, FrameError> {
        let Some(mut header) = buf.get(..HEADER_LEN) else {
            return Ok(None);
        };
        let body_len = header.get_u32();
        let frame_type = FrameType::from_u16(header.get_u16());
        let flags = Flags::from_bits(header.get_u16());
        let request_id = RequestId::new(header.get_u32());
        if body_len > self.max_frame_len {
            return Err(FrameError::TooLarge { len: body_len.into(), max: self.max_frame_len });
        }
        // The check above bounds body_len, so this cannot overflow even on 32-bit targets.
        let frame_len = HEADER_LEN + body_len as usize;
        if buf.len() < frame_len {
            buf.reserve(frame_len - buf.len());
            return Ok(None);
        }
        buf.advance(HEADER_LEN);
        let body = buf.split_to(frame_len - HEADER_LEN).freeze();
        Ok(Some(Frame::new(frame_type, flags, request_id, body)))
    }

    /// Appends `frame` to `buf`.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] if the body exceeds the limit; `buf` is then left unchanged.
    pub fn encode(&self, frame: &Frame, buf: &mut BytesMut) -> Result<(), FrameError> {
        let body_len = u32::try_from(frame.body().len())
            .ok()
            .filter(|len| *len <= self.max_frame_len)
            .ok_or(FrameError::TooLarge { len: frame.body().len() as u64, max: self.max_frame_len })?;
        buf.reserve(frame.wire_len());
        buf.put_u32(body_len);
        buf.put_u16(frame.frame_type().get());
        buf.put_u16(frame.flags().bits());
        buf.put_u32(frame.request_id().get());
        buf.put_slice(frame.body());
        Ok(())
    }

    /// The whole frame as one buffer, for queueing the same bytes to many streams.
    ///
    /// # Errors
    /// [`FrameError::TooLarge`] if the body exceeds the limit.
    pub fn encode_to_bytes(&self, frame: &Frame) -> Result<Bytes, FrameError> {
        let mut buf = BytesMut::with_capacity(frame.wire_len());
        self.encode(frame, &mut buf)?;
        Ok(buf.freeze())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use proptest::prelude::*;

    fn frame(body: &'static [u8]) -> Frame {
        Frame::new(FrameType::PING, Flags::MORE, RequestId::new(0x0102_0304), Bytes::from_static(body))
    }

    #[test]
    fn header_layout_is_big_endian_length_type_flags_request_id() {
        let mut buf = BytesMut::new();
        FrameCodec::default().encode(&frame(b"\x08\x2a"), &mut buf).expect("fits");
        assert_eq!(&buf[..], b"\x00\x00\x00\x02\x00\x04\x00\x01\x01\x02\x03\x04\x08\x2a");
    }

    #[test]
    fn partial_input_needs_more_bytes_and_keeps_them() {
        let codec = FrameCodec::default();
        let mut whole = BytesMut::new();
        codec.encode(&frame(b"abc"), &mut whole).expect("fits");
        for cut in 0..whole.len() {
            let mut part = BytesMut::from(&whole[..cut]);
            assert_eq!(codec.decode(&mut part), Ok(None), "cut at {cut}");
            assert_eq!(part.len(), cut);
        }
    }

    #[test]
    fn oversize_header_is_refused_before_the_body_arrives() {
        let codec = FrameCodec::new(16);
        let mut buf = BytesMut::from(&b"\x00\x00\x00\x11\x00\x04\x00\x00\x00\x00\x00\x01"[..]);
        assert_eq!(codec.decode(&mut buf), Err(FrameError::TooLarge { len: 17, max: 16 }));
        let mut huge = BytesMut::from(&b"\xff\xff\xff\xff\x00\x04\x00\x00\x00\x00\x00\x01"[..]);
        assert!(matches!(FrameCodec::default().decode(&mut huge), Err(FrameError::TooLarge { .. })));
        assert!(huge.capacity() < 64 * 1024, "no allocation for a refused length");
    }

    #[test]
    fn encode_refuses_oversize_body_and_leaves_buffer_alone() {
        let mut buf = BytesMut::new();
        assert_eq!(FrameCodec::new(2).encode(&frame(b"abc"), &mut buf), Err(FrameError::TooLarge { len: 3, max: 2 }));
        assert!(buf.is_empty());
    }

    #[test]
    fn a_valid_frame_followed_by_garbage_decodes_the_frame_first() {
        let codec = FrameCodec::new(64);
        let mut buf = BytesMut::new();
        codec.encode(&frame(b"ok"), &mut buf).expect("fits");
        buf.extend_from_slice(&[0xff; 12]);
        assert_eq!(codec.decode(&mut buf), Ok(Some(frame(b"ok"))));
        assert!(codec.decode(&mut buf).is_err());
    }

    proptest! {
        /// Any bytes, fed in any chunking, give frames, "need more" or a typed error: never a panic.
        #[test]
        fn arbitrary_bytes_never_panic(bytes: Vec<u8>, chunk in 1usize..64) {
            let codec = FrameCodec::new(4096);
            let mut buf = BytesMut::new();
            'feed: for piece in bytes.chunks(chunk) {
                buf.extend_from_slice(piece);
                loop {
                    match codec.decode(&mut buf) {
                        Ok(Some(_)) => continue,
                        Ok(None) => break,
                        Err(_) => break 'feed,
                    }
                }
            }
        }

        /// A stream of frames decodes back to the same frames however the bytes are split.
        #[test]
        fn frames_survive_any_chunking(
            frames in proptest::collection::vec((any::<u16>(), any::<u16>(), any::<u32>(), proptest::collection::vec(any::<u8>(), 0..300)), 0..8),
            chunk in 1usize..100,
        ) {
            let codec = FrameCodec::default();
            let frames: Vec<Frame> = frames.into_iter()
                .map(|(t, f, r, b)| Frame::new(FrameType::from_u16(t), Flags::from_bits(f), RequestId::new(r), b.into()))
                .collect();
            let mut wire = BytesMut::new();
            for f in &frames {
                codec.encode(f, &mut wire).expect("fits");
            }
            let mut buf = BytesMut::new();
            let mut out = Vec::new();
            for piece in wire.chunks(chunk) {
                buf.extend_from_slice(piece);
                while let Some(f) = codec.decode(&mut buf).expect("valid stream") {
                    out.push(f);
                }
            }
            prop_assert_eq!(out, frames);
            prop_assert!(buf.is_empty());
        }
    }
}
