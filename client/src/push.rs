//! The broker-opened streams: the push stream (log entries and receipts, in order) and the urgent
//! stream (recall notices, which must not wait behind a backfill), and the broker's QUIC
//! datagrams (second copies of call rings), merged into the one event channel the app reads.
//!
//! What to read is decided by [`Streams`] and [`event`], plain code fed frames; the tasks below
//! only move bytes. The broker opens the streams right after WELCOME in an order QUIC does not
//! preserve, so neither stream is waited for before the other.

use herald_protocol::{Body, Frame, FrameCodec, SessionId, pb};
use tokio::sync::mpsc;
use tokio::task::JoinSet;
use tracing::{debug, warn};

use crate::reader::FrameReader;
use crate::resume::Input;
use crate::{ClientError, Event};

/// What a broker-opened stream carries, as its STREAM_OPEN said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum StreamKind {
    /// Log entries, RESYNC and receipts, in order, for the life of the session.
    Push,
    /// Notices that overtake the push stream: RECALL_NOTICE.
    Urgent,
    /// Not a stream: a QUIC datagram holding one frame, a second copy of a CALL_RING.
    Datagram,
}

/// Which broker-opened streams this session reads: at most one of each kind, each naming this
/// session.
#[derive(Debug)]
pub(crate) struct Streams {
    session: SessionId,
    push: bool,
    urgent: bool,
}

impl Streams {
    pub(crate) fn new(session: SessionId) -> Self {
        Self { session, push: false, urgent: false }
    }

    /// Decides whether to read a stream that began with `first`: its kind, or why it is to be
    /// ignored (the caller stops reading it). A stream of a kind this version does not know is
    /// ignored, as the spec requires, so a newer broker's extra streams cost nothing.
    pub(crate) fn admit(&mut self, first: &Frame) -> Result<StreamKind, String> {
        let open = match Body::decode(first) {
            Ok(Body::StreamOpen(open)) => open,
            Ok(other) => return Err(format!("the stream begins with {}, not STREAM_OPEN", other.frame_type())),
            Err(e) => return Err(format!("the stream's first frame does not decode: {e}")),
        };
        let (kind, seen) = match pb::stream_open::Kind::try_from(open.kind) {
            Ok(pb::stream_open::Kind::Push) => (StreamKind::Push, &mut self.push),
            Ok(pb::stream_open::Kind::Urgent) => (StreamKind::Urgent, &mut self.urgent),
            _ => return Err(format!("stream kind {} is not one this client knows", open.kind)),
        };
        if open.session_id != self.session.get() {
            return Err(format!("{kind:?} stream for session {}, not {}", open.session_id, self.session.get()));
        }
        if *seen {
            return Err(format!("a second {kind:?} stream"));
        }
        *seen = true;
        Ok(kind)
    }
}

/// The event a frame on a stream of `kind` carries, or `None` to skip it: a type this version
/// does not know (the spec requires skipping those, so newer brokers stay compatible), a body
/// that does not decode, or a type the protocol does not send on that stream.
pub(crate) fn event(kind: StreamKind, frame: &Frame) -> Option<Event> {
    match (kind, Body::decode(frame).ok()?) {
        (StreamKind::Push, Body::Delivery(pb::Delivery { entry: Some(entry) })) => Some(Event::Delivery(entry.into())),
        (StreamKind::Push, Body::Resync(resync)) => Some(Event::Resync { dropped_bytes: resync.dropped_bytes }),
        (StreamKind::Push, Body::Receipts(receipts)) => Some(Event::Receipts(receipts.into())),
        (StreamKind::Urgent, Body::RecallNotice(notice)) => Some(Event::Recalled(notice.into())),
        (StreamKind::Urgent, Body::DingNotice(notice)) => Some(Event::Ding(notice.into())),
        (StreamKind::Push, Body::DingUpdate(update)) => Some(Event::DingUpdate(update)),
        (StreamKind::Push, Body::KeysChanged(notice)) => Some(Event::KeysChanged(notice)),
        (StreamKind::Push, Body::Envelope(envelope)) => Some(Event::Envelope(envelope)),
        (kind, body) => crate::call::pushed(kind, body).map(Event::Call),
    }
}

/// Accepts the broker's unidirectional streams until the connection ends, and forwards the
/// events of those [`Streams`] admits.
///
/// The events channel is bounded: an app that stops reading events stops these readers, QUIC flow
/// control then stops the broker's writes, and the broker answers with RESYNC instead of
/// buffering without bound. The channel closes once the connection has ended and every reader has
/// stopped.
pub(crate) async fn read_broker_streams(
    conn: quinn::Connection,
    session: SessionId,
    max_frame: u32,
    events: mpsc::Sender<Input>,
) {
    tokio::spawn(read_datagrams(conn.clone(), max_frame, events.clone()));
    let mut streams = Streams::new(session);
    // Streams waiting for their first frame, read apart so a slow one holds up no other.
    let mut opening = JoinSet::new();
    loop {
        tokio::select! {
            // Cancel safety: quinn's accept futures take a stream only when they complete.
            accepted = conn.accept_uni() => match accepted {
                Ok(stream) => {
                    opening.spawn(first_frame(FrameReader::new(stream, FrameCodec::new(max_frame))));
                }
                Err(e) => {
                    debug!(error = %e, "no more broker streams");
                    return;
                }
            },
            Some(opened) = opening.join_next() => {
                let Ok((reader, first)) = opened else { continue };
                match first.map(|first| first.map(|frame| streams.admit(&frame))) {
                    Ok(Some(Ok(kind))) => {
                        // Detached: it ends with its stream, and must outlive this loop to deliver
                        // what arrived before the connection closed.
                        tokio::spawn(forward(reader, kind, events.clone()));
                    }
                    // Dropping the reader stops the stream.
                    Ok(Some(Err(reason))) => warn!(reason, "ignoring a broker stream"),
                    Ok(None) => debug!("a broker stream ended before STREAM_OPEN"),
                    Err(e) => debug!(error = %e, "a broker stream failed before STREAM_OPEN"),
                }
            }
        }
    }
}

async fn first_frame(mut reader: FrameReader) -> (FrameReader, Result<Option<Frame>, ClientError>) {
    let first = reader.next().await;
    (reader, first)
}

/// Forwards one stream's events until it ends or the app drops the channel.
async fn forward(mut reader: FrameReader, kind: StreamKind, events: mpsc::Sender<Input>) {
    loop {
        let frame = match reader.next().await {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                debug!(?kind, "the broker finished its stream");
                return;
            }
            Err(e) => {
                debug!(?kind, error = %e, "broker stream ended");
                return;
            }
        };
        let Some(event) = event(kind, &frame) else {
            debug!(?kind, frame_type = %frame.frame_type(), "skipping a broker stream frame");
            continue;
        };
        if events.send(Input::Event(event)).await.is_err() {
            return;
        }
    }
}

/// Forwards the events of the broker's datagrams until the connection ends or the app drops
/// the channel. Each datagram is one whole frame; anything else is skipped, as is a frame this
/// version does not expect in a datagram.
async fn read_datagrams(conn: quinn::Connection, max_frame: u32, events: mpsc::Sender<Input>) {
    let codec = FrameCodec::new(max_frame);
    loop {
        let datagram = match conn.read_datagram().await {
            Ok(datagram) => datagram,
            Err(e) => {
                debug!(error = %e, "no more broker datagrams");
                return;
            }
        };
        let Some(event) = datagram_event(&codec, &datagram) else {
            debug!(len = datagram.len(), "skipping a broker datagram");
            continue;
        };
        if events.send(Input::Event(event)).await.is_err() {
            return;
        }
    }
}

/// The event a datagram carries: exactly one whole frame of a type sent as a datagram.
fn datagram_event(codec: &FrameCodec, datagram: &[u8]) -> Option<Event> {
    let mut buf = bytes::BytesMut::from(datagram);
    let frame = codec.decode(&mut buf).ok()??;
    buf.is_empty().then(|| event(StreamKind::Datagram, &frame))?
}

#[cfg(test)]
mod tests {
    use herald_protocol::RequestId;

    use super::*;

    const SESSION: u64 = 7;

    fn open(kind: i32, session_id: u64) -> Frame {
        Frame::from_body(RequestId::NONE, &pb::StreamOpen { kind, session_id })
    }

    fn push() -> i32 {
        pb::stream_open::Kind::Push.into()
    }

    fn urgent() -> i32 {
        pb::stream_open::Kind::Urgent.into()
    }

    #[test]
    fn push_and_urgent_streams_are_read_in_either_order() {
        let mut streams = Streams::new(SessionId::new(SESSION));
        assert_eq!(streams.admit(&open(urgent(), SESSION)), Ok(StreamKind::Urgent));
        assert_eq!(streams.admit(&open(push(), SESSION)), Ok(StreamKind::Push));

        let mut streams = Streams::new(SessionId::new(SESSION));
        assert_eq!(streams.admit(&open(push(), SESSION)), Ok(StreamKind::Push));
        assert_eq!(streams.admit(&open(urgent(), SESSION)), Ok(StreamKind::Urgent));
    }

    #[test]
    fn a_second_stream_of_a_kind_is_ignored() {
        let mut streams = Streams::new(SessionId::new(SESSION));
        assert_eq!(streams.admit(&open(urgent(), SESSION)), Ok(StreamKind::Urgent));
        assert!(streams.admit(&open(urgent(), SESSION)).is_err());
        assert_eq!(streams.admit(&open(push(), SESSION)), Ok(StreamKind::Push));
        assert!(streams.admit(&open(push(), SESSION)).is_err());
    }

    #[test]
    fn streams_of_other_sessions_unknown_kinds_or_without_stream_open_are_ignored() {
        let mut streams = Streams::new(SessionId::new(SESSION));
        assert!(streams.admit(&open(push(), SESSION + 1)).is_err());
        assert!(streams.admit(&open(0, SESSION)).is_err());
        assert!(streams.admit(&open(99, SESSION)).is_err());
        assert!(streams.admit(&Frame::from_body(RequestId::NONE, &pb::Resync { dropped_bytes: 1 })).is_err());
        // None of those used up a kind.
        assert_eq!(streams.admit(&open(push(), SESSION)), Ok(StreamKind::Push));
    }

    #[test]
    fn each_stream_yields_only_its_own_frames() {
        let receipts = pb::Receipts {
            conversation_id: 3,
            messages: vec![pb::MessageReceipts { seq: 2, read_count: 1, delivered_count: 1, member_count: 2 }],
            recalls: vec![],
        };
        let notice = pb::RecallNotice {
            conversation_id: 3,
            seq: 2,
            event_seq: 4,
            recalled_by_user_id: "alice".into(),
            reason: pb::RecallReason::Recalled.into(),
        };
        let receipts = Frame::from_body(RequestId::NONE, &receipts);
        let notice = Frame::from_body(RequestId::NONE, &notice);

        assert!(matches!(event(StreamKind::Push, &receipts), Some(Event::Receipts(r)) if r.conversation_id == 3));
        assert!(matches!(
            event(StreamKind::Urgent, &notice),
            Some(Event::Recalled(n)) if n.seq == 2 && n.event_seq == 4 && n.recalled_by.as_deref() == Some("alice")
        ));
        assert_eq!(event(StreamKind::Push, &notice), None);
        assert_eq!(event(StreamKind::Urgent, &receipts), None);
    }

    #[test]
    fn unknown_and_malformed_frames_are_skipped() {
        let unknown = Frame::new(
            herald_protocol::FrameType::from_u16(0x7ff0),
            herald_protocol::Flags::EMPTY,
            RequestId::NONE,
            bytes::Bytes::new(),
        );
        assert_eq!(event(StreamKind::Push, &unknown), None);
        let malformed = Frame::new(
            herald_protocol::FrameType::RECEIPTS,
            herald_protocol::Flags::EMPTY,
            RequestId::NONE,
            bytes::Bytes::from_static(&[0xff, 0xff, 0xff]),
        );
        assert_eq!(event(StreamKind::Push, &malformed), None);
    }

    #[test]
    fn a_datagram_is_one_whole_ring_frame_or_nothing() {
        let codec = FrameCodec::default();
        let encode = |body: &dyn Fn() -> Frame| codec.encode_to_bytes(&body()).expect("encodes");
        let ring = encode(&|| Frame::from_body(RequestId::NONE, &pb::CallRing::default()));
        assert!(matches!(datagram_event(&codec, &ring), Some(Event::Call(crate::CallEvent::Ring(_)))));
        assert!(datagram_event(&codec, &ring[..ring.len() - 1]).is_none(), "truncated");
        let twice = [&ring[..], &ring[..]].concat();
        assert!(datagram_event(&codec, &twice).is_none(), "two frames in one datagram");
        let recall = encode(&|| Frame::from_body(RequestId::NONE, &pb::RecallNotice::default()));
        assert!(datagram_event(&codec, &recall).is_none(), "a recall never comes as a datagram");
        assert!(datagram_event(&codec, &[0xff; 3]).is_none());
    }
}
