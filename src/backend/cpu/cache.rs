//! Kernels whose results depend on the state alone — a dead-tap weight's
//! live tap (`slice`), batch norm's inference scale and shift — computed
//! once and kept while the state does not change: an inference or an
//! evaluation pass runs batch after batch on the same weights, and
//! ResNet-18's four slices of 512 x 512 x 3 x 3 weights read 38 MB a
//! step for 4 MB of results.
//!
//! A kernel is kept when it reads only state and kept results, draws no
//! dropout mask (the seed changes per run), and writes only values that
//! no other kernel writes; its results are allocated on their own (never
//! shared with a value of another lifetime, `share_buffers`).

use crate::kernel::{BufId, BufferKind, Cond, Program, SExpr, Stmt};
use std::collections::HashSet;

/// Per kernel of `program`: whether its results depend on the state
/// alone (`state` says which buffers are state).
pub fn state_only(program: &Program, state: &dyn Fn(BufId) -> bool) -> Vec<bool> {
    let accesses: Vec<Accesses> = program.kernels.iter().map(|k| accesses(&k.body)).collect();
    let mut kept = vec![false; accesses.len()];
    let mut results: HashSet<BufId> = HashSet::new();
    for (k, a) in accesses.iter().enumerate() {
        let values = a
            .writes
            .iter()
            .all(|b| matches!(program.buffers[b.0 as usize].kind, BufferKind::Value(_)));
        let inputs = a.reads.iter().all(|&b| state(b) || results.contains(&b));
        if values && inputs && !a.seeded && !a.writes.is_empty() {
            kept[k] = true;
            results.extend(a.writes.iter().copied());
        }
    }
    // A result another kernel also writes is not the state's alone; nor
    // is anything computed from it (until nothing changes).
    loop {
        let written_elsewhere: HashSet<BufId> = accesses
            .iter()
            .zip(&kept)
            .filter(|(_, &k)| !k)
            .flat_map(|(a, _)| a.writes.iter().copied())
            .collect();
        let mut changed = false;
        let mut results: HashSet<BufId> = HashSet::new();
        for (k, a) in accesses.iter().enumerate() {
            if !kept[k] {
                continue;
            }
            let clobbered = a.writes.iter().any(|b| written_elsewhere.contains(b));
            let inputs = a.reads.iter().all(|&b| state(b) || results.contains(&b));
            if clobbered || !inputs {
                kept[k] = false;
                changed = true;
            } else {
                results.extend(a.writes.iter().copied());
            }
        }
        if !changed {
            return kept;
        }
    }
}

/// The buffers a kernel reads and writes, and whether it draws dropout
/// masks.
#[derive(Default)]
struct Accesses {
    reads: HashSet<BufId>,
    writes: HashSet<BufId>,
    seeded: bool,
}

fn accesses(body: &[Stmt]) -> Accesses {
    let mut a = Accesses::default();
    for s in body {
        stmt(s, &mut a);
    }
    a
}

fn stmt(s: &Stmt, a: &mut Accesses) {
    match s {
        Stmt::Set { value, .. } => value_of(value, a),
        Stmt::Store { buf, value, .. } => {
            a.writes.insert(*buf);
            value_of(value, a);
        }
        Stmt::For { body, .. } => body.iter().for_each(|s| stmt(s, a)),
        Stmt::If { cond, then } => {
            cond_of(cond, a);
            then.iter().for_each(|s| stmt(s, a));
        }
        Stmt::Gemm(g) => {
            a.reads.extend([g.a.buf, g.b.buf]);
            if g.accumulate {
                a.reads.insert(g.c.buf);
            }
            a.writes.insert(g.c.buf);
        }
    }
}

fn value_of(e: &SExpr, a: &mut Accesses) {
    e.for_each_load(&mut |buf, _| {
        a.reads.insert(buf);
    });
    a.seeded |= e.draws_mask();
}

fn cond_of(c: &Cond, a: &mut Accesses) {
    c.for_each_load(&mut |buf, _| {
        a.reads.insert(buf);
    });
    a.seeded |= c.draws_mask();
}
