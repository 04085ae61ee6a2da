//! Reading frames from a QUIC receive stream.

use bytes::BytesMut;
use herald_protocol::{Frame, FrameCodec};

use crate::ClientError;

/// Largest chunk taken from the stream at once.
const READ_CHUNK: usize = 64 * 1024;

/// A receive stream plus the bytes of a frame not yet complete.
#[derive(Debug)]
pub(crate) struct FrameReader {
    stream: quinn::RecvStream,
    codec: FrameCodec,
    buf: BytesMut,
}

impl FrameReader {
    pub(crate) fn new(stream: quinn::RecvStream, codec: FrameCodec) -> Self {
        Self { stream, codec, buf: BytesMut::new() }
    }

    /// The next whole frame, or `None` once the broker has finished the stream.
    ///
    /// # Cancel safety
    /// Cancel-safe: bytes read before cancellation stay buffered for the next call.
    pub(crate) async fn next(&mut self) -> Result<Option<Frame>, ClientError> {
        loop {
            if let Some(frame) = self.codec.decode(&mut self.buf).map_err(|e| ClientError::Protocol(e.to_string()))? {
                return Ok(Some(frame));
            }
            match self.stream.read_chunk(READ_CHUNK, true).await {
                Ok(Some(chunk)) => self.buf.extend_from_slice(&chunk.bytes),
                Ok(None) if self.buf.is_empty() => return Ok(None),
                Ok(None) => return Err(ClientError::Protocol("stream ended inside a frame".into())),
                Err(quinn::ReadError::ConnectionLost(e)) => return Err(ClientError::from_connection(e)),
                Err(e) => return Err(ClientError::Protocol(format!("stream read failed: {e}"))),
            }
        }
    }
}
