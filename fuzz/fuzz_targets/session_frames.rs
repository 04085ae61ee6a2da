//! Arbitrary frames on an open session: every body's decoding and conversion into the broker's
//! domain types, and admission. No panic, and each request answered or dispatched exactly once
//! (`herald_broker::session::fuzz_session_frames` checks it; its seed corpus runs as a test).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald_broker::session::fuzz_session_frames(data));
