//! PyTorch's default initialization, seeded.
//!
//! Convolution and linear weights: Kaiming-uniform with `a = sqrt(5)`, that
//! is uniform in `±1/sqrt(fan_in)`; their biases uniform in the same bound.
//! Batch norm: weight 1, bias 0, running mean 0, running variance 1. The
//! distributions are PyTorch's; the random streams are nnc's own (one per
//! tensor, from the seed and the tensor's name, so adding a layer does not
//! change the others).

use super::WeightSet;
use crate::check::model::Model;
use crate::check::ops::Op;
use ndarray::{ArrayD, IxDyn};

/// A small deterministic generator (splitmix64).
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `[0, 1)` with 53 bits.
    pub fn uniform(&mut self) -> f64 {
        (self.next_u64() >> 11) as f64 / (1u64 << 53) as f64
    }
}

/// FNV-1a, to give each tensor its own stream.
pub fn name_hash(name: &str) -> u64 {
    name.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3)
    })
}

fn uniform(shape: &[i64], bound: f64, rng: &mut Rng) -> ArrayD<f32> {
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32)
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape and count agree")
}

/// Fresh parameters and buffers for every layer of a model.
pub fn initialize(model: &Model, seed: u64) -> WeightSet {
    let mut out = WeightSet::new();
    for layer in &model.layers {
        let fan_in = layer.op.fan_in().unwrap_or(1);
        for p in &layer.params {
            if super::is_ignored_key(&p.name) {
                continue;
            }
            let mut rng = Rng::new(seed ^ name_hash(&p.name));
            let suffix = p.name.rsplit('.').next().unwrap_or("");
            let shape: Vec<usize> = p.shape.iter().map(|&d| d as usize).collect();
            let value = match (&layer.op, suffix) {
                (Op::BatchNorm { .. }, "weight" | "running_var") => ArrayD::ones(IxDyn(&shape)),
                (Op::BatchNorm { .. }, _) => ArrayD::zeros(IxDyn(&shape)),
                _ => uniform(&p.shape, 1.0 / (fan_in.max(1) as f64).sqrt(), &mut rng),
            };
            out.insert(p.name.clone(), value);
        }
    }
    out
}
