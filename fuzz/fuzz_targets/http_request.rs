//! http_server's request-head parser and target-to-path mapping on arbitrary bytes: a request or
//! a 4xx/5xx refusal, never a panic; no accepted path segment can climb out of the root.
#![no_main]

#[allow(dead_code)]
#[path = "../../examples/http_server/request.rs"]
mod request;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    match request::parse_head(data) {
        Ok(req) => {
            if let Ok(segments) = request::path_segments(&req.target) {
                for seg in segments {
                    assert!(seg != b".." && seg != b"." && !seg.is_empty());
                    assert!(!seg.contains(&b'/') && !seg.contains(&b'\\') && !seg.contains(&0));
                }
            }
        }
        Err(refusal) => assert!((400..=599).contains(&refusal.status)),
    }
});
