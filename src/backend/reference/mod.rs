//! The reference executor: interprets a [`Graph`] op by op with ndarray.
//!
//! Written for clarity and correctness, not speed: it is the oracle the
//! compiled backends are compared with. Generic over the element type, so
//! gradient checks run it in f64 and everything else in f32.

mod basic;
mod conv;
mod executable;
mod pool;

pub use basic::dropout_keep;
pub use executable::{Reference, ReferenceExecutable};

use crate::ir::{Graph, Op, UnaryFn};
use ndarray::{ArrayD, IxDyn};
use std::collections::HashMap;
use std::fmt;

/// The element types the executor computes in.
pub trait Elem:
    num_traits::Float
    + num_traits::FromPrimitive
    + ndarray::LinalgScalar
    + ndarray::ScalarOperand
    + std::iter::Sum
    + fmt::Debug
    + Send
    + Sync
    + 'static
{
    fn of(v: f64) -> Self {
        <Self as num_traits::FromPrimitive>::from_f64(v).unwrap_or_else(Self::nan)
    }

    fn f64(self) -> f64 {
        num_traits::ToPrimitive::to_f64(&self).unwrap_or(f64::NAN)
    }
}

impl Elem for f32 {}
impl Elem for f64 {}

pub type Tensor<T> = ArrayD<T>;

#[derive(Debug, Clone, PartialEq)]
pub enum ExecError {
    MissingInput(String),
    WrongShape {
        name: String,
        expected: Vec<usize>,
        found: Vec<usize>,
    },
    /// The first node whose value has a NaN or an infinity.
    NonFinite {
        node: usize,
        op: &'static str,
        scope: String,
    },
}

impl fmt::Display for ExecError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExecError::MissingInput(n) => write!(f, "no value was given for the input `{n}`"),
            ExecError::WrongShape {
                name,
                expected,
                found,
            } => {
                write!(
                    f,
                    "`{name}` has shape {found:?}, but the graph expects {expected:?}"
                )
            }
            ExecError::NonFinite { node, op, scope } => {
                let place = scope.split(':').next().unwrap_or("");
                if place.is_empty() {
                    write!(f, "%{node} = {op} is not finite")
                } else {
                    write!(f, "%{node} = {op} in `{place}` is not finite")
                }
            }
        }
    }
}

impl std::error::Error for ExecError {}

/// Runs `g` on named inputs and returns its named outputs. `seed` picks the
/// dropout masks of this run.
pub fn run<T: Elem>(
    g: &Graph,
    inputs: &HashMap<String, Tensor<T>>,
    seed: u64,
) -> Result<HashMap<String, Tensor<T>>, ExecError> {
    execute(g, inputs, seed, false)
}

/// [`run`], failing with [`ExecError::NonFinite`] at the first node whose
/// value is not finite (slower: every value is scanned).
pub fn run_checked<T: Elem>(
    g: &Graph,
    inputs: &HashMap<String, Tensor<T>>,
    seed: u64,
) -> Result<HashMap<String, Tensor<T>>, ExecError> {
    execute(g, inputs, seed, true)
}

fn execute<T: Elem>(
    g: &Graph,
    inputs: &HashMap<String, Tensor<T>>,
    seed: u64,
    check: bool,
) -> Result<HashMap<String, Tensor<T>>, ExecError> {
    // The last node that reads each value, so values are freed early.
    let mut last_use: Vec<usize> = (0..g.nodes.len()).collect();
    for (i, n) in g.nodes.iter().enumerate() {
        for a in &n.args {
            last_use[a.0 as usize] = i;
        }
    }
    for (_, id) in &g.outputs {
        last_use[id.0 as usize] = usize::MAX;
    }
    let mut values: Vec<Option<Tensor<T>>> = vec![None; g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        let args: Vec<&Tensor<T>> = n
            .args
            .iter()
            .map(|a| {
                values[a.0 as usize]
                    .as_ref()
                    .expect("arguments are computed before use and kept until their last use")
            })
            .collect();
        let out = match &n.op {
            Op::Input { name, shape, .. } => {
                let v = inputs
                    .get(name)
                    .ok_or_else(|| ExecError::MissingInput(name.clone()))?;
                if v.shape() != shape.as_slice() {
                    return Err(ExecError::WrongShape {
                        name: name.clone(),
                        expected: shape.clone(),
                        found: v.shape().to_vec(),
                    });
                }
                v.clone()
            }
            op => eval(op, &args, &n.ty.shape, seed),
        };
        debug_assert_eq!(out.shape(), n.ty.shape.as_slice(), "%{i} = {}", n.op.name());
        if check && out.iter().any(|v| !v.is_finite()) {
            return Err(ExecError::NonFinite {
                node: i,
                op: n.op.name(),
                scope: n.scope.clone(),
            });
        }
        values[i] = Some(out);
        for a in &n.args {
            if last_use[a.0 as usize] == i {
                values[a.0 as usize] = None;
            }
        }
    }
    Ok(g.outputs
        .iter()
        .map(|(name, id)| {
            (
                name.name(),
                values[id.0 as usize].clone().expect("outputs are kept"),
            )
        })
        .collect())
}

/// One op on computed arguments; `shape` is the result shape.
pub fn eval<T: Elem>(op: &Op, args: &[&Tensor<T>], shape: &[usize], seed: u64) -> Tensor<T> {
    match op {
        Op::Input { .. } => unreachable!("inputs are bound by `run`"),
        Op::Const { value, .. } => ArrayD::from_elem(IxDyn(shape), T::of(*value)),
        Op::Unary(f) => args[0].mapv(|x| basic::unary(*f, x)),
        Op::UnaryGrad(f) => basic::unary_grad(*f, args[0], args[1]),
        Op::Binary(f) => basic::binary(*f, args[0], args[1], shape),
        Op::ReduceSum { axes } => basic::reduce(args[0], axes, basic::Reduce::Sum),
        Op::ReduceMean { axes } => basic::reduce(args[0], axes, basic::Reduce::Mean),
        Op::ReduceMax { axes } => basic::reduce(args[0], axes, basic::Reduce::Max),
        Op::BroadcastTo { shape } => args[0]
            .broadcast(IxDyn(shape))
            .expect("type-checked broadcast")
            .to_owned(),
        Op::SumTo { shape } => basic::sum_to(args[0], shape),
        Op::Reshape { shape } => basic::reshape(args[0], shape),
        Op::MatMul { trans_a, trans_b } => basic::matmul(args[0], args[1], *trans_a, *trans_b),
        Op::Conv2d(geom) => conv::forward(args[0], args[1], geom),
        Op::Conv2dGradInput { geom, shape } => conv::grad_input(args[0], args[1], geom, shape),
        Op::Conv2dGradWeight { geom, shape } => conv::grad_weight(args[0], args[1], geom, shape),
        Op::MaxPool2d(g) => pool::max_forward(args[0], g),
        Op::MaxPool2dGrad(g) => pool::max_backward(args[0], args[1], g),
        Op::AvgPool2d {
            geom,
            count_include_pad,
        } => pool::avg_forward(args[0], geom, *count_include_pad),
        Op::AvgPool2dGrad {
            geom,
            count_include_pad,
            shape,
        } => pool::avg_backward(args[0], geom, *count_include_pad, shape),
        Op::AdaptiveAvgPool2d { size } => pool::adaptive_avg_forward(args[0], *size),
        Op::AdaptiveAvgPool2dGrad { shape } => pool::adaptive_avg_backward(args[0], shape),
        Op::AdaptiveMaxPool2d { size } => pool::adaptive_max_forward(args[0], *size),
        Op::AdaptiveMaxPool2dGrad => pool::adaptive_max_backward(args[0], args[1]),
        Op::ChannelWindowSum { before, after, .. } => {
            basic::channel_window_sum(args[0], *before, *after)
        }
        Op::Concat { axis } => basic::concat(args, *axis),
        Op::Slice { axis, start, end } => basic::slice(args[0], *axis, *start, *end),
        Op::PadAxis {
            axis,
            before,
            after,
        } => basic::pad_axis(args[0], *axis, *before, *after),
        Op::Dropout { p, salt } => basic::dropout(args[0], *p, *salt, seed),
    }
}

/// Converts a tensor between element types (f32 weights for an f64 check).
pub fn cast<A: Elem, B: Elem>(t: &Tensor<A>) -> Tensor<B> {
    t.mapv(|x| B::of(x.f64()))
}

/// Whether `f` is differentiable everywhere the executor evaluates it; used
/// by gradient checks to stay away from kinks.
pub fn has_kink(f: UnaryFn) -> bool {
    matches!(
        f,
        UnaryFn::Relu | UnaryFn::Relu6 | UnaryFn::LeakyRelu { .. } | UnaryFn::Elu { .. }
    )
}
