//! IR text: parse anything; what parses must verify without panicking and
//! print back to text that parses to the same graph.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    if let Ok(g) = nnc::ir::text::parse(text) {
        let _ = nnc::ir::verify::verify(&g);
        let printed = nnc::ir::text::print(&g);
        let again = nnc::ir::text::parse(&printed).expect("printed IR parses");
        assert_eq!(nnc::ir::text::print(&again), printed, "print/parse is not a round trip");
    }
});
