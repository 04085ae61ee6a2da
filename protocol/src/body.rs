//! Typed frame bodies: the frame type table and the messages each type carries.

use bytes::Bytes;
use prost::Message;

use crate::{Flags, Frame, FrameType, RequestId, pb};

/// A protobuf message that is the body of exactly one frame type.
pub trait FrameBody: Message + Default + Sized {
    /// The frame type whose body this message is.
    const FRAME_TYPE: FrameType;
}

/// Why a frame's body could not be turned into a typed message.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum BodyError {
    /// The frame type is not one this protocol version defines.
    #[error("unknown frame type {0}")]
    UnknownFrameType(FrameType),
    /// The body is not a valid protobuf encoding of the message its type names.
    #[error("malformed {frame_type} body: {reason}")]
    Malformed {
        /// The frame type whose body failed to decode.
        frame_type: FrameType,
        /// What prost reported.
        reason: String,
    },
    /// A typed decode asked for one frame type but the frame holds another.
    #[error("expected a {expected} frame, got {actual}")]
    WrongType {
        /// The type the caller asked for.
        expected: FrameType,
        /// The type the frame holds.
        actual: FrameType,
    },
}

/// Declares every frame type once: its name, wire value and body message. Everything that must
/// agree with that table (the `FrameType` constants and names, the `Body` enum and its codec, the
/// `FrameBody` impls) is generated from it, so adding a frame type is one line.
macro_rules! frame_types {
    ($( $(#[$doc:meta])* $konst:ident = $value:literal => $variant:ident($msg:ty), )+) => {
        impl FrameType {
            $( $(#[$doc])* pub const $konst: FrameType = FrameType::from_u16($value); )+

            /// Every frame type this version defines, in wire-value order.
            pub const ALL: &'static [FrameType] = &[$(FrameType::$konst),+];

            /// The type's name in docs/PROTOCOL.md, or `None` for a type this version lacks.
            pub const fn name(self) -> Option<&'static str> {
                match self.get() {
                    $( $value => Some(stringify!($konst)), )+
                    _ => None,
                }
            }
        }

        /// A decoded frame body: one variant per frame type.
        #[derive(Debug, Clone, PartialEq)]
        #[cfg_attr(test, derive(proptest_derive::Arbitrary, serde::Serialize))]
        #[cfg_attr(test, serde(untagged))]
        #[allow(missing_docs)]
        pub enum Body {
            $( $variant($msg), )+
        }

        impl Body {
            /// The frame type that carries this body.
            pub fn frame_type(&self) -> FrameType {
                match self {
                    $( Body::$variant(_) => FrameType::$konst, )+
                }
            }

            /// Decodes a frame's body according to its frame type.
            ///
            /// # Errors
            /// [`BodyError::UnknownFrameType`] for a type this version does not define, and
            /// [`BodyError::Malformed`] for bytes that are not the message the type names.
            pub fn decode(frame: &Frame) -> Result<Body, BodyError> {
                let body = frame.body().clone();
                match frame.frame_type() {
                    $( FrameType::$konst => decode_as::<$msg>(body).map(Body::$variant), )+
                    other => Err(BodyError::UnknownFrameType(other)),
                }
            }

            /// Encodes this body into a frame with the given request id and no flags.
            pub fn into_frame(&self, request_id: RequestId) -> Frame {
                let bytes: Bytes = match self {
                    $( Body::$variant(m) => m.encode_to_vec().into(), )+
                };
                Frame::new(self.frame_type(), Flags::EMPTY, request_id, bytes)
            }
        }

        $(
            impl FrameBody for $msg {
                const FRAME_TYPE: FrameType = FrameType::$konst;
            }

            impl From<$msg> for Body {
                fn from(m: $msg) -> Body {
                    Body::$variant(m)
                }
            }
        )+
    };
}

frame_types! {
    /// Client to broker: opens a session (protocol version, token, device).
    HELLO = 0x0001 => Hello(pb::Hello),
    /// Broker to client: the session is open.
    WELCOME = 0x0002 => Welcome(pb::Welcome),
    /// Broker to client: a request failed, or (request id 0) the connection is closing.
    ERROR = 0x0003 => Error(pb::Error),
    /// Client to broker: liveness and round-trip probe.
    PING = 0x0004 => Ping(pb::Ping),
    /// Broker to client: the answer to PING.
    PONG = 0x0005 => Pong(pb::Pong),
    /// Broker to client: first frame of every broker-opened stream, naming its purpose.
    STREAM_OPEN = 0x0006 => StreamOpen(pb::StreamOpen),
    /// Client to broker: a fresh token for the open session.
    REAUTH = 0x0007 => Reauth(pb::Reauth),
    /// Broker to client: the session runs under the new token.
    REAUTHED = 0x0008 => Reauthed(pb::Reauthed),
    /// Client to broker: create a group.
    CREATE_GROUP = 0x0101 => CreateGroup(pb::CreateGroup),
    /// Client to broker: the direct conversation with a user, created on first use.
    OPEN_DIRECT = 0x0102 => OpenDirect(pb::OpenDirect),
    /// Broker to client: a conversation, answering CREATE_GROUP and OPEN_DIRECT.
    CONVERSATION = 0x0103 => Conversation(pb::Conversation),
    /// Client to broker: add and remove group members.
    UPDATE_MEMBERS = 0x0104 => UpdateMembers(pb::UpdateMembers),
    /// Client to broker: leave a group.
    LEAVE = 0x0105 => Leave(pb::Leave),
    /// Client to broker: rename a group.
    RENAME = 0x0106 => Rename(pb::Rename),
    /// Client to broker: change a member's role or transfer ownership.
    SET_ROLE = 0x0107 => SetRole(pb::SetRole),
    /// Broker to client: a membership change is durable with this sequence number.
    SEQUENCED = 0x0108 => Sequenced(pb::Sequenced),
    /// Client to broker: change a conversation's settings (receipts, retention).
    UPDATE_SETTINGS = 0x0109 => UpdateSettings(pb::UpdateSettings),
    /// Client to broker: post a message.
    SEND = 0x0110 => Send(pb::Send),
    /// Broker to client: the message is durable with this sequence number.
    SEND_ACK = 0x0111 => SendAck(pb::SendAck),
    /// Broker to client (push stream): a new log entry.
    DELIVERY = 0x0112 => Delivery(pb::Delivery),
    /// Client to broker: read a page of a conversation's log.
    HISTORY = 0x0113 => History(pb::History),
    /// Broker to client: a page of log entries.
    HISTORY_PAGE = 0x0114 => HistoryPage(pb::HistoryPage),
    /// Client to broker: which conversations have entries newer than my cursors?
    SYNC = 0x0115 => Sync(pb::Sync),
    /// Broker to client: the conversations with newer entries.
    SYNC_STATE = 0x0116 => SyncState(pb::SyncState),
    /// Broker to client (push stream): deliveries were dropped; sync from the log.
    RESYNC = 0x0117 => Resync(pb::Resync),
    /// Client to broker: list my conversations.
    LIST_CONVERSATIONS = 0x0118 => ListConversations(pb::ListConversations),
    /// Broker to client: a page of conversations.
    CONVERSATION_LIST = 0x0119 => ConversationList(pb::ConversationList),
    /// Client to broker: list a conversation's members.
    LIST_MEMBERS = 0x011a => ListMembers(pb::ListMembers),
    /// Broker to client: a page of members.
    MEMBER_PAGE = 0x011b => MemberPage(pb::MemberPage),
    /// Client to broker: append signed membership changes to a conversation's chain.
    MEMBERSHIP_APPEND = 0x011c => MembershipAppend(pb::MembershipAppend),
    /// Client to broker: read a page of a conversation's signed membership chain.
    MEMBERSHIP_CHAIN = 0x011d => MembershipChain(pb::MembershipChain),
    /// Broker to client: a page of signed membership changes.
    MEMBERSHIP_CHAIN_PAGE = 0x011e => MembershipChainPage(pb::MembershipChainPage),
    /// Client to broker: move this device's delivered and read cursors.
    MARK = 0x0120 => Mark(pb::Mark),
    /// Broker to client: the cursors after a MARK.
    CURSORS = 0x0121 => Cursors(pb::Cursors),
    /// Broker to client (push stream): coalesced receipt counts for the user's messages.
    RECEIPTS = 0x0122 => Receipts(pb::Receipts),
    /// Client to broker: a message's receipt counts and who has or has not read it.
    RECEIPT_QUERY = 0x0123 => ReceiptQuery(pb::ReceiptQuery),
    /// Broker to client: counts and a page of users.
    RECEIPT_PAGE = 0x0124 => ReceiptPage(pb::ReceiptPage),
    /// Client to broker: recall a message.
    RECALL = 0x0130 => Recall(pb::Recall),
    /// Broker to client (urgent stream): a message was recalled; delete it now.
    RECALL_NOTICE = 0x0131 => RecallNotice(pb::RecallNotice),
    /// Broker to client: a message is held for scheduled delivery (or its schedule was cancelled).
    SCHEDULED = 0x0132 => Scheduled(pb::Scheduled),
    /// Client to broker: move or cancel a scheduled message.
    RESCHEDULE = 0x0133 => Reschedule(pb::Reschedule),
    /// Client to broker: this device's signed key bundle, for the key directory.
    KEYS_PUBLISH = 0x0301 => KeysPublish(pb::KeysPublish),
    /// Broker to client: the bundle is stored.
    KEYS_PUBLISHED = 0x0302 => KeysPublished(pb::KeysPublished),
    /// Client to broker: the key bundles of users' devices.
    KEYS_QUERY = 0x0303 => KeysQuery(pb::KeysQuery),
    /// Broker to client: the devices' key bundles.
    KEYS = 0x0304 => Keys(pb::Keys),
    /// Broker to client (push stream): a device published new keys.
    KEYS_CHANGED = 0x0305 => KeysChanged(pb::KeysChanged),
    /// Client to broker: sealed envelopes for devices' mailboxes.
    ENVELOPES_SEND = 0x0310 => EnvelopesSend(pb::EnvelopesSend),
    /// Broker to client: the envelopes are stored.
    ENVELOPES_STORED = 0x0311 => EnvelopesStored(pb::EnvelopesStored),
    /// Broker to client (push stream, and in ENVELOPE_PAGE): one envelope of this device's mailbox.
    ENVELOPE = 0x0312 => Envelope(pb::Envelope),
    /// Client to broker: a page of this device's mailbox.
    ENVELOPES_FETCH = 0x0313 => EnvelopesFetch(pb::EnvelopesFetch),
    /// Broker to client: the page.
    ENVELOPE_PAGE = 0x0314 => EnvelopePage(pb::EnvelopePage),
    /// Client to broker: envelopes that may leave this device's mailbox.
    ENVELOPES_ACK = 0x0315 => EnvelopesAck(pb::EnvelopesAck),
    /// Broker to client: how many left it.
    ENVELOPES_ACKED = 0x0316 => EnvelopesAcked(pb::EnvelopesAcked),
    /// Client to broker: start a call and ring its invitees.
    CALL_START = 0x0401 => CallStart(pb::CallStart),
    /// Broker to client: this device is in the call, with the first page of participants.
    CALL_JOINED = 0x0402 => CallJoined(pb::CallJoined),
    /// Client to broker: join, accept a ring or rejoin a call.
    CALL_JOIN = 0x0403 => CallJoin(pb::CallJoin),
    /// Client to broker: decline a ring.
    CALL_DECLINE = 0x0404 => CallDecline(pb::CallDecline),
    /// Client to broker: leave a call.
    CALL_LEAVE = 0x0405 => CallLeave(pb::CallLeave),
    /// Client to broker (host): end a call for everyone.
    CALL_END = 0x0406 => CallEnd(pb::CallEnd),
    /// Client to broker: this device's mute state and hand.
    CALL_SET_SELF = 0x0407 => CallSetSelf(pb::CallSetSelf),
    /// Client to broker (host, co-host): mute, remove, lock, transfer, co-hosts, recording.
    CALL_HOST_CONTROL = 0x0408 => CallHostControl(pb::CallHostControl),
    /// Client to broker: start, stop or take over the screen share.
    CALL_SHARE = 0x0409 => CallShare(pb::CallShare),
    /// Client to broker: relay an opaque SDP/ICE blob.
    CALL_RELAY = 0x040a => CallRelay(pb::CallRelay),
    /// Client to broker: a page of the participant list.
    CALL_SNAPSHOT_QUERY = 0x040b => CallSnapshotQuery(pb::CallSnapshotQuery),
    /// Broker to client: a page of the participant list at one version.
    CALL_SNAPSHOT = 0x040c => CallSnapshot(pb::CallSnapshot),
    /// Broker to client: a call request took effect.
    CALL_OK = 0x040d => CallOk(pb::CallOk),
    /// Broker to client (urgent stream): an invitation rings.
    CALL_RING = 0x0410 => CallRing(pb::CallRing),
    /// Broker to client (urgent stream): stop ringing.
    CALL_RING_STOP = 0x0411 => CallRingStop(pb::CallRingStop),
    /// Broker to client (push stream): coalesced, versioned participant-list changes.
    CALL_DELTA = 0x0412 => CallDelta(pb::CallDelta),
    /// Broker to client (urgent stream): a relayed blob.
    CALL_RELAYED = 0x0413 => CallRelayed(pb::CallRelayed),
    /// Broker to client (urgent stream): the call ended, or this device was removed.
    CALL_ENDED = 0x0414 => CallEnded(pb::CallEnded),
    /// Broker to client (urgent stream): a host muted this device.
    CALL_MUTED = 0x0415 => CallMuted(pb::CallMuted),
    /// Client to broker: DING recipients about a message, escalating until they acknowledge.
    DING_SEND = 0x0501 => DingSend(pb::DingSend),
    /// Broker to client: the DING is durable; its ladder is under way.
    DING_CREATED = 0x0502 => DingCreated(pb::DingCreated),
    /// Broker to client (urgent stream): a DING to acknowledge.
    DING_NOTICE = 0x0503 => DingNotice(pb::DingNotice),
    /// Client to broker: the caller acknowledges a DING.
    DING_ACK = 0x0504 => DingAck(pb::DingAck),
    /// Client to broker: a DING's recipients and their progress.
    DING_QUERY = 0x0505 => DingQuery(pb::DingQuery),
    /// Broker to client: a DING's counts and a page of its recipients.
    DING_STATE = 0x0506 => DingState(pb::DingState),
    /// Broker to client (push stream): the sender's DING changed.
    DING_UPDATE = 0x0507 => DingUpdate(pb::DingUpdate),
    /// Client to broker: the sender stops a DING.
    DING_CANCEL = 0x0508 => DingCancel(pb::DingCancel),
    /// Client to broker: DING again those who have not acknowledged.
    REDING = 0x0509 => Reding(pb::Reding),
    /// Client to broker: the caller checks in (attendance).
    CHECK_IN = 0x0601 => CheckIn(pb::CheckIn),
    /// Broker to client: the check-in is durable, accepted or flagged.
    CHECK_IN_RESULT = 0x0602 => CheckInResult(pb::CheckInResult),
    /// Client to broker: the caller's attendance for a day.
    ATTENDANCE_DAY_QUERY = 0x0603 => AttendanceDayQuery(pb::AttendanceDayQuery),
    /// Broker to client: a day's row and check-ins.
    ATTENDANCE_DAY = 0x0604 => AttendanceDay(pb::AttendanceDay),
    /// Client to broker (admins): replace an organisation's attendance rules.
    ATTENDANCE_RULES_SET = 0x0605 => AttendanceRulesSet(pb::AttendanceRulesSet),
    /// Client to broker (admins): an organisation's attendance rules.
    ATTENDANCE_RULES_GET = 0x0606 => AttendanceRulesGet(pb::AttendanceRulesGet),
    /// Broker to client: an organisation's attendance rules.
    ATTENDANCE_RULES = 0x0607 => AttendanceRules(pb::AttendanceRulesInfo),
    /// Client to broker (admins): day rows, summaries and CSV for a period.
    ATTENDANCE_REPORT = 0x0608 => AttendanceReport(pb::AttendanceReport),
    /// Broker to client: a page of a report.
    ATTENDANCE_REPORT_PAGE = 0x0609 => AttendanceReportPage(pb::AttendanceReportPage),
    /// Client to broker (admins): bind a user's attendance to a device.
    DEVICE_REBIND = 0x060a => DeviceRebind(pb::DeviceRebind),
    /// Broker to client: a user's attendance device binding.
    ATTENDANCE_BINDING = 0x060b => AttendanceBinding(pb::AttendanceBinding),
    /// Client to broker (operators): start serving a new organisation.
    ORG_CREATE = 0x0701 => OrgCreate(pb::OrgCreate),
    /// Client to broker (admins): an organisation's settings.
    ORG_GET = 0x0702 => OrgGet(pb::OrgGet),
    /// Broker to client: an organisation's settings, overrides and effective values.
    ORG_INFO = 0x0703 => OrgInfo(pb::OrgInfo),
    /// Client to broker (admins): change an organisation's settings.
    ORG_UPDATE = 0x0704 => OrgUpdate(pb::OrgUpdate),
    /// Client to broker (admins): create or replace directory entries, all or none.
    USER_IMPORT = 0x0705 => UserImport(pb::UserImport),
    /// Broker to client: what an import changed.
    IMPORT_RESULT = 0x0706 => ImportResult(pb::ImportResult),
    /// Client to broker (admins): a page of the directory.
    USER_LIST = 0x0707 => UserList(pb::UserList),
    /// Broker to client: a page of directory entries.
    USER_PAGE = 0x0708 => UserPage(pb::UserPage),
    /// Client to broker (admins): a user's devices.
    DEVICE_LIST = 0x0709 => DeviceList(pb::DeviceList),
    /// Broker to client: a user's devices, online or revoked.
    DEVICE_PAGE = 0x070a => DevicePage(pb::DevicePage),
    /// Client to broker (admins): revoke a device, closing its sessions.
    DEVICE_REVOKE = 0x070b => DeviceRevoke(pb::DeviceRevoke),
    /// Broker to client: the device is revoked.
    REVOKED_DEVICE = 0x070c => RevokedDevice(pb::RevokedDevice),
    /// Client to broker (admins): any conversation's metadata.
    CONVERSATION_INSPECT = 0x070d => ConversationInspect(pb::ConversationInspect),
    /// Broker to client: a conversation's metadata, its owner and admins.
    CONVERSATION_REPORT = 0x070e => ConversationReport(pb::ConversationReport),
    /// Client to broker (admins): archive or unarchive a conversation.
    CONVERSATION_ARCHIVE = 0x070f => ConversationArchive(pb::ConversationArchive),
    /// Client to broker (admins): a filtered page of the audit log.
    AUDIT_QUERY = 0x0710 => AuditQuery(pb::AuditQuery),
    /// Broker to client: audit records.
    AUDIT_PAGE = 0x0711 => AuditPage(pb::AuditPage),
    /// Client to broker (operators): write a consistent copy of the database.
    BACKUP = 0x0712 => Backup(pb::Backup),
    /// Broker to client: the backup is complete.
    BACKUP_RESULT = 0x0713 => BackupResult(pb::BackupResult),
}

impl Frame {
    /// Decodes this frame's body as `B`, checking that the frame type matches.
    ///
    /// # Errors
    /// [`BodyError::WrongType`] if the frame holds another type; [`BodyError::Malformed`] if the
    /// body does not decode.
    pub fn decode_body<B: FrameBody>(&self) -> Result<B, BodyError> {
        if self.frame_type() != B::FRAME_TYPE {
            return Err(BodyError::WrongType { expected: B::FRAME_TYPE, actual: self.frame_type() });
        }
        decode_as::<B>(self.body().clone())
    }
}

impl Frame {
    /// An ERROR frame answering `request_id` (or, with [`RequestId::NONE`], announcing a close).
    pub fn error(request_id: RequestId, code: crate::ErrorCode, message: impl Into<String>) -> Frame {
        let error = pb::Error { code: code.get(), message: message.into(), ..Default::default() };
        Frame::from_body(request_id, &error)
    }
}

fn decode_as<B: FrameBody>(body: Bytes) -> Result<B, BodyError> {
    B::decode(body).map_err(|e| BodyError::Malformed { frame_type: B::FRAME_TYPE, reason: e.to_string() })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::FrameCodec;
    use bytes::BytesMut;
    use proptest::prelude::*;

    /// decode(encode(x)) == x for every body of every frame type, through the byte codec. Run on
    /// a thread with a large stack: the derived strategy for the whole `Body` enum nests deeper
    /// than the test harness's default stack allows in debug builds.
    #[test]
    fn every_body_round_trips() {
        let check = || {
            let mut runner = proptest::test_runner::TestRunner::new(ProptestConfig::with_cases(2_000));
            let result = runner.run(&(any::<Body>(), any::<u32>()), |(body, request_id)| {
                let codec = FrameCodec::default();
                let frame = body.into_frame(RequestId::new(request_id));
                let mut wire = BytesMut::new();
                codec.encode(&frame, &mut wire).expect("bodies of arbitrary messages fit the default max");
                let decoded = codec.decode(&mut wire).expect("valid").expect("complete");
                prop_assert!(wire.is_empty());
                prop_assert_eq!(decoded.request_id(), RequestId::new(request_id));
                prop_assert_eq!(Body::decode(&decoded).expect("decodes"), body);
                Ok(())
            });
            if let Err(e) = result {
                panic!("{e}");
            }
        };
        let thread = std::thread::Builder::new().stack_size(64 << 20).spawn(check).expect("spawn");
        thread.join().expect("every body round-trips");
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2_000))]

        /// Arbitrary bytes under any known frame type give a body or a typed error, never a panic.
        #[test]
        fn arbitrary_bodies_never_panic(pick in any::<proptest::sample::Index>(), unknown: u16, bytes: Vec<u8>) {
            // Every defined type, plus an arbitrary (mostly undefined) one.
            let mut types = FrameType::ALL.to_vec();
            types.push(FrameType::from_u16(unknown));
            let frame_type = *pick.get(&types);
            let frame = Frame::new(frame_type, Flags::EMPTY, RequestId::new(1), bytes.into());
            let _ = Body::decode(&frame);
        }
    }

    #[test]
    fn unknown_frame_type_is_a_typed_error_and_keeps_its_value() {
        let frame = Frame::new(FrameType::from_u16(0x7fff), Flags::EMPTY, RequestId::new(3), Bytes::new());
        assert_eq!(Body::decode(&frame), Err(BodyError::UnknownFrameType(FrameType::from_u16(0x7fff))));
        assert_eq!(FrameType::from_u16(0x7fff).to_string(), "UNKNOWN(0x7fff)");
    }

    #[test]
    fn malformed_body_names_its_frame_type() {
        // Field 1 as a length-delimited field claiming 100 bytes, with none following.
        let frame = Frame::new(FrameType::HELLO, Flags::EMPTY, RequestId::new(1), Bytes::from_static(&[0x0a, 0x64]));
        assert!(matches!(Body::decode(&frame), Err(BodyError::Malformed { frame_type: FrameType::HELLO, .. })));
    }

    #[test]
    fn typed_decode_refuses_another_frame_type() {
        let frame = Frame::from_body(RequestId::new(1), &pb::Ping { nonce: 1 });
        assert_eq!(
            frame.decode_body::<pb::Pong>(),
            Err(BodyError::WrongType { expected: FrameType::PONG, actual: FrameType::PING })
        );
    }

    #[test]
    fn frame_type_names_are_unique_and_ordered() {
        let values: Vec<u16> = FrameType::ALL.iter().map(|t| t.get()).collect();
        let mut sorted = values.clone();
        sorted.sort_unstable();
        sorted.dedup();
        assert_eq!(values, sorted);
        assert!(FrameType::ALL.iter().all(|t| t.name().is_some()));
    }
}
