//! Getting frames to sessions: the registry of live device sessions, their byte-bounded push
//! queues, and the reply channel of each session's control stream.

mod push;
mod registry;

pub use push::{PushBatch, PushQueue, PushReceiver, push_queue};
pub use registry::{DeviceSession, SessionRegistry};

use bytes::Bytes;
use herald_protocol::{Body, Frame, FrameCodec, OrgId, RequestId, UserId};
use tokio::sync::mpsc;

/// Encodes a whole frame once, however many sessions it is then queued to.
pub fn encode_frame(frame: &Frame) -> Bytes {
    // Every frame the broker pushes is far below the default maximum.
    FrameCodec::default().encode_to_bytes(frame).unwrap_or_default()
}

/// Encodes `body` as a pushed frame (request id 0: it answers no request), once.
pub fn encode_push(body: impl Into<Body>) -> Bytes {
    encode_frame(&body.into().into_frame(RequestId::NONE))
}

/// Which of a session's server-opened streams a frame travels on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// The push stream: log entries in sequence order, receipts, RESYNC.
    Push,
    /// The urgent stream: notices (recalls, later DINGs and rings) that must not wait behind a
    /// backlog on the push stream.
    Urgent,
    /// QUIC datagrams: a second, unreliable copy of a signal that also goes on the urgent
    /// stream, for sessions whose connection takes datagrams. On a lossy network the copy
    /// arrives while the stream's lost packet waits for retransmission; when it is lost or
    /// dropped nothing is owed, the stream copy still comes.
    Datagram,
}

impl Lane {
    /// Every lane, in index order.
    pub const ALL: [Lane; 3] = [Lane::Push, Lane::Urgent, Lane::Datagram];
}

/// The fan-out seam: shards hand every committed entry's frame to this, once. The broker's own
/// implementation is the local [`SessionRegistry`]; a cluster mode can put one in front of a
/// message bus that reaches sessions on other nodes, without touching the shards.
pub trait FanOut: Send + Sync + std::fmt::Debug + 'static {
    /// Queues `frame` on `lane` to every online device of every recipient. Returns (queued,
    /// dropped).
    fn fan_out(&self, org: &OrgId, recipients: &[UserId], frame: &Bytes, lane: Lane) -> (usize, usize);
}

impl FanOut for SessionRegistry {
    fn fan_out(&self, org: &OrgId, recipients: &[UserId], frame: &Bytes, lane: Lane) -> (usize, usize) {
        SessionRegistry::fan_out(self, org, recipients, frame, lane)
    }
}

/// Where a request's answer goes: its session's control-stream writer. Each session has at most
/// `max_inflight_requests` answers outstanding, which bounds this channel.
#[derive(Debug, Clone)]
pub struct ReplyTo(mpsc::UnboundedSender<Frame>);

impl ReplyTo {
    /// A reply channel and its receiving end.
    pub fn channel() -> (ReplyTo, mpsc::UnboundedReceiver<Frame>) {
        let (tx, rx) = mpsc::unbounded_channel();
        (ReplyTo(tx), rx)
    }

    /// Sends an answer; if the session is gone, the answer is dropped.
    pub fn send(&self, frame: Frame) {
        let _ = self.0.send(frame);
    }
}
