//! Which innermost loops run four elements at a time (f32x4, the widest
//! vectors Cranelift emits on x86-64), and how each load steps.
//!
//! A loop qualifies when its body is straight-line code (register
//! temporaries and stores, no loops or guards), each store writes the
//! element the loop variable indexes (step 1), each load steps by a
//! constant (1: a vector load; 0: one value for all lanes; other: four
//! loads), no register carries a value from one iteration to the next, and
//! a buffer that is both read and written is read only where it is
//! written. Conditions may only compare values: guards on indices carry
//! facts the verifier used, and dropout's hash is integer work per lane.

use crate::kernel::{BufId, Cond, IExpr, SExpr, Stmt, Var};
use std::collections::{HashMap, HashSet};

/// How the index of a load or store changes when `var` grows by one:
/// `None` when not by a constant.
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

/// The registers a vectorizable loop body sets (they become vectors), or
/// `None` when the loop must stay scalar.
pub fn plan(var: Var, body: &[Stmt]) -> Option<HashSet<u32>> {
    let mut set = HashSet::new();
    let mut accesses: HashMap<BufId, Vec<&IExpr>> = HashMap::new();
    let mut stored = HashSet::new();
    for s in body {
        match s {
            Stmt::Set { reg, value } => {
                value_ok(value, var, &set, body, &mut accesses)?;
                set.insert(reg.0);
            }
            Stmt::Store { buf, index, value } => {
                value_ok(value, var, &set, body, &mut accesses)?;
                if step(index, var)? != 1 {
                    return None;
                }
                stored.insert(*buf);
                accesses.entry(*buf).or_default().push(index);
            }
            Stmt::For { .. } | Stmt::If { .. } | Stmt::Gemm(_) => return None,
        }
    }
    for buf in stored {
        let at = &accesses[&buf];
        if at.iter().any(|i| *i != at[0]) {
            return None;
        }
    }
    Some(set)
}

/// Registers set anywhere in `body`.
fn sets(body: &[Stmt], reg: u32) -> bool {
    body.iter()
        .any(|s| matches!(s, Stmt::Set { reg: r, .. } if r.0 == reg))
}

fn value_ok<'a>(
    e: &'a SExpr,
    var: Var,
    set: &HashSet<u32>,
    body: &[Stmt],
    accesses: &mut HashMap<BufId, Vec<&'a IExpr>>,
) -> Option<()> {
    match e {
        SExpr::Const(_) => Some(()),
        SExpr::Load { buf, index } => {
            step(index, var)?;
            accesses.entry(*buf).or_default().push(index);
            Some(())
        }
        // Read before this iteration sets it: a value carried from the
        // previous iteration (a running sum), which lanes cannot share.
        SExpr::Reg(r) if !set.contains(&r.0) && sets(body, r.0) => None,
        SExpr::Reg(_) => Some(()),
        SExpr::Index(_) => None,
        SExpr::Un(_, a) => value_ok(a, var, set, body, accesses),
        SExpr::Bin(_, a, b) => {
            value_ok(a, var, set, body, accesses)?;
            value_ok(b, var, set, body, accesses)
        }
        SExpr::Select(c, a, b) => {
            cond_ok(c, var, set, body, accesses)?;
            value_ok(a, var, set, body, accesses)?;
            value_ok(b, var, set, body, accesses)
        }
    }
}

fn cond_ok<'a>(
    c: &'a Cond,
    var: Var,
    set: &HashSet<u32>,
    body: &[Stmt],
    accesses: &mut HashMap<BufId, Vec<&'a IExpr>>,
) -> Option<()> {
    match c {
        Cond::FCmp { a, b, .. } => {
            value_ok(a, var, set, body, accesses)?;
            value_ok(b, var, set, body, accesses)
        }
        Cond::And(a, b) | Cond::Or(a, b) => {
            cond_ok(a, var, set, body, accesses)?;
            cond_ok(b, var, set, body, accesses)
        }
        Cond::InRange { .. } | Cond::Divides { .. } | Cond::Keep { .. } => None,
    }
}
