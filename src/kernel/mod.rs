//! The kernel IR: loop nests over flat f32 buffers, the one language every
//! code generator consumes. A fusion decision (`passes::fusion`) is made
//! once, on the graph; `lower` turns each planned kernel into a loop nest
//! here; the interpreter (`interp`) runs it as a second oracle, and the
//! cpu backend compiles it to native code. A later WGSL backend reads the
//! same kernels.
//!
//! A [`Program`] is a list of buffers (one per value that leaves a kernel:
//! graph inputs, kernel results) and of [`Kernel`]s run in order. A kernel
//! is structured code: counted loops, scalar registers, guarded stores.
//! Index arithmetic ([`IExpr`]) is on i64; values ([`SExpr`]) are f32.
//!
//! Invariants, checked by [`verify::verify`] before anything runs a
//! program (the generated code has no bounds checks):
//! - every loop variable is used only inside its loop, and every register
//!   is set before it is read, on every path;
//! - every load and store index lies inside its buffer, for every value of
//!   the loop variables, given the guards (`Cond::InRange`) in force;
//! - `Div` and `Rem` see only non-negative numerators and positive
//!   divisors;
//! - a kernel marked `parallel` writes, for different values of its
//!   outermost loop variable, disjoint elements (the lowering guarantees
//!   it: the outermost loop is an output axis, or a plane a scatter stays
//!   inside), so its iterations may run on different threads.

pub mod collapse;
pub mod contract;
pub mod interp;
pub mod lower;
pub mod merge;
pub mod rewrite;
pub mod text;
pub mod unroll;
pub mod verify;

use crate::ir::UnaryFn;

/// A buffer of the program.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct BufId(pub u32);

/// A loop variable of a kernel.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Var(pub u32);

/// A scalar f32 register of a kernel (an accumulator, a running maximum).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Reg(pub u32);

/// Where a buffer's contents come from.
#[derive(Clone, Debug, PartialEq)]
pub enum BufferKind {
    /// A graph input, filled by the host or from the state.
    Input(String),
    /// The value of a graph node, written by one kernel.
    Value(crate::ir::NodeId),
    /// Working memory of a contraction (im2col patches, a product in
    /// another layout), described for the text form.
    Scratch(String),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Buffer {
    pub kind: BufferKind,
    /// Elements (f32).
    pub len: usize,
    /// The logical shape, for the text form and messages.
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub name: String,
    /// Whether iterations of the outermost loop may run on different
    /// threads (see the module's invariants).
    pub parallel: bool,
    pub body: Vec<Stmt>,
    /// How many loop variables and registers the kernel numbers.
    pub vars: u32,
    pub regs: u32,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Stmt {
    /// `for var in start..end`: bounds may use outer variables.
    For {
        var: Var,
        start: IExpr,
        end: IExpr,
        body: Vec<Stmt>,
    },
    /// `reg = value`.
    Set {
        reg: Reg,
        value: SExpr,
    },
    /// `buf[index] = value`.
    Store {
        buf: BufId,
        index: IExpr,
        value: SExpr,
    },
    If {
        cond: Cond,
        then: Vec<Stmt>,
    },
    /// A matrix product `C (+)= A B` over strided views of buffers, with
    /// `m x k` times `k x n`: the contraction at the heart of matmul and
    /// convolution, handed to a tuned micro-kernel. Offsets may use loop
    /// variables (one product per group of a grouped convolution).
    Gemm(Box<Gemm>),
}

#[derive(Clone, Debug, PartialEq)]
pub struct Gemm {
    pub m: i64,
    pub n: i64,
    pub k: i64,
    pub a: MatRef,
    pub b: MatRef,
    pub c: MatRef,
    /// Add into `C` rather than overwrite it.
    pub accumulate: bool,
}

/// A matrix view of a buffer: element `(i, j)` is
/// `buf[offset + at(i; row, digits.rows) + at(j; col, digits.cols)]`.
///
/// Without digits (the usual case) this is a strided matrix,
/// `buf[offset + i * row + j * col]`. With digits, an index splits into
/// an outer part and inner digits (`(extent, stride)`, outermost first,
/// the last fastest): `at(i) = i / E * stride + sum(digit_t * stride_t)`,
/// `E` the product of the extents; a digit's stride may be negative (a
/// flipped kernel), the outer strides may not. That is how a convolution's patches
/// are read in place: rows `(c, ky, kx)` and columns `(image, oy, ox)` of
/// the (padded) input, without an im2col copy.
#[derive(Clone, Debug, PartialEq)]
pub struct MatRef {
    pub buf: BufId,
    pub offset: IExpr,
    pub row: i64,
    pub col: i64,
    pub digits: Digits,
}

/// The inner digits of a `MatRef`'s row and column indices.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Digits {
    pub rows: Vec<(i64, i64)>,
    pub cols: Vec<(i64, i64)>,
}

impl MatRef {
    /// A strided matrix.
    pub fn strided(buf: BufId, offset: IExpr, row: i64, col: i64) -> MatRef {
        MatRef {
            buf,
            offset,
            row,
            col,
            digits: Digits::default(),
        }
    }

    /// Whether the view is a plain strided matrix.
    pub fn is_strided(&self) -> bool {
        self.digits.rows.is_empty() && self.digits.cols.is_empty()
    }

    /// The offsets (from `offset`) of rows `0..count`.
    pub fn row_offsets(&self, count: i64) -> Vec<i64> {
        axis_offsets(self.row, &self.digits.rows, count)
    }

    /// The offsets (from `offset`) of columns `0..count`.
    pub fn col_offsets(&self, count: i64) -> Vec<i64> {
        axis_offsets(self.col, &self.digits.cols, count)
    }
}

/// The product of the digits' extents: how many indices one step of the
/// outer stride spans.
pub fn digit_span(digits: &[(i64, i64)]) -> i64 {
    digits.iter().map(|d| d.0).product()
}

/// `at(i)` for `i` in `0..count` (see `MatRef`).
pub fn axis_offsets(outer: i64, digits: &[(i64, i64)], count: i64) -> Vec<i64> {
    let span = digit_span(digits).max(1);
    (0..count)
        .map(|i| {
            let mut rest = i % span;
            let mut at = i / span * outer;
            for &(extent, stride) in digits.iter().rev() {
                at += rest % extent * stride;
                rest /= extent;
            }
            at
        })
        .collect()
}

/// What the machine the kernels are made for does well, where that
/// changes the schedule.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Target {
    /// Its products read a convolution's patches in place (a `MatRef`
    /// with digits) as fast as a packed matrix, so no im2col copy is made
    /// for a forward convolution whose patches are not kept.
    pub patches_in_place: bool,
    /// Its products over views store a result whose columns come in
    /// consecutive runs of this many (a multiple of it per image) as fast
    /// in the natural layout as channel-major (the width of the cpu
    /// backend's panels; 0 for none).
    pub panel_columns: usize,
}

/// Integer (index) arithmetic.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub enum IExpr {
    Const(i64),
    Var(Var),
    Add(Box<IExpr>, Box<IExpr>),
    Mul(Box<IExpr>, Box<IExpr>),
    /// Floor division by a positive constant of a non-negative value.
    Div(Box<IExpr>, i64),
    /// Remainder by a positive constant of a non-negative value.
    Rem(Box<IExpr>, i64),
    Min(Box<IExpr>, Box<IExpr>),
    Max(Box<IExpr>, Box<IExpr>),
}

/// Scalar f32 operations of two operands. `Max` and `Min` propagate NaN
/// from either side, as `torch.maximum` does.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum BinOp {
    Add,
    Sub,
    Mul,
    Div,
    Max,
    Min,
}

/// Scalar f32 functions of one operand. The first few are instructions on
/// every target; the transcendental ones are calls (or polynomials).
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum UnOp {
    Neg,
    Abs,
    Sqrt,
    Exp,
    Log,
    Tanh,
    Erf,
    /// `1 / (1 + exp(-x))`: one operation, so that a code generator can
    /// use an exponential for the range a sigmoid needs (`exp(-x)` beyond
    /// 2^127 changes nothing in `1 + exp(-x)`'s reciprocal but its
    /// rounding to zero).
    Sigmoid,
    /// `x^e` for a constant `e`.
    Pow(f32),
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum CmpOp {
    Lt,
    Le,
    Gt,
    Ge,
    Eq,
    Ne,
}

/// A condition: guards of loads and stores, and comparisons of values.
#[derive(Clone, Debug, PartialEq)]
pub enum Cond {
    /// `lo <= value < hi`. Inside what it guards, `value` is known to lie
    /// in that range (the verifier uses this to prove padded loads safe).
    InRange { value: IExpr, lo: i64, hi: i64 },
    /// `value` is a multiple of `by` (`by > 0`; `value` may be negative).
    Divides { value: IExpr, by: i64 },
    /// A comparison of f32 values (false when either is NaN, except `Ne`).
    FCmp { op: CmpOp, a: SExpr, b: SExpr },
    /// Both; the second is evaluated only when the first holds.
    And(Box<Cond>, Box<Cond>),
    /// Either; the second is evaluated only when the first fails. Guards
    /// inside it prove nothing.
    Or(Box<Cond>, Box<Cond>),
    /// Dropout's keep decision for element `index` of layer `salt` in the
    /// run's seed: the same function as the reference executor's.
    Keep { p: f64, salt: u64, index: IExpr },
}

/// A scalar f32 value.
#[derive(Clone, Debug, PartialEq)]
pub enum SExpr {
    Const(f32),
    Load {
        buf: BufId,
        index: IExpr,
    },
    Reg(Reg),
    /// An index as a float (window counts, argmax positions).
    Index(IExpr),
    Un(UnOp, Box<SExpr>),
    Bin(BinOp, Box<SExpr>, Box<SExpr>),
    /// `cond ? a : b`, evaluating only the side chosen (a guarded load is
    /// never performed out of bounds).
    Select(Box<Cond>, Box<SExpr>, Box<SExpr>),
}

#[derive(Clone, Debug, PartialEq, Default)]
pub struct Program {
    pub buffers: Vec<Buffer>,
    pub kernels: Vec<Kernel>,
}

impl Program {
    pub fn buffer(&self, b: BufId) -> &Buffer {
        &self.buffers[b.0 as usize]
    }
}

/// How the index `e` changes when `var` grows by one: `None` when not by a
/// constant (a division, a minimum, a product of two variables).
pub fn step(e: &IExpr, var: Var) -> Option<i64> {
    match e {
        IExpr::Const(_) => Some(0),
        IExpr::Var(v) => Some(i64::from(*v == var)),
        IExpr::Add(a, b) => Some(step(a, var)? + step(b, var)?),
        IExpr::Mul(a, b) => match (&**a, &**b) {
            (x, IExpr::Const(c)) | (IExpr::Const(c), x) => Some(step(x, var)? * c),
            (x, y) => (step(x, var)? == 0 && step(y, var)? == 0).then_some(0),
        },
        IExpr::Div(a, _) | IExpr::Rem(a, _) => (step(a, var)? == 0).then_some(0),
        IExpr::Min(a, b) | IExpr::Max(a, b) => {
            (step(a, var)? == 0 && step(b, var)? == 0).then_some(0)
        }
    }
}

impl SExpr {
    /// Calls `f` on each load of the expression (conditions included),
    /// with its buffer and index.
    pub fn for_each_load<'a>(&'a self, f: &mut impl FnMut(BufId, &'a IExpr)) {
        match self {
            SExpr::Load { buf, index } => f(*buf, index),
            SExpr::Const(_) | SExpr::Reg(_) | SExpr::Index(_) => {}
            SExpr::Un(_, a) => a.for_each_load(f),
            SExpr::Bin(_, a, b) => {
                a.for_each_load(f);
                b.for_each_load(f);
            }
            SExpr::Select(c, a, b) => {
                c.for_each_load(f);
                a.for_each_load(f);
                b.for_each_load(f);
            }
        }
    }
}

impl Cond {
    /// Calls `f` on each load the condition's comparisons make.
    pub fn for_each_load<'a>(&'a self, f: &mut impl FnMut(BufId, &'a IExpr)) {
        match self {
            Cond::FCmp { a, b, .. } => {
                a.for_each_load(f);
                b.for_each_load(f);
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                a.for_each_load(f);
                b.for_each_load(f);
            }
            Cond::InRange { .. } | Cond::Divides { .. } | Cond::Keep { .. } => {}
        }
    }
}

/// `e` at `var + by` instead of `var`: lane `by`'s index in a loop that
/// runs four values of `var` at once.
pub fn shift_var(e: &IExpr, var: Var, by: i64) -> IExpr {
    e.substitute(&|v| (v == var).then(|| IExpr::var(v).add_c(by)))
}

impl IExpr {
    /// The expression with each variable `v` for which `f(v)` is `Some`
    /// replaced by that, constants folded (minimum and maximum included):
    /// the one rewrite under unrolling (a variable becomes a constant),
    /// collapsing (a variable becomes 0), lanes (`v + k`) and merging
    /// (another kernel's variable).
    pub fn substitute(&self, f: &impl Fn(Var) -> Option<IExpr>) -> IExpr {
        let s = |e: &IExpr| e.substitute(f);
        match self {
            IExpr::Const(c) => IExpr::Const(*c),
            IExpr::Var(v) => f(*v).unwrap_or(IExpr::Var(*v)),
            IExpr::Add(a, b) => s(a).plus(s(b)),
            IExpr::Mul(a, b) => s(a).times(s(b)),
            IExpr::Div(a, d) => s(a).div_c(*d),
            IExpr::Rem(a, d) => s(a).rem_c(*d),
            IExpr::Min(a, b) => match (s(a), s(b)) {
                (IExpr::Const(x), IExpr::Const(y)) => IExpr::Const(x.min(y)),
                (a, b) => a.min(b),
            },
            IExpr::Max(a, b) => match (s(a), s(b)) {
                (IExpr::Const(x), IExpr::Const(y)) => IExpr::Const(x.max(y)),
                (a, b) => a.max(b),
            },
        }
    }
}

/// `a - b` when it is the same for every value of the variables: both
/// are sums of the same terms (variables, or any other subexpression
/// taken whole) times the same factors, plus constants. `None` otherwise.
pub fn constant_difference(a: &IExpr, b: &IExpr) -> Option<i64> {
    let mut terms: Vec<(&IExpr, i64)> = Vec::new();
    let mut constant = 0;
    linear_terms(a, 1, &mut terms, &mut constant);
    linear_terms(b, -1, &mut terms, &mut constant);
    let mut sums: Vec<(&IExpr, i64)> = Vec::new();
    for (t, k) in terms {
        match sums.iter_mut().find(|(u, _)| *u == t) {
            Some((_, sum)) => *sum += k,
            None => sums.push((t, k)),
        }
    }
    sums.iter().all(|(_, k)| *k == 0).then_some(constant)
}

/// `e * factor` as a sum of terms with factors, into `terms`, and its
/// constant part, into `constant`.
fn linear_terms<'a>(
    e: &'a IExpr,
    factor: i64,
    terms: &mut Vec<(&'a IExpr, i64)>,
    constant: &mut i64,
) {
    match e {
        IExpr::Const(c) => *constant += c * factor,
        IExpr::Add(a, b) => {
            linear_terms(a, factor, terms, constant);
            linear_terms(b, factor, terms, constant);
        }
        IExpr::Mul(x, c) | IExpr::Mul(c, x) if matches!(**c, IExpr::Const(_)) => {
            let IExpr::Const(c) = **c else {
                unreachable!("matched a constant")
            };
            linear_terms(x, factor * c, terms, constant);
        }
        e => terms.push((e, factor)),
    }
}

/// `e` as `rest + constant`, the constant gathered from sums and from
/// products by constants (`(a * 6 + 1) * 25 + 3` is `a * 6 * 25` plus
/// 28): the copies of an unrolled loop then share `rest`, and a code
/// generator folds each constant into its address.
pub fn split_offset(e: &IExpr) -> (IExpr, i64) {
    match e {
        IExpr::Const(c) => (IExpr::Const(0), *c),
        IExpr::Add(a, b) => {
            let ((a, x), (b, y)) = (split_offset(a), split_offset(b));
            (a.plus(b), x + y)
        }
        IExpr::Mul(a, k) if matches!(**k, IExpr::Const(_)) => {
            let IExpr::Const(k) = **k else {
                unreachable!("matched a constant")
            };
            let (a, x) = split_offset(a);
            (a.mul_c(k), x * k)
        }
        e => (e.clone(), 0),
    }
}

// Builders, so that the lowering reads like the loops it makes.

impl IExpr {
    pub fn c(v: i64) -> IExpr {
        IExpr::Const(v)
    }

    pub fn var(v: Var) -> IExpr {
        IExpr::Var(v)
    }

    /// `self + other`, folding constants and zeros.
    pub fn plus(self, other: IExpr) -> IExpr {
        match (self, other) {
            (IExpr::Const(0), e) | (e, IExpr::Const(0)) => e,
            (IExpr::Const(a), IExpr::Const(b)) => IExpr::Const(a + b),
            (a, b) => IExpr::Add(Box::new(a), Box::new(b)),
        }
    }

    pub fn add_c(self, v: i64) -> IExpr {
        self.plus(IExpr::Const(v))
    }

    /// `self * other`, folding constants, zeros and ones.
    pub fn times(self, other: IExpr) -> IExpr {
        match (self, other) {
            (IExpr::Const(0), _) | (_, IExpr::Const(0)) => IExpr::Const(0),
            (IExpr::Const(1), e) | (e, IExpr::Const(1)) => e,
            (IExpr::Const(a), IExpr::Const(b)) => IExpr::Const(a * b),
            (a, b) => IExpr::Mul(Box::new(a), Box::new(b)),
        }
    }

    pub fn mul_c(self, v: i64) -> IExpr {
        self.times(IExpr::Const(v))
    }

    pub fn div_c(self, d: i64) -> IExpr {
        match self {
            _ if d == 1 => self,
            IExpr::Const(a) if a >= 0 => IExpr::Const(a / d),
            e => IExpr::Div(Box::new(e), d),
        }
    }

    pub fn rem_c(self, d: i64) -> IExpr {
        match self {
            _ if d == 1 => IExpr::Const(0),
            IExpr::Const(a) if a >= 0 => IExpr::Const(a % d),
            e => IExpr::Rem(Box::new(e), d),
        }
    }

    pub fn min(self, other: IExpr) -> IExpr {
        IExpr::Min(Box::new(self), Box::new(other))
    }

    pub fn max(self, other: IExpr) -> IExpr {
        IExpr::Max(Box::new(self), Box::new(other))
    }
}

impl SExpr {
    pub fn c(v: f32) -> SExpr {
        SExpr::Const(v)
    }

    pub fn load(buf: BufId, index: IExpr) -> SExpr {
        SExpr::Load { buf, index }
    }

    pub fn un(op: UnOp, a: SExpr) -> SExpr {
        SExpr::Un(op, Box::new(a))
    }

    pub fn bin(op: BinOp, a: SExpr, b: SExpr) -> SExpr {
        SExpr::Bin(op, Box::new(a), Box::new(b))
    }

    pub fn plus(self, b: SExpr) -> SExpr {
        SExpr::bin(BinOp::Add, self, b)
    }

    pub fn minus(self, b: SExpr) -> SExpr {
        SExpr::bin(BinOp::Sub, self, b)
    }

    pub fn times(self, b: SExpr) -> SExpr {
        SExpr::bin(BinOp::Mul, self, b)
    }

    pub fn over(self, b: SExpr) -> SExpr {
        SExpr::bin(BinOp::Div, self, b)
    }

    /// Whether this is a product `a * b`.
    pub fn is_mul(&self) -> bool {
        matches!(self, SExpr::Bin(BinOp::Mul, ..))
    }

    /// Whether this is a constant that is a number (not NaN).
    pub fn is_number(&self) -> bool {
        matches!(self, SExpr::Const(c) if !c.is_nan())
    }

    pub fn select(cond: Cond, a: SExpr, b: SExpr) -> SExpr {
        SExpr::Select(Box::new(cond), Box::new(a), Box::new(b))
    }

    /// Whether evaluating the expression may touch memory (a load), so that
    /// a select around it must branch rather than compute both sides.
    pub fn has_load(&self) -> bool {
        match self {
            SExpr::Load { .. } => true,
            SExpr::Const(_) | SExpr::Reg(_) | SExpr::Index(_) => false,
            SExpr::Un(_, a) => a.has_load(),
            SExpr::Bin(_, a, b) => a.has_load() || b.has_load(),
            SExpr::Select(c, a, b) => c.has_load() || a.has_load() || b.has_load(),
        }
    }

    /// Whether the expression draws a dropout mask (so that its value
    /// depends on the run's seed).
    pub fn draws_mask(&self) -> bool {
        match self {
            SExpr::Load { .. } | SExpr::Const(_) | SExpr::Reg(_) | SExpr::Index(_) => false,
            SExpr::Un(_, a) => a.draws_mask(),
            SExpr::Bin(_, a, b) => a.draws_mask() || b.draws_mask(),
            SExpr::Select(c, a, b) => c.draws_mask() || a.draws_mask() || b.draws_mask(),
        }
    }
}

impl Cond {
    pub fn cmp(op: CmpOp, a: SExpr, b: SExpr) -> Cond {
        Cond::FCmp { op, a, b }
    }

    pub fn in_range(value: IExpr, lo: i64, hi: i64) -> Cond {
        Cond::InRange { value, lo, hi }
    }

    pub fn and(self, other: Cond) -> Cond {
        Cond::And(Box::new(self), Box::new(other))
    }

    pub fn has_load(&self) -> bool {
        match self {
            Cond::InRange { .. } | Cond::Divides { .. } | Cond::Keep { .. } => false,
            Cond::FCmp { a, b, .. } => a.has_load() || b.has_load(),
            Cond::And(a, b) | Cond::Or(a, b) => a.has_load() || b.has_load(),
        }
    }

    /// Whether the condition draws a dropout mask (`Keep`).
    pub fn draws_mask(&self) -> bool {
        match self {
            Cond::Keep { .. } => true,
            Cond::InRange { .. } | Cond::Divides { .. } => false,
            Cond::FCmp { a, b, .. } => a.draws_mask() || b.draws_mask(),
            Cond::And(a, b) | Cond::Or(a, b) => a.draws_mask() || b.draws_mask(),
        }
    }
}

/// The scalar definition of each graph-level unary function, shared by the
/// lowering of `Op::Unary` and the interpreter's checks: `f(x)` built from
/// kernel operations, matching the reference executor's choices (NaN in,
/// NaN out; relu'(0) = 0).
pub fn unary(f: UnaryFn, x: SExpr) -> SExpr {
    use SExpr as S;
    let c = S::c;
    let sigmoid = |x: SExpr| S::un(UnOp::Sigmoid, x);
    match f {
        UnaryFn::Neg => S::un(UnOp::Neg, x),
        UnaryFn::Exp => S::un(UnOp::Exp, x),
        UnaryFn::Log => S::un(UnOp::Log, x),
        UnaryFn::Sqrt => S::un(UnOp::Sqrt, x),
        UnaryFn::Rsqrt => c(1.0).over(S::un(UnOp::Sqrt, x)),
        UnaryFn::Square => x.clone().times(x),
        UnaryFn::Relu => S::bin(BinOp::Max, x, c(0.0)),
        UnaryFn::Relu6 => S::bin(BinOp::Min, S::bin(BinOp::Max, x, c(0.0)), c(6.0)),
        UnaryFn::Sigmoid => sigmoid(x),
        UnaryFn::Tanh => S::un(UnOp::Tanh, x),
        UnaryFn::LeakyRelu { slope } => S::select(
            Cond::cmp(CmpOp::Gt, x.clone(), c(0.0)),
            x.clone(),
            c(slope as f32).times(x),
        ),
        UnaryFn::Gelu { tanh: false } => c(0.5).times(x.clone()).times(c(1.0).plus(S::un(
            UnOp::Erf,
            x.times(c(std::f32::consts::FRAC_1_SQRT_2)),
        ))),
        UnaryFn::Gelu { tanh: true } => {
            let cube = x.clone().times(x.clone()).times(x.clone());
            let inner = c(SQRT_2_OVER_PI).times(x.clone().plus(c(GELU_C).times(cube)));
            c(0.5).times(x).times(c(1.0).plus(S::un(UnOp::Tanh, inner)))
        }
        UnaryFn::Elu { alpha } => S::select(
            Cond::cmp(CmpOp::Gt, x.clone(), c(0.0)),
            x.clone(),
            c(alpha as f32).times(S::un(UnOp::Exp, x).minus(c(1.0))),
        ),
        UnaryFn::Silu => x.clone().times(sigmoid(x)),
        UnaryFn::Pow { exponent } => S::un(UnOp::Pow(exponent as f32), x),
    }
}

const SQRT_2_OVER_PI: f32 = 0.797_884_6;
const GELU_C: f32 = 0.044_715;

/// `dy * f'(x)`, with the reference executor's conventions: f'(NaN) is
/// NaN, and the kinks take PyTorch's values.
///
/// `bind` holds a value in a register: a value the formula uses twice (a
/// sigmoid, a tanh) is computed once.
pub fn unary_grad(f: UnaryFn, x: SExpr, dy: SExpr, bind: &mut dyn FnMut(SExpr) -> SExpr) -> SExpr {
    use SExpr as S;
    let c = S::c;
    let gt0 = |x: &SExpr| Cond::cmp(CmpOp::Gt, x.clone(), c(0.0));
    let sigmoid = |x: SExpr| S::un(UnOp::Sigmoid, x);
    let d = match f {
        UnaryFn::Neg => c(-1.0),
        UnaryFn::Exp => S::un(UnOp::Exp, x.clone()),
        UnaryFn::Log => c(1.0).over(x.clone()),
        UnaryFn::Sqrt => c(0.5).over(S::un(UnOp::Sqrt, x.clone())),
        UnaryFn::Rsqrt => c(-0.5).over(x.clone().times(S::un(UnOp::Sqrt, x.clone()))),
        UnaryFn::Square => c(2.0).times(x.clone()),
        UnaryFn::Relu => S::select(gt0(&x), c(1.0), c(0.0)),
        UnaryFn::Relu6 => S::select(
            gt0(&x).and(Cond::cmp(CmpOp::Lt, x.clone(), c(6.0))),
            c(1.0),
            c(0.0),
        ),
        UnaryFn::Sigmoid => {
            let s = bind(sigmoid(x.clone()));
            s.clone().times(c(1.0).minus(s))
        }
        UnaryFn::Tanh => {
            let t = bind(S::un(UnOp::Tanh, x.clone()));
            c(1.0).minus(t.clone().times(t))
        }
        UnaryFn::LeakyRelu { slope } => S::select(gt0(&x), c(1.0), c(slope as f32)),
        UnaryFn::Gelu { tanh: false } => {
            let cdf = c(0.5).times(c(1.0).plus(S::un(
                UnOp::Erf,
                x.clone().times(c(std::f32::consts::FRAC_1_SQRT_2)),
            )));
            let pdf =
                S::un(UnOp::Exp, c(-0.5).times(x.clone()).times(x.clone())).times(c(0.398_942_3));
            cdf.plus(x.clone().times(pdf))
        }
        UnaryFn::Gelu { tanh: true } => {
            let cube = x.clone().times(x.clone()).times(x.clone());
            let inner = c(SQRT_2_OVER_PI).times(x.clone().plus(c(GELU_C).times(cube)));
            let t = bind(S::un(UnOp::Tanh, inner));
            let dinner = c(SQRT_2_OVER_PI)
                .times(c(1.0).plus(c(3.0 * GELU_C).times(x.clone()).times(x.clone())));
            c(0.5).times(c(1.0).plus(t.clone())).plus(
                c(0.5)
                    .times(x.clone())
                    .times(c(1.0).minus(t.clone().times(t)))
                    .times(dinner),
            )
        }
        UnaryFn::Elu { alpha } => S::select(
            gt0(&x),
            c(1.0),
            c(alpha as f32).times(S::un(UnOp::Exp, x.clone())),
        ),
        UnaryFn::Silu => {
            let s = bind(sigmoid(x.clone()));
            s.clone()
                .times(c(1.0).plus(x.clone().times(c(1.0).minus(s))))
        }
        UnaryFn::Pow { exponent } => {
            c(exponent as f32).times(S::un(UnOp::Pow((exponent - 1.0) as f32), x.clone()))
        }
    };
    // A NaN input gives a NaN gradient even where the formula would not
    // (relu's 0 or 1): `x != x` only for NaN.
    let d = match f {
        UnaryFn::Relu | UnaryFn::Relu6 | UnaryFn::LeakyRelu { .. } | UnaryFn::Neg => {
            S::select(Cond::cmp(CmpOp::Ne, x.clone(), x), c(f32::NAN), d)
        }
        _ => d,
    };
    dy.times(d)
}

/// The kernel program of a graph, ready for a code generator: the default
/// graph passes (simplify, CSE, DCE), fusion plan, lowering, verification,
/// guards the loop ranges prove removed, nested loops that index as one
/// collapsed, small register-only loops unrolled, and verified again (generated
/// code trusts the verifier, so what pruning left is checked too). An
/// error here is a bug of the lowering.
pub fn program_of(
    g: &crate::ir::Graph,
    target: Target,
) -> Result<lower::Lowered, verify::VerifyError> {
    let mut g = g.clone();
    for pass in crate::passes::DEFAULT {
        pass.run(&mut g);
    }
    let g = &g;
    let plan = crate::passes::fusion::plan(g);
    let mut lowered = lower::lower(g, &plan, target);
    verify::verify(&lowered.program)?;
    verify::prune_guards(&mut lowered.program);
    // Collapse first: an unrolled loop no longer collapses with its
    // neighbours (a reduction over a whole weight would become nine sums
    // per iteration of a stride-9 loop).
    collapse::collapse_loops(&mut lowered.program);
    merge::merge_neighbours(&mut lowered.program);
    unroll::unroll_small_loops(&mut lowered.program);
    verify::verify(&lowered.program)?;
    Ok(lowered)
}

#[cfg(test)]
mod tests {
    use super::{constant_difference, split_offset, IExpr, Var};

    fn v(k: u32) -> IExpr {
        IExpr::var(Var(k))
    }

    /// `(a * 6 + u) * 25 + 5 * i + j`: a register tile's weight index.
    fn weight(u: i64, i: i64, j: i64) -> IExpr {
        v(0).mul_c(6)
            .plus(IExpr::c(u))
            .mul_c(25)
            .plus(IExpr::c(5 * i))
            .plus(IExpr::c(j))
    }

    #[test]
    fn offsets_split_from_sums_and_products() {
        let (rest, c) = split_offset(&weight(2, 3, 4));
        assert_eq!((rest, c), (v(0).mul_c(6).mul_c(25), 50 + 15 + 4));
        // What is not a sum or a product by a constant stays whole.
        let e = v(1).plus(IExpr::c(3)).div_c(2).plus(IExpr::c(1));
        assert_eq!(split_offset(&e), (v(1).plus(IExpr::c(3)).div_c(2), 1));
        assert_eq!(split_offset(&IExpr::c(7)), (IExpr::c(0), 7));
    }

    #[test]
    fn differences_are_constant_only_when_the_terms_cancel() {
        assert_eq!(
            constant_difference(&weight(3, 0, 1), &weight(1, 0, 0)),
            Some(51)
        );
        // The same terms in another order and grouping.
        let a = v(0).mul_c(4).plus(v(1)).plus(IExpr::c(2));
        let b = v(1).plus(IExpr::c(9).plus(v(0).mul_c(4)));
        assert_eq!(constant_difference(&a, &b), Some(-7));
        // A variable with different factors, or only on one side.
        assert_eq!(constant_difference(&v(0).mul_c(2), &v(0)), None);
        assert_eq!(constant_difference(&v(0).plus(v(1)), &v(0)), None);
        // Divisions are compared whole.
        let d = |k| v(0).div_c(3).plus(IExpr::c(k));
        assert_eq!(constant_difference(&d(5), &d(1)), Some(4));
        assert_eq!(constant_difference(&v(0).div_c(3), &v(0).div_c(2)), None);
    }
}
