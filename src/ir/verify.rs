//! The IR verifier: run after lowering and after every transformation in
//! debug builds, and by tests, before anything trusts a graph.

use super::{Graph, Op, TensorType};
use std::collections::HashSet;

/// Checks the invariants stated in `ir/mod.rs`; lists every violation.
pub fn verify(g: &Graph) -> Result<(), Vec<String>> {
    let mut problems = Vec::new();
    let mut names = HashSet::new();
    for (i, n) in g.nodes.iter().enumerate() {
        if let Some(bad) = n.args.iter().find(|a| a.0 as usize >= i) {
            problems.push(format!("%{i} uses {bad}, which is not defined before it"));
            continue;
        }
        let arg_types: Vec<&TensorType> = n.args.iter().map(|a| g.ty(*a)).collect();
        match n.op.infer(&arg_types) {
            Ok(ty) if ty == n.ty => {}
            Ok(ty) => problems.push(format!(
                "%{i} = {} is typed {}, but its op gives {ty}",
                n.op.name(),
                n.ty
            )),
            Err(e) => problems.push(format!("%{i} = {}: {e}", n.op.name())),
        }
        if let Op::Input { name, .. } = &n.op {
            if !names.insert(name.as_str()) {
                problems.push(format!("input `{name}` is declared twice"));
            }
        }
    }
    let mut outputs = HashSet::new();
    for (name, id) in &g.outputs {
        if id.0 as usize >= g.nodes.len() {
            problems.push(format!(
                "output `{name}` refers to {id}, which does not exist"
            ));
        }
        if !outputs.insert(name) {
            problems.push(format!("output `{name}` is declared twice"));
        }
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems)
    }
}

/// In debug builds, panics with the problems of an ill-formed graph: a
/// transformation that breaks the IR is a compiler bug.
pub fn debug_verify(g: &Graph, after: &str) {
    if cfg!(debug_assertions) {
        if let Err(problems) = verify(g) {
            panic!(
                "IR verification failed after {after}:\n{}",
                problems.join("\n")
            );
        }
    }
}
