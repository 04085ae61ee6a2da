//! The frame: a fixed header plus an opaque body.

use bytes::Bytes;

use crate::{FrameBody, FrameType};

/// Length of the fixed frame header: body length (u32), frame type (u16), flags (u16) and
/// request id (u32), all big-endian.
pub const HEADER_LEN: usize = 12;

/// Correlates a response with its request on the control stream.
///
/// The client picks a fresh id per request; 0 means "not a response" (pushed events, and the
/// ERROR a broker sends before closing a connection).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub struct RequestId(u32);

impl RequestId {
    /// The id of frames that answer no request.
    pub const NONE: RequestId = RequestId(0);

    /// Wraps a raw id.
    pub const fn new(id: u32) -> Self {
        Self(id)
    }

    /// The raw id, as it appears on the wire.
    pub const fn get(self) -> u32 {
        self.0
    }
}

impl std::fmt::Display for RequestId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.0.fmt(f)
    }
}

/// Per-frame flag bits. Bits this version does not define are carried through untouched and
/// ignored, so a newer peer can set them without breaking an older one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Flags(u16);

impl Flags {
    /// No flags set.
    pub const EMPTY: Flags = Flags(0);
    /// More response frames with the same request id follow this one (paged or streamed answers).
    pub const MORE: Flags = Flags(0x0001);

    /// Wraps raw flag bits.
    pub const fn from_bits(bits: u16) -> Self {
        Self(bits)
    }

    /// The raw bits, as they appear on the wire.
    pub const fn bits(self) -> u16 {
        self.0
    }

    /// Whether every bit of `other` is set in `self`.
    pub const fn contains(self, other: Flags) -> bool {
        self.0 & other.0 == other.0
    }
}

impl std::ops::BitOr for Flags {
    type Output = Flags;

    fn bitor(self, rhs: Flags) -> Flags {
        Flags(self.0 | rhs.0)
    }
}

/// One frame as it travels on a stream: its header fields and its still-encoded body.
///
/// The body is [`Bytes`], so a frame encoded once can be queued to many connections by reference
/// count rather than by copy.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Frame {
    frame_type: FrameType,
    flags: Flags,
    request_id: RequestId,
    body: Bytes,
}

impl Frame {
    /// Builds a frame from its parts. The body is not checked against the frame type.
    pub fn new(frame_type: FrameType, flags: Flags, request_id: RequestId, body: Bytes) -> Self {
        Self { frame_type, flags, request_id, body }
    }

    /// Encodes a typed message into a frame of its type.
    pub fn from_body<B: FrameBody>(request_id: RequestId, body: &B) -> Self {
        Self::new(B::FRAME_TYPE, Flags::EMPTY, request_id, body.encode_to_vec().into())
    }

    /// Which message the body holds.
    pub fn frame_type(&self) -> FrameType {
        self.frame_type
    }

    /// The header's flag bits.
    pub fn flags(&self) -> Flags {
        self.flags
    }

    /// The request this frame answers, or [`RequestId::NONE`].
    pub fn request_id(&self) -> RequestId {
        self.request_id
    }

    /// The encoded protobuf body.
    pub fn body(&self) -> &Bytes {
        &self.body
    }

    /// The whole frame's length on the wire, header included.
    pub fn wire_len(&self) -> usize {
        HEADER_LEN + self.body.len()
    }
}
