//! smtp_sink's command-line parser on arbitrary bytes: a command or a refusal with a 5xx reply
//! code, never a panic.
#![no_main]

#[allow(dead_code)]
#[path = "../../examples/smtp_sink/command.rs"]
mod command;

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(refusal) = command::parse(data) {
        assert!((500..=599).contains(&refusal.code), "{}", refusal.code);
    }
});
