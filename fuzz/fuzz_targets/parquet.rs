//! Fuzz target `parquet`: the body is `targets::parquet` in fuzz/targets.rs, shared with
//! tests/fuzz_corpus.rs, which replays the committed corpus on stable Rust.
#![no_main]

#[path = "../targets.rs"]
mod targets;

libfuzzer_sys::fuzz_target!(
    init: {
        // polars-arrow asserts on some corrupt files (bitmap/immutable.rs:329); the loader
        // catches that panic and reports the file's error (exit 2). libfuzzer-sys's panic
        // hook aborts on every panic, caught or not, so it is replaced by a silent one: a
        // panic that escapes the loader still unwinds to libfuzzer-sys's catch_unwind,
        // which aborts, and is reported as a crash as before.
        std::panic::set_hook(Box::new(|_| {}));
    },
    |data: &[u8]| targets::parquet(data)
);
