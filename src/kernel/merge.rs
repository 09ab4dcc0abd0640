//! Merging neighbouring kernels that sweep the same loops into one, so
//! that what they share is read once and what one hands the other never
//! leaves the cache:
//! - reductions side by side: batch norm's backward pass sums `dy`,
//!   `dy * x̂` and `dy * (x - mean)` over each channel, three kernels that
//!   each read the whole activation (3.5 MB for LeNet's first layer at
//!   batch 256); merged, one pass with three sums;
//! - a producer and its consumer, where the consumer reads the producer's
//!   result only where, and in the iteration, the producer wrote it: SGD's
//!   momentum update and the parameter update that reads the new momentum
//!   (both results are kept, so fusion had left them apart), one pass
//!   over each parameter instead of three.
//!
//! A kernel's *spine* is its nest of loops when each level holds exactly
//! one loop among straight-line statements (register sets and stores), the
//! innermost level none. Kernel `b` merges into the kernel `a` just before
//! it when:
//! - their spines have the same depth and the same constant bounds, and
//!   both kernels are parallel or neither (the outermost loop is what is
//!   split over threads: the same split for both);
//! - `b` writes nothing `a` reads or writes;
//! - either `b` reads nothing `a` writes and both are reductions (the
//!   innermost level stores nothing: side by side, unrelated elementwise
//!   loops would share nothing), or every buffer of `a`'s that `b` reads,
//!   `a` stores once, in its innermost level, and `b` loads only there, at
//!   the same index. Either way, running `b`'s statements interleaved with
//!   `a`'s, each after `a`'s at its level, gives what running `b` after `a`
//!   gave;
//! - the merged innermost body has at most `MAX_SUMS` sums (registers) and
//!   `MAX_STATEMENTS` statements.
//!
//! `b`'s loop variables become `a`'s at the same depth; its registers are
//! renumbered after `a`'s.

use super::rewrite::Rewrite;
use super::{BufId, IExpr, Kernel, Program, Reg, SExpr, Stmt, Var};
use std::collections::HashSet;

/// Sums in one merged innermost body: four, so that the vector loop still
/// keeps two sets of partial results (see the CPU backend's
/// `PAIRED_REDUCTIONS`).
const MAX_SUMS: usize = 4;

/// Statements in one merged innermost body: a few elementwise steps.
const MAX_STATEMENTS: usize = 48;

pub fn merge_neighbours(p: &mut Program) {
    let kernels = std::mem::take(&mut p.kernels);
    let mut out: Vec<Kernel> = Vec::with_capacity(kernels.len());
    for k in kernels {
        if let Some(last) = out.last_mut() {
            if let Some(renamed) = mergeable(last, &k) {
                merge_into(last, renamed);
                continue;
            }
        }
        out.push(k);
    }
    p.kernels = out;
}

/// The bounds of each loop of the spine, outermost first; `None` when the
/// body is not a spine of constant bounds.
fn spine(body: &[Stmt]) -> Option<Vec<(i64, i64)>> {
    let mut bounds = Vec::new();
    let mut level = body;
    loop {
        let mut inner = None;
        for s in level {
            match s {
                Stmt::For {
                    start: IExpr::Const(a),
                    end: IExpr::Const(b),
                    body,
                    ..
                } if inner.is_none() => inner = Some((*a, *b, body)),
                Stmt::Set { .. } | Stmt::Store { .. } => {}
                _ => return None,
            }
        }
        match inner {
            Some((a, b, body)) => {
                bounds.push((a, b));
                level = body;
            }
            None => return (!bounds.is_empty()).then_some(bounds),
        }
    }
}

/// The innermost level's statements.
fn innermost(body: &[Stmt]) -> &[Stmt] {
    for s in body {
        if let Stmt::For { body, .. } = s {
            return innermost(body);
        }
    }
    body
}

/// `b` with `a`'s loop variables and its registers after `a`'s, when
/// `mergeable` accepts it.
fn mergeable(a: &Kernel, b: &Kernel) -> Option<Kernel> {
    let (Some(sa), Some(sb)) = (spine(&a.body), spine(&b.body)) else {
        return None;
    };
    if sa != sb || a.parallel != b.parallel {
        return None;
    }
    let b = renamed(a, b);
    let (inner_a, inner_b) = (innermost(&a.body), innermost(&b.body));
    if sums(inner_a) + sums(inner_b) > MAX_SUMS || inner_a.len() + inner_b.len() > MAX_STATEMENTS {
        return None;
    }
    let (mut a_reads, mut a_writes) = (HashSet::new(), HashSet::new());
    accesses(&a.body, &mut a_reads, &mut a_writes);
    let (mut b_reads, mut b_writes) = (HashSet::new(), HashSet::new());
    accesses(&b.body, &mut b_reads, &mut b_writes);
    if !b_writes.is_disjoint(&a_writes) || !b_writes.is_disjoint(&a_reads) {
        return None;
    }
    let handed: Vec<BufId> = b_reads.intersection(&a_writes).copied().collect();
    if handed.is_empty() {
        let stores = |body: &[Stmt]| body.iter().any(|s| matches!(s, Stmt::Store { .. }));
        return (!stores(inner_a) && !stores(inner_b)).then_some(b);
    }
    // Every handed buffer: one store in `a`'s innermost level, and `b`'s
    // loads of it all there, at that index.
    let (mut a_at, mut b_at) = (Vec::new(), Vec::new());
    level_accesses(&a.body, &mut a_at);
    level_accesses(&b.body, &mut b_at);
    let handed_in_step = handed.iter().all(|x| {
        let stores: Vec<&Access> = a_at.iter().filter(|t| t.buf == *x && t.store).collect();
        let [store] = stores.as_slice() else {
            return false;
        };
        store.innermost
            && b_at
                .iter()
                .filter(|t| t.buf == *x)
                .all(|t| !t.store && t.innermost && t.index == store.index)
    });
    handed_in_step.then_some(b)
}

/// How many statements of an innermost body are sums (`r = r op e`).
fn sums(body: &[Stmt]) -> usize {
    body.iter()
        .filter(|s| match s {
            Stmt::Set { reg, value } => reads_reg(value, *reg),
            _ => false,
        })
        .count()
}

fn reads_reg(e: &SExpr, r: Reg) -> bool {
    match e {
        SExpr::Reg(x) => *x == r,
        SExpr::Const(_) | SExpr::Load { .. } | SExpr::Index(_) => false,
        SExpr::Un(_, a) => reads_reg(a, r),
        SExpr::Bin(_, a, b) => reads_reg(a, r) || reads_reg(b, r),
        SExpr::Select(_, a, b) => reads_reg(a, r) || reads_reg(b, r),
    }
}

/// A load or store of a spine, and whether it is in the innermost level.
struct Access {
    buf: BufId,
    index: IExpr,
    store: bool,
    innermost: bool,
}

fn level_accesses(level: &[Stmt], out: &mut Vec<Access>) {
    let innermost = !level.iter().any(|s| matches!(s, Stmt::For { .. }));
    for s in level {
        let mut loads = Vec::new();
        match s {
            Stmt::For { body, .. } => level_accesses(body, out),
            Stmt::Set { value, .. } => loads_of(value, &mut loads),
            Stmt::Store { buf, index, value } => {
                loads_of(value, &mut loads);
                out.push(Access {
                    buf: *buf,
                    index: index.clone(),
                    store: true,
                    innermost,
                });
            }
            Stmt::If { .. } | Stmt::Gemm(_) => unreachable!("spines hold no guards or products"),
        }
        out.extend(loads.into_iter().map(|(buf, index)| Access {
            buf,
            index,
            store: false,
            innermost,
        }));
    }
}

fn loads_of(e: &SExpr, out: &mut Vec<(BufId, IExpr)>) {
    e.for_each_load(&mut |b, index| out.push((b, index.clone())));
}

/// `b` with `a`'s loop variables at each depth, its registers after `a`'s.
fn renamed(a: &Kernel, b: &Kernel) -> Kernel {
    let mut vars = Vec::new();
    loop_vars(&a.body, &mut vars);
    let mut b_vars = Vec::new();
    loop_vars(&b.body, &mut b_vars);
    let rename = Rename {
        vars: b_vars.into_iter().zip(vars).collect(),
        regs: a.regs,
    };
    Kernel {
        name: b.name.clone(),
        parallel: b.parallel,
        body: Rewrite {
            index: &|e| e.substitute(&|v| Some(IExpr::Var(rename.var(v)))),
            var: &|v| rename.var(v),
            reg: &|r| rename.reg(r),
        }
        .stmts(&b.body),
        vars: b.vars,
        regs: b.regs,
    }
}

/// `b` (renamed by `mergeable`) merged into `a`.
fn merge_into(a: &mut Kernel, b: Kernel) {
    a.body = zip_levels(std::mem::take(&mut a.body), b.body);
    a.regs += b.regs;
    a.name = format!("{}+{}", a.name, b.name);
}

/// Each level's statements of `b` after `a`'s: before the loop what came
/// before it, after the loop what came after, the loops zipped.
fn zip_levels(a: Vec<Stmt>, b: Vec<Stmt>) -> Vec<Stmt> {
    let split = |level: Vec<Stmt>| {
        let at = level.iter().position(|s| matches!(s, Stmt::For { .. }));
        let mut before = level;
        let after = match at {
            Some(i) => before.split_off(i + 1),
            None => Vec::new(),
        };
        let the_loop = at.map(|_| before.pop().expect("the loop"));
        (before, the_loop, after)
    };
    let (mut before, a_loop, mut after) = split(a);
    let (b_before, b_loop, b_after) = split(b);
    before.extend(b_before);
    if let (
        Some(Stmt::For {
            var,
            start,
            end,
            body,
        }),
        Some(Stmt::For { body: b_body, .. }),
    ) = (a_loop, b_loop)
    {
        before.push(Stmt::For {
            var,
            start,
            end,
            body: zip_levels(body, b_body),
        });
    }
    after.extend(b_after);
    before.extend(after);
    before
}

fn loop_vars(body: &[Stmt], out: &mut Vec<Var>) {
    for s in body {
        if let Stmt::For { var, body, .. } = s {
            out.push(*var);
            loop_vars(body, out);
        }
    }
}

fn accesses(body: &[Stmt], reads: &mut HashSet<BufId>, writes: &mut HashSet<BufId>) {
    for s in body {
        match s {
            Stmt::Set { value: v, .. } => v.for_each_load(&mut |b, _| {
                reads.insert(b);
            }),
            Stmt::Store { buf, value: v, .. } => {
                writes.insert(*buf);
                v.for_each_load(&mut |b, _| {
                    reads.insert(b);
                });
            }
            Stmt::For { body, .. } => accesses(body, reads, writes),
            Stmt::If { cond: c, then } => {
                c.for_each_load(&mut |b, _| {
                    reads.insert(b);
                });
                accesses(then, reads, writes);
            }
            Stmt::Gemm(g) => {
                reads.insert(g.a.buf);
                reads.insert(g.b.buf);
                writes.insert(g.c.buf);
            }
        }
    }
}

/// `b`'s loop variables as `a`'s, its registers after `a`'s.
struct Rename {
    vars: Vec<(Var, Var)>,
    regs: u32,
}

impl Rename {
    fn var(&self, v: Var) -> Var {
        self.vars
            .iter()
            .find_map(|(from, to)| (*from == v).then_some(*to))
            .unwrap_or(v)
    }

    fn reg(&self, r: Reg) -> Reg {
        Reg(r.0 + self.regs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{BinOp, Kernel};

    /// `out[c] = sum over i, j of f(c, i, j)`, loops `c` (parallel),
    /// `i`, `j` numbered from 0, one register.
    fn reduction(name: &str, out: u32, f: SExpr) -> Kernel {
        let (c, i, j) = (Var(0), Var(1), Var(2));
        let sum = Reg(0);
        let for_ = |var, end, body| Stmt::For {
            var,
            start: IExpr::c(0),
            end: IExpr::c(end),
            body,
        };
        let body = vec![for_(
            c,
            3,
            vec![
                Stmt::Set {
                    reg: sum,
                    value: SExpr::c(0.0),
                },
                for_(
                    i,
                    4,
                    vec![for_(
                        j,
                        8,
                        vec![Stmt::Set {
                            reg: sum,
                            value: SExpr::Bin(BinOp::Add, Box::new(SExpr::Reg(sum)), Box::new(f)),
                        }],
                    )],
                ),
                Stmt::Store {
                    buf: BufId(out),
                    index: IExpr::var(c),
                    value: SExpr::Reg(sum),
                },
            ],
        )];
        Kernel {
            name: name.into(),
            parallel: true,
            body,
            vars: 3,
            regs: 1,
        }
    }

    /// `buf[c * 32 + i * 8 + j]`.
    fn at(buf: u32) -> SExpr {
        let index = IExpr::var(Var(0))
            .mul_c(32)
            .plus(IExpr::var(Var(1)).mul_c(8))
            .plus(IExpr::var(Var(2)));
        SExpr::load(BufId(buf), index)
    }

    fn program(kernels: Vec<Kernel>) -> Program {
        Program {
            buffers: Vec::new(),
            kernels,
        }
    }

    #[test]
    fn independent_sums_over_the_same_loops_become_one_pass() {
        let mut p = program(vec![
            reduction("sum_dy", 2, at(0)),
            reduction("sum_dy_x", 3, at(0).times(at(1))),
        ]);
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 1);
        let text = p.kernels[0].to_string();
        let want = "\
kernel sum_dy+sum_dy_x parallel {
  for v0 in 0..3 {
    r0 = 0.0
    r1 = 0.0
    for v1 in 0..4 {
      for v2 in 0..8 {
        r0 = (r0 + b0[v0 * 32 + v1 * 8 + v2])
        r1 = (r1 + (b0[v0 * 32 + v1 * 8 + v2] * b1[v0 * 32 + v1 * 8 + v2]))
      }
    }
    b2[v0] = r0
    b3[v0] = r1
  }
}
";
        assert_eq!(text, want);
        assert_eq!(p.kernels[0].regs, 2);
    }

    /// `out[i] = f(i)` over `0..64`, loop `v0`, registers as `f` uses.
    fn map(name: &str, out: u32, f: SExpr) -> Kernel {
        Kernel {
            name: name.into(),
            parallel: true,
            body: vec![Stmt::For {
                var: Var(0),
                start: IExpr::c(0),
                end: IExpr::c(64),
                body: vec![Stmt::Store {
                    buf: BufId(out),
                    index: IExpr::var(Var(0)),
                    value: f,
                }],
            }],
            vars: 1,
            regs: 0,
        }
    }

    fn elem(buf: u32) -> SExpr {
        SExpr::load(BufId(buf), IExpr::var(Var(0)))
    }

    #[test]
    fn a_consumer_of_what_was_just_written_joins_its_producer() {
        // SGD with momentum: v' = 0.9 v + g, then p' = p - 0.1 v'.
        let momentum = map("momentum", 2, SExpr::c(0.9).times(elem(0)).plus(elem(1)));
        let param = map("param", 4, elem(3).minus(SExpr::c(0.1).times(elem(2))));
        let mut p = program(vec![momentum, param]);
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 1);
        let want = "\
kernel momentum+param parallel {
  for v0 in 0..64 {
    b2[v0] = ((0.9 * b0[v0]) + b1[v0])
    b4[v0] = (b3[v0] - (0.1 * b2[v0]))
  }
}
";
        assert_eq!(p.kernels[0].to_string(), want);
        // Read elsewhere than where it was written (a shift): another
        // iteration's element, not yet written. Apart.
        let shifted = SExpr::load(BufId(2), IExpr::var(Var(0)).add_c(1).min(IExpr::c(63)));
        let mut p = program(vec![map("momentum", 2, elem(0)), map("param", 4, shifted)]);
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 2);
        // Writing what the producer reads: apart.
        let mut p = program(vec![map("a", 2, elem(0)), map("b", 0, elem(1))]);
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 2);
        // Two unrelated maps share nothing: apart.
        let mut p = program(vec![map("a", 2, elem(0)), map("b", 4, elem(1))]);
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 2);
    }

    #[test]
    fn dependent_or_differently_shaped_kernels_stay_apart() {
        // The second reads what the first writes (a finished sum, after
        // the loops).
        let mut p = program(vec![reduction("a", 2, at(0)), reduction("b", 3, at(2))]);
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 2);
        // Other bounds.
        let mut other = reduction("b", 3, at(1));
        let Stmt::For { end, .. } = &mut other.body[0] else {
            unreachable!()
        };
        *end = IExpr::c(4);
        let mut p = program(vec![reduction("a", 2, at(0)), other]);
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 2);
        // More sums than the vector loop keeps paired.
        let mut p = program(
            (0..5)
                .map(|k| reduction(&format!("s{k}"), 10 + k, at(0)))
                .collect(),
        );
        merge_neighbours(&mut p);
        assert_eq!(p.kernels.len(), 2);
    }
}
