//! Collapsing perfectly nested loops into one when every index treats
//! them as one: `for h in 0..H { for w in 0..W { .. x[.. + h*W*s + w*s] .. } }`
//! becomes `for m in 0..H*W { .. x[.. + m*s] .. }`. The loop nests of the
//! lowering have one loop per axis, so the innermost loop of a tensor with
//! small spatial size is short (2 to 16 elements in ResNet's later
//! stages); collapsed, it is long enough to run four lanes at a time with
//! its overhead paid once.
//!
//! Loops `a` (outer, `0..A`) and `b` (inner, `0..B`, the only statement
//! of `a`'s body) collapse when every index expression in the body is
//! affine in both with `step(a) = B * step(b)`: then `e(a, b) = e(0, a*B +
//! b)`, so each expression becomes `e(0, m)` with `m` running over
//! `0..A*B`. Guards, inner loop bounds and dropout indices count as index
//! expressions too.

use super::rewrite::Rewrite;
use super::step;
use super::{Cond, IExpr, Program, SExpr, Stmt, Var};

pub fn collapse_loops(p: &mut Program) {
    for k in &mut p.kernels {
        for s in k.body.iter_mut() {
            // The outermost loop of a parallel kernel is split over threads
            // on its iterations, which write disjoint elements; iterations
            // of a loop inside it may not, so the two never merge (a thread
            // boundary could fall between them).
            collapse(s, !k.parallel);
        }
    }
}

fn collapse(s: &mut Stmt, merge_here: bool) {
    match s {
        Stmt::For { body, .. } => {
            for s in body.iter_mut() {
                collapse(s, true);
            }
        }
        Stmt::If { then, .. } => {
            for s in then.iter_mut() {
                collapse(s, true);
            }
        }
        _ => return,
    }
    // Bottom-up: the inner loops have collapsed; now this one with its
    // only inner loop, as often as it can.
    while merge_here && try_merge(s) {}
}

fn try_merge(s: &mut Stmt) -> bool {
    let Stmt::For {
        var: a,
        start: IExpr::Const(0),
        end: IExpr::Const(extent_a),
        body,
    } = s
    else {
        return false;
    };
    let [Stmt::For {
        var: b,
        start: IExpr::Const(0),
        end: IExpr::Const(extent_b),
        body: inner,
    }] = body.as_slice()
    else {
        return false;
    };
    let (a, b, ea, eb) = (*a, *b, *extent_a, *extent_b);
    if !inner.iter().all(|s| stmt_ok(s, a, b, eb)) {
        return false;
    }
    let inner: Vec<Stmt> = Rewrite::of_indices(&|e| rewrite(e, a)).stmts(inner);
    *s = Stmt::For {
        var: b,
        start: IExpr::c(0),
        end: IExpr::c(ea * eb),
        body: inner,
    };
    true
}

/// Whether `e` treats `a` and `b` as the one index `a * eb + b`.
fn index_ok(e: &IExpr, a: Var, b: Var, eb: i64) -> bool {
    match (step(e, a), step(e, b)) {
        (Some(sa), Some(sb)) => sa == eb * sb,
        _ => false,
    }
}

fn stmt_ok(s: &Stmt, a: Var, b: Var, eb: i64) -> bool {
    let i = |e: &IExpr| index_ok(e, a, b, eb);
    match s {
        Stmt::For {
            start, end, body, ..
        } => i(start) && i(end) && body.iter().all(|s| stmt_ok(s, a, b, eb)),
        Stmt::Set { value, .. } => value_ok(value, a, b, eb),
        Stmt::Store { index, value, .. } => i(index) && value_ok(value, a, b, eb),
        Stmt::If { cond, then } => {
            cond_ok(cond, a, b, eb) && then.iter().all(|s| stmt_ok(s, a, b, eb))
        }
        Stmt::Gemm(g) => [&g.a.offset, &g.b.offset, &g.c.offset].into_iter().all(i),
    }
}

fn value_ok(e: &SExpr, a: Var, b: Var, eb: i64) -> bool {
    match e {
        SExpr::Const(_) | SExpr::Reg(_) => true,
        SExpr::Load { index, .. } | SExpr::Index(index) => index_ok(index, a, b, eb),
        SExpr::Un(_, x) => value_ok(x, a, b, eb),
        SExpr::Bin(_, x, y) => value_ok(x, a, b, eb) && value_ok(y, a, b, eb),
        SExpr::Select(c, x, y) => {
            cond_ok(c, a, b, eb) && value_ok(x, a, b, eb) && value_ok(y, a, b, eb)
        }
    }
}

fn cond_ok(c: &Cond, a: Var, b: Var, eb: i64) -> bool {
    match c {
        Cond::InRange { value, .. } | Cond::Divides { value, .. } => index_ok(value, a, b, eb),
        Cond::Keep { index, .. } => index_ok(index, a, b, eb),
        Cond::FCmp { a: x, b: y, .. } => value_ok(x, a, b, eb) && value_ok(y, a, b, eb),
        Cond::And(x, y) | Cond::Or(x, y) => cond_ok(x, a, b, eb) && cond_ok(y, a, b, eb),
    }
}

// The rewrite: `a` becomes 0 everywhere, and `b` (kept as the variable of
// the collapsed loop) now runs over `0..A*B`.

fn rewrite(e: &IExpr, a: Var) -> IExpr {
    e.substitute(&|v| (v == a).then(|| IExpr::c(0)))
}
