//! Common-subexpression elimination: two nodes with the same op (name and
//! every attribute, see `Op::key`) on the same arguments compute the same
//! value, so the later one's uses go to the earlier one. Lowering emits
//! such duplicates (a constant per layer, `x * x` in both the variance and
//! its gradient); the duplicates are left for `dce` to remove.
//!
//! Dropout is deterministic (its mask is a function of the run's seed, its
//! salt and the element index), so two dropouts agree only when their salt
//! does too, which the key includes.

use crate::ir::{Graph, NodeId};
use std::collections::HashMap;

/// Returns how many nodes now compute a value that an earlier node has.
pub fn cse(g: &mut Graph) -> usize {
    let mut first: HashMap<(String, Vec<NodeId>), NodeId> = HashMap::new();
    // `canon[i]`: the node that stands for node i.
    let mut canon: Vec<NodeId> = (0..g.nodes.len() as u32).map(NodeId).collect();
    let mut merged = 0;
    for i in 0..g.nodes.len() {
        let args: Vec<NodeId> = g.nodes[i]
            .args
            .iter()
            .map(|a| canon[a.0 as usize])
            .collect();
        g.nodes[i].args.clone_from(&args);
        let Some(key) = g.nodes[i].op.key() else {
            continue;
        };
        match first.entry((key, args)) {
            std::collections::hash_map::Entry::Occupied(e) => {
                canon[i] = *e.get();
                merged += 1;
            }
            std::collections::hash_map::Entry::Vacant(e) => {
                e.insert(NodeId(i as u32));
            }
        }
    }
    for (_, o) in &mut g.outputs {
        *o = canon[o.0 as usize];
    }
    merged
}
