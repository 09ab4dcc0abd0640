//! Resuming from a checkpoint: any bytes, checked against a fixed run.

#![no_main]

use libfuzzer_sys::fuzz_target;
use nnc::train::checkpoint::{self, Identity};
use nnc::weights::WeightSet;
use std::path::Path;
use std::sync::OnceLock;

fn fresh() -> &'static (WeightSet, WeightSet) {
    static FRESH: OnceLock<(WeightSet, WeightSet)> = OnceLock::new();
    FRESH.get_or_init(|| {
        let mut w = WeightSet::new();
        w.insert("fc.weight".into(), ndarray::ArrayD::zeros(vec![3, 4]));
        w.insert("fc.bias".into(), ndarray::ArrayD::zeros(vec![3]));
        let mut s = WeightSet::new();
        s.insert("momentum_buffer:fc.bias".into(), ndarray::ArrayD::zeros(vec![3]));
        (w, s)
    })
}

fuzz_target!(|data: &[u8]| {
    let (w, s) = fresh();
    let want = Identity {
        network: "tiny",
        optimizer: "sgd(lr=0.1)".into(),
        batch_size: 16,
        limit: None,
        seed: 7,
    };
    let _ = checkpoint::parse(data, Path::new("last.safetensors"), &want, w, s, true);
});
