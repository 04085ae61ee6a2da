//! The push stream: events the broker sends unasked, in order.

use herald_protocol::{Body, FrameCodec, SessionId, pb};
use tokio::sync::mpsc;
use tracing::{debug, warn};

use crate::Event;
use crate::reader::FrameReader;

/// Accepts the broker's push stream and forwards its events until the connection ends.
///
/// The events channel is bounded: an app that stops reading events stops this reader, QUIC flow
/// control then stops the broker's writes, and the broker answers with RESYNC instead of
/// buffering without bound. Frames of types this client does not know are skipped, as the spec
/// requires, so newer brokers stay compatible.
pub(crate) async fn read_push_streams(conn: quinn::Connection, session: SessionId, events: mpsc::Sender<Event>) {
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
        let event = match Body::decode(&frame) {
            Ok(Body::Delivery(pb::Delivery { entry: Some(entry) })) => Event::Delivery(entry.into()),
            Ok(Body::Resync(resync)) => Event::Resync { dropped_bytes: resync.dropped_bytes },
            _ => {
                debug!(frame_type = %frame.frame_type(), "skipping push frame");
                continue;
            }
        };
        if events.send(event).await.is_err() {
            return;
        }
    }
}
