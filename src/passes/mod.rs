//! Passes on the graph IR. Each is a function `&mut Graph -> Stats` that
//! keeps the graph's meaning (the values of its outputs) and its
//! signature (every input stays, every output stays, in order); the
//! verifier runs after each pass in debug builds.
//!
//! Today: algebraic simplification and constant folding, batch-norm
//! folding into convolutions (`fold_bn.rs`), dead convolution taps
//! (`taps.rs`), common-subexpression elimination,
//! dead-code elimination; then, on the result,
//! fusion planning (`fusion::plan`) and memory planning (`memory::plan`,
//! buffer reuse by liveness).

mod cse;
mod dce;
mod fold_bn;
pub mod fusion;
pub mod memory;
mod simplify;
mod taps;

pub use cse::cse;
pub use dce::dce;
pub use fold_bn::fold_batch_norm;
pub use simplify::simplify;
pub use taps::dead_taps;

use crate::ir::{Graph, NodeId};

/// A pass by its command-line name.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Pass {
    Simplify,
    FoldBatchNorm,
    DeadTaps,
    Cse,
    Dce,
}

impl Pass {
    pub const ALL: [Pass; 5] = [
        Pass::Simplify,
        Pass::FoldBatchNorm,
        Pass::DeadTaps,
        Pass::Cse,
        Pass::Dce,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Pass::Simplify => "simplify",
            Pass::FoldBatchNorm => "fold-batch-norm",
            Pass::DeadTaps => "dead-taps",
            Pass::Cse => "cse",
            Pass::Dce => "dce",
        }
    }

    pub fn from_name(name: &str) -> Option<Pass> {
        Pass::ALL.into_iter().find(|p| p.name() == name)
    }

    /// What a run that returned `count` did, for `--explain`.
    pub fn describe(self, count: usize) -> String {
        match self {
            Pass::Simplify => {
                format!("simplify: {count} nodes folded to constants or skipped as identities")
            }
            Pass::FoldBatchNorm => format!(
                "fold-batch-norm: {count} convolutions took the per-channel scale and shift after them (batch norm, bias) into their weight and one bias"
            ),
            Pass::DeadTaps => {
                format!("dead-taps: {count} convolutions lost kernel taps that read only padding")
            }
            Pass::Cse => format!("cse: {count} nodes now reuse an identical earlier node"),
            Pass::Dce => format!("dce: {count} nodes removed (nothing used them)"),
        }
    }

    /// Runs the pass; returns how many nodes it merged (cse) or removed
    /// (dce).
    pub fn run(self, g: &mut Graph) -> usize {
        let removed = match self {
            Pass::Simplify => simplify(g),
            Pass::FoldBatchNorm => fold_batch_norm(g),
            Pass::DeadTaps => dead_taps(g),
            Pass::Cse => cse(g),
            Pass::Dce => dce(g),
        };
        crate::ir::verify::debug_verify(g, self.name());
        removed
    }
}

/// The default pipeline: simplify, fold per-channel scales and shifts
/// (inference batch norms) into convolutions, drop dead convolution taps, merge
/// duplicates (the weight slices of a convolution and its input
/// gradient), then drop what nothing uses.
pub const DEFAULT: [Pass; 5] = Pass::ALL;

/// Rebuilds `g` node by node: `replace(new, old, i, args, map)` may emit
/// nodes into the new graph standing for old node `i` (whose arguments,
/// already mapped, are `args`; `map` takes every earlier old node to the
/// new graph) and return the one that replaces it; otherwise the node is
/// copied. Outputs follow the map. Returns how many nodes were replaced.
pub fn rebuild(
    g: &mut Graph,
    mut replace: impl FnMut(&mut Graph, &Graph, usize, &[NodeId], &[NodeId]) -> Option<NodeId>,
) -> usize {
    let fresh = Graph::new(&g.name, g.mode);
    let old = std::mem::replace(g, fresh);
    g.eval_layers = old.eval_layers.clone();
    let mut map: Vec<NodeId> = Vec::with_capacity(old.nodes.len());
    let mut replaced = 0;
    for (i, node) in old.nodes.iter().enumerate() {
        let args: Vec<NodeId> = node.args.iter().map(|a| map[a.0 as usize]).collect();
        let id = match replace(g, &old, i, &args, &map) {
            Some(id) => {
                replaced += 1;
                id
            }
            None => g.add(node.op.clone(), &args, &node.scope),
        };
        map.push(id);
    }
    g.outputs = old
        .outputs
        .iter()
        .map(|(o, id)| (o.clone(), map[id.0 as usize]))
        .collect();
    replaced
}

/// For each node, the nodes that use it as an argument (in order, with
/// repeats when a node uses a value twice).
pub fn users(g: &Graph) -> Vec<Vec<NodeId>> {
    let mut users = vec![Vec::new(); g.nodes.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        for a in &n.args {
            users[a.0 as usize].push(NodeId(i as u32));
        }
    }
    users
}

/// Makes every use of `old` (arguments and outputs) a use of `new`. `new`
/// must come before every user of `old`, which holds when it comes before
/// `old` itself.
pub fn replace_all_uses(g: &mut Graph, old: NodeId, new: NodeId) {
    for n in &mut g.nodes {
        for a in &mut n.args {
            if *a == old {
                *a = new;
            }
        }
    }
    for (_, o) in &mut g.outputs {
        if *o == old {
            *o = new;
        }
    }
}
