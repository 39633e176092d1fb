//! Fuzz target `report`: the body is `targets::report` in fuzz/targets.rs, shared with
//! tests/fuzz_corpus.rs, which replays the committed corpus on stable Rust.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(|data: &[u8]| targets::report(data));
