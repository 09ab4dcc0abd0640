//! Lowering: from the checked [`Model`] to a [`Graph`] for one input shape
//! and one mode. Each layer becomes a few primitive ops in the scope of its
//! path; parameters and buffers become inputs named by `state_dict` keys.

use super::ops::{ConvGeom, PoolGeom};
use super::{BinaryFn, Graph, Mode, NodeId, Op, Output, Role, UnaryFn};
use crate::check::model::{Model, TensorKind};
use crate::check::ops::{Activation, Op as Layer};
use crate::check::train::Loss;

/// The loss a training graph ends in; its target is the input `target`.
#[derive(Clone, Debug, PartialEq)]
pub enum LossSpec {
    /// Cross-entropy of logits against a target distribution `[N, K]`
    /// (one-hot labels, or soft labels), averaged over the batch.
    CrossEntropy { label_smoothing: f64 },
    /// Mean squared error over every element.
    Mse,
}

impl From<&Loss> for LossSpec {
    fn from(l: &Loss) -> LossSpec {
        match l {
            Loss::CrossEntropy { label_smoothing } => LossSpec::CrossEntropy {
                label_smoothing: *label_smoothing,
            },
            Loss::Mse => LossSpec::Mse,
        }
    }
}

/// Lowers a model whose shapes are all concrete. With a loss, the graph
/// also takes `target` and has the output `loss` (in either mode, so that
/// evaluation reports the loss training minimizes); in `Mode::Train`, per
/// batch norm, `update:NAME.running_mean` and `update:NAME.running_var`.
pub fn lower(model: &Model, mode: Mode, loss: Option<&LossSpec>) -> Result<Graph, String> {
    lower_with(model, mode, loss, &|_| false, &|_| None)
}

/// [`lower`], with the layers whose parameters are all `frozen` in
/// evaluation mode when training (their batch norms use and keep their
/// running statistics, as a frozen backbone should), and the model's
/// symbolic sizes bound by `sizes` (`N` to the batch size).
pub fn lower_with(
    model: &Model,
    mode: Mode,
    loss: Option<&LossSpec>,
    frozen: &dyn Fn(&str) -> bool,
    sizes: &dyn Fn(&str) -> Option<i64>,
) -> Result<Graph, String> {
    let mut g = Graph::new(&model.name, mode);
    let mut values: Vec<Option<NodeId>> = vec![None; model.values.len()];
    let concrete = |v: crate::check::model::ValueId| -> Result<Vec<usize>, String> {
        model
            .shape(v)
            .iter()
            .map(|d| {
                d.substitute(sizes)?
                    .as_const()
                    .and_then(|c| usize::try_from(c).ok())
            })
            .collect::<Option<Vec<usize>>>()
            .ok_or_else(|| {
                format!(
                    "`{}` has a symbolic shape; give a concrete input shape",
                    model.name
                )
            })
    };
    for input in &model.inputs {
        let shape = concrete(input.value)?;
        values[input.value.0 as usize] = Some(g.input(&input.name, Role::Data, shape, ""));
    }
    for (index, layer) in model.layers.iter().enumerate() {
        let args: Vec<NodeId> = layer
            .inputs
            .iter()
            .map(|v| {
                values[v.0 as usize]
                    .ok_or_else(|| format!("layer `{}` uses a value computed later", layer.path))
            })
            .collect::<Result<_, _>>()?;
        // The scope names the layer and its kind: `layer1.0.bn1:batch_norm`.
        let scope = format!("{}:{}", layer.path, layer.op.name());
        let mut params = Vec::new();
        for p in layer
            .params
            .iter()
            .filter(|p| p.kind != TensorKind::Counter)
        {
            let shape: Vec<usize> = p.shape.iter().map(|&d| d as usize).collect();
            let role = match p.kind {
                TensorKind::Parameter => Role::Parameter,
                TensorKind::Buffer => Role::Buffer,
                TensorKind::Counter => continue,
            };
            params.push(g.input(&p.name, role, shape, &scope));
        }
        let layer_frozen = !layer.params.is_empty()
            && layer
                .params
                .iter()
                .filter(|p| p.kind == TensorKind::Parameter)
                .all(|p| frozen(&p.name));
        let layer_mode = if layer_frozen { Mode::Infer } else { mode };
        if layer_frozen && mode == Mode::Train {
            g.eval_layers.push(layer.path.clone());
        }
        let mut b = Builder {
            g: &mut g,
            scope: &scope,
        };
        // A reshape may name symbolic sizes (`reshape([N, 3, 2])`).
        let bound;
        let op = match &layer.op {
            Layer::Reshape { shape } => {
                bound = Layer::Reshape {
                    shape: shape
                        .iter()
                        .map(|d| d.substitute(sizes).unwrap_or_else(|| d.clone()))
                        .collect(),
                };
                &bound
            }
            other => other,
        };
        let out = b.layer(op, &args, &params, &layer.path, layer_mode, index as u64)?;
        let expected = concrete(layer.output)?;
        if g.shape(out) != expected.as_slice() {
            return Err(format!(
                "lowering `{}` gave {:?}, but the checker computed {expected:?}",
                layer.path,
                g.shape(out)
            ));
        }
        values[layer.output.0 as usize] = Some(out);
    }
    let output = model
        .output
        .and_then(|v| values[v.0 as usize])
        .ok_or("the model has no output")?;
    g.set_output(Output::Logits, output);
    if let Some(loss) = loss {
        let l = add_loss(&mut g, output, loss);
        g.set_output(Output::Loss, l);
    }
    super::verify::debug_verify(&g, "lowering");
    Ok(g)
}

/// Appends the loss of `logits` against a new `target` input.
pub fn add_loss(g: &mut Graph, logits: NodeId, loss: &LossSpec) -> NodeId {
    let shape = g.shape(logits).to_vec();
    let target = g.input("target", Role::Target, shape.clone(), "loss");
    let mut b = Builder { g, scope: "loss" };
    let all: Vec<usize> = (0..shape.len()).collect();
    match loss {
        LossSpec::CrossEntropy { label_smoothing } => {
            let classes = shape.get(1).copied().unwrap_or(1) as f64;
            let eps = *label_smoothing;
            let t = if eps > 0.0 {
                let keep = b.scalar(1.0 - eps);
                let spread = b.scalar(eps / classes);
                let scaled = b.bin(BinaryFn::Mul, target, keep);
                b.bin(BinaryFn::Add, scaled, spread)
            } else {
                target
            };
            let logp = b.log_softmax(logits, 1);
            let prod = b.bin(BinaryFn::Mul, t, logp);
            let total = b.op(Op::ReduceSum { axes: all }, &[prod]);
            let scalar = b.op(Op::Reshape { shape: Vec::new() }, &[total]);
            let scale = b.scalar(-1.0 / shape[0] as f64);
            b.bin(BinaryFn::Mul, scalar, scale)
        }
        LossSpec::Mse => {
            let diff = b.bin(BinaryFn::Sub, logits, target);
            let sq = b.op(Op::Unary(UnaryFn::Square), &[diff]);
            let mean = b.op(Op::ReduceMean { axes: all }, &[sq]);
            b.op(Op::Reshape { shape: Vec::new() }, &[mean])
        }
    }
}

struct Builder<'g> {
    g: &'g mut Graph,
    scope: &'g str,
}

fn pair(v: [i64; 2]) -> [usize; 2] {
    [v[0] as usize, v[1] as usize]
}

impl Builder<'_> {
    fn op(&mut self, op: Op, args: &[NodeId]) -> NodeId {
        self.g.add(op, args, self.scope)
    }

    fn bin(&mut self, f: BinaryFn, a: NodeId, b: NodeId) -> NodeId {
        self.op(Op::Binary(f), &[a, b])
    }

    fn unary(&mut self, f: UnaryFn, a: NodeId) -> NodeId {
        self.op(Op::Unary(f), &[a])
    }

    fn scalar(&mut self, v: f64) -> NodeId {
        self.op(
            Op::Const {
                value: v,
                shape: Vec::new(),
            },
            &[],
        )
    }

    fn reshape(&mut self, a: NodeId, shape: Vec<usize>) -> NodeId {
        if self.g.shape(a) == shape.as_slice() {
            return a;
        }
        self.op(Op::Reshape { shape }, &[a])
    }

    /// A per-channel vector `[C]` shaped to broadcast over axis 1 of a
    /// tensor of rank `rank`.
    fn per_channel(&mut self, v: NodeId, rank: usize) -> NodeId {
        let c = self.g.shape(v)[0];
        let mut shape = vec![1; rank];
        shape[1] = c;
        self.reshape(v, shape)
    }

    fn log_softmax(&mut self, x: NodeId, axis: usize) -> NodeId {
        let m = self.op(Op::ReduceMax { axes: vec![axis] }, &[x]);
        let shifted = self.bin(BinaryFn::Sub, x, m);
        let e = self.unary(UnaryFn::Exp, shifted);
        let s = self.op(Op::ReduceSum { axes: vec![axis] }, &[e]);
        let log_s = self.unary(UnaryFn::Log, s);
        self.bin(BinaryFn::Sub, shifted, log_s)
    }

    #[allow(clippy::too_many_arguments)]
    fn layer(
        &mut self,
        layer: &Layer,
        args: &[NodeId],
        params: &[NodeId],
        path: &str,
        mode: Mode,
        salt: u64,
    ) -> Result<NodeId, String> {
        let x = args[0];
        let rank = self.g.shape(x).len();
        Ok(match layer {
            Layer::Conv2d {
                stride,
                padding,
                dilation,
                groups,
                bias,
                ..
            } => {
                let geom = ConvGeom {
                    stride: pair(*stride),
                    padding: padding.map(|p| p as usize),
                    dilation: pair(*dilation),
                    groups: *groups as usize,
                };
                let y = self.op(Op::Conv2d(geom), &[x, params[0]]);
                if *bias {
                    let b = self.per_channel(params[1], 4);
                    self.bin(BinaryFn::Add, y, b)
                } else {
                    y
                }
            }
            Layer::Linear {
                bias, out_features, ..
            } => {
                let shape = self.g.shape(x).to_vec();
                let features = shape[rank - 1];
                let rows: usize = shape[..rank - 1].iter().product();
                let x2 = self.reshape(x, vec![rows, features]);
                let mut y = self.op(
                    Op::MatMul {
                        trans_a: false,
                        trans_b: true,
                    },
                    &[x2, params[0]],
                );
                if *bias {
                    y = self.bin(BinaryFn::Add, y, params[1]);
                }
                let mut out_shape = shape;
                out_shape[rank - 1] = *out_features as usize;
                self.reshape(y, out_shape)
            }
            Layer::MaxPool {
                kernel,
                stride,
                padding,
                dilation,
                ceil_mode,
            } => self.op(
                Op::MaxPool2d(PoolGeom {
                    kernel: pair(*kernel),
                    stride: pair(*stride),
                    padding: pair(*padding),
                    dilation: pair(*dilation),
                    ceil_mode: *ceil_mode,
                }),
                &[x],
            ),
            Layer::AvgPool {
                kernel,
                stride,
                padding,
                ceil_mode,
                count_include_pad,
            } => self.op(
                Op::AvgPool2d {
                    geom: PoolGeom {
                        kernel: pair(*kernel),
                        stride: pair(*stride),
                        padding: pair(*padding),
                        dilation: [1, 1],
                        ceil_mode: *ceil_mode,
                    },
                    count_include_pad: *count_include_pad,
                },
                &[x],
            ),
            Layer::AdaptiveAvgPool { size } => {
                self.op(Op::AdaptiveAvgPool2d { size: pair(*size) }, &[x])
            }
            Layer::AdaptiveMaxPool { size } => {
                self.op(Op::AdaptiveMaxPool2d { size: pair(*size) }, &[x])
            }
            Layer::GlobalAvgPool => {
                let shape = self.g.shape(x).to_vec();
                let m = self.op(Op::ReduceMean { axes: vec![2, 3] }, &[x]);
                self.reshape(m, shape[..2].to_vec())
            }
            Layer::Flatten { start, end } => {
                let shape = self.g.shape(x).to_vec();
                let mut out = shape[..*start].to_vec();
                out.push(shape[*start..=*end].iter().product());
                out.extend_from_slice(&shape[end + 1..]);
                self.reshape(x, out)
            }
            Layer::Reshape { shape } => {
                let dims = shape
                    .iter()
                    .map(|d| d.as_const().map(|v| v as usize))
                    .collect::<Option<Vec<usize>>>()
                    .ok_or_else(|| format!("`{path}` reshapes to a symbolic shape"))?;
                self.reshape(x, dims)
            }
            Layer::BatchNorm {
                eps,
                momentum,
                affine,
                ..
            } => self.batch_norm(x, params, *eps, *momentum, *affine, path, mode)?,
            Layer::Dropout { p } => match mode {
                Mode::Train if *p > 0.0 => self.op(Op::Dropout { p: *p, salt }, &[x]),
                _ => x,
            },
            Layer::Activation(a) => match a {
                Activation::Identity => x,
                Activation::Relu => self.unary(UnaryFn::Relu, x),
                Activation::Relu6 => self.unary(UnaryFn::Relu6, x),
                Activation::Sigmoid => self.unary(UnaryFn::Sigmoid, x),
                Activation::Tanh => self.unary(UnaryFn::Tanh, x),
                Activation::LeakyRelu { slope } => {
                    self.unary(UnaryFn::LeakyRelu { slope: *slope }, x)
                }
                Activation::Gelu { tanh } => self.unary(UnaryFn::Gelu { tanh: *tanh }, x),
                Activation::Elu { alpha } => self.unary(UnaryFn::Elu { alpha: *alpha }, x),
                Activation::Silu => self.unary(UnaryFn::Silu, x),
            },
            Layer::Softmax { axis } => {
                let m = self.op(Op::ReduceMax { axes: vec![*axis] }, &[x]);
                let shifted = self.bin(BinaryFn::Sub, x, m);
                let e = self.unary(UnaryFn::Exp, shifted);
                let s = self.op(Op::ReduceSum { axes: vec![*axis] }, &[e]);
                self.bin(BinaryFn::Div, e, s)
            }
            Layer::LogSoftmax { axis } => self.log_softmax(x, *axis),
            Layer::Maxout { pieces, axis } => {
                let shape = self.g.shape(x).to_vec();
                let k = *pieces as usize;
                let mut split = shape[..*axis].to_vec();
                split.push(shape[*axis] / k);
                split.push(k);
                split.extend_from_slice(&shape[axis + 1..]);
                let r = self.reshape(x, split);
                let m = self.op(
                    Op::ReduceMax {
                        axes: vec![axis + 1],
                    },
                    &[r],
                );
                let mut out = shape;
                out[*axis] /= k;
                self.reshape(m, out)
            }
            Layer::LocalResponseNorm {
                size,
                alpha,
                beta,
                k,
            } => {
                // PyTorch: x / (k + alpha/size * sum of x^2 over the window)^beta,
                // the window padded by size/2 before and (size-1)/2 after.
                let size = *size as usize;
                let sq = self.unary(UnaryFn::Square, x);
                let sum = self.op(
                    Op::ChannelWindowSum {
                        size,
                        before: size / 2,
                        after: (size - 1) / 2,
                    },
                    &[sq],
                );
                let a = self.scalar(alpha / size as f64);
                let scaled = self.bin(BinaryFn::Mul, sum, a);
                let kk = self.scalar(*k);
                let base = self.bin(BinaryFn::Add, scaled, kk);
                let inv = self.unary(UnaryFn::Pow { exponent: -beta }, base);
                self.bin(BinaryFn::Mul, x, inv)
            }
            Layer::Concat { axis } => self.op(Op::Concat { axis: *axis }, args),
            Layer::Add => self.bin(BinaryFn::Add, args[0], args[1]),
            Layer::Mul => self.bin(BinaryFn::Mul, args[0], args[1]),
        })
    }

    /// Batch norm over axis 1. Training normalises with the batch's mean and
    /// biased variance and updates the running statistics with the unbiased
    /// variance, as PyTorch does; inference uses the running statistics.
    #[allow(clippy::too_many_arguments)]
    fn batch_norm(
        &mut self,
        x: NodeId,
        params: &[NodeId],
        eps: f64,
        momentum: f64,
        affine: bool,
        path: &str,
        mode: Mode,
    ) -> Result<NodeId, String> {
        let shape = self.g.shape(x).to_vec();
        let rank = shape.len();
        let (gamma, beta, stats) = if affine {
            (Some(params[0]), Some(params[1]), &params[2..])
        } else {
            (None, None, params)
        };
        let (running_mean, running_var) = (stats[0], stats[1]);
        let axes: Vec<usize> = (0..rank).filter(|&a| a != 1).collect();
        let eps_c = self.scalar(eps);
        let normalized = match mode {
            Mode::Train => {
                let count: usize = axes.iter().map(|&a| shape[a]).product();
                let mean = self.op(Op::ReduceMean { axes: axes.clone() }, &[x]);
                let centered = self.bin(BinaryFn::Sub, x, mean);
                let sq = self.unary(UnaryFn::Square, centered);
                let var = self.op(Op::ReduceMean { axes }, &[sq]);
                let var_eps = self.bin(BinaryFn::Add, var, eps_c);
                let inv = self.unary(UnaryFn::Rsqrt, var_eps);
                // Running statistics: (1 - m) * running + m * batch.
                let c = shape[1];
                let keep = self.scalar(1.0 - momentum);
                let take = self.scalar(momentum);
                let mean_c = self.reshape(mean, vec![c]);
                let old_m = self.bin(BinaryFn::Mul, running_mean, keep);
                let new_m = self.bin(BinaryFn::Mul, mean_c, take);
                let rm = self.bin(BinaryFn::Add, old_m, new_m);
                let unbias = self.scalar(count as f64 / (count.max(2) - 1) as f64);
                let var_c = self.reshape(var, vec![c]);
                let var_u = self.bin(BinaryFn::Mul, var_c, unbias);
                let old_v = self.bin(BinaryFn::Mul, running_var, keep);
                let new_v = self.bin(BinaryFn::Mul, var_u, take);
                let rv = self.bin(BinaryFn::Add, old_v, new_v);
                self.g
                    .set_output(Output::Update(format!("{path}.running_mean")), rm);
                self.g
                    .set_output(Output::Update(format!("{path}.running_var")), rv);
                self.bin(BinaryFn::Mul, centered, inv)
            }
            Mode::Infer => {
                let var_eps = self.bin(BinaryFn::Add, running_var, eps_c);
                let inv = self.unary(UnaryFn::Rsqrt, var_eps);
                let mean = self.per_channel(running_mean, rank);
                let inv = self.per_channel(inv, rank);
                let centered = self.bin(BinaryFn::Sub, x, mean);
                self.bin(BinaryFn::Mul, centered, inv)
            }
        };
        Ok(match (gamma, beta) {
            (Some(gm), Some(bt)) => {
                let gm = self.per_channel(gm, rank);
                let bt = self.per_channel(bt, rank);
                let scaled = self.bin(BinaryFn::Mul, normalized, gm);
                self.bin(BinaryFn::Add, scaled, bt)
            }
            _ => normalized,
        })
    }
}
