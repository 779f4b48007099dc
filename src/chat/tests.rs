//! Property tests: whatever the split points of the input, `AsyncChat` delivers the records a
//! simple reference parser finds, for string, numeric and no terminators, and for terminators
//! changed mid-stream (a line announcing the length of the record that follows, as HTTP does);
//! and producers that send directly (FileProducer, SharedProducer) keeping order under backpressure.

use super::*;
use crate::event_loop::Token;
use crate::{Handler, Loop};
use proptest::prelude::*;

/// What the handler does after each record.
#[derive(Clone, Copy, Debug)]
enum Script {
    /// Keep the same terminator.
    Fixed,
    /// A line of digits switches to a count of that many bytes, then back to the line
    /// terminator.
    LengthPrefixed,
}

struct Collector {
    script: Script,
    line: Terminator,
    current: Vec<u8>,
    records: Vec<Vec<u8>>,
}

impl ChatHandler for Collector {
    fn collect_incoming_data(&mut self, data: &[u8]) {
        self.current.extend_from_slice(data);
    }

    fn found_terminator(&mut self, chat: &mut ChatContext<'_>) -> io::Result<()> {
        let record = std::mem::take(&mut self.current);
        if let Script::LengthPrefixed = self.script {
            match (chat.get_terminator(), std::str::from_utf8(&record).ok().and_then(|s| s.parse().ok())) {
                (Terminator::Bytes(_), Some(n)) => chat.set_terminator(Terminator::Count(n)),
                _ => chat.set_terminator(self.line.clone()),
            }
        }
        self.records.push(record);
        Ok(())
    }
}

/// The reference: a straightforward sequential parser over the whole stream.
fn reference(stream: &[u8], start: &Terminator, script: Script) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut records = Vec::new();
    let mut term = start.clone();
    let mut i = 0;
    loop {
        let (record, next) = match &term {
            Terminator::Bytes(t) if !t.is_empty() => {
                match stream[i..].windows(t.len()).position(|w| w == &t[..]) {
                    Some(p) => (stream[i..i + p].to_vec(), i + p + t.len()),
                    None => return (records, stream[i..].to_vec()),
                }
            }
            Terminator::Count(n) if *n > 0 && stream.len() - i >= *n => (stream[i..i + n].to_vec(), i + n),
            _ => return (records, stream[i..].to_vec()),
        };
        term = match script {
            // A count is used up by its record (asynchat leaves it at 0).
            Script::Fixed if matches!(term, Terminator::Count(_)) => Terminator::Count(0),
            Script::Fixed => term,
            Script::LengthPrefixed => {
                match (&term, std::str::from_utf8(&record).ok().and_then(|s| s.parse().ok())) {
                    (Terminator::Bytes(_), Some(n)) => Terminator::Count(n),
                    _ => start.clone(),
                }
            }
        };
        records.push(record);
        i = next;
    }
}

/// Feeds `stream` to an `AsyncChat` in the given pieces and returns what it delivered:
/// the records and the bytes collected after the last one.
fn run_chat(stream: &[u8], cuts: &[usize], start: &Terminator, script: Script) -> (Vec<Vec<u8>>, Vec<u8>) {
    let mut lp = Loop::new().unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut channel = Channel::from(a);
    let mut scratch = vec![0u8; 16];
    let mut chat =
        AsyncChat::new(Collector { script, line: start.clone(), current: Vec::new(), records: Vec::new() });
    chat.set_terminator(start.clone());
    chat.set_max_record(usize::MAX);
    let mut pos = 0;
    let mut bounds: Vec<usize> = cuts.iter().map(|c| c % (stream.len() + 1)).collect();
    bounds.push(stream.len());
    bounds.sort_unstable();
    for end in bounds {
        let mut cx = Context::new(&mut channel, &mut scratch, &mut lp, Token::new(0, 0), Handler::Read);
        chat.feed(&stream[pos..end], &mut ChatIo::of(&mut cx)).unwrap();
        pos = end;
    }
    let mut tail = chat.handler.current.clone();
    tail.extend_from_slice(&chat.state.pending);
    (chat.handler.records, tail)
}

fn terminator() -> impl Strategy<Value = Terminator> {
    prop_oneof![
        Just(Terminator::from("\n")),
        Just(Terminator::from("\r\n")),
        Just(Terminator::from("qqq")),
        Just(Terminator::from("\r\n.\r\n")),
        Just(Terminator::from("abab")),
        (1usize..20).prop_map(Terminator::Count),
        Just(Terminator::None),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 300, ..ProptestConfig::default() })]

    #[test]
    fn records_match_the_reference_whatever_the_splits(
        // A small alphabet makes terminator fragments (and near misses) common.
        stream in proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'b'), Just(b'q'), Just(b'\r'), Just(b'\n'), Just(b'.'), Just(b'x')], 0..300),
        cuts in proptest::collection::vec(0usize..400, 0..40),
        start in terminator(),
    ) {
        let (records, tail) = run_chat(&stream, &cuts, &start, Script::Fixed);
        let (want, want_tail) = reference(&stream, &start, Script::Fixed);
        if start.is_active() {
            prop_assert_eq!(records, want);
            prop_assert_eq!(tail, want_tail);
        } else {
            prop_assert!(records.is_empty());
            prop_assert_eq!(tail, stream);
        }
    }

    #[test]
    fn terminators_changed_mid_stream_apply_at_once(
        parts in proptest::collection::vec(
            (proptest::collection::vec(prop_oneof![Just(b'a'), Just(b'\n'), Just(b'\r'), Just(b'7')], 0..30), any::<bool>()),
            0..12),
        cuts in proptest::collection::vec(0usize..600, 0..40),
        crlf in any::<bool>(),
    ) {
        let line: &[u8] = if crlf { b"\r\n" } else { b"\n" };
        // Build "len<line><body>" frames mixed with plain lines.
        let mut stream = Vec::new();
        for (body, framed) in &parts {
            if *framed {
                stream.extend_from_slice(body.len().to_string().as_bytes());
                stream.extend_from_slice(line);
                stream.extend_from_slice(body);
            } else {
                stream.extend(body.iter().filter(|b| !line.contains(b)));
                stream.extend_from_slice(line);
            }
        }
        let start = Terminator::from(line);
        let (records, tail) = run_chat(&stream, &cuts, &start, Script::LengthPrefixed);
        let (want, want_tail) = reference(&stream, &start, Script::LengthPrefixed);
        prop_assert_eq!(records, want);
        prop_assert_eq!(tail, want_tail);
    }
}

#[test]
fn a_line_over_the_record_limit_fails_with_input_limit() {
    let mut lp = Loop::new().unwrap();
    let (a, _b) = std::os::unix::net::UnixStream::pair().unwrap();
    let mut channel = Channel::from(a);
    let mut scratch = vec![0u8; 16];
    let mut chat = AsyncChat::new(Collector {
        script: Script::Fixed,
        line: Terminator::from("\n"),
        current: Vec::new(),
        records: Vec::new(),
    });
    chat.set_terminator("\n");
    chat.set_max_record(10);
    let mut cx = Context::new(&mut channel, &mut scratch, &mut lp, Token::new(0, 0), Handler::Read);
    chat.feed(b"0123456789\n", &mut ChatIo::of(&mut cx)).unwrap();
    let err = chat.feed(b"0123456789A", &mut ChatIo::of(&mut cx)).unwrap_err();
    assert!(InputLimit::is(&err), "{err}");
    assert_eq!(chat.handler.records, vec![b"0123456789".to_vec()]);
}

/// Producers that send directly (a file by sendfile, shared bytes) under backpressure: bytes
/// queued before and after them keep their order, nothing is buffered on the channel while
/// they send, and a slow reader gets every byte.
#[test]
fn direct_producers_keep_order_and_buffer_nothing() {
    use std::io::Read;
    use std::rc::Rc;
    struct Quiet;
    impl ChatHandler for Quiet {
        fn collect_incoming_data(&mut self, _: &[u8]) {}
        fn found_terminator(&mut self, _: &mut ChatContext<'_>) -> io::Result<()> {
            Ok(())
        }
    }
    /// A direct producer whose bytes must never be asked for through `more`.
    struct OnlyDirect<P>(P);
    impl<P: Producer> Producer for OnlyDirect<P> {
        fn more(&mut self) -> io::Result<Vec<u8>> {
            assert!(!self.0.sends_directly(), "more() asked of a producer that sends directly");
            self.0.more()
        }
        fn sends_directly(&self) -> bool {
            self.0.sends_directly()
        }
        fn send_to(&mut self, channel: &mut Channel) -> io::Result<usize> {
            self.0.send_to(channel)
        }
    }
    let path = std::env::temp_dir().join(format!("sockloop-direct-{}", std::process::id()));
    let file_data: Vec<u8> = (0..3_000_000u32).map(|i| (i % 251) as u8).collect();
    std::fs::write(&path, &file_data).unwrap();
    let shared: Rc<[u8]> = (0..2_000_000u32).map(|i| (i % 241) as u8).collect::<Vec<_>>().into();
    let (mut peer, ours) = std::os::unix::net::UnixStream::pair().unwrap();
    let reader = std::thread::spawn(move || {
        let mut got = Vec::new();
        let mut buf = [0u8; 4096];
        loop {
            match peer.read(&mut buf) {
                Ok(0) => return got,
                Ok(n) => got.extend_from_slice(&buf[..n]),
                Err(e) => panic!("{e}"),
            }
            if got.len() < 200_000 {
                std::thread::sleep(std::time::Duration::from_micros(200)); // slow at first
            }
        }
    });
    let mut lp = Loop::new().unwrap();
    let token = lp.add(Channel::from(ours), AsyncChat::new(Quiet)).unwrap();
    let (chat, channel) = lp.get_mut::<AsyncChat<Quiet>>(token).unwrap();
    chat.push(channel, b"<head>").unwrap();
    let file = std::fs::File::open(&path).unwrap();
    chat.push_with_producer(channel, OnlyDirect(FileProducer::new(file, 10, 2_999_980))).unwrap();
    chat.push(channel, b"<mid>").unwrap();
    chat.push_with_producer(channel, OnlyDirect(SharedProducer::new(shared.clone(), 5..2_000_000))).unwrap();
    chat.push(channel, b"<end>").unwrap();
    channel.close_when_done();
    let mut max_pending = 0;
    while lp.get_mut::<AsyncChat<Quiet>>(token).is_some() {
        lp.poll(Some(std::time::Duration::from_secs(5))).unwrap();
        if let Some((_, channel)) = lp.get_mut::<AsyncChat<Quiet>>(token) {
            max_pending = max_pending.max(channel.pending_output());
        }
    }
    let got = reader.join().unwrap();
    let want = [b"<head>".as_slice(), &file_data[10..2_999_990], b"<mid>", &shared[5..], b"<end>"].concat();
    assert_eq!(got.len(), want.len());
    assert!(got == want, "the bytes arrived out of order or changed");
    assert!(max_pending <= 5, "{max_pending} bytes were buffered on the channel");
    std::fs::remove_file(&path).unwrap();
}
