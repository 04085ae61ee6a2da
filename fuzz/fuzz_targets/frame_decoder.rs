//! Feeds arbitrary bytes, in arbitrary chunks, to the streaming frame decoder. Every frame it
//! yields must re-encode to exactly the bytes it came from.
#![no_main]

use bytes::BytesMut;
use herald_protocol::FrameCodec;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&chunk, data)) = data.split_first() else { return };
    let chunk = usize::from(chunk.max(1));
    let codec = FrameCodec::new(64 * 1024);
    let mut buf = BytesMut::new();
    let mut consumed = 0usize;
    for piece in data.chunks(chunk) {
        buf.extend_from_slice(piece);
        loop {
            match codec.decode(&mut buf) {
                Ok(Some(frame)) => {
                    let mut again = BytesMut::new();
                    codec.encode(&frame, &mut again).expect("a decoded frame re-encodes");
                    assert_eq!(&again[..], &data[consumed..consumed + again.len()]);
                    consumed += again.len();
                }
                Ok(None) => break,
                Err(_) => return,
            }
        }
    }
});
