//! Checks the published test vectors (docs/test-vectors/frames.json) and the spec's tables
//! (docs/PROTOCOL.md) against this implementation, so the spec cannot drift from the code.

use bytes::BytesMut;
use serde_json::Value;

use crate::{Body, BodyError, ErrorCode, FrameCodec, FrameError, FrameType};

const VECTORS: &str = include_str!("../../docs/test-vectors/frames.json");
const SPEC: &str = include_str!("../../docs/PROTOCOL.md");

fn vectors(section: &str) -> Vec<Value> {
    let all: Value = serde_json::from_str(VECTORS).expect("frames.json is JSON");
    all[section].as_array().expect("section is an array").clone()
}

fn bytes_of(vector: &Value) -> BytesMut {
    let hex = vector["hex"].as_str().expect("hex is a string");
    BytesMut::from(&hex::decode(hex).expect("hex decodes")[..])
}

#[test]
fn valid_vectors_decode_to_their_meaning_and_reencode_byte_for_byte() {
    let codec = FrameCodec::default();
    let vectors = vectors("frames");
    assert!(vectors.len() >= FrameType::ALL.len(), "at least one vector per frame type");
    for v in vectors {
        let name = v["name"].as_str().expect("name");
        let wire = bytes_of(&v);
        let frame = codec.decode(&mut wire.clone()).expect(name).expect(name);
        assert_eq!(u64::from(frame.frame_type().get()), v["type_value"], "{name}: type");
        assert_eq!(frame.frame_type().name(), v["type"].as_str(), "{name}: type name");
        assert_eq!(u64::from(frame.flags().bits()), v["flags"], "{name}: flags");
        assert_eq!(u64::from(frame.request_id().get()), v["request_id"], "{name}: request id");
        let body = Body::decode(&frame).expect(name);
        assert_eq!(serde_json::to_value(&body).expect("serializes"), v["body"], "{name}: body");

        let mut reencoded = BytesMut::new();
        let rebuilt = body.into_frame(frame.request_id());
        let rebuilt =
            crate::Frame::new(rebuilt.frame_type(), frame.flags(), rebuilt.request_id(), rebuilt.body().clone());
        codec.encode(&rebuilt, &mut reencoded).expect(name);
        assert_eq!(hex::encode(&reencoded), v["hex"].as_str().expect("hex"), "{name}: re-encoding");
    }
}

#[test]
fn every_frame_type_has_a_vector() {
    let covered: Vec<u64> = vectors("frames").iter().filter_map(|v| v["type_value"].as_u64()).collect();
    for t in FrameType::ALL {
        assert!(covered.contains(&u64::from(t.get())), "no test vector for {t}");
    }
}

#[test]
fn invalid_vectors_fail_as_the_spec_says() {
    for v in vectors("invalid") {
        let name = v["name"].as_str().expect("name");
        let max = u32::try_from(v["max_frame_len"].as_u64().expect("max_frame_len")).expect("fits u32");
        let codec = FrameCodec::new(max);
        let mut wire = bytes_of(&v);
        let outcome = match codec.decode(&mut wire) {
            Err(FrameError::TooLarge { .. }) => Some(ErrorCode::FRAME_TOO_LARGE),
            Ok(None) => None,
            Ok(Some(frame)) => match Body::decode(&frame) {
                Err(BodyError::UnknownFrameType(_)) => Some(ErrorCode::UNKNOWN_FRAME_TYPE),
                Err(BodyError::Malformed { .. }) => Some(ErrorCode::MALFORMED_BODY),
                other => panic!("{name}: decoded to {other:?}"),
            },
        };
        assert_eq!(outcome.and_then(ErrorCode::name), v["error"].as_str(), "{name}");
    }
}

#[test]
fn spec_lists_every_frame_type_and_error_code() {
    for t in FrameType::ALL {
        let row = format!("| `0x{:04x}` | `{}` |", t.get(), t.name().expect("named"));
        assert!(SPEC.contains(&row), "docs/PROTOCOL.md lacks the frame type row starting {row}");
    }
    for c in ErrorCode::ALL {
        let row = format!("| `0x{:04x}` | `{}` |", c.get(), c.name().expect("named"));
        assert!(SPEC.contains(&row), "docs/PROTOCOL.md lacks the error code row starting {row}");
    }
}
