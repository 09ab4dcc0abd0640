//! The text form of a kernel program, for `nnc compile --target kernels`,
//! for tests that compare loop nests, and for reading what the lowering
//! made of a fusion group.
//!
//! ```text
//! buffer b0 = input "x" [2, 3]
//! buffer b1 = %4 [2, 3]
//! kernel k0_relu parallel {
//!   for v0 in 0..2 {
//!     for v1 in 0..3 {
//!       b1[v0 * 3 + v1] = max(b0[v0 * 3 + v1], 0)
//!     }
//!   }
//! }
//! ```

use super::{BinOp, BufferKind, CmpOp, Cond, IExpr, Kernel, Program, SExpr, Stmt, UnOp};
use std::fmt::{self, Display, Formatter, Write};

impl Display for Program {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        for (i, b) in self.buffers.iter().enumerate() {
            let what = match &b.kind {
                BufferKind::Input(name) => format!("input {name:?}"),
                BufferKind::Value(id) => id.to_string(),
                BufferKind::Scratch(what) => format!("scratch {what:?}"),
            };
            writeln!(f, "buffer b{i} = {what} {:?}", b.shape)?;
        }
        for k in &self.kernels {
            write!(f, "{k}")?;
        }
        Ok(())
    }
}

impl Display for Kernel {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        let par = if self.parallel { " parallel" } else { "" };
        writeln!(f, "kernel {}{par} {{", self.name)?;
        let mut out = String::new();
        for s in &self.body {
            stmt(&mut out, s, 1);
        }
        f.write_str(&out)?;
        writeln!(f, "}}")
    }
}

fn stmt(out: &mut String, s: &Stmt, depth: usize) {
    let pad = "  ".repeat(depth);
    match s {
        Stmt::For {
            var,
            start,
            end,
            body,
        } => {
            let _ = writeln!(out, "{pad}for v{} in {start}..{end} {{", var.0);
            for s in body {
                stmt(out, s, depth + 1);
            }
            let _ = writeln!(out, "{pad}}}");
        }
        Stmt::Set { reg, value } => {
            let _ = writeln!(out, "{pad}r{} = {value}", reg.0);
        }
        Stmt::Store { buf, index, value } => {
            let _ = writeln!(out, "{pad}b{}[{index}] = {value}", buf.0);
        }
        Stmt::Gemm(g) => {
            // An axis with digits prints them after its outer stride:
            // `100(3:10, 3:1)` is `i / 9 * 100 + i / 3 % 3 * 10 + i % 3`.
            let axis = |outer: i64, digits: &[(i64, i64)]| {
                let inner: Vec<String> = digits.iter().map(|(e, s)| format!("{e}:{s}")).collect();
                if inner.is_empty() {
                    format!("{outer}")
                } else {
                    format!("{outer}({})", inner.join(", "))
                }
            };
            let m = |r: &super::MatRef| {
                format!(
                    "b{}[{} ; {}, {}]",
                    r.buf.0,
                    r.offset,
                    axis(r.row, &r.digits.rows),
                    axis(r.col, &r.digits.cols)
                )
            };
            let op = if g.accumulate { "+=" } else { "=" };
            let _ = writeln!(
                out,
                "{pad}gemm {}x{}x{}: {} {op} {} * {}",
                g.m,
                g.n,
                g.k,
                m(&g.c),
                m(&g.a),
                m(&g.b)
            );
        }
        Stmt::If { cond, then } => {
            let _ = writeln!(out, "{pad}if {cond} {{");
            for s in then {
                stmt(out, s, depth + 1);
            }
            let _ = writeln!(out, "{pad}}}");
        }
    }
}

impl Display for IExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            IExpr::Const(v) => write!(f, "{v}"),
            IExpr::Var(v) => write!(f, "v{}", v.0),
            IExpr::Add(a, b) => write!(f, "{a} + {b}"),
            IExpr::Mul(a, b) => write!(f, "{} * {}", Factor(a), Factor(b)),
            IExpr::Div(a, d) => write!(f, "{} / {d}", Factor(a)),
            IExpr::Rem(a, d) => write!(f, "{} % {d}", Factor(a)),
            IExpr::Min(a, b) => write!(f, "min({a}, {b})"),
            IExpr::Max(a, b) => write!(f, "max({a}, {b})"),
        }
    }
}

/// An index expression as an operand of `*`, `/` or `%`: a sum in
/// parentheses.
struct Factor<'a>(&'a IExpr);

impl Display for Factor<'_> {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self.0 {
            IExpr::Add(..) => write!(f, "({})", self.0),
            e => write!(f, "{e}"),
        }
    }
}

impl Display for SExpr {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            SExpr::Const(v) => write!(f, "{v:?}"),
            SExpr::Load { buf, index } => write!(f, "b{}[{index}]", buf.0),
            SExpr::Reg(r) => write!(f, "r{}", r.0),
            SExpr::Index(e) => write!(f, "float({e})"),
            SExpr::Un(op, a) => match op {
                UnOp::Neg => write!(f, "-({a})"),
                UnOp::Pow(e) => write!(f, "pow({a}, {e:?})"),
                op => write!(f, "{}({a})", un_name(*op)),
            },
            SExpr::Bin(op, a, b) => match op {
                BinOp::Max => write!(f, "max({a}, {b})"),
                BinOp::Min => write!(f, "min({a}, {b})"),
                op => write!(f, "({a} {} {b})", bin_symbol(*op)),
            },
            SExpr::Select(c, a, b) => write!(f, "select({c}, {a}, {b})"),
        }
    }
}

impl Display for Cond {
    fn fmt(&self, f: &mut Formatter<'_>) -> fmt::Result {
        match self {
            Cond::InRange { value, lo, hi } => write!(f, "{lo} <= {value} < {hi}"),
            Cond::Divides { value, by } => write!(f, "{by} | {value}"),
            Cond::FCmp { op, a, b } => write!(f, "{a} {} {b}", cmp_symbol(*op)),
            Cond::And(a, b) => write!(f, "({a}) && ({b})"),
            Cond::Or(a, b) => write!(f, "({a}) || ({b})"),
            Cond::Keep { p, salt, index } => write!(f, "keep(p={p}, salt={salt}, {index})"),
        }
    }
}

pub fn un_name(op: UnOp) -> &'static str {
    match op {
        UnOp::Neg => "neg",
        UnOp::Abs => "abs",
        UnOp::Sqrt => "sqrt",
        UnOp::Exp => "exp",
        UnOp::Log => "log",
        UnOp::Tanh => "tanh",
        UnOp::Sigmoid => "sigmoid",
        UnOp::Erf => "erf",
        UnOp::Pow(_) => "pow",
    }
}

fn bin_symbol(op: BinOp) -> &'static str {
    match op {
        BinOp::Add => "+",
        BinOp::Sub => "-",
        BinOp::Mul => "*",
        BinOp::Div => "/",
        BinOp::Max => "max",
        BinOp::Min => "min",
    }
}

fn cmp_symbol(op: CmpOp) -> &'static str {
    match op {
        CmpOp::Lt => "<",
        CmpOp::Le => "<=",
        CmpOp::Gt => ">",
        CmpOp::Ge => ">=",
        CmpOp::Eq => "==",
        CmpOp::Ne => "!=",
    }
}
