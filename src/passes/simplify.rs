//! Algebraic simplification and constant folding:
//!
//! - a reshape, broadcast or `sum_to` to the shape its argument already
//!   has is that argument;
//! - a reshape of a reshape is one reshape, a broadcast of a broadcast one
//!   broadcast (the inner op is left for `dce` when nothing else reads it);
//! - an elementwise op whose arguments are all constants is a constant (the
//!   value computed as the reference executor computes it, in f64), and so
//!   is a reshape or broadcast of a constant. In f64 the folded graph gives
//!   the same bits; in f32 a chain of folded ops is rounded once instead of
//!   after each op, so it may differ in the last bit (towards the exact
//!   value).
//!
//! Reductions of constants are not folded: a sum computed once differs in
//! its last bit from the running sum the executors compute.

use super::replace_all_uses;
use crate::ir::{Graph, NodeId, Op};

/// Returns how many nodes were simplified.
pub fn simplify(g: &mut Graph) -> usize {
    let mut changed = 0;
    for i in 0..g.nodes.len() {
        let id = NodeId(i as u32);
        let node = &g.nodes[i];
        let shape = node.ty.shape.clone();
        let arg = node.args.first().copied();
        // Identities: the op returns its argument unchanged.
        let identity = matches!(
            node.op,
            Op::Reshape { .. } | Op::BroadcastTo { .. } | Op::SumTo { .. }
        ) && arg.is_some_and(|a| g.shape(a) == shape.as_slice());
        if let (true, Some(a)) = (identity, arg) {
            replace_all_uses(g, id, a);
            changed += 1;
            continue;
        }
        // Chains: read the inner op's argument directly.
        if let Some(a) = arg {
            let inner = &g.nodes[a.0 as usize];
            let chain = matches!(
                (&node.op, &inner.op),
                (Op::Reshape { .. }, Op::Reshape { .. })
                    | (Op::BroadcastTo { .. }, Op::BroadcastTo { .. })
            );
            if chain {
                let source = inner.args[0];
                g.nodes[i].args[0] = source;
                changed += 1;
                continue;
            }
        }
        if let Some(value) = fold(g, i) {
            g.nodes[i] = crate::ir::Node {
                op: Op::Const {
                    value,
                    shape: shape.clone(),
                },
                args: Vec::new(),
                ty: g.nodes[i].ty.clone(),
                scope: g.nodes[i].scope.clone(),
            };
            changed += 1;
        }
    }
    changed
}

/// The value of node `i` when its arguments are all constants and its op
/// maps them to one value everywhere.
fn fold(g: &Graph, i: usize) -> Option<f64> {
    let node = &g.nodes[i];
    let consts: Vec<f64> = node
        .args
        .iter()
        .map(|a| match g.nodes[a.0 as usize].op {
            Op::Const { value, .. } => Some(value),
            _ => None,
        })
        .collect::<Option<_>>()?;
    if consts.is_empty() {
        return None;
    }
    use crate::backend::reference::eval;
    let scalar = |v: f64| ndarray::arr0(v).into_dyn();
    let args: Vec<_> = consts.iter().map(|&v| scalar(v)).collect();
    let refs: Vec<_> = args.iter().collect();
    match &node.op {
        Op::Unary(_) | Op::UnaryGrad(_) | Op::Binary(_) => {
            let out = eval::<f64>(&node.op, &refs, &[], 0);
            out.iter().next().copied()
        }
        Op::Reshape { .. } | Op::BroadcastTo { .. } => Some(consts[0]),
        _ => None,
    }
}
