//! Built-in layers: each declared once, with its signature, its shape rule,
//! its parameters and its multiply-accumulate count.
//!
//! Adding a layer means adding a variant to [`Op`], one [`OpDecl`] to
//! [`OPS`] and its rule in one of the files beside this one; the exhaustive
//! matches below make the compiler point at every other place to fill in.

pub mod args;
mod dense;
mod pointwise;
mod spatial;

pub use args::{bind_args, ArgTy, ArgVal, Default, ParamSpec};

use super::dim::Dim;
use super::params::{ParamInfo, TensorKind};
use crate::diag::Diagnostic;
use crate::diag_codes as codes;
use crate::syntax::source::Span;

/// A layer with all its attributes resolved to numbers.
#[derive(Clone, Debug, PartialEq)]
pub enum Op {
    Conv2d {
        in_channels: i64,
        out_channels: i64,
        kernel: [i64; 2],
        stride: [i64; 2],
        /// `[top, bottom, left, right]`; `padding="same"` may be asymmetric.
        padding: [i64; 4],
        dilation: [i64; 2],
        groups: i64,
        bias: bool,
    },
    Linear {
        in_features: i64,
        out_features: i64,
        bias: bool,
    },
    MaxPool {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
        dilation: [i64; 2],
        ceil_mode: bool,
    },
    AvgPool {
        kernel: [i64; 2],
        stride: [i64; 2],
        padding: [i64; 2],
        ceil_mode: bool,
        count_include_pad: bool,
    },
    AdaptiveAvgPool {
        size: [i64; 2],
    },
    AdaptiveMaxPool {
        size: [i64; 2],
    },
    /// Average over H and W, giving `[N, C]`.
    GlobalAvgPool,
    Flatten {
        start: usize,
        end: usize,
    },
    Reshape {
        shape: Vec<Dim>,
    },
    BatchNorm {
        features: i64,
        eps: f64,
        momentum: f64,
        affine: bool,
    },
    Dropout {
        p: f64,
    },
    Activation(Activation),
    Softmax {
        axis: usize,
    },
    LogSoftmax {
        axis: usize,
    },
    Maxout {
        pieces: i64,
        axis: usize,
    },
    LocalResponseNorm {
        size: i64,
        alpha: f64,
        beta: f64,
        k: f64,
    },
    Concat {
        axis: usize,
    },
    Add,
    Mul,
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Activation {
    Identity,
    Relu,
    Relu6,
    Sigmoid,
    Tanh,
    LeakyRelu { slope: f64 },
    Gelu { tanh: bool },
    Elu { alpha: f64 },
    Silu,
}

impl Op {
    /// The name used in summaries: the layer's name in the language.
    pub fn name(&self) -> &'static str {
        match self {
            Op::Conv2d { .. } => "conv2d",
            Op::Linear { .. } => "linear",
            Op::MaxPool { .. } => "max_pool",
            Op::AvgPool { .. } => "avg_pool",
            Op::AdaptiveAvgPool { .. } => "adaptive_avg_pool",
            Op::AdaptiveMaxPool { .. } => "adaptive_max_pool",
            Op::GlobalAvgPool => "global_avg_pool",
            Op::Flatten { .. } => "flatten",
            Op::Reshape { .. } => "reshape",
            Op::BatchNorm { .. } => "batch_norm",
            Op::Dropout { .. } => "dropout",
            Op::Activation(a) => match a {
                Activation::Identity => "identity",
                Activation::Relu => "relu",
                Activation::Relu6 => "relu6",
                Activation::Sigmoid => "sigmoid",
                Activation::Tanh => "tanh",
                Activation::LeakyRelu { .. } => "leaky_relu",
                Activation::Gelu { .. } => "gelu",
                Activation::Elu { .. } => "elu",
                Activation::Silu => "silu",
            },
            Op::Softmax { .. } => "softmax",
            Op::LogSoftmax { .. } => "log_softmax",
            Op::Maxout { .. } => "maxout",
            Op::LocalResponseNorm { .. } => "local_response_norm",
            Op::Concat { .. } => "concat",
            Op::Add => "add",
            Op::Mul => "mul",
        }
    }

    /// Parameters and buffers, with `state_dict` suffixes, for a layer at
    /// `path`.
    pub fn params(&self, path: &str) -> Vec<ParamInfo> {
        let p = |suffix: &str, shape: Vec<i64>, kind| ParamInfo {
            name: if path.is_empty() {
                suffix.to_string()
            } else {
                format!("{path}.{suffix}")
            },
            shape,
            kind,
        };
        use TensorKind::{Buffer, Counter, Parameter};
        match self {
            Op::Conv2d {
                in_channels,
                out_channels,
                kernel,
                groups,
                bias,
                ..
            } => {
                let mut v = vec![p(
                    "weight",
                    vec![*out_channels, in_channels / groups, kernel[0], kernel[1]],
                    Parameter,
                )];
                if *bias {
                    v.push(p("bias", vec![*out_channels], Parameter));
                }
                v
            }
            Op::Linear {
                in_features,
                out_features,
                bias,
            } => {
                let mut v = vec![p("weight", vec![*out_features, *in_features], Parameter)];
                if *bias {
                    v.push(p("bias", vec![*out_features], Parameter));
                }
                v
            }
            Op::BatchNorm {
                features, affine, ..
            } => {
                let mut v = Vec::new();
                if *affine {
                    v.push(p("weight", vec![*features], Parameter));
                    v.push(p("bias", vec![*features], Parameter));
                }
                v.push(p("running_mean", vec![*features], Buffer));
                v.push(p("running_var", vec![*features], Buffer));
                v.push(p("num_batches_tracked", vec![], Counter));
                v
            }
            _ => Vec::new(),
        }
    }

    /// Inputs that feed one output of a convolution or fully connected
    /// layer: its fan-in (for initialization) and its MACs per output.
    pub fn fan_in(&self) -> Option<i64> {
        match self {
            Op::Conv2d {
                in_channels,
                kernel,
                groups,
                ..
            } => Some((in_channels / groups) * kernel[0] * kernel[1]),
            Op::Linear { in_features, .. } => Some(*in_features),
            _ => None,
        }
    }

    /// Multiply-accumulates of convolution and fully connected layers
    /// (torchvision's convention: other layers count zero).
    pub fn macs(&self, output: &[Dim]) -> Option<Dim> {
        let Some(per_output) = self.fan_in() else {
            return Some(Dim::constant(0));
        };
        let mut n = Dim::constant(per_output);
        for d in output {
            n = n.checked_mul(d)?;
        }
        Some(n)
    }
}

pub struct OpDecl {
    pub name: &'static str,
    pub doc: &'static str,
    pub params: &'static [ParamSpec],
    pub build: fn(&mut OpCtx<'_>) -> Option<Built>,
}

pub struct Built {
    pub op: Op,
    pub shape: Vec<Dim>,
}

/// Everything a shape rule needs, and the place its diagnostics go.
pub struct OpCtx<'a> {
    pub decl: &'static OpDecl,
    pub args: Vec<Option<ArgVal>>,
    pub input: &'a [Dim],
    pub input_origin: Span,
    /// The layer that produced the input (its name and its own input shape),
    /// for messages that explain where a size came from.
    pub producer: Option<(&'static str, &'a [Dim])>,
    pub step_span: Span,
    pub diags: &'a mut Vec<Diagnostic>,
}

impl<'a> OpCtx<'a> {
    fn index(&self, name: &str) -> usize {
        self.decl
            .params
            .iter()
            .position(|p| p.name == name)
            .unwrap_or_else(|| panic!("op `{}` has no parameter `{name}`", self.decl.name))
    }

    pub fn arg(&self, name: &str) -> Option<&ArgVal> {
        self.args[self.index(name)].as_ref()
    }

    /// The span of an argument, or of the whole step when it was defaulted.
    pub fn span_of(&self, name: &str) -> Span {
        self.arg(name).map_or(self.step_span, |a| a.span)
    }

    pub fn error(&mut self, d: Diagnostic) {
        self.diags.push(d);
    }

    /// A known integer argument; symbolic values are reported.
    pub fn int(&mut self, name: &str) -> Option<i64> {
        let a = self.arg(name)?.clone();
        args::known_int(&a.value, a.span, name, self.decl.name, self.diags)
    }

    /// A known integer of at least `min`.
    pub fn int_min(&mut self, name: &str, min: i64) -> Option<i64> {
        let v = self.int(name)?;
        if v < min {
            let span = self.span_of(name);
            self.error(out_of_range(
                self.decl.name,
                name,
                &v.to_string(),
                &format!("at least {min}"),
                span,
            ));
            return None;
        }
        Some(v)
    }

    pub fn float(&mut self, name: &str) -> Option<f64> {
        match &self.arg(name)?.value {
            super::value::Value::Float(f) => Some(*f),
            super::value::Value::Int(d) => d.as_const().map(|v| v as f64),
            _ => None,
        }
    }

    /// A float in `[lo, hi]` (or `[lo, hi)` when `hi_open`).
    pub fn float_in(&mut self, name: &str, lo: f64, hi: f64, hi_open: bool) -> Option<f64> {
        let v = self.float(name)?;
        let ok = v >= lo && if hi_open { v < hi } else { v <= hi };
        if !ok {
            let span = self.span_of(name);
            let range = if hi_open {
                format!("in [{lo}, {hi})")
            } else {
                format!("in [{lo}, {hi}]")
            };
            self.error(out_of_range(
                self.decl.name,
                name,
                &super::value::format_float(v),
                &range,
                span,
            ));
            return None;
        }
        Some(v)
    }

    pub fn bool(&mut self, name: &str) -> Option<bool> {
        match &self.arg(name)?.value {
            super::value::Value::Bool(b) => Some(*b),
            _ => None,
        }
    }

    /// An `int` or `[int, int]` argument, each at least `min`.
    pub fn pair(&mut self, name: &str, min: i64) -> Option<[i64; 2]> {
        let a = self.arg(name)?.clone();
        let v = args::known_pair(&a.value, a.span, name, self.decl.name, self.diags)?;
        if v[0] < min || v[1] < min {
            self.error(out_of_range(
                self.decl.name,
                name,
                &a.value.describe(),
                &format!("at least {min}"),
                a.span,
            ));
            return None;
        }
        Some(v)
    }

    /// Checks the input rank; `layout` names the axes for the message.
    pub fn expect_rank(&mut self, ranks: &[usize], layout: &str) -> bool {
        if ranks.contains(&self.input.len()) {
            return true;
        }
        let shape = super::dim::shape_to_string(self.input);
        let mut d = Diagnostic::error(
            codes::RANK_MISMATCH,
            format!(
                "`{}` expects a {}-d input {layout}, but it gets {}-d {shape}",
                self.decl.name,
                ranks
                    .iter()
                    .map(|r| r.to_string())
                    .collect::<Vec<_>>()
                    .join(" or "),
                self.input.len()
            ),
        )
        .at(
            self.step_span,
            format!("`{}` needs {layout}", self.decl.name),
        )
        .with_label(self.input_origin, format!("this is {shape}"));
        if self.input.len() == 2 && ranks.contains(&4) {
            d = d.with_help(format!(
                "the input was already flattened; apply `{}` before `flatten`",
                self.decl.name
            ));
        } else if self.input.len() >= 4 && ranks.contains(&2) && !ranks.contains(&4) {
            d = d.with_help(format!("insert `flatten` before `{}`", self.decl.name));
        }
        self.error(d);
        false
    }

    /// The input size on `axis`, which must be known.
    pub fn known_dim(&mut self, axis: usize, what: &str) -> Option<i64> {
        let d = &self.input[axis];
        if let Some(v) = d.as_const() {
            return Some(v);
        }
        let shape = super::dim::shape_to_string(self.input);
        self.error(
            Diagnostic::error(
                codes::SYMBOLIC_SIZE,
                format!(
                    "`{}` needs to know the {what}, but it is `{d}`",
                    self.decl.name
                ),
            )
            .at(self.step_span, format!("the {what} must be a number here"))
            .with_label(self.input_origin, format!("this is {shape}"))
            .with_help("give the input a concrete size in its `input` declaration"),
        );
        None
    }

    /// A negative-or-positive axis argument, normalised to `0..rank`.
    pub fn axis(&mut self, name: &str) -> Option<usize> {
        let v = self.int(name)?;
        let rank = self.input.len() as i64;
        let a = if v < 0 { v + rank } else { v };
        if a < 0 || a >= rank {
            let span = self.span_of(name);
            self.error(out_of_range(
                self.decl.name,
                name,
                &v.to_string(),
                &format!("in {}..{} for a {rank}-d input", -rank, rank - 1),
                span,
            ));
            return None;
        }
        Some(a as usize)
    }
}

pub fn out_of_range(op: &str, param: &str, value: &str, range: &str, span: Span) -> Diagnostic {
    Diagnostic::error(
        codes::OUT_OF_RANGE,
        format!("`{op}` argument `{param}` is {value}, but it must be {range}"),
    )
    .at(span, format!("must be {range}"))
}

/// The table of every built-in layer.
pub static OPS: &[OpDecl] = &[
    spatial::CONV2D,
    spatial::MAX_POOL,
    spatial::AVG_POOL,
    spatial::ADAPTIVE_AVG_POOL,
    spatial::ADAPTIVE_MAX_POOL,
    spatial::GLOBAL_AVG_POOL,
    dense::LINEAR,
    dense::FLATTEN,
    dense::RESHAPE,
    pointwise::BATCH_NORM,
    pointwise::DROPOUT,
    pointwise::IDENTITY,
    pointwise::RELU,
    pointwise::RELU6,
    pointwise::SIGMOID,
    pointwise::TANH,
    pointwise::LEAKY_RELU,
    pointwise::GELU,
    pointwise::ELU,
    pointwise::SILU,
    pointwise::SOFTMAX,
    pointwise::LOG_SOFTMAX,
    pointwise::MAXOUT,
    pointwise::LOCAL_RESPONSE_NORM,
];

pub fn lookup(name: &str) -> Option<&'static OpDecl> {
    OPS.iter().find(|d| d.name == name)
}

/// Names that work as functions of tensors in expressions (`concat(a, b)`).
pub const TENSOR_FUNCTIONS: &[&str] = &["concat"];

/// Names that work as functions of numbers in expressions.
pub const SCALAR_FUNCTIONS: &[&str] = &["min", "max", "len"];
