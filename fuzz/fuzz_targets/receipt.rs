//! The upload body path of a receipt: the JSON depth cap, the body parser, `perfgate.run.v1`
//! validation and `normalize: true`. Properties: nothing panics; a receipt that validates still
//! validates after normalization (which must succeed on it) and keeps its wall-time median.
#![no_main]

use libfuzzer_sys::fuzz_target;
use perfgate_server::domain::receipt;
use perfgate_server::routes::json::{json_depth, parse_json};

fuzz_target!(|data: &[u8]| {
    // The depth cap runs first on the raw body, as in the body extractor.
    if json_depth(data, 64) > 64 {
        return;
    }
    let _ = parse_json::<serde_json::Value>(data);
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let Ok(summary) = receipt::validate(text) else {
        return;
    };
    let normalized = receipt::normalize(text).expect("a valid receipt normalizes");
    let again = receipt::validate(&normalized).expect("a normalized receipt is still valid");
    assert_eq!(summary.wall_ms_median, again.wall_ms_median);
    assert_eq!(summary.bench_name, again.bench_name);
});
