//! Parse and check arbitrary bytes, then render every diagnostic: nothing
//! may panic, and every diagnostic must have a location. A text that
//! parses must format (`nnc fmt`) without an internal error, and its
//! formatted text must format to itself.
//!
//! Run with `cargo fuzz run check` (see README.md for the stable-toolchain
//! spelling); the seed corpus is fuzz/corpus/check.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let (prog, checked) = nnc::driver::check_bytes("fuzz.nn", data.to_vec());
    for d in &checked.diags {
        assert!(d.primary.is_some(), "diagnostic without a location: {}", d.message);
    }
    let _ = nnc::diag::render_all(&checked.diags, &prog.sources, nnc::diag::RenderOptions::plain());
    if let Ok(text) = std::str::from_utf8(data) {
        match nnc::format::format(text) {
            Ok(once) => assert_eq!(nnc::format::format(&once).as_ref(), Ok(&once)),
            Err(e) => assert_eq!(e, nnc::format::Error::Syntax),
        }
    }
});
