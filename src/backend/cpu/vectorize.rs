//! Which innermost loops run four elements at a time (f32x4, the widest
//! vectors Cranelift emits on x86-64), and how each load steps.
//!
//! A loop qualifies when its body is straight-line code (register
//! temporaries and stores, no loops or guards), each store writes the
//! element the loop variable indexes (step 1), each load steps by a
//! constant (1: a vector load; 0: one value for all lanes) or is four
//! loads (any other step, or an index that divides the variable), no
//! register carries a value from one iteration to the next but by a sum,
//! maximum or minimum (which keeps one partial result per lane), and a
//! buffer that is both read and written is read only where it is
//! written. Conditions may only compare values: guards on indices carry
//! facts the verifier used, and dropout's hash is integer work per lane.

use super::codegen::LANES;
use crate::kernel::{constant_difference, BinOp, BufId, Cond, IExpr, SExpr, Stmt, Var};
use std::collections::{HashMap, HashSet};

pub use crate::kernel::step;

/// How a loop runs four lanes at a time.
pub struct Plan {
    /// Registers the body sets: one value per lane.
    pub lanes: HashSet<u32>,
    /// Registers that accumulate across iterations (`r = r + e`, or max,
    /// min): four partial results, combined after the vector loop. The
    /// order of a sum changes; its value only by rounding.
    pub reductions: Vec<(u32, BinOp)>,
}

/// `r = r op e` with `e` free of `r`: a reduction into `r`.
fn reduction(s: &Stmt) -> Option<(u32, BinOp, &SExpr)> {
    let Stmt::Set { reg, value } = s else {
        return None;
    };
    let SExpr::Bin(op @ (BinOp::Add | BinOp::Max | BinOp::Min), a, b) = value else {
        return None;
    };
    let e = match (&**a, &**b) {
        (SExpr::Reg(r), e) | (e, SExpr::Reg(r)) if *r == *reg => e,
        _ => return None,
    };
    (!reads(e, reg.0)).then_some((reg.0, *op, e))
}

fn reads(e: &SExpr, r: u32) -> bool {
    match e {
        SExpr::Reg(x) => x.0 == r,
        SExpr::Const(_) | SExpr::Load { .. } | SExpr::Index(_) => false,
        SExpr::Un(_, a) => reads(a, r),
        SExpr::Bin(_, a, b) => reads(a, r) || reads(b, r),
        SExpr::Select(c, a, b) => cond_reads(c, r) || reads(a, r) || reads(b, r),
    }
}

fn cond_reads(c: &Cond, r: u32) -> bool {
    match c {
        Cond::FCmp { a, b, .. } => reads(a, r) || reads(b, r),
        Cond::And(a, b) | Cond::Or(a, b) => cond_reads(a, r) || cond_reads(b, r),
        Cond::InRange { .. } | Cond::Divides { .. } | Cond::Keep { .. } => false,
    }
}

/// How the loop over `var` with this body runs four lanes at a time, or
/// `None` when it must stay scalar.
pub fn plan(var: Var, body: &[Stmt]) -> Option<Plan> {
    // Reductions: a register set once, by `r = r op e`, and read nowhere
    // else in the body.
    let mut reductions = Vec::new();
    for s in body {
        if let Some((r, op, _)) = reduction(s) {
            let sets = body
                .iter()
                .filter(|s| matches!(s, Stmt::Set { reg, .. } if reg.0 == r))
                .count();
            let other_reads = body.iter().any(|t| {
                !std::ptr::eq(t, s)
                    && match t {
                        Stmt::Set { value, .. } | Stmt::Store { value, .. } => reads(value, r),
                        _ => false,
                    }
            });
            if sets == 1 && !other_reads {
                reductions.push((r, op));
            }
        }
    }
    let nested = body.iter().any(|s| matches!(s, Stmt::For { .. }));
    if nested {
        // A reduction's partial results are combined after the loop; with
        // inner loops the register may be read inside them. Kept simple.
        reductions.clear();
    }
    let mut all_sets = HashSet::new();
    sets_in(body, &mut all_sets);
    let mut w = Walk {
        var,
        set: HashSet::new(),
        all_sets,
        reductions: &reductions,
        accesses: HashMap::new(),
        stored: HashSet::new(),
        loaded: HashSet::new(),
        odd_step: false,
    };
    w.block(body)?;
    // Inner loops run once per four lanes: worth it only when their loads
    // are whole vectors or broadcasts, not four loads each.
    if nested && w.odd_step {
        return None;
    }
    for buf in &w.stored {
        if !lanes_keep_order(&w.accesses[buf], w.loaded.contains(buf)) {
            return None;
        }
    }
    let lanes = w.set;
    Some(Plan { lanes, reductions })
}

/// Whether four lanes at a time leave a stored buffer as one at a time
/// would: every access is at the same index; or the buffer is only
/// written, at indices that differ by constants of at least four elements
/// (a register tile's output channels), so that two stores to one element
/// are in different vector steps, in their scalar order.
fn lanes_keep_order(at: &[&IExpr], loaded: bool) -> bool {
    if at.iter().all(|i| *i == at[0]) {
        return true;
    }
    !loaded
        && at.iter().enumerate().all(|(k, a)| {
            at[..k]
                .iter()
                .all(|b| a == b || constant_difference(a, b).is_some_and(|d| d.abs() >= LANES))
        })
}

/// Every register set in `body`, inner loops included.
fn sets_in(body: &[Stmt], out: &mut HashSet<u32>) {
    for s in body {
        match s {
            Stmt::Set { reg, .. } => {
                out.insert(reg.0);
            }
            Stmt::For { body, .. } => sets_in(body, out),
            Stmt::If { then, .. } => sets_in(then, out),
            Stmt::Store { .. } | Stmt::Gemm(_) => {}
        }
    }
}

struct Walk<'a> {
    var: Var,
    /// Registers set so far, in program order.
    set: HashSet<u32>,
    all_sets: HashSet<u32>,
    reductions: &'a [(u32, BinOp)],
    accesses: HashMap<BufId, Vec<&'a IExpr>>,
    stored: HashSet<BufId>,
    loaded: HashSet<BufId>,
    /// A load steps by something other than 0 or 1.
    odd_step: bool,
}

impl<'a> Walk<'a> {
    fn block(&mut self, body: &'a [Stmt]) -> Option<()> {
        for s in body {
            match s {
                Stmt::Set { reg, .. } if self.reductions.iter().any(|(r, _)| *r == reg.0) => {
                    let (_, _, e) = reduction(s).expect("found by plan");
                    self.value(e)?;
                }
                Stmt::Set { reg, value } => {
                    self.value(value)?;
                    self.set.insert(reg.0);
                }
                Stmt::Store { buf, index, value } => {
                    self.value(value)?;
                    if step(index, self.var)? != 1 {
                        return None;
                    }
                    self.stored.insert(*buf);
                    self.accesses.entry(*buf).or_default().push(index);
                }
                // An inner loop the same for every lane.
                Stmt::For {
                    start, end, body, ..
                } => {
                    if step(start, self.var)? != 0 || step(end, self.var)? != 0 {
                        return None;
                    }
                    self.block(body)?;
                }
                Stmt::If { .. } | Stmt::Gemm(_) => return None,
            }
        }
        Some(())
    }

    fn value(&mut self, e: &'a SExpr) -> Option<()> {
        match e {
            SExpr::Const(_) => Some(()),
            SExpr::Load { buf, index } => {
                // A load whose index does not step by a constant (`x / 2`,
                // a tiling pool's gradient) is four loads, one per lane.
                let s = step(index, self.var);
                self.odd_step |= s != Some(0) && s != Some(1);
                self.loaded.insert(*buf);
                self.accesses.entry(*buf).or_default().push(index);
                Some(())
            }
            // Read before this iteration sets it: a value carried from the
            // previous iteration, which lanes cannot share.
            SExpr::Reg(r) if !self.set.contains(&r.0) && self.all_sets.contains(&r.0) => None,
            SExpr::Reg(_) => Some(()),
            SExpr::Index(_) => None,
            SExpr::Un(_, a) => self.value(a),
            SExpr::Bin(_, a, b) => {
                self.value(a)?;
                self.value(b)
            }
            SExpr::Select(c, a, b) => {
                self.cond(c)?;
                self.value(a)?;
                self.value(b)
            }
        }
    }

    fn cond(&mut self, c: &'a Cond) -> Option<()> {
        match c {
            Cond::FCmp { a, b, .. } => {
                self.value(a)?;
                self.value(b)
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                self.cond(a)?;
                self.cond(b)
            }
            Cond::InRange { .. } | Cond::Divides { .. } | Cond::Keep { .. } => None,
        }
    }
}
