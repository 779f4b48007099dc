//! AsyncChat over a socket pair, fed a fuzzed stream in fuzzed read sizes, must deliver the
//! records a naive parser finds (string and numeric terminators), and never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockloop::chat::{AsyncChat, ChatContext, ChatHandler, Terminator};
use sockloop::{Channel, Loop, RunOptions};
use std::cell::RefCell;
use std::io::Write;
use std::rc::Rc;
use std::time::Duration;

struct Collect {
    cur: Vec<u8>,
    records: Rc<RefCell<Vec<Vec<u8>>>>,
}

impl ChatHandler for Collect {
    fn collect_incoming_data(&mut self, data: &[u8]) {
        self.cur.extend_from_slice(data);
    }
    fn found_terminator(&mut self, _: &mut ChatContext<'_, '_>) -> std::io::Result<()> {
        self.records.borrow_mut().push(std::mem::take(&mut self.cur));
        Ok(())
    }
}

fn naive(stream: &[u8], term: &Terminator) -> Vec<Vec<u8>> {
    match term {
        Terminator::Bytes(t) => {
            let mut out = Vec::new();
            let mut rest = stream;
            while let Some(i) = rest.windows(t.len()).position(|w| w == &t[..]) {
                out.push(rest[..i].to_vec());
                rest = &rest[i + t.len()..];
            }
            out
        }
        Terminator::Count(n) if *n > 0 && stream.len() >= *n => vec![stream[..*n].to_vec()],
        _ => Vec::new(),
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 2 {
        return;
    }
    let (head, stream) = data.split_at(2);
    let term = match head[0] % 5 {
        0 => Terminator::from("\n"),
        1 => Terminator::from("\r\n"),
        2 => Terminator::from("\r\n.\r\n"),
        3 => Terminator::from("abab"),
        _ => Terminator::Count(usize::from(head[0] / 5) + 1),
    };
    let read_size = usize::from(head[1] % 16) + 1;
    let mut lp = Loop::new().unwrap();
    let (a, mut b) = std::os::unix::net::UnixStream::pair().unwrap();
    let records = Rc::new(RefCell::new(Vec::new()));
    let mut chat = AsyncChat::new(Collect { cur: Vec::new(), records: records.clone() });
    chat.set_terminator(term.clone());
    chat.set_max_record(usize::MAX);
    chat.set_buffer_sizes(read_size, 65536);
    let t = lp.add(Channel::from(a), chat).unwrap();
    b.write_all(stream).unwrap();
    drop(b);
    // The peer's close ends the channel after everything was read.
    lp.run_with(RunOptions::new().timeout(Duration::from_secs(5)).count(stream.len() + 10)).unwrap();
    assert!(!lp.contains(t), "the peer's close did not close the channel");
    assert_eq!(*records.borrow(), naive(stream, &term));
});
