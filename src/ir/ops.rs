//! The operations of the graph IR, their type rules and their attributes.
//!
//! Forward layers lower to a small set of primitives (batch norm becomes
//! reductions and elementwise arithmetic), so that automatic
//! differentiation needs one rule per primitive and fusion can later
//! recombine them. Ops named `*_grad` exist only in backward graphs.

use super::{TensorType, TypeError};

/// What an input node is.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum Role {
    /// A batch of data (`x`).
    Data,
    /// The training target: one-hot or soft labels `[N, K]`, or regression
    /// targets.
    Target,
    /// A trained parameter (`conv1.weight`).
    Parameter,
    /// Saved state that is not trained (`bn1.running_mean`), and an
    /// optimizer's state (`momentum_buffer:fc.weight`).
    Buffer,
    /// A number the host gives each run (the step's learning rate), `[]`.
    Scalar,
}

impl Role {
    pub fn name(self) -> &'static str {
        match self {
            Role::Data => "data",
            Role::Target => "target",
            Role::Parameter => "param",
            Role::Buffer => "buffer",
            Role::Scalar => "scalar",
        }
    }

    /// Whether a backend keeps the input's value between runs (it is state,
    /// not fed by the host).
    pub fn is_state(self) -> bool {
        matches!(self, Role::Parameter | Role::Buffer)
    }

    pub fn parse(s: &str) -> Option<Role> {
        [
            Role::Data,
            Role::Target,
            Role::Parameter,
            Role::Buffer,
            Role::Scalar,
        ]
        .into_iter()
        .find(|r| r.name() == s)
    }
}

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnaryFn {
    Neg,
    Exp,
    Log,
    Sqrt,
    Rsqrt,
    Square,
    Relu,
    Relu6,
    Sigmoid,
    Tanh,
    LeakyRelu {
        slope: f64,
    },
    Gelu {
        tanh: bool,
    },
    Elu {
        alpha: f64,
    },
    Silu,
    /// `x^e` for a constant exponent.
    Pow {
        exponent: f64,
    },
}

impl UnaryFn {
    /// The name of the op that computes `dy * f'(x)`.
    pub fn grad_name(self) -> &'static str {
        match self {
            UnaryFn::Neg => "neg_grad",
            UnaryFn::Exp => "exp_grad",
            UnaryFn::Log => "log_grad",
            UnaryFn::Sqrt => "sqrt_grad",
            UnaryFn::Rsqrt => "rsqrt_grad",
            UnaryFn::Square => "square_grad",
            UnaryFn::Relu => "relu_grad",
            UnaryFn::Relu6 => "relu6_grad",
            UnaryFn::Sigmoid => "sigmoid_grad",
            UnaryFn::Tanh => "tanh_grad",
            UnaryFn::LeakyRelu { .. } => "leaky_relu_grad",
            UnaryFn::Gelu { .. } => "gelu_grad",
            UnaryFn::Elu { .. } => "elu_grad",
            UnaryFn::Silu => "silu_grad",
            UnaryFn::Pow { .. } => "pow_grad",
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            UnaryFn::Neg => "neg",
            UnaryFn::Exp => "exp",
            UnaryFn::Log => "log",
            UnaryFn::Sqrt => "sqrt",
            UnaryFn::Rsqrt => "rsqrt",
            UnaryFn::Square => "square",
            UnaryFn::Relu => "relu",
            UnaryFn::Relu6 => "relu6",
            UnaryFn::Sigmoid => "sigmoid",
            UnaryFn::Tanh => "tanh",
            UnaryFn::LeakyRelu { .. } => "leaky_relu",
            UnaryFn::Gelu { .. } => "gelu",
            UnaryFn::Elu { .. } => "elu",
            UnaryFn::Silu => "silu",
            UnaryFn::Pow { .. } => "pow",
        }
    }

    pub const ALL: [UnaryFn; 15] = [
        UnaryFn::Neg,
        UnaryFn::Exp,
        UnaryFn::Log,
        UnaryFn::Sqrt,
        UnaryFn::Rsqrt,
        UnaryFn::Square,
        UnaryFn::Relu,
        UnaryFn::Relu6,
        UnaryFn::Sigmoid,
        UnaryFn::Tanh,
        UnaryFn::LeakyRelu { slope: 0.01 },
        UnaryFn::Gelu { tanh: false },
        UnaryFn::Elu { alpha: 1.0 },
        UnaryFn::Silu,
        UnaryFn::Pow { exponent: 2.0 },
    ];

    fn attrs(self) -> Vec<(&'static str, Attr)> {
        match self {
            UnaryFn::LeakyRelu { slope } => vec![("slope", Attr::Float(slope))],
            UnaryFn::Gelu { tanh } => vec![("tanh", Attr::Bool(tanh))],
            UnaryFn::Elu { alpha } => vec![("alpha", Attr::Float(alpha))],
            UnaryFn::Pow { exponent } => vec![("exponent", Attr::Float(exponent))],
            _ => Vec::new(),
        }
    }

    fn from_parts(name: &str, a: &Attrs) -> Option<UnaryFn> {
        Some(match name {
            "neg" => UnaryFn::Neg,
            "exp" => UnaryFn::Exp,
            "log" => UnaryFn::Log,
            "sqrt" => UnaryFn::Sqrt,
            "rsqrt" => UnaryFn::Rsqrt,
            "square" => UnaryFn::Square,
            "relu" => UnaryFn::Relu,
            "relu6" => UnaryFn::Relu6,
            "sigmoid" => UnaryFn::Sigmoid,
            "tanh" => UnaryFn::Tanh,
            "leaky_relu" => UnaryFn::LeakyRelu {
                slope: a.float("slope")?,
            },
            "gelu" => UnaryFn::Gelu {
                tanh: a.bool("tanh")?,
            },
            "elu" => UnaryFn::Elu {
                alpha: a.float("alpha")?,
            },
            "silu" => UnaryFn::Silu,
            "pow" => UnaryFn::Pow {
                exponent: a.float("exponent")?,
            },
            _ => return None,
        })
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinaryFn {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    /// 1 where equal, 0 elsewhere; not differentiable.
    Eq,
}

impl BinaryFn {
    pub fn name(self) -> &'static str {
        match self {
            BinaryFn::Add => "add",
            BinaryFn::Sub => "sub",
            BinaryFn::Mul => "mul",
            BinaryFn::Div => "div",
            BinaryFn::Max => "max",
            BinaryFn::Eq => "eq",
        }
    }

    pub const ALL: [BinaryFn; 6] = [
        BinaryFn::Add,
        BinaryFn::Sub,
        BinaryFn::Mul,
        BinaryFn::Div,
        BinaryFn::Max,
        BinaryFn::Eq,
    ];
}

/// Geometry of a 2-d convolution (NCHW input, OIHW weight).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ConvGeom {
    pub stride: [usize; 2],
    /// `[top, bottom, left, right]`.
    pub padding: [usize; 4],
    pub dilation: [usize; 2],
    pub groups: usize,
}

/// Geometry of a 2-d pooling window.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct PoolGeom {
    pub kernel: [usize; 2],
    pub stride: [usize; 2],
    pub padding: [usize; 2],
    pub dilation: [usize; 2],
    pub ceil_mode: bool,
}

/// The kinds of computation, from the point of view of fusion: which ops
/// can share a loop nest with their neighbours.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum OpClass {
    /// Graph inputs and constants.
    Leaf,
    /// One output element from the same element of each argument (with
    /// NumPy broadcasting): fuses with anything.
    Elementwise,
    /// Copies an argument along new or size-1 axes.
    Broadcast,
    /// Sums or maxima over axes.
    Reduction,
    /// Matrix products and convolutions: the heavy loops, with epilogues.
    Contraction,
    /// Pooling windows, forward and backward.
    Window,
    /// Reshapes, slices, padding and concatenation: index arithmetic only.
    Layout,
}

/// Declares the ops: each regular op once, with its variant, its text
/// name and its class; the name, class, attributes and parsing of the text
/// form are generated from that one line. Attributes are the variant's
/// fields, in order, each written and read by its `AttrValue` (a geometry
/// stands for its several attributes). The few ops whose name or
/// attributes come from elsewhere (inputs, constants, unary and binary
/// functions) are the `special` ones, written out in `special_*` below.
macro_rules! declare_ops {
    (
        special {
            $( $(#[$smeta:meta])* $sv:ident $( { $( $sf:ident : $sft:ty ),* $(,)? } )? $( ( $st:ty ) )? , )*
        }
        $(
            $(#[$meta:meta])*
            $v:ident $( { $( $f:ident : $ft:ty ),* $(,)? } )? $( ( $tf:ident : $tt:ty ) )?
                => $name:literal, $class:ident;
        )*
    ) => {
        #[derive(Clone, Debug, PartialEq)]
        pub enum Op {
            $( $(#[$smeta])* $sv $( { $( $sf: $sft ),* } )? $( ( $st ) )? , )*
            $( $(#[$meta])* $v $( { $( $f: $ft ),* } )? $( ( $tt ) )? , )*
        }

        impl Op {
            /// The text name of the op.
            pub fn name(&self) -> &'static str {
                match self {
                    $( Op::$v { .. } => $name, )*
                    special => special.special_name(),
                }
            }

            /// What kind of computation the op is, for the passes that
            /// group ops into kernels (TVM's OpPatternKind, tinygrad's op
            /// classes).
            pub fn class(&self) -> OpClass {
                match self {
                    $( Op::$v { .. } => OpClass::$class, )*
                    special => special.special_class(),
                }
            }

            /// The op's attributes, in the order the text form writes them.
            pub fn attrs(&self) -> Vec<(&'static str, Attr)> {
                let mut out = Vec::new();
                match self {
                    $(
                        Op::$v $( { $( $f ),* } )? $( ( $tf ) )? => {
                            $( $( AttrValue::write($f, stringify!($f), &mut out); )* )?
                            $( AttrValue::write($tf, stringify!($tf), &mut out); )?
                        }
                    )*
                    special => special.special_attrs(&mut out),
                }
                out
            }

            /// The op named `name` with attributes `a`; `shape` is the
            /// result type's shape (inputs and constants take theirs from it).
            pub fn from_parts(name: &str, a: &Attrs, shape: &[usize]) -> Option<Op> {
                match name {
                    $(
                        $name => Some(Op::$v
                            $( { $( $f: <$ft as AttrValue>::read(stringify!($f), a)? ),* } )?
                            $( ( <$tt as AttrValue>::read(stringify!($tf), a)? ) )?),
                    )*
                    _ => Op::special_from_parts(name, a, shape),
                }
            }
        }
    };
}

declare_ops! {
    special {
        /// A graph input: data, target, parameter, buffer or scalar.
        Input { name: String, role: Role, shape: Vec<usize> },
        /// A tensor filled with one value; scalars have shape `[]`.
        Const { value: f64, shape: Vec<usize> },
        Unary(UnaryFn),
        /// `dy * f'(x)` with arguments `(x, dy)`.
        UnaryGrad(UnaryFn),
        /// Elementwise with NumPy broadcasting.
        Binary(BinaryFn),
    }
    /// Sums over `axes`, keeping them with size 1.
    ReduceSum { axes: Vec<usize> } => "reduce_sum", Reduction;
    ReduceMean { axes: Vec<usize> } => "reduce_mean", Reduction;
    ReduceMax { axes: Vec<usize> } => "reduce_max", Reduction;
    BroadcastTo { shape: Vec<usize> } => "broadcast_to", Broadcast;
    /// The inverse of broadcasting: sums the broadcast axes away.
    SumTo { shape: Vec<usize> } => "sum_to", Reduction;
    Reshape { shape: Vec<usize> } => "reshape", Layout;
    /// 2-d matrix product `op(a) @ op(b)`.
    MatMul { trans_a: bool, trans_b: bool } => "matmul", Contraction;
    /// `(x, w)`; no bias (added with `add`).
    Conv2d(geom: ConvGeom) => "conv2d", Contraction;
    /// `(dy, w)` to dx of shape `shape`.
    Conv2dGradInput { geom: ConvGeom, shape: Vec<usize> } => "conv2d_grad_input", Contraction;
    /// `(x, dy)` to dw of shape `shape`.
    Conv2dGradWeight { geom: ConvGeom, shape: Vec<usize> } => "conv2d_grad_weight", Contraction;
    MaxPool2d(geom: PoolGeom) => "max_pool2d", Window;
    /// `(x, dy)`: the gradient goes to the (first) maximum of each window.
    MaxPool2dGrad(geom: PoolGeom) => "max_pool2d_grad", Window;
    AvgPool2d { geom: PoolGeom, count_include_pad: bool } => "avg_pool2d", Window;
    /// `(dy)` to dx of shape `shape`.
    AvgPool2dGrad { geom: PoolGeom, count_include_pad: bool, shape: Vec<usize> }
        => "avg_pool2d_grad", Window;
    AdaptiveAvgPool2d { size: [usize; 2] } => "adaptive_avg_pool2d", Window;
    AdaptiveAvgPool2dGrad { shape: Vec<usize> } => "adaptive_avg_pool2d_grad", Window;
    AdaptiveMaxPool2d { size: [usize; 2] } => "adaptive_max_pool2d", Window;
    /// `(x, dy)`.
    AdaptiveMaxPool2dGrad => "adaptive_max_pool2d_grad", Window;
    /// Sum over a window of `size` channels around each channel, with
    /// `before` and `after` channels of zero padding (local response norm).
    ChannelWindowSum { size: usize, before: usize, after: usize } => "channel_window_sum", Reduction;
    Concat { axis: usize } => "concat", Layout;
    Slice { axis: usize, start: usize, end: usize } => "slice", Layout;
    PadAxis { axis: usize, before: usize, after: usize } => "pad_axis", Layout;
    /// Inverted dropout: zero with probability `p`, scale the rest by
    /// `1/(1-p)`. The mask is a function of the run's seed, `salt` and the
    /// element index, so the backward pass applies the same op to `dy`.
    Dropout { p: f64, salt: u64 } => "dropout", Elementwise;
}

/// A value an op stores as text attributes: most as one, a geometry as
/// several (it ignores the field's name and writes its own).
pub trait AttrValue: Sized {
    fn write(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>);
    fn read(key: &str, a: &Attrs) -> Option<Self>;
}

fn ints(v: &[usize]) -> Attr {
    Attr::Ints(v.iter().map(|&x| x as i64).collect())
}

impl AttrValue for usize {
    fn write(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Int(*self as i64)));
    }
    fn read(key: &str, a: &Attrs) -> Option<Self> {
        a.usize(key)
    }
}

impl AttrValue for u64 {
    fn write(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Int(*self as i64)));
    }
    fn read(key: &str, a: &Attrs) -> Option<Self> {
        Some(a.int(key)? as u64)
    }
}

impl AttrValue for f64 {
    fn write(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Float(*self)));
    }
    fn read(key: &str, a: &Attrs) -> Option<Self> {
        a.float(key)
    }
}

impl AttrValue for bool {
    fn write(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, Attr::Bool(*self)));
    }
    fn read(key: &str, a: &Attrs) -> Option<Self> {
        a.bool(key)
    }
}

impl AttrValue for Vec<usize> {
    fn write(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, ints(self)));
    }
    fn read(key: &str, a: &Attrs) -> Option<Self> {
        a.usizes(key)
    }
}

impl<const N: usize> AttrValue for [usize; N] {
    fn write(&self, key: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        out.push((key, ints(self)));
    }
    fn read(key: &str, a: &Attrs) -> Option<Self> {
        a.array::<N>(key)
    }
}

impl AttrValue for ConvGeom {
    fn write(&self, _: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        self.stride.write("stride", out);
        self.padding.write("padding", out);
        self.dilation.write("dilation", out);
        self.groups.write("groups", out);
    }
    fn read(_: &str, a: &Attrs) -> Option<Self> {
        Some(ConvGeom {
            stride: AttrValue::read("stride", a)?,
            padding: AttrValue::read("padding", a)?,
            dilation: AttrValue::read("dilation", a)?,
            groups: AttrValue::read("groups", a)?,
        })
    }
}

impl AttrValue for PoolGeom {
    fn write(&self, _: &'static str, out: &mut Vec<(&'static str, Attr)>) {
        self.kernel.write("kernel", out);
        self.stride.write("stride", out);
        self.padding.write("padding", out);
        self.dilation.write("dilation", out);
        self.ceil_mode.write("ceil_mode", out);
    }
    fn read(_: &str, a: &Attrs) -> Option<Self> {
        Some(PoolGeom {
            kernel: AttrValue::read("kernel", a)?,
            stride: AttrValue::read("stride", a)?,
            padding: AttrValue::read("padding", a)?,
            dilation: AttrValue::read("dilation", a)?,
            ceil_mode: AttrValue::read("ceil_mode", a)?,
        })
    }
}

/// The ops `declare_ops!` cannot describe by their fields alone.
impl Op {
    fn special_name(&self) -> &'static str {
        match self {
            Op::Input { .. } => "input",
            Op::Const { .. } => "const",
            Op::Unary(f) => f.name(),
            Op::UnaryGrad(f) => f.grad_name(),
            Op::Binary(f) => f.name(),
            regular => unreachable!("`{regular:?}` is declared by declare_ops!"),
        }
    }

    fn special_class(&self) -> OpClass {
        match self {
            Op::Input { .. } | Op::Const { .. } => OpClass::Leaf,
            Op::Unary(_) | Op::UnaryGrad(_) | Op::Binary(_) => OpClass::Elementwise,
            regular => unreachable!("`{regular:?}` is declared by declare_ops!"),
        }
    }

    fn special_attrs(&self, out: &mut Vec<(&'static str, Attr)>) {
        match self {
            Op::Input { name, role, .. } => {
                out.push(("name", Attr::Str(name.clone())));
                out.push(("role", Attr::Str(role.name().into())));
            }
            Op::Const { value, .. } => value.write("value", out),
            Op::Unary(f) | Op::UnaryGrad(f) => out.extend(f.attrs()),
            Op::Binary(_) => {}
            regular => unreachable!("`{regular:?}` is declared by declare_ops!"),
        }
    }

    fn special_from_parts(name: &str, a: &Attrs, shape: &[usize]) -> Option<Op> {
        if let Some(f) = UnaryFn::from_parts(name, a) {
            return Some(Op::Unary(f));
        }
        if let Some(base) = name.strip_suffix("_grad") {
            if let Some(f) = UnaryFn::from_parts(base, a) {
                return Some(Op::UnaryGrad(f));
            }
        }
        if let Some(f) = BinaryFn::ALL.into_iter().find(|f| f.name() == name) {
            return Some(Op::Binary(f));
        }
        match name {
            "input" => Some(Op::Input {
                name: a.str("name")?,
                role: Role::parse(&a.str("role")?)?,
                shape: shape.to_vec(),
            }),
            "const" => Some(Op::Const {
                value: a.float("value")?,
                shape: shape.to_vec(),
            }),
            _ => None,
        }
    }
}

fn err(msg: impl Into<String>) -> TypeError {
    TypeError(msg.into())
}

/// Output size of a sliding window, as PyTorch computes it.
pub fn window_out(
    size: usize,
    kernel: usize,
    stride: usize,
    pad: [usize; 2],
    dilation: usize,
    ceil: bool,
) -> Option<usize> {
    // Every size here can come from IR text: overflow is `None`, not a panic.
    let padded = size.checked_add(pad[0])?.checked_add(pad[1])?;
    let effective = dilation
        .checked_mul(kernel.checked_sub(1)?)?
        .checked_add(1)?;
    if padded < effective || stride == 0 {
        return None;
    }
    let span = padded - effective;
    let mut out = if ceil {
        span.div_ceil(stride)
    } else {
        span / stride
    } + 1;
    if ceil && (out - 1).checked_mul(stride)? >= size.checked_add(pad[0])? {
        out -= 1;
    }
    Some(out)
}

/// Shape of a NumPy broadcast of two shapes.
pub fn broadcast(a: &[usize], b: &[usize]) -> Option<Vec<usize>> {
    let rank = a.len().max(b.len());
    let mut out = vec![0; rank];
    for i in 0..rank {
        let da = if i + a.len() >= rank {
            a[i + a.len() - rank]
        } else {
            1
        };
        let db = if i + b.len() >= rank {
            b[i + b.len() - rank]
        } else {
            1
        };
        out[i] = if da == db || db == 1 {
            da
        } else if da == 1 {
            db
        } else {
            return None;
        };
    }
    Some(out)
}

fn check_axes(axes: &[usize], rank: usize) -> Result<(), TypeError> {
    if axes.iter().any(|&a| a >= rank) {
        return Err(err(format!("axes {axes:?} out of range for rank {rank}")));
    }
    Ok(())
}

impl Op {
    /// A key equal for two ops exactly when they compute the same function
    /// of the same arguments: the name and every attribute, floats by their
    /// bits. Inputs are never equal to one another (each is its own value).
    pub fn key(&self) -> Option<String> {
        if let Op::Input { .. } = self {
            return None;
        }
        let mut k = self.name().to_string();
        for (name, value) in self.attrs() {
            k.push_str(&format!(" {name}={value:?}"));
        }
        if let Op::Const { value, shape } = self {
            k.push_str(&format!(" value={:x} shape={shape:?}", value.to_bits()));
        }
        Some(k)
    }

    /// The type of the op's result from the types of its arguments.
    pub fn infer(&self, args: &[&TensorType]) -> Result<TensorType, TypeError> {
        let arity = |n: usize| -> Result<(), TypeError> {
            if args.len() == n {
                Ok(())
            } else {
                Err(err(format!(
                    "`{}` takes {n} arguments, got {}",
                    self.name(),
                    args.len()
                )))
            }
        };
        let rank4 = |t: &TensorType| -> Result<[usize; 4], TypeError> {
            match t.shape.as_slice() {
                &[n, c, h, w] => Ok([n, c, h, w]),
                s => Err(err(format!(
                    "`{}` needs a 4-d argument, got {s:?}",
                    self.name()
                ))),
            }
        };
        let same = |shape: Vec<usize>| Ok(TensorType::f32(shape));
        match self {
            Op::Input { shape, .. } | Op::Const { shape, .. } => {
                arity(0)?;
                same(shape.clone())
            }
            Op::Unary(_) | Op::Dropout { .. } => {
                arity(1)?;
                same(args[0].shape.clone())
            }
            Op::UnaryGrad(_) => {
                arity(2)?;
                if args[0].shape != args[1].shape {
                    return Err(err(format!(
                        "`{}`: x {:?} and dy {:?} differ",
                        self.name(),
                        args[0].shape,
                        args[1].shape
                    )));
                }
                same(args[0].shape.clone())
            }
            Op::Binary(_) => {
                arity(2)?;
                broadcast(&args[0].shape, &args[1].shape)
                    .map(TensorType::f32)
                    .ok_or_else(|| {
                        err(format!(
                            "cannot broadcast {:?} and {:?}",
                            args[0].shape, args[1].shape
                        ))
                    })
            }
            Op::ReduceSum { axes } | Op::ReduceMean { axes } | Op::ReduceMax { axes } => {
                arity(1)?;
                check_axes(axes, args[0].shape.len())?;
                let mut s = args[0].shape.clone();
                for &a in axes {
                    s[a] = 1;
                }
                same(s)
            }
            Op::BroadcastTo { shape } => {
                arity(1)?;
                if broadcast(&args[0].shape, shape).as_deref() != Some(shape.as_slice()) {
                    return Err(err(format!(
                        "cannot broadcast {:?} to {shape:?}",
                        args[0].shape
                    )));
                }
                same(shape.clone())
            }
            Op::SumTo { shape } => {
                arity(1)?;
                if broadcast(shape, &args[0].shape).as_deref() != Some(args[0].shape.as_slice()) {
                    return Err(err(format!("cannot sum {:?} to {shape:?}", args[0].shape)));
                }
                same(shape.clone())
            }
            Op::Reshape { shape } => {
                arity(1)?;
                if super::checked_numel(shape) != Some(args[0].numel()) {
                    return Err(err(format!(
                        "cannot reshape {:?} to {shape:?}",
                        args[0].shape
                    )));
                }
                same(shape.clone())
            }
            Op::MatMul { trans_a, trans_b } => {
                arity(2)?;
                let (a, b) = (&args[0].shape, &args[1].shape);
                if a.len() != 2 || b.len() != 2 {
                    return Err(err("`matmul` needs 2-d arguments"));
                }
                let (m, k1) = if *trans_a { (a[1], a[0]) } else { (a[0], a[1]) };
                let (k2, n) = if *trans_b { (b[1], b[0]) } else { (b[0], b[1]) };
                if k1 != k2 {
                    return Err(err(format!("`matmul` inner sizes differ: {a:?} and {b:?}")));
                }
                same(vec![m, n])
            }
            Op::Conv2d(g) => {
                arity(2)?;
                let [n, c, h, w] = rank4(args[0])?;
                let [o, ci, kh, kw] = rank4(args[1])?;
                if g.groups == 0 || c != ci * g.groups || o % g.groups != 0 {
                    return Err(err(format!(
                        "`conv2d` channels: input {c}, weight {:?}, groups {}",
                        args[1].shape, g.groups
                    )));
                }
                let ho = window_out(
                    h,
                    kh,
                    g.stride[0],
                    [g.padding[0], g.padding[1]],
                    g.dilation[0],
                    false,
                );
                let wo = window_out(
                    w,
                    kw,
                    g.stride[1],
                    [g.padding[2], g.padding[3]],
                    g.dilation[1],
                    false,
                );
                match (ho, wo) {
                    (Some(ho), Some(wo)) => same(vec![n, o, ho, wo]),
                    _ => Err(err("`conv2d` kernel larger than its padded input")),
                }
            }
            Op::Conv2dGradInput { geom, shape } => {
                arity(2)?;
                let x = TensorType::f32(shape.clone());
                let y = Op::Conv2d(*geom).infer(&[&x, args[1]])?;
                if y.shape != args[0].shape {
                    return Err(err(format!(
                        "`conv2d_grad_input`: dy {:?} is not conv2d's output {:?}",
                        args[0].shape, y.shape
                    )));
                }
                same(shape.clone())
            }
            Op::Conv2dGradWeight { geom, shape } => {
                arity(2)?;
                let w = TensorType::f32(shape.clone());
                let y = Op::Conv2d(*geom).infer(&[args[0], &w])?;
                if y.shape != args[1].shape {
                    return Err(err(format!(
                        "`conv2d_grad_weight`: dy {:?} is not conv2d's output {:?}",
                        args[1].shape, y.shape
                    )));
                }
                same(shape.clone())
            }
            Op::MaxPool2d(g) | Op::AvgPool2d { geom: g, .. } => {
                arity(1)?;
                same(pool_shape(rank4(args[0])?, g)?)
            }
            Op::MaxPool2dGrad(g) => {
                arity(2)?;
                let y = pool_shape(rank4(args[0])?, g)?;
                if y != args[1].shape {
                    return Err(err("`max_pool2d_grad`: dy is not the pooled shape"));
                }
                same(args[0].shape.clone())
            }
            Op::AvgPool2dGrad { geom, shape, .. } => {
                arity(1)?;
                let x = TensorType::f32(shape.clone());
                if pool_shape(rank4(&x)?, geom)? != args[0].shape {
                    return Err(err("`avg_pool2d_grad`: dy is not the pooled shape"));
                }
                same(shape.clone())
            }
            Op::AdaptiveAvgPool2d { size } | Op::AdaptiveMaxPool2d { size } => {
                arity(1)?;
                let [n, c, h, w] = rank4(args[0])?;
                if h == 0 || w == 0 || size[0] == 0 || size[1] == 0 {
                    return Err(err(
                        "adaptive pooling of an empty input or to an empty output",
                    ));
                }
                same(vec![n, c, size[0], size[1]])
            }
            Op::AdaptiveAvgPool2dGrad { shape } => {
                arity(1)?;
                let [n, c, _, _] = rank4(&TensorType::f32(shape.clone()))?;
                let [dn, dc, _, _] = rank4(args[0])?;
                if (n, c) != (dn, dc) {
                    return Err(err("`adaptive_avg_pool2d_grad`: batch or channels differ"));
                }
                same(shape.clone())
            }
            Op::AdaptiveMaxPool2dGrad => {
                arity(2)?;
                let [n, c, _, _] = rank4(args[0])?;
                let [dn, dc, _, _] = rank4(args[1])?;
                if (n, c) != (dn, dc) {
                    return Err(err("`adaptive_max_pool2d_grad`: batch or channels differ"));
                }
                same(args[0].shape.clone())
            }
            Op::ChannelWindowSum {
                size,
                before,
                after,
            } => {
                arity(1)?;
                if args[0].shape.len() < 2 || *size == 0 || before + after + 1 != *size {
                    return Err(err(
                        "`channel_window_sum` needs [N, C, ...] and size = before + after + 1",
                    ));
                }
                same(args[0].shape.clone())
            }
            Op::Concat { axis } => {
                if args.is_empty() {
                    return Err(err("`concat` needs arguments"));
                }
                let mut out = args[0].shape.clone();
                check_axes(&[*axis], out.len())?;
                for a in &args[1..] {
                    let ok = a.shape.len() == out.len()
                        && (0..out.len()).all(|i| i == *axis || a.shape[i] == out[i]);
                    if !ok {
                        return Err(err(format!(
                            "`concat` on axis {axis}: {:?} and {:?}",
                            out, a.shape
                        )));
                    }
                    out[*axis] += a.shape[*axis];
                }
                same(out)
            }
            Op::Slice { axis, start, end } => {
                arity(1)?;
                check_axes(&[*axis], args[0].shape.len())?;
                if start >= end || *end > args[0].shape[*axis] {
                    return Err(err(format!(
                        "`slice` {start}..{end} of an axis of {}",
                        args[0].shape[*axis]
                    )));
                }
                let mut s = args[0].shape.clone();
                s[*axis] = end - start;
                same(s)
            }
            Op::PadAxis {
                axis,
                before,
                after,
            } => {
                arity(1)?;
                check_axes(&[*axis], args[0].shape.len())?;
                let mut s = args[0].shape.clone();
                s[*axis] += before + after;
                same(s)
            }
        }
    }
}

fn pool_shape([n, c, h, w]: [usize; 4], g: &PoolGeom) -> Result<Vec<usize>, TypeError> {
    let ho = window_out(
        h,
        g.kernel[0],
        g.stride[0],
        [g.padding[0]; 2],
        g.dilation[0],
        g.ceil_mode,
    );
    let wo = window_out(
        w,
        g.kernel[1],
        g.stride[1],
        [g.padding[1]; 2],
        g.dilation[1],
        g.ceil_mode,
    );
    match (ho, wo) {
        (Some(ho), Some(wo)) => Ok(vec![n, c, ho, wo]),
        _ => Err(err("pooling window larger than its padded input")),
    }
}

/// An attribute value in the text form.
#[derive(Clone, Debug, PartialEq)]
pub enum Attr {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Ints(Vec<i64>),
}

/// Parsed attributes, looked up by name.
#[derive(Clone, Debug, Default)]
pub struct Attrs(pub Vec<(String, Attr)>);

impl Attrs {
    fn get(&self, k: &str) -> Option<&Attr> {
        self.0.iter().find(|(n, _)| n == k).map(|(_, v)| v)
    }

    pub fn int(&self, k: &str) -> Option<i64> {
        match self.get(k)? {
            Attr::Int(v) => Some(*v),
            _ => None,
        }
    }

    pub fn usize(&self, k: &str) -> Option<usize> {
        usize::try_from(self.int(k)?).ok()
    }

    pub fn float(&self, k: &str) -> Option<f64> {
        match self.get(k)? {
            Attr::Float(v) => Some(*v),
            Attr::Int(v) => Some(*v as f64),
            _ => None,
        }
    }

    pub fn bool(&self, k: &str) -> Option<bool> {
        match self.get(k)? {
            Attr::Bool(v) => Some(*v),
            _ => None,
        }
    }

    pub fn str(&self, k: &str) -> Option<String> {
        match self.get(k)? {
            Attr::Str(v) => Some(v.clone()),
            _ => None,
        }
    }

    pub fn usizes(&self, k: &str) -> Option<Vec<usize>> {
        match self.get(k)? {
            Attr::Ints(v) => v.iter().map(|&x| usize::try_from(x).ok()).collect(),
            _ => None,
        }
    }

    pub fn array<const N: usize>(&self, k: &str) -> Option<[usize; N]> {
        self.usizes(k)?.try_into().ok()
    }

    pub fn pair(&self, k: &str) -> Option<[usize; 2]> {
        self.array::<2>(k)
    }
}
