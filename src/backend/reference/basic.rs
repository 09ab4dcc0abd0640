//! Elementwise ops, reductions and reshaping.

use super::{Elem, Tensor};
use crate::ir::{BinaryFn, UnaryFn};
use ndarray::{ArrayD, Axis, IxDyn, Slice, Zip};

const SQRT_2_OVER_PI: f64 = 0.797_884_560_802_865_4;
const GELU_C: f64 = 0.044_715;

fn sigmoid(x: f64) -> f64 {
    1.0 / (1.0 + (-x).exp())
}

/// The functions are computed in f64 and rounded once, so that f32 and f64
/// runs differ only by that rounding.
pub fn unary<T: Elem>(f: UnaryFn, x: T) -> T {
    let v = x.f64();
    T::of(match f {
        UnaryFn::Neg => -v,
        UnaryFn::Exp => v.exp(),
        UnaryFn::Log => v.ln(),
        UnaryFn::Sqrt => v.sqrt(),
        UnaryFn::Rsqrt => 1.0 / v.sqrt(),
        UnaryFn::Square => v * v,
        // `f64::max` drops a NaN operand; PyTorch's relu propagates it, and
        // so must we, or the non-finite guard never sees the divergence.
        UnaryFn::Relu if v.is_nan() => v,
        UnaryFn::Relu => v.max(0.0),
        UnaryFn::Relu6 => v.clamp(0.0, 6.0),
        UnaryFn::Sigmoid => sigmoid(v),
        UnaryFn::Tanh => v.tanh(),
        UnaryFn::LeakyRelu { slope } => {
            if v > 0.0 {
                v
            } else {
                slope * v
            }
        }
        UnaryFn::Gelu { tanh: false } => 0.5 * v * (1.0 + libm::erf(v / std::f64::consts::SQRT_2)),
        UnaryFn::Gelu { tanh: true } => {
            0.5 * v * (1.0 + (SQRT_2_OVER_PI * (v + GELU_C * v * v * v)).tanh())
        }
        UnaryFn::Elu { alpha } => {
            if v > 0.0 {
                v
            } else {
                alpha * (v.exp() - 1.0)
            }
        }
        UnaryFn::Silu => v * sigmoid(v),
        UnaryFn::Pow { exponent } => v.powf(exponent),
    })
}

/// `f'(x)`, with PyTorch's choices at the kinks (relu'(0) = 0).
/// A NaN input gives a NaN derivative, so that the gradient carries it on.
pub fn derivative(f: UnaryFn, v: f64) -> f64 {
    if v.is_nan() {
        return v;
    }
    match f {
        UnaryFn::Neg => -1.0,
        UnaryFn::Exp => v.exp(),
        UnaryFn::Log => 1.0 / v,
        UnaryFn::Sqrt => 0.5 / v.sqrt(),
        UnaryFn::Rsqrt => -0.5 / (v * v.sqrt()),
        UnaryFn::Square => 2.0 * v,
        UnaryFn::Relu => f64::from(u8::from(v > 0.0)),
        UnaryFn::Relu6 => f64::from(u8::from(v > 0.0 && v < 6.0)),
        UnaryFn::Sigmoid => {
            let s = sigmoid(v);
            s * (1.0 - s)
        }
        UnaryFn::Tanh => 1.0 - v.tanh().powi(2),
        UnaryFn::LeakyRelu { slope } => {
            if v > 0.0 {
                1.0
            } else {
                slope
            }
        }
        UnaryFn::Gelu { tanh: false } => {
            let cdf = 0.5 * (1.0 + libm::erf(v / std::f64::consts::SQRT_2));
            let pdf = (-0.5 * v * v).exp() / (2.0 * std::f64::consts::PI).sqrt();
            cdf + v * pdf
        }
        UnaryFn::Gelu { tanh: true } => {
            let inner = SQRT_2_OVER_PI * (v + GELU_C * v * v * v);
            let t = inner.tanh();
            0.5 * (1.0 + t)
                + 0.5 * v * (1.0 - t * t) * SQRT_2_OVER_PI * (1.0 + 3.0 * GELU_C * v * v)
        }
        UnaryFn::Elu { alpha } => {
            if v > 0.0 {
                1.0
            } else {
                alpha * v.exp()
            }
        }
        UnaryFn::Silu => {
            let s = sigmoid(v);
            s * (1.0 + v * (1.0 - s))
        }
        UnaryFn::Pow { exponent } => exponent * v.powf(exponent - 1.0),
    }
}

pub fn unary_grad<T: Elem>(f: UnaryFn, x: &Tensor<T>, dy: &Tensor<T>) -> Tensor<T> {
    let mut out = dy.clone();
    Zip::from(&mut out)
        .and(x)
        .for_each(|o, &xv| *o = T::of(o.f64() * derivative(f, xv.f64())));
    out
}

pub fn binary<T: Elem>(f: BinaryFn, a: &Tensor<T>, b: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let av = a.broadcast(IxDyn(shape)).expect("type-checked broadcast");
    let bv = b.broadcast(IxDyn(shape)).expect("type-checked broadcast");
    let mut out = ArrayD::zeros(IxDyn(shape));
    let op = |x: T, y: T| -> T {
        match f {
            BinaryFn::Add => x + y,
            BinaryFn::Sub => x - y,
            BinaryFn::Mul => x * y,
            BinaryFn::Div => x / y,
            // NaN on either side wins, as in `torch.maximum`.
            BinaryFn::Max => {
                if x >= y || x.is_nan() {
                    x
                } else {
                    y
                }
            }
            BinaryFn::Eq => {
                if x == y {
                    T::one()
                } else {
                    T::zero()
                }
            }
        }
    };
    Zip::from(&mut out)
        .and(&av)
        .and(&bv)
        .for_each(|o, &x, &y| *o = op(x, y));
    out
}

#[derive(Clone, Copy)]
pub enum Reduce {
    Sum,
    Mean,
    Max,
}

/// Reduces over `axes`, keeping them with size 1.
pub fn reduce<T: Elem>(a: &Tensor<T>, axes: &[usize], kind: Reduce) -> Tensor<T> {
    let mut out = a.clone();
    let mut count = 1usize;
    for &ax in axes {
        count *= a.shape()[ax];
        let r = match kind {
            Reduce::Sum | Reduce::Mean => out.sum_axis(Axis(ax)),
            Reduce::Max => out.fold_axis(Axis(ax), T::neg_infinity(), |&m, &x| {
                if x > m || x.is_nan() {
                    x
                } else {
                    m
                }
            }),
        };
        out = r.insert_axis(Axis(ax));
    }
    if let Reduce::Mean = kind {
        let n = T::of(count as f64);
        out.mapv_inplace(|x| x / n);
    }
    out
}

/// Sums a broadcast result back to `shape`.
pub fn sum_to<T: Elem>(a: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let lead = a.ndim() - shape.len();
    let mut out = a.clone();
    for _ in 0..lead {
        out = out.sum_axis(Axis(0));
    }
    for (i, &d) in shape.iter().enumerate() {
        if d == 1 && out.shape()[i] != 1 {
            out = out.sum_axis(Axis(i)).insert_axis(Axis(i));
        }
    }
    out
}

pub fn reshape<T: Elem>(a: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    a.as_standard_layout()
        .into_owned()
        .into_shape_with_order(IxDyn(shape))
        .expect("type-checked reshape")
}

pub fn matmul<T: Elem>(a: &Tensor<T>, b: &Tensor<T>, trans_a: bool, trans_b: bool) -> Tensor<T> {
    let a2 = a.view().into_dimensionality::<ndarray::Ix2>().expect("2-d");
    let b2 = b.view().into_dimensionality::<ndarray::Ix2>().expect("2-d");
    let a2 = if trans_a { a2.reversed_axes() } else { a2 };
    let b2 = if trans_b { b2.reversed_axes() } else { b2 };
    a2.dot(&b2).into_dyn()
}

/// `out[:, c] = sum of x[:, c - before ..= c + after]` (zero outside).
pub fn channel_window_sum<T: Elem>(x: &Tensor<T>, before: usize, after: usize) -> Tensor<T> {
    let c = x.shape()[1];
    let mut out: Tensor<T> = ArrayD::zeros(x.raw_dim());
    for ch in 0..c {
        let lo = ch.saturating_sub(before);
        let hi = (ch + after).min(c - 1);
        let mut dst = out.index_axis_mut(Axis(1), ch);
        for j in lo..=hi {
            Zip::from(&mut dst)
                .and(&x.index_axis(Axis(1), j))
                .for_each(|d, &v| *d = *d + v);
        }
    }
    out
}

pub fn concat<T: Elem>(args: &[&Tensor<T>], axis: usize) -> Tensor<T> {
    let views: Vec<_> = args.iter().map(|a| a.view()).collect();
    ndarray::concatenate(Axis(axis), &views).expect("type-checked concat")
}

pub fn slice<T: Elem>(a: &Tensor<T>, axis: usize, start: usize, end: usize) -> Tensor<T> {
    a.slice_axis(Axis(axis), Slice::from(start..end)).to_owned()
}

pub fn pad_axis<T: Elem>(a: &Tensor<T>, axis: usize, before: usize, after: usize) -> Tensor<T> {
    let mut shape = a.shape().to_vec();
    shape[axis] += before + after;
    let mut out = ArrayD::zeros(IxDyn(&shape));
    out.slice_axis_mut(Axis(axis), Slice::from(before..before + a.shape()[axis]))
        .assign(a);
    out
}

/// Whether element `index` of dropout layer `salt` is kept in run `seed`.
pub fn dropout_keep(p: f64, salt: u64, seed: u64, index: u64) -> bool {
    use crate::rng::{mix, to_unit};
    to_unit(mix(mix(seed ^ mix(salt)) ^ index)) >= p
}

pub fn dropout<T: Elem>(x: &Tensor<T>, p: f64, salt: u64, seed: u64) -> Tensor<T> {
    let scale = T::of(1.0 / (1.0 - p));
    let mut out = x.as_standard_layout().into_owned();
    for (i, v) in out.iter_mut().enumerate() {
        *v = if dropout_keep(p, salt, seed, i as u64) {
            *v * scale
        } else {
            T::zero()
        };
    }
    out
}
