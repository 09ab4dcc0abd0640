//! An interpreter of kernel programs: slow and direct, a second oracle
//! beside the reference executor. A difference between it and the
//! reference points at the lowering; between it and a code generator, at
//! the code generator. It computes in f32 with the same scalar functions
//! the compiled code calls, so it and the cpu backend agree closely.

use super::{BinOp, CmpOp, Cond, IExpr, Program, SExpr, Stmt, UnOp};

/// Runs every kernel of `p` in order on `buffers` (one per program buffer,
/// of its length; inputs filled). The program must have passed
/// [`super::verify::verify`]; an out-of-bounds access panics here.
pub fn run(p: &Program, buffers: &mut [Vec<f32>], seed: u64) {
    for k in &p.kernels {
        let mut m = Machine {
            buffers: &mut *buffers,
            vars: vec![0; k.vars as usize],
            regs: vec![0.0; k.regs as usize],
            seed,
        };
        m.block(&k.body);
    }
}

struct Machine<'a> {
    buffers: &'a mut [Vec<f32>],
    vars: Vec<i64>,
    regs: Vec<f32>,
    seed: u64,
}

impl Machine<'_> {
    fn block(&mut self, body: &[Stmt]) {
        for s in body {
            match s {
                Stmt::For {
                    var,
                    start,
                    end,
                    body,
                } => {
                    let (a, b) = (self.int(start), self.int(end));
                    for i in a..b {
                        self.vars[var.0 as usize] = i;
                        self.block(body);
                    }
                }
                Stmt::Set { reg, value } => {
                    let v = self.float(value);
                    self.regs[reg.0 as usize] = v;
                }
                Stmt::Store { buf, index, value } => {
                    let v = self.float(value);
                    let i = self.int(index) as usize;
                    self.buffers[buf.0 as usize][i] = v;
                }
                Stmt::If { cond, then } => {
                    if self.cond(cond) {
                        self.block(then);
                    }
                }
                Stmt::Gemm(g) => self.gemm(g),
            }
        }
    }

    /// The product, summed in the order of `l` (a tuned kernel sums in
    /// another order: they agree to rounding).
    fn gemm(&mut self, g: &super::Gemm) {
        let (oa, ob, oc) = (
            self.int(&g.a.offset),
            self.int(&g.b.offset),
            self.int(&g.c.offset),
        );
        let (ra, ca) = (g.a.row_offsets(g.m), g.a.col_offsets(g.k));
        let (rb, cb) = (g.b.row_offsets(g.k), g.b.col_offsets(g.n));
        let (rc, cc) = (g.c.row_offsets(g.m), g.c.col_offsets(g.n));
        for i in 0..g.m as usize {
            for j in 0..g.n as usize {
                let mut acc = 0f32;
                for l in 0..g.k as usize {
                    let a = self.buffers[g.a.buf.0 as usize][(oa + ra[i] + ca[l]) as usize];
                    let b = self.buffers[g.b.buf.0 as usize][(ob + rb[l] + cb[j]) as usize];
                    acc += a * b;
                }
                let c = &mut self.buffers[g.c.buf.0 as usize][(oc + rc[i] + cc[j]) as usize];
                *c = if g.accumulate { *c + acc } else { acc };
            }
        }
    }

    fn int(&self, e: &IExpr) -> i64 {
        match e {
            IExpr::Const(v) => *v,
            IExpr::Var(v) => self.vars[v.0 as usize],
            IExpr::Add(a, b) => self.int(a) + self.int(b),
            IExpr::Mul(a, b) => self.int(a) * self.int(b),
            IExpr::Div(a, d) => self.int(a) / d,
            IExpr::Rem(a, d) => self.int(a) % d,
            IExpr::Min(a, b) => self.int(a).min(self.int(b)),
            IExpr::Max(a, b) => self.int(a).max(self.int(b)),
        }
    }

    fn cond(&self, c: &Cond) -> bool {
        match c {
            Cond::InRange { value, lo, hi } => (*lo..*hi).contains(&self.int(value)),
            Cond::Divides { value, by } => self.int(value) % by == 0,
            Cond::FCmp { op, a, b } => compare(*op, self.float(a), self.float(b)),
            Cond::And(a, b) => self.cond(a) && self.cond(b),
            Cond::Or(a, b) => self.cond(a) || self.cond(b),
            Cond::Keep { p, salt, index } => crate::backend::reference::dropout_keep(
                *p,
                *salt,
                self.seed,
                self.int(index) as u64,
            ),
        }
    }

    fn float(&self, e: &SExpr) -> f32 {
        match e {
            SExpr::Const(v) => *v,
            SExpr::Load { buf, index } => self.buffers[buf.0 as usize][self.int(index) as usize],
            SExpr::Reg(r) => self.regs[r.0 as usize],
            SExpr::Index(i) => self.int(i) as f32,
            SExpr::Un(op, a) => unary(*op, self.float(a)),
            SExpr::Bin(op, a, b) => binary(*op, self.float(a), self.float(b)),
            SExpr::Select(c, a, b) => {
                if self.cond(c) {
                    self.float(a)
                } else {
                    self.float(b)
                }
            }
        }
    }
}

pub fn compare(op: CmpOp, a: f32, b: f32) -> bool {
    match op {
        CmpOp::Lt => a < b,
        CmpOp::Le => a <= b,
        CmpOp::Gt => a > b,
        CmpOp::Ge => a >= b,
        CmpOp::Eq => a == b,
        CmpOp::Ne => a != b,
    }
}

/// The scalar functions, as the compiled code computes them.
pub fn unary(op: UnOp, x: f32) -> f32 {
    match op {
        UnOp::Neg => -x,
        UnOp::Abs => x.abs(),
        UnOp::Sqrt => x.sqrt(),
        UnOp::Exp => x.exp(),
        UnOp::Log => x.ln(),
        UnOp::Tanh => x.tanh(),
        UnOp::Sigmoid => 1.0 / (1.0 + (-x).exp()),
        UnOp::Erf => libm::erff(x),
        UnOp::Pow(e) => x.powf(e),
    }
}

/// `Max` and `Min` propagate NaN from either side.
pub fn binary(op: BinOp, a: f32, b: f32) -> f32 {
    match op {
        BinOp::Add => a + b,
        BinOp::Sub => a - b,
        BinOp::Mul => a * b,
        BinOp::Div => a / b,
        BinOp::Max | BinOp::Min if a.is_nan() || b.is_nan() => f32::NAN,
        BinOp::Max => a.max(b),
        BinOp::Min => a.min(b),
    }
}

/// Runs graph `g` through the whole kernel path (fusion plan, lowering,
/// verification, interpretation) on named inputs; returns the outputs by
/// name, as `backend::reference::run` does, for tests that compare them.
pub fn evaluate(
    g: &crate::ir::Graph,
    target: super::Target,
    inputs: &std::collections::HashMap<String, ndarray::ArrayD<f32>>,
    seed: u64,
) -> Result<std::collections::HashMap<String, ndarray::ArrayD<f32>>, String> {
    use super::BufferKind;
    let plan = crate::passes::fusion::plan(g);
    let lowered = super::lower::lower(g, &plan, target);
    super::verify::verify(&lowered.program).map_err(|e| e.to_string())?;
    let mut buffers = Vec::new();
    for b in &lowered.program.buffers {
        buffers.push(match &b.kind {
            BufferKind::Input(name) => {
                let v = inputs
                    .get(name)
                    .ok_or_else(|| format!("no value for `{name}`"))?;
                if v.shape() != b.shape.as_slice() {
                    return Err(format!("`{name}` has shape {:?}", v.shape()));
                }
                v.iter().copied().collect()
            }
            BufferKind::Value(_) | BufferKind::Scratch(_) => vec![0.0; b.len],
        });
    }
    run(&lowered.program, &mut buffers, seed);
    Ok(lowered
        .outputs
        .iter()
        .map(|(o, b)| {
            let shape = lowered.program.buffer(*b).shape.clone();
            let v = ndarray::ArrayD::from_shape_vec(shape, buffers[b.0 as usize].clone())
                .expect("a buffer holds its shape's elements");
            (o.name(), v)
        })
        .collect())
}
