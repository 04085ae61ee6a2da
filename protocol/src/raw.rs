//! Building frames from stored, already-encoded log entries without decoding them.
//!
//! A log entry is encoded once, when it is sequenced; the same bytes are stored and delivered.
//! These helpers wrap those bytes into DELIVERY and HISTORY_PAGE bodies by writing the few bytes
//! of protobuf framing around them, which is exactly what prost would emit for the same message.

use bytes::{BufMut, Bytes, BytesMut};
use prost::Message;
use prost::encoding::{WireType, encode_key, encode_varint, encoded_len_varint};

use crate::{Flags, FrameType, HEADER_LEN, RequestId, pb};

/// Encodes a `LogEntry` straight into a whole DELIVERY frame (header included), in one buffer.
///
/// Returns the frame, ready to be queued to any number of connections, and the entry's own
/// encoding, which is the frame's tail (a view, not a copy): the bytes to store.
pub fn delivery_frame(entry: &pb::LogEntry) -> (Bytes, Bytes) {
    let entry_len = entry.encoded_len();
    let body_len = 1 + encoded_len_varint(entry_len as u64) + entry_len;
    let mut buf = BytesMut::with_capacity(HEADER_LEN + body_len);
    // Entries are bounded by the payload limit, far below u32::MAX.
    buf.put_u32(u32::try_from(body_len).unwrap_or(u32::MAX));
    buf.put_u16(FrameType::DELIVERY.get());
    buf.put_u16(Flags::EMPTY.bits());
    buf.put_u32(RequestId::NONE.get());
    encode_key(1, WireType::LengthDelimited, &mut buf);
    encode_varint(entry_len as u64, &mut buf);
    entry.encode_raw(&mut buf);
    let frame = buf.freeze();
    let stored = frame.slice(frame.len() - entry_len..);
    (frame, stored)
}

/// A HISTORY_PAGE body around encoded `LogEntry`s.
pub fn history_page_body(conversation_id: u64, entries: &[Bytes], last_seq: u64) -> Bytes {
    let mut buf = BytesMut::with_capacity(24 + entries.iter().map(|e| e.len() + 6).sum::<usize>());
    if conversation_id != 0 {
        encode_key(1, WireType::Varint, &mut buf);
        encode_varint(conversation_id, &mut buf);
    }
    for entry in entries {
        put_bytes_field(2, entry, &mut buf);
    }
    if last_seq != 0 {
        encode_key(3, WireType::Varint, &mut buf);
        encode_varint(last_seq, &mut buf);
    }
    buf.freeze()
}

/// How many bytes an entry adds to a HISTORY_PAGE body.
pub fn history_entry_overhead(entry_len: usize) -> usize {
    1 + encoded_len_varint(entry_len as u64) + entry_len
}

fn put_bytes_field(tag: u32, bytes: &[u8], buf: &mut BytesMut) {
    encode_key(tag, WireType::LengthDelimited, buf);
    encode_varint(bytes.len() as u64, buf);
    buf.put_slice(bytes);
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Body, Frame, FrameCodec, pb};
    use proptest::prelude::*;
    use prost::Message;

    proptest! {
        /// The hand-built frames are byte for byte what prost builds from the decoded entries.
        #[test]
        fn raw_frames_equal_prost_encodings(entries: Vec<pb::LogEntry>, conv: u64, last: u64) {
            let encoded: Vec<Bytes> = entries.iter().map(|e| Bytes::from(e.encode_to_vec())).collect();
            let page = pb::HistoryPage { conversation_id: conv, entries: entries.clone(), last_seq: last };
            prop_assert_eq!(history_page_body(conv, &encoded, last), Bytes::from(page.encode_to_vec()));
            let expected_len: usize = 2 + encoded.iter().map(|e| history_entry_overhead(e.len())).sum::<usize>();
            prop_assert!(history_page_body(conv, &encoded, last).len() <= expected_len + 20);

            if let (Some(entry), Some(bytes)) = (entries.first(), encoded.first()) {
                let frame = Frame::from_body(RequestId::NONE, &pb::Delivery { entry: Some(entry.clone()) });
                let mut wire = BytesMut::new();
                FrameCodec::default().encode(&frame, &mut wire).expect("fits");
                let (built, stored) = delivery_frame(entry);
                prop_assert_eq!(&built, &wire.freeze());
                prop_assert_eq!(&stored, bytes);
                let decoded = FrameCodec::default().decode(&mut BytesMut::from(&built[..])).expect("ok").expect("whole");
                prop_assert!(matches!(Body::decode(&decoded), Ok(Body::Delivery(_))));
            }
        }
    }
}
