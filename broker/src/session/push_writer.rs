//! The push stream's writer: one task per session that drains its push queue in batches, so a
//! burst of deliveries costs one stream write, and turns an overflow into RESYNC; and the
//! datagram writer, which sends each queued frame as one QUIC datagram.

use bytes::Bytes;
use herald_protocol::pb;
use tracing::debug;

use crate::fanout::{PushBatch, PushReceiver, encode_push};
use crate::observe::names;

/// Most bytes taken from the queue for one write.
const MAX_WRITE: usize = 256 * 1024;

/// Writes queued deliveries to the push stream until the queue's producers are gone or the
/// stream fails.
pub(crate) async fn write_pushes(mut stream: quinn::SendStream, mut queue: PushReceiver) {
    while let Some(batch) = queue.next_batch(MAX_WRITE).await {
        let mut chunks = match batch {
            PushBatch::Frames(frames) => frames,
            PushBatch::Resync { dropped_bytes } => {
                metrics::counter!(names::RESYNCS).increment(1);
                vec![resync_frame(dropped_bytes)]
            }
        };
        if let Err(e) = stream.write_all_chunks(&mut chunks).await {
            debug!(error = %e, "push stream closed");
            return;
        }
    }
}

/// Sends queued frames as QUIC datagrams until the queue's producers are gone or the connection
/// is lost. A frame the path cannot carry is skipped, and an overflow of the queue is forgotten:
/// every datagram copies a signal that also goes on the urgent stream.
pub(crate) async fn write_datagrams(conn: quinn::Connection, mut queue: PushReceiver) {
    while let Some(batch) = queue.next_batch(MAX_WRITE).await {
        let PushBatch::Frames(frames) = batch else { continue };
        for frame in frames.into_iter().filter(|f| !f.is_empty()) {
            match conn.send_datagram(frame) {
                Ok(()) => metrics::counter!(names::DATAGRAMS_SENT).increment(1),
                Err(quinn::SendDatagramError::ConnectionLost(_)) => return,
                Err(e) => debug!(error = %e, "a datagram was not sent"),
            }
        }
    }
}

fn resync_frame(dropped_bytes: u64) -> Bytes {
    encode_push(pb::Resync { dropped_bytes })
}
