//! The push stream: events the broker sends unasked, in order.

use herald_protocol::{Body, FrameCodec, SessionId, pb};
use tracing::{debug, warn};

use crate::reader::FrameReader;

/// Accepts the broker's push stream and reads it until the connection ends.
///
/// Protocol v1 defines no push events beyond STREAM_OPEN yet; frames of types this client does
/// not know are skipped, as the spec requires, so newer brokers stay compatible.
pub(crate) async fn read_push_streams(conn: quinn::Connection, session: SessionId) {
    let Ok(stream) = conn.accept_uni().await else { return };
    let mut reader = FrameReader::new(stream, FrameCodec::new(16 * 1024 * 1024));
    match reader.next().await {
        Ok(Some(frame)) => match Body::decode(&frame) {
            Ok(Body::StreamOpen(open))
                if open.kind() == pb::stream_open::Kind::Push && open.session_id == session.get() => {}
            other => {
                warn!(?other, "broker's first stream is not this session's push stream");
                return;
            }
        },
        _ => return,
    }
    while let Ok(Some(frame)) = reader.next().await {
        debug!(frame_type = %frame.frame_type(), "push frame");
    }
}
