//! Layers that keep the spatial layout: normalization, dropout, activations,
//! softmax, maxout.

use super::args::{opt, req, ArgTy, Default};
use super::{Activation, Built, Op, OpDecl};
use crate::check::dim::{shape_to_string, Dim};
use crate::diag::Diagnostic;
use crate::diag_codes as codes;

pub const BATCH_NORM: OpDecl = OpDecl {
    name: "batch_norm",
    doc: "Batch normalization over axis 1: BatchNorm1d for [N, C] and [N, C, L], BatchNorm2d for [N, C, H, W].",
    params: &[
        opt("eps", ArgTy::Float, Default::Float(1e-5)),
        opt("momentum", ArgTy::Float, Default::Float(0.1)),
        opt("affine", ArgTy::Bool, Default::Bool(true)),
    ],
    build: |ctx| {
        let eps = ctx.float("eps");
        let momentum = ctx.float_in("momentum", 0.0, 1.0, false);
        let affine = ctx.bool("affine");
        if !ctx.expect_rank(&[2, 3, 4, 5], "[N, C, ...]") {
            return None;
        }
        let (eps, momentum, affine) = (eps?, momentum?, affine?);
        if eps <= 0.0 {
            let span = ctx.span_of("eps");
            ctx.error(super::out_of_range("batch_norm", "eps", &eps.to_string(), "greater than 0", span));
            return None;
        }
        let features = ctx.known_dim(1, "number of channels (axis 1)")?;
        Some(Built {
            op: Op::BatchNorm {
                features,
                eps,
                momentum,
                affine,
            },
            shape: ctx.input.to_vec(),
        })
    },
};

pub const DROPOUT: OpDecl = OpDecl {
    name: "dropout",
    doc: "Zeroes elements with probability `p` in training and scales the rest by 1/(1-p).",
    params: &[opt("p", ArgTy::Float, Default::Float(0.5))],
    build: |ctx| {
        let p = ctx.float_in("p", 0.0, 1.0, true)?;
        Some(Built {
            op: Op::Dropout { p },
            shape: ctx.input.to_vec(),
        })
    },
};

/// Declares a parameterless activation.
macro_rules! activation {
    ($const:ident, $name:literal, $doc:literal, $act:expr) => {
        pub const $const: OpDecl = OpDecl {
            name: $name,
            doc: $doc,
            params: &[],
            build: |ctx| {
                Some(Built {
                    op: Op::Activation($act),
                    shape: ctx.input.to_vec(),
                })
            },
        };
    };
}

activation!(
    IDENTITY,
    "identity",
    "Passes the input through unchanged.",
    Activation::Identity
);
activation!(RELU, "relu", "max(x, 0).", Activation::Relu);
activation!(RELU6, "relu6", "min(max(x, 0), 6).", Activation::Relu6);
activation!(
    SIGMOID,
    "sigmoid",
    "1 / (1 + exp(-x)).",
    Activation::Sigmoid
);
activation!(TANH, "tanh", "Hyperbolic tangent.", Activation::Tanh);
activation!(
    SILU,
    "silu",
    "x * sigmoid(x), also called swish.",
    Activation::Silu
);

pub const LEAKY_RELU: OpDecl = OpDecl {
    name: "leaky_relu",
    doc: "x for x > 0, slope * x otherwise.",
    params: &[opt("slope", ArgTy::Float, Default::Float(0.01))],
    build: |ctx| {
        let slope = ctx.float("slope")?;
        Some(Built {
            op: Op::Activation(Activation::LeakyRelu { slope }),
            shape: ctx.input.to_vec(),
        })
    },
};

pub const GELU: OpDecl = OpDecl {
    name: "gelu",
    doc: "Gaussian error linear unit; `tanh=true` uses the tanh approximation.",
    params: &[opt("tanh", ArgTy::Bool, Default::Bool(false))],
    build: |ctx| {
        let tanh = ctx.bool("tanh")?;
        Some(Built {
            op: Op::Activation(Activation::Gelu { tanh }),
            shape: ctx.input.to_vec(),
        })
    },
};

pub const ELU: OpDecl = OpDecl {
    name: "elu",
    doc: "x for x > 0, alpha * (exp(x) - 1) otherwise.",
    params: &[opt("alpha", ArgTy::Float, Default::Float(1.0))],
    build: |ctx| {
        let alpha = ctx.float("alpha")?;
        Some(Built {
            op: Op::Activation(Activation::Elu { alpha }),
            shape: ctx.input.to_vec(),
        })
    },
};

pub const SOFTMAX: OpDecl = OpDecl {
    name: "softmax",
    doc: "Softmax along `axis` (default 1, the class axis).",
    params: &[opt("axis", ArgTy::Int, Default::Int(1))],
    build: |ctx| {
        let axis = ctx.axis("axis")?;
        Some(Built {
            op: Op::Softmax { axis },
            shape: ctx.input.to_vec(),
        })
    },
};

pub const LOG_SOFTMAX: OpDecl = OpDecl {
    name: "log_softmax",
    doc: "Logarithm of the softmax along `axis` (default 1).",
    params: &[opt("axis", ArgTy::Int, Default::Int(1))],
    build: |ctx| {
        let axis = ctx.axis("axis")?;
        Some(Built {
            op: Op::LogSoftmax { axis },
            shape: ctx.input.to_vec(),
        })
    },
};

pub const MAXOUT: OpDecl = OpDecl {
    name: "maxout",
    doc: "Maxout (Goodfellow et al., 2013): the maximum over groups of `pieces` consecutive channels.",
    params: &[
        req("pieces", ArgTy::Int),
        opt("axis", ArgTy::Int, Default::Int(1)),
    ],
    build: |ctx| {
        let pieces = ctx.int_min("pieces", 1);
        let axis = ctx.axis("axis");
        let (pieces, axis) = (pieces?, axis?);
        let c = ctx.known_dim(axis, "size of the maxout axis")?;
        if c % pieces != 0 {
            let shape = shape_to_string(ctx.input);
            let span = ctx.span_of("pieces");
            let lower = (1..=pieces).rev().find(|p| c % p == 0).unwrap_or(1);
            ctx.error(
                Diagnostic::error(
                    codes::NOT_DIVISIBLE,
                    format!("`maxout` with {pieces} pieces needs axis {axis} divisible by {pieces}, but it is {c}"),
                )
                .at(span, format!("{pieces} pieces"))
                .with_label(ctx.input_origin, format!("this is {shape}"))
                .with_help(format!(
                    "use {lower} pieces, or make the previous layer produce a multiple of {pieces}"
                )),
            );
            return None;
        }
        let mut shape = ctx.input.to_vec();
        shape[axis] = Dim::constant(c / pieces);
        Some(Built {
            op: Op::Maxout { pieces, axis },
            shape,
        })
    },
};

pub const LOCAL_RESPONSE_NORM: OpDecl = OpDecl {
    name: "local_response_norm",
    doc: "Local response normalization across channels, as in the original AlexNet.",
    params: &[
        req("size", ArgTy::Int),
        opt("alpha", ArgTy::Float, Default::Float(1e-4)),
        opt("beta", ArgTy::Float, Default::Float(0.75)),
        opt("k", ArgTy::Float, Default::Float(1.0)),
    ],
    build: |ctx| {
        let size = ctx.int_min("size", 1);
        let alpha = ctx.float("alpha");
        let beta = ctx.float("beta");
        let k = ctx.float("k");
        if !ctx.expect_rank(&[3, 4, 5], "[N, C, ...]") {
            return None;
        }
        Some(Built {
            op: Op::LocalResponseNorm {
                size: size?,
                alpha: alpha?,
                beta: beta?,
                k: k?,
            },
            shape: ctx.input.to_vec(),
        })
    },
};
