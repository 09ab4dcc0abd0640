//! Unrolling the small loops that only compute into registers: the taps
//! of a convolution or pooling window (`for i in 0..3 { for j in 0..3 {
//! acc = acc + w * x } }`). Each copy's indices are then the loop's other
//! indices plus a constant, which the code generator shares between the
//! copies and folds into the loads' address offsets, and the loop around
//! them becomes straight-line code that runs four lanes at a time.
//!
//! A loop is unrolled when its bounds are constants, it runs at most
//! `MAX_TRIPS` times, the statements it would produce number at most
//! `MAX_STATEMENTS`, and it stores nothing (loops with stores are the
//! output loops the vectorizer wants). Loops of eight trips or more are
//! left as they are: a sum over a row of eight positions (a weight
//! gradient's innermost loop) is two vector steps, not eight scalar ones.

use super::rewrite::Rewrite;
use super::{Cond, IExpr, Program, Stmt, Var};

const MAX_TRIPS: i64 = 7;
/// A register tile of eight output channels over a 5 x 5 window, with the
/// loads of the input: 225 statements.
const MAX_STATEMENTS: usize = 256;

pub fn unroll_small_loops(p: &mut Program) {
    for k in &mut p.kernels {
        // The outermost loop of a parallel kernel is split over threads;
        // it is never a candidate (it stores).
        k.body = block(std::mem::take(&mut k.body));
    }
}

fn block(body: Vec<Stmt>) -> Vec<Stmt> {
    let mut out = Vec::with_capacity(body.len());
    for s in body {
        match s {
            Stmt::For {
                var,
                start,
                end,
                body,
            } => {
                let body = block(body);
                match (&start, &end) {
                    (IExpr::Const(a), IExpr::Const(b))
                        if b - a <= MAX_TRIPS
                            && !stores(&body)
                            && size(&body) * (b - a).max(0) as usize <= MAX_STATEMENTS =>
                    {
                        for i in *a..*b {
                            for s in &body {
                                settle(
                                    Rewrite::of_indices(&|e| subst(e, var, i)).stmt(s),
                                    &mut out,
                                );
                            }
                        }
                    }
                    _ => out.push(Stmt::For {
                        var,
                        start,
                        end,
                        body,
                    }),
                }
            }
            Stmt::If { cond, then } => out.push(Stmt::If {
                cond,
                then: block(then),
            }),
            s => out.push(s),
        }
    }
    out
}

/// Appends `s`, with the guards that became constant decided: a copy
/// whose guard fails is dropped (the verifier could not tell its accesses
/// are never made), one whose guard holds loses it.
fn settle(s: Stmt, out: &mut Vec<Stmt>) {
    match s {
        Stmt::If { cond, then } => match decide(cond) {
            Ok(cond) => out.push(Stmt::If { cond, then }),
            Err(true) => {
                for s in then {
                    settle(s, out);
                }
            }
            Err(false) => {}
        },
        s => out.push(s),
    }
}

/// A condition with its constant parts decided: `Err(truth)` when the
/// whole is constant.
fn decide(c: Cond) -> Result<Cond, bool> {
    match c {
        Cond::InRange {
            value: IExpr::Const(v),
            lo,
            hi,
        } => Err((lo..hi).contains(&v)),
        Cond::And(a, b) => match (decide(*a), decide(*b)) {
            (Err(false), _) | (_, Err(false)) => Err(false),
            (Err(true), x) | (x, Err(true)) => x,
            (Ok(a), Ok(b)) => Ok(a.and(b)),
        },
        c => Ok(c),
    }
}

fn stores(body: &[Stmt]) -> bool {
    body.iter().any(|s| match s {
        Stmt::Store { .. } | Stmt::Gemm(_) => true,
        Stmt::For { body, .. } => stores(body),
        Stmt::If { then, .. } => stores(then),
        Stmt::Set { .. } => false,
    })
}

fn size(body: &[Stmt]) -> usize {
    body.iter()
        .map(|s| match s {
            Stmt::For { body, .. } => 1 + size(body),
            Stmt::If { then, .. } => 1 + size(then),
            _ => 1,
        })
        .sum()
}

/// `e` with `var` replaced by `value`, constants folded.
fn subst(e: &IExpr, var: Var, value: i64) -> IExpr {
    e.substitute(&|v| (v == var).then_some(IExpr::Const(value)))
}
