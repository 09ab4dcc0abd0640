//! Data sets: IDX (images, labels; raw or gzipped through a file) and
//! CIFAR-10 batches. The first byte chooses the reader.

#![no_main]

use libfuzzer_sys::fuzz_target;
use std::path::Path;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    let at = Path::new("fuzz.bin");
    match which % 4 {
        0 => {
            let _ = nnc::train::data::parse_idx(bytes.to_vec(), 3, at);
        }
        1 => {
            let _ = nnc::train::data::parse_idx(bytes.to_vec(), 1, at);
        }
        2 => {
            let _ = nnc::train::data::parse_cifar_batch(bytes, at);
        }
        _ => {
            // Through a file, so that gzipped input is un-gzipped.
            let path = std::env::temp_dir().join(format!("nnc-fuzz-idx-{}", std::process::id()));
            if std::fs::write(&path, bytes).is_ok() {
                let _ = nnc::train::data::read_idx(&path, 3);
            }
        }
    }
});
