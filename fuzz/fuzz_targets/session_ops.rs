//! Request sequences through the session core, checking its invariants; see `harness::session_ops`.
#![no_main]

#[allow(dead_code)] // each target uses half of the harness
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::session_ops(data));
