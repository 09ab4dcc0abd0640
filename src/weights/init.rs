//! Fresh weights, seeded: PyTorch's defaults, or the `initializer` of a
//! training section for convolution and linear weights.
//!
//! PyTorch's defaults: convolution and linear weights Kaiming-uniform with
//! `a = sqrt(5)`, that is uniform in `±1/sqrt(fan_in)`; their biases
//! uniform in the same bound. Batch norm: weight 1, bias 0, running mean 0,
//! running variance 1. The distributions are PyTorch's; the random streams
//! are nnc's own (one per tensor, from the seed and the tensor's name, so
//! adding a layer does not change the others).

use super::WeightSet;
use crate::check::model::Model;
use crate::check::ops::Op;
use crate::check::train::{Fan, Initializer};
use crate::rng::{name_hash, Rng};
use ndarray::{ArrayD, IxDyn};

/// How one tensor's values are drawn.
#[derive(Clone, Copy, Debug, PartialEq)]
enum Draw {
    Uniform { bound: f64 },
    Normal { std: f64 },
}

fn draw(shape: &[i64], how: Draw, rng: &mut Rng) -> ArrayD<f32> {
    let shape: Vec<usize> = shape.iter().map(|&d| d as usize).collect();
    let n: usize = shape.iter().product();
    let data = (0..n)
        .map(|_| match how {
            Draw::Uniform { bound } => ((rng.uniform() * 2.0 - 1.0) * bound) as f32,
            Draw::Normal { std } => (rng.normal() * std) as f32,
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(&shape), data).expect("shape and count agree")
}

/// PyTorch's `_calculate_fan_in_and_fan_out`: a weight `[out, in, k...]`
/// has fan-in `in·k…` and fan-out `out·k…` (a grouped convolution's `in` is
/// already per group).
fn fans(shape: &[i64]) -> (f64, f64) {
    let field: i64 = shape.iter().skip(2).product();
    let out = shape.first().copied().unwrap_or(1) * field;
    let inp = shape.get(1).copied().unwrap_or(1) * field;
    (inp.max(1) as f64, out.max(1) as f64)
}

/// How `initializer` draws a convolution or linear weight of `shape`.
fn weight_draw(initializer: Initializer, shape: &[i64], fan_in: i64) -> Draw {
    let (fan_in_w, fan_out_w) = fans(shape);
    let kaiming_fan = |fan: Fan| match fan {
        Fan::In => fan_in_w,
        Fan::Out => fan_out_w,
    };
    match initializer {
        Initializer::Default => Draw::Uniform {
            bound: 1.0 / (fan_in.max(1) as f64).sqrt(),
        },
        Initializer::XavierUniform { gain } => Draw::Uniform {
            bound: gain * (6.0 / (fan_in_w + fan_out_w)).sqrt(),
        },
        Initializer::XavierNormal { gain } => Draw::Normal {
            std: gain * (2.0 / (fan_in_w + fan_out_w)).sqrt(),
        },
        // ReLU's gain, sqrt(2): the bound is sqrt(3)·gain/sqrt(fan).
        Initializer::KaimingUniform { fan } => Draw::Uniform {
            bound: (6.0 / kaiming_fan(fan)).sqrt(),
        },
        Initializer::KaimingNormal { fan } => Draw::Normal {
            std: (2.0 / kaiming_fan(fan)).sqrt(),
        },
    }
}

/// Fresh parameters and buffers for every layer of a model, with PyTorch's
/// defaults.
pub fn initialize(model: &Model, seed: u64) -> WeightSet {
    initialize_with(model, seed, Initializer::Default)
}

/// Fresh parameters and buffers, convolution and linear weights drawn as
/// `initializer` says.
pub fn initialize_with(model: &Model, seed: u64, initializer: Initializer) -> WeightSet {
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
                (Op::Conv2d { .. } | Op::Linear { .. }, "weight") => draw(
                    &p.shape,
                    weight_draw(initializer, &p.shape, fan_in),
                    &mut rng,
                ),
                _ => draw(
                    &p.shape,
                    weight_draw(Initializer::Default, &p.shape, fan_in),
                    &mut rng,
                ),
            };
            out.insert(p.name.clone(), value);
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fans_are_pytorchs() {
        // Conv2d(16, 32, 3, groups=2): weight [32, 8, 3, 3].
        assert_eq!(fans(&[32, 8, 3, 3]), (72.0, 288.0));
        // Linear(100, 10): weight [10, 100].
        assert_eq!(fans(&[10, 100]), (100.0, 10.0));
    }

    #[test]
    fn bounds_and_deviations_are_pytorchs_formulas() {
        let shape = [32, 8, 3, 3];
        let xavier = (6.0f64 / (72.0 + 288.0)).sqrt();
        assert_eq!(
            weight_draw(Initializer::XavierUniform { gain: 2.0 }, &shape, 72),
            Draw::Uniform {
                bound: 2.0 * xavier
            }
        );
        assert_eq!(
            weight_draw(Initializer::XavierNormal { gain: 1.0 }, &shape, 72),
            Draw::Normal {
                std: (2.0f64 / 360.0).sqrt()
            }
        );
        assert_eq!(
            weight_draw(Initializer::KaimingNormal { fan: Fan::Out }, &shape, 72),
            Draw::Normal {
                std: (2.0f64 / 288.0).sqrt()
            }
        );
        assert_eq!(
            weight_draw(Initializer::KaimingUniform { fan: Fan::In }, &shape, 72),
            Draw::Uniform {
                bound: (6.0f64 / 72.0).sqrt()
            }
        );
        assert_eq!(
            weight_draw(Initializer::Default, &shape, 72),
            Draw::Uniform {
                bound: 1.0 / 72f64.sqrt()
            }
        );
    }

    #[test]
    fn normal_draws_have_the_asked_deviation() {
        let mut rng = Rng::new(7);
        let v = draw(&[200, 500], Draw::Normal { std: 0.5 }, &mut rng);
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = v.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        assert!(mean.abs() < 0.005, "mean {mean}");
        assert!((var.sqrt() - 0.5).abs() < 0.005, "std {}", var.sqrt());
    }
}
