//! Replays the kept fuzz inputs (tests/fuzz-corpus/<target>/) through the very checks the
//! cargo-fuzz targets run (fuzz/checks.rs), so CI covers them without a fuzzer. A crash
//! reproducer found by `cargo fuzz` goes into the target's folder here, and stays.

use std::path::Path;

#[path = "../../fuzz/checks.rs"]
mod checks;

fn inputs(target: &str) -> Vec<(String, Vec<u8>)> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fuzz-corpus")
        .join(target);
    let mut out: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| {
            let path = e.unwrap().path();
            let name = path.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read(&path).unwrap())
        })
        .collect();
    out.sort();
    assert!(!out.is_empty(), "no inputs in {}", dir.display());
    out
}

/// Every kept input of `target` through `check`, naming the one that fails.
fn replay(target: &str, check: fn(&[u8])) {
    for (name, data) in inputs(target) {
        let outcome = std::panic::catch_unwind(|| check(&data));
        assert!(
            outcome.is_ok(),
            "tests/fuzz-corpus/{target}/{name} fails its check"
        );
    }
}

#[test]
fn sse_framing() {
    replay("sse", checks::sse);
}

#[test]
fn usage_payload_and_headers() {
    replay("usage", checks::usage);
}

#[test]
fn jwt_claims_and_identity() {
    replay("jwt", checks::jwt);
}

#[test]
fn error_bodies() {
    replay("failure", checks::failure);
}

#[test]
fn store_file_parser() {
    replay("store", checks::store);
}
