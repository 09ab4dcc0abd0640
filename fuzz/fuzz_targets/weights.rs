//! safetensors, `.npy` arrays and `.npy` labels: the first byte chooses
//! the reader, the rest is the file. Errors are fine; panics are not.

#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Some((&which, bytes)) = data.split_first() else {
        return;
    };
    match which % 4 {
        0 => {
            let _ = nnc::weights::safetensors::parse(bytes);
        }
        1 => {
            let _ = nnc::weights::safetensors::parse_with_metadata(bytes);
        }
        2 => {
            let _ = nnc::weights::npy::parse(bytes);
        }
        _ => {
            let _ = nnc::weights::npy::parse_labels(bytes);
        }
    }
});
