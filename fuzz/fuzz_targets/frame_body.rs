//! Decodes arbitrary bytes as the body of every frame type; whatever decodes must round-trip.
#![no_main]

use bytes::Bytes;
use herald_protocol::{Body, Flags, Frame, FrameType, RequestId};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&selector, body)) = data.split_first() else { return };
    let types = FrameType::ALL;
    let frame_type = types[usize::from(selector) % types.len()];
    let frame = Frame::new(frame_type, Flags::EMPTY, RequestId::new(1), Bytes::copy_from_slice(body));
    if let Ok(decoded) = Body::decode(&frame) {
        let encoded = decoded.into_frame(RequestId::new(1));
        let again = Body::decode(&encoded).expect("re-encoded body decodes");
        // Compared as bytes, not as values: bodies hold floats, and a NaN is not equal to itself.
        assert_eq!(again.into_frame(RequestId::new(1)).body(), encoded.body());
    }
});
