//! The unit tests of the example programs' protocol parsers (the SMTP command parser of
//! smtp_sink and the HTTP request parser of http_server), compiled here from the examples'
//! own files so `cargo test` runs them.

#[allow(dead_code)]
#[path = "../examples/smtp_sink/command.rs"]
mod smtp_command;

#[allow(dead_code)]
#[path = "../examples/http_server/request.rs"]
mod http_request;

#[allow(dead_code)]
#[path = "../examples/http_server/range.rs"]
mod http_range;

#[allow(dead_code)]
#[path = "../examples/http_server/conditional.rs"]
mod http_conditional;

#[allow(dead_code)]
#[path = "../examples/http_server/mime.rs"]
mod http_mime;

use proptest::prelude::*;

proptest! {
    /// Any Range value against any length: whole, unsatisfiable, or a part inside the file.
    #[test]
    fn ranges_stay_inside_the_file(value in "(bytes|Bytes|items)?=?[-0-9, ]{0,24}", len in 0u64..5000) {
        if let http_range::Range::Part(first, last) = http_range::parse(value.as_bytes(), len) {
            prop_assert!(first <= last && last < len);
        }
    }

    /// Any bytes as a date or a validator: no panic.
    #[test]
    fn validators_never_panic(data in proptest::collection::vec(any::<u8>(), 0..60)) {
        let _ = http_conditional::parse_http_date(&data);
        let c = http_conditional::Conditions {
            if_none_match: Some(data.clone()),
            if_range: Some(data),
            ..Default::default()
        };
        let _ = (c.not_modified("\"x\"", 5), c.range_applies("\"x\"", 5));
    }

    /// Any bytes: a request or a refusal with a 4xx/5xx status, never a panic.
    #[test]
    fn http_heads_never_panic(data in proptest::collection::vec(any::<u8>(), 0..600)) {
        if let Err(r) = http_request::parse_head(&data) {
            prop_assert!((400..=599).contains(&r.status));
        }
    }

    /// Near-valid heads: random targets, versions and header lines.
    #[test]
    fn http_heads_near_valid(
        method in "(GET|HEAD|POST|G T|)",
        target in "[ -~]{0,30}",
        version in "(HTTP/1\\.1|HTTP/1\\.0|HTTP/2\\.0|HTTP/1\\.1 |)",
        headers in proptest::collection::vec("[ -~]{0,20}", 0..5),
    ) {
        let head = format!("{method} {target} {version}\r\nHost: x\r\n{}", headers.join("\r\n"));
        match http_request::parse_head(head.as_bytes()) {
            Ok(req) => {
                prop_assert!(req.minor <= 1);
                prop_assert!(!req.target.contains(' '));
            }
            Err(r) => prop_assert!([400, 414, 431, 501].contains(&r.status)),
        }
    }

    /// Whatever the target, the segments returned can be joined under a root safely.
    #[test]
    fn path_segments_stay_inside(target in "(/|http://h/)?[/a-z.%25eEfF0cC\\\\?]{0,40}") {
        if let Ok(segments) = http_request::path_segments(&target) {
            for s in segments {
                prop_assert!(!s.is_empty() && s != b"." && s != b"..");
                prop_assert!(!s.iter().any(|&b| b == b'/' || b == b'\\' || b == 0));
            }
        }
    }

    /// Any bytes: a command or a 5xx refusal, never a panic.
    #[test]
    fn smtp_commands_never_panic(data in proptest::collection::vec(any::<u8>(), 0..300)) {
        if let Err(r) = smtp_command::parse(&data) {
            prop_assert!([500, 501, 555].contains(&r.code));
        }
    }

    /// MAIL with random parameters: accepted, or refused with 501/555.
    #[test]
    fn smtp_mail_parameters(params in "( [A-Za-z]{0,6}(=[0-9A-Za-z]{0,8})?){0,3}") {
        match smtp_command::parse(format!("MAIL FROM:<a@b>{params}").as_bytes()) {
            Ok(smtp_command::Command::Mail { from, .. }) => prop_assert_eq!(from, "a@b"),
            Ok(other) => prop_assert!(false, "parsed as {:?}", other),
            Err(r) => prop_assert!([501, 555].contains(&r.code)),
        }
    }
}
