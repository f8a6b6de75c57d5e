//! Replays the fuzz corpus and every crash the fuzzers found (`fuzz/corpus/<target>/`,
//! `fuzz/regressions/<target>/`) through the fuzz targets' bodies, on stable, so a fixed crash
//! stays fixed. The fuzzers themselves run with `cargo +nightly fuzz run <target>` (see README).

#[path = "../fuzz/harness.rs"]
mod harness;

use std::{fs, path::Path};

fn replay(target: &str, body: fn(&[u8])) -> usize {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("fuzz");
    // A target without regressions has no directory there yet; the folder itself must exist, or
    // the replay would be looking in the wrong place.
    assert!(root.join("regressions").is_dir(), "fuzz/regressions/ is missing");
    let mut replayed = 0;
    for dir in [root.join("corpus").join(target), root.join("regressions").join(target)] {
        let Ok(entries) = fs::read_dir(&dir) else { continue };
        for entry in entries {
            let path = entry.expect("readable corpus directory").path();
            let input = fs::read(&path).expect("readable corpus file");
            // A panic names the input, so it can be rerun under the fuzzer.
            eprintln!("{}", path.display());
            body(&input);
            replayed += 1;
        }
    }
    replayed
}

#[test]
fn payload_corpus_and_regressions_pass() {
    let replayed = replay("payload", harness::payload);
    assert!(replayed > 0, "the payload corpus is missing");
}

#[test]
fn session_ops_corpus_and_regressions_pass() {
    let replayed = replay("session_ops", harness::session_ops);
    assert!(replayed > 0, "the session_ops corpus is missing");
}
