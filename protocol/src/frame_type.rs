//! Frame types: which message a frame's body holds.

/// A frame type, as carried in the frame header.
///
/// An open newtype rather than an enum: a value this version does not know still decodes (and
/// re-encodes unchanged), so the receiver can answer UNKNOWN_FRAME_TYPE instead of failing to
/// parse the stream. The named values are defined with the bodies they carry in [`crate::Body`].
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct FrameType(u16);

impl FrameType {
    /// Wraps a raw frame type.
    pub const fn from_u16(raw: u16) -> Self {
        Self(raw)
    }

    /// The raw value, as it appears on the wire.
    pub const fn get(self) -> u16 {
        self.0
    }
}

impl std::fmt::Debug for FrameType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Display::fmt(self, f)
    }
}

impl std::fmt::Display for FrameType {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => write!(f, "UNKNOWN(0x{:04x})", self.0),
        }
    }
}
