//! Arbitrary command sequences into the real shard loop over the in-memory store, with crashes,
//! failed commits and clock jumps, invariants checked every step
//! (`herald_broker::shard::fuzz_commands`; its seed corpus runs as a test).
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| herald_broker::shard::fuzz_commands(data));
