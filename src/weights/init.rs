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
use crate::rng::{name_hash, Rng};
use ndarray::{ArrayD, IxDyn};

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
            if p.kind == crate::check::model::TensorKind::Counter {
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
