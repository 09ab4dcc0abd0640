//! Kernels whose results depend on the state alone — a dead-tap weight's
//! live tap (`slice`), batch norm's inference scale and shift — computed
//! once and kept while the state does not change: an inference or an
//! evaluation pass runs batch after batch on the same weights, and
//! ResNet-18's four slices of 512 x 512 x 3 x 3 weights read 38 MB a
//! step for 4 MB of results.
//!
//! A kernel is kept when it reads only state, kept results and its own
//! results (a fused kernel reads back what it wrote), draws no
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
        let inputs = a
            .reads
            .iter()
            .all(|&b| state(b) || results.contains(&b) || a.writes.contains(&b));
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
            let inputs = a
                .reads
                .iter()
                .all(|&b| state(b) || results.contains(&b) || a.writes.contains(&b));
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

#[cfg(test)]
mod tests {
    use super::*;

    /// An inference batch norm folded into its convolution (as lowered
    /// from a layer): the scale and shift (one kernel that reads back what
    /// it wrote, `rsqrt` then the product with `gamma`) and the scaled
    /// weight depend on the state alone; the convolution and what follows
    /// read the batch.
    #[test]
    fn a_folded_batch_norm_is_computed_from_the_state_alone() {
        let source = "graph g mode=infer {
  %0 = input name=\"x\" role=\"data\" : f32[2, 3, 5, 5]
  %1 = input name=\"w\" role=\"param\" : f32[4, 3, 3, 3]
  %2 = input name=\"gamma\" role=\"param\" : f32[4]
  %3 = input name=\"beta\" role=\"param\" : f32[4]
  %4 = input name=\"mean\" role=\"buffer\" : f32[4]
  %5 = input name=\"var\" role=\"buffer\" : f32[4]
  %6 = const value=1e-5 : f32[]
  %7 = conv2d(%0, %1) stride=[1, 1] padding=[0, 0, 0, 0] dilation=[1, 1] groups=1 : f32[2, 4, 3, 3]
  %8 = add(%5, %6) : f32[4]
  %9 = rsqrt(%8) : f32[4]
  %10 = reshape(%4) shape=[1, 4, 1, 1] : f32[1, 4, 1, 1]
  %11 = reshape(%9) shape=[1, 4, 1, 1] : f32[1, 4, 1, 1]
  %12 = sub(%7, %10) : f32[2, 4, 3, 3]
  %13 = mul(%12, %11) : f32[2, 4, 3, 3]
  %14 = reshape(%2) shape=[1, 4, 1, 1] : f32[1, 4, 1, 1]
  %15 = reshape(%3) shape=[1, 4, 1, 1] : f32[1, 4, 1, 1]
  %16 = mul(%13, %14) : f32[2, 4, 3, 3]
  %17 = add(%16, %15) : f32[2, 4, 3, 3]
  output \"y\" = %17
}
";
        let g = crate::ir::text::parse(source).unwrap();
        let target = crate::kernel::Target {
            patches_in_place: false,
            panel_columns: 0,
        };
        let program = crate::kernel::program_of(&g, target).unwrap().program;
        let is_state = |b: BufId| matches!(&program.buffers[b.0 as usize].kind, BufferKind::Input(n) if n != "x");
        let kept = state_only(&program, &is_state);
        let reads_x = |k: &crate::kernel::Kernel| {
            let a = accesses(&k.body);
            let x = program
                .buffers
                .iter()
                .position(|b| matches!(&b.kind, BufferKind::Input(n) if n == "x"));
            x.is_some_and(|x| a.reads.contains(&BufId(x as u32)))
        };
        for (k, kernel) in program.kernels.iter().enumerate() {
            if reads_x(kernel) {
                assert!(!kept[k], "{} reads the batch", kernel.name);
            }
        }
        let names: Vec<&str> = program
            .kernels
            .iter()
            .zip(&kept)
            .filter(|(_, &k)| k)
            .map(|(k, _)| k.name.as_str())
            .collect();
        assert!(
            names.iter().any(|n| n.contains("rsqrt+")) && names.iter().any(|n| n.contains("mul")),
            "the scale and the scaled weight are kept: {names:?}"
        );
    }
}
