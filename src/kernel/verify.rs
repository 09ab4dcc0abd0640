//! The verifier: proves, before any code runs, that every load and store
//! of a program stays inside its buffer, so that generated code needs no
//! bounds checks. It is interval arithmetic over the loop ranges, narrowed
//! by the guards in force: inside `if lo <= e < hi` (or the chosen side of
//! a select on it), the expression `e` is known to lie in `lo..hi`
//! wherever it occurs again, structurally equal.

use super::{Cond, IExpr, Kernel, Program, SExpr, Stmt};
use std::collections::HashMap;
use std::fmt;

#[derive(Clone, Debug, PartialEq)]
pub struct VerifyError {
    pub kernel: String,
    pub message: String,
}

impl fmt::Display for VerifyError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "kernel `{}`: {}", self.kernel, self.message)
    }
}

impl std::error::Error for VerifyError {}

pub fn verify(p: &Program) -> Result<(), VerifyError> {
    for k in &p.kernels {
        Checker {
            program: p,
            kernel: k,
            vars: HashMap::new(),
            facts: Vec::new(),
            set: vec![false; k.regs as usize],
        }
        .kernel()
        .map_err(|message| VerifyError {
            kernel: k.name.clone(),
            message,
        })?;
    }
    Ok(())
}

type Range = (i64, i64);

struct Checker<'a> {
    program: &'a Program,
    kernel: &'a Kernel,
    vars: HashMap<u32, Range>,
    /// Guards in force: the expression lies in `lo..=hi`.
    facts: Vec<(IExpr, Range)>,
    /// Registers set on every path to here.
    set: Vec<bool>,
}

impl Checker<'_> {
    fn kernel(&mut self) -> Result<(), String> {
        if self.kernel.parallel {
            match self.kernel.body.as_slice() {
                [Stmt::For {
                    start: IExpr::Const(0),
                    end: IExpr::Const(_),
                    ..
                }] => {}
                _ => {
                    return Err(
                        "a parallel kernel is one loop from 0 to a constant, split over threads"
                            .into(),
                    )
                }
            }
        }
        let body = &self.kernel.body;
        self.block(body)
    }

    fn block(&mut self, body: &[Stmt]) -> Result<(), String> {
        for s in body {
            self.stmt(s)?;
        }
        Ok(())
    }

    fn stmt(&mut self, s: &Stmt) -> Result<(), String> {
        match s {
            Stmt::For {
                var,
                start,
                end,
                body,
            } => {
                if var.0 >= self.kernel.vars {
                    return Err(format!("v{} is not numbered by the kernel", var.0));
                }
                if self.vars.contains_key(&var.0) {
                    return Err(format!("v{} is bound twice", var.0));
                }
                let (lo, _) = self.range(start)?;
                let (_, hi) = self.range(end)?;
                if hi <= lo {
                    // The loop never runs: nothing inside it happens.
                    return Ok(());
                }
                self.vars.insert(var.0, (lo, hi - 1));
                let saved = self.set.clone();
                let r = self.block(body);
                // A loop may run zero times: what it sets is not set after it.
                self.set = saved;
                self.vars.remove(&var.0);
                r
            }
            Stmt::Set { reg, value } => {
                if reg.0 >= self.kernel.regs {
                    return Err(format!("r{} is not numbered by the kernel", reg.0));
                }
                self.value(value)?;
                self.set[reg.0 as usize] = true;
                Ok(())
            }
            Stmt::Store { buf, index, value } => {
                self.value(value)?;
                self.access(buf.0, index)
            }
            Stmt::Gemm(g) => {
                if g.m <= 0 || g.n <= 0 || g.k <= 0 {
                    return Err(format!("gemm of {}x{}x{}", g.m, g.n, g.k));
                }
                self.matrix(&g.a, g.m, g.k)?;
                self.matrix(&g.b, g.k, g.n)?;
                self.matrix(&g.c, g.m, g.n)?;
                let overlaps = [&g.a, &g.b].iter().any(|r| r.buf == g.c.buf);
                if overlaps {
                    return Err("gemm writes a buffer it reads".into());
                }
                Ok(())
            }
            Stmt::If { cond, then } => {
                let facts = self.facts.len();
                self.cond(cond)?;
                let saved = self.set.clone();
                let r = self.block(then);
                self.set = saved;
                self.facts.truncate(facts);
                r
            }
        }
    }

    /// Every element of a `rows x cols` view lies inside its buffer.
    fn matrix(&mut self, r: &super::MatRef, rows: i64, cols: i64) -> Result<(), String> {
        let len = self
            .program
            .buffers
            .get(r.buf.0 as usize)
            .ok_or_else(|| format!("b{} is not a buffer of the program", r.buf.0))?
            .len as i64;
        let (lo, hi) = self.range(&r.offset)?;
        // The lowest and highest offset of an axis: every digit at its
        // first or last value (a digit may step back: a flipped kernel).
        let reach = |outer: i64, digits: &[(i64, i64)], count: i64| -> Result<(i64, i64), String> {
            if outer < 0 || digits.iter().any(|&(e, _)| e < 1) {
                return Err(format!(
                    "a gemm operand b{} has a negative outer stride or an empty digit",
                    r.buf.0
                ));
            }
            let span = super::digit_span(digits);
            if count % span != 0 {
                return Err(format!(
                    "{count} indices of b{} do not split into digits spanning {span}",
                    r.buf.0
                ));
            }
            let overflow = || "index overflow".to_string();
            let mut low = 0i64;
            let mut high = (count / span - 1).checked_mul(outer).ok_or_else(overflow)?;
            for &(e, s) in digits {
                let far = (e - 1).checked_mul(s).ok_or_else(overflow)?;
                if far < 0 {
                    low = low.checked_add(far).ok_or_else(overflow)?;
                } else {
                    high = high.checked_add(far).ok_or_else(overflow)?;
                }
            }
            Ok((low, high))
        };
        let (row_low, row_high) = reach(r.row, &r.digits.rows, rows)?;
        let (col_low, col_high) = reach(r.col, &r.digits.cols, cols)?;
        let first = lo + row_low + col_low;
        let last = row_high
            .checked_add(col_high)
            .and_then(|x| x.checked_add(hi))
            .ok_or("index overflow")?;
        if first < 0 || last >= len {
            return Err(format!(
                "a {rows}x{cols} view of b{} at {}.. reaches {first}..={last}, outside the buffer of {len}",
                r.buf.0, r.offset
            ));
        }
        Ok(())
    }

    /// Checks a condition and leaves the facts it proves in force (the
    /// caller truncates them where they stop holding).
    fn cond(&mut self, c: &Cond) -> Result<(), String> {
        match c {
            Cond::InRange { value, lo, hi } => {
                self.range(value)?;
                self.facts.push((value.clone(), (*lo, hi - 1)));
                Ok(())
            }
            Cond::Divides { value, by } => {
                if *by <= 0 {
                    return Err(format!("divisibility by {by}"));
                }
                self.range(value).map(|_| ())
            }
            Cond::FCmp { a, b, .. } => {
                self.value(a)?;
                self.value(b)
            }
            Cond::And(a, b) => {
                self.cond(a)?;
                self.cond(b)
            }
            Cond::Or(a, b) => {
                let facts = self.facts.len();
                self.cond(a)?;
                self.facts.truncate(facts);
                self.cond(b)?;
                self.facts.truncate(facts);
                Ok(())
            }
            Cond::Keep { index, p, .. } => {
                if !(0.0..1.0).contains(p) {
                    return Err(format!("dropout probability {p}"));
                }
                let (lo, _) = self.range(index)?;
                if lo < 0 {
                    return Err(format!("dropout index {index} may be negative"));
                }
                Ok(())
            }
        }
    }

    fn value(&mut self, e: &SExpr) -> Result<(), String> {
        match e {
            SExpr::Const(_) => Ok(()),
            SExpr::Load { buf, index } => self.access(buf.0, index),
            SExpr::Reg(r) => match self.set.get(r.0 as usize) {
                Some(true) => Ok(()),
                Some(false) => Err(format!("r{} is read before it is set", r.0)),
                None => Err(format!("r{} is not numbered by the kernel", r.0)),
            },
            SExpr::Index(i) => self.range(i).map(|_| ()),
            SExpr::Un(_, a) => self.value(a),
            SExpr::Bin(_, a, b) => {
                self.value(a)?;
                self.value(b)
            }
            SExpr::Select(c, a, b) => {
                let facts = self.facts.len();
                self.cond(c)?;
                self.value(a)?;
                self.facts.truncate(facts);
                self.value(b)
            }
        }
    }

    fn access(&mut self, buf: u32, index: &IExpr) -> Result<(), String> {
        let len = self
            .program
            .buffers
            .get(buf as usize)
            .ok_or_else(|| format!("b{buf} is not a buffer of the program"))?
            .len as i64;
        let (lo, hi) = self.range(index)?;
        // An empty range is code the guards in force make unreachable.
        if lo <= hi && (lo < 0 || hi >= len) {
            return Err(format!(
                "b{buf}[{index}] may reach {lo}..={hi}, outside the buffer of {len}"
            ));
        }
        Ok(())
    }

    /// The values `e` may take.
    fn range(&self, e: &IExpr) -> Result<Range, String> {
        interval(e, &self.vars, &self.facts)
    }
}

/// The values `e` may take, given the ranges of the loop variables and
/// the guards in force.
fn interval(
    e: &IExpr,
    vars: &HashMap<u32, Range>,
    facts: &[(IExpr, Range)],
) -> Result<Range, String> {
    let range = |e: &IExpr| interval(e, vars, facts);
    {
        let r = match e {
            IExpr::Const(v) => (*v, *v),
            IExpr::Var(v) => *vars
                .get(&v.0)
                .ok_or_else(|| format!("v{} is used outside its loop", v.0))?,
            IExpr::Add(a, b) => {
                let (a, b) = (range(a)?, range(b)?);
                (
                    a.0.checked_add(b.0).ok_or("index overflow")?,
                    a.1.checked_add(b.1).ok_or("index overflow")?,
                )
            }
            IExpr::Mul(a, b) => {
                let (a, b) = (range(a)?, range(b)?);
                let products = [
                    a.0.checked_mul(b.0),
                    a.0.checked_mul(b.1),
                    a.1.checked_mul(b.0),
                    a.1.checked_mul(b.1),
                ];
                let mut lo = i64::MAX;
                let mut hi = i64::MIN;
                for p in products {
                    let p = p.ok_or("index overflow")?;
                    lo = lo.min(p);
                    hi = hi.max(p);
                }
                (lo, hi)
            }
            IExpr::Div(a, d) | IExpr::Rem(a, d) => {
                let r = range(a)?;
                if *d <= 0 {
                    return Err(format!("division by {d}"));
                }
                if r.0 < 0 {
                    return Err(format!("{a} may be negative where it is divided"));
                }
                match e {
                    IExpr::Div(..) => (r.0 / d, r.1 / d),
                    _ if r.1 < *d => r,
                    _ => (0, d - 1),
                }
            }
            IExpr::Min(a, b) => {
                let (a, b) = (range(a)?, range(b)?);
                (a.0.min(b.0), a.1.min(b.1))
            }
            IExpr::Max(a, b) => {
                let (a, b) = (range(a)?, range(b)?);
                (a.0.max(b.0), a.1.max(b.1))
            }
        };
        // Guards narrow what the arithmetic alone allows.
        let mut r = r;
        for (fact, (lo, hi)) in facts {
            if fact == e {
                r = (r.0.max(*lo), r.1.min(*hi));
            }
        }
        Ok(r)
    }
}

/// Removes the guards that the loop ranges alone prove true (the padding
/// checks of a convolution without padding, a window that never leaves
/// its input): each costs a comparison and a branch per innermost
/// iteration. Run on a program that passed [`verify`]; what it leaves
/// passes again, since a guard it removes added no fact that was needed.
pub fn prune_guards(p: &mut Program) {
    for k in &mut p.kernels {
        let mut vars = HashMap::new();
        prune_block(&mut k.body, &mut vars);
    }
}

fn prune_block(body: &mut Vec<Stmt>, vars: &mut HashMap<u32, Range>) {
    let mut out = Vec::with_capacity(body.len());
    for mut s in body.drain(..) {
        match &mut s {
            Stmt::For {
                var,
                start,
                end,
                body,
            } => {
                let (Ok((lo, _)), Ok((_, hi))) =
                    (interval(start, vars, &[]), interval(end, vars, &[]))
                else {
                    out.push(s);
                    continue;
                };
                if hi > lo {
                    vars.insert(var.0, (lo, hi - 1));
                    prune_block(body, vars);
                    vars.remove(&var.0);
                }
            }
            Stmt::If { cond, then } => {
                prune_block(then, vars);
                if always(cond, vars) {
                    out.append(then);
                    continue;
                }
            }
            Stmt::Set { .. } | Stmt::Store { .. } | Stmt::Gemm(_) => {}
        }
        out.push(s);
    }
    *body = out;
}

/// Whether a guard holds for every value of the loop variables.
fn always(c: &Cond, vars: &HashMap<u32, Range>) -> bool {
    match c {
        Cond::InRange { value, lo, hi } => {
            interval(value, vars, &[]).is_ok_and(|(a, b)| a >= *lo && b < *hi)
        }
        Cond::And(a, b) => always(a, vars) && always(b, vars),
        _ => false,
    }
}
