//! Payload decoding and validation of every known event; see `harness::payload`.
#![no_main]

#[allow(dead_code)] // each target uses half of the harness
#[path = "../harness.rs"]
mod harness;

libfuzzer_sys::fuzz_target!(|data: &[u8]| harness::payload(data));
