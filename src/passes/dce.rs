//! Dead-code elimination with compaction: nodes that no output depends on
//! are removed and the rest renumbered, keeping their order (so the arena
//! stays topological). Inputs always stay: they are the graph's signature,
//! and a backend owns a parameter whether or not this graph reads it.

use crate::ir::{Graph, NodeId, Op};

/// Returns how many nodes were removed.
pub fn dce(g: &mut Graph) -> usize {
    let n = g.nodes.len();
    let mut live = vec![false; n];
    for (_, o) in &g.outputs {
        live[o.0 as usize] = true;
    }
    for (i, node) in g.nodes.iter().enumerate() {
        if matches!(node.op, Op::Input { .. }) {
            live[i] = true;
        }
    }
    // Arguments come before their users: one backward sweep marks them all.
    for i in (0..n).rev() {
        if live[i] {
            for a in &g.nodes[i].args {
                live[a.0 as usize] = true;
            }
        }
    }
    let mut new_id = vec![NodeId(u32::MAX); n];
    let mut kept = Vec::with_capacity(n);
    for (i, node) in std::mem::take(&mut g.nodes).into_iter().enumerate() {
        if live[i] {
            new_id[i] = NodeId(kept.len() as u32);
            kept.push(node);
        }
    }
    for node in &mut kept {
        for a in &mut node.args {
            *a = new_id[a.0 as usize];
        }
    }
    for (_, o) in &mut g.outputs {
        *o = new_id[o.0 as usize];
    }
    let removed = n - kept.len();
    g.nodes = kept;
    removed
}
