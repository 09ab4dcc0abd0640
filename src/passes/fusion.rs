//! Fusion planning: which ops share a kernel. A kernel is the unit a code
//! generator emits as one loop nest, so a value that stays inside a kernel
//! is never written to memory. The plan is made once, on the graph, from
//! each op's class (`Op::class`), in the manner of TVM's operator fusion:
//!
//! - an elementwise or broadcast op, or a reshape, joins the kernel of the
//!   argument it reads when that argument is read by nothing else, has the
//!   op's own shape (a broadcast back up starts a new kernel), and its
//!   kernel takes epilogues (every kernel but a layout one): bias, batch
//!   norm's affine, an activation or a residual add join the convolution or
//!   matrix product that produced their input, and chains of elementwise
//!   ops become one kernel;
//! - a reduction absorbs the elementwise kernel that feeds only it (its
//!   prologue: `square` before the mean of a variance);
//! - contractions, pooling windows and layout ops other than reshape start
//!   kernels of their own; two contractions or two reductions never share
//!   one.
//!
//! Each op left as the only member of its kernel gets the reason, for
//! `nnc compile --explain`.

use crate::ir::ops::OpClass;
use crate::ir::{Graph, NodeId, Op};

/// One kernel: its nodes in execution order; the first is its anchor (the
/// op whose loops the others are fused into).
#[derive(Clone, Debug, PartialEq)]
pub struct Kernel {
    pub nodes: Vec<NodeId>,
    /// The class of the kernel: the anchor's, or `Reduction` once a
    /// reduction has joined.
    pub class: OpClass,
}

#[derive(Clone, Debug, PartialEq)]
pub struct FusionPlan {
    /// Per node: its kernel (`None` for inputs and constants).
    pub kernel_of: Vec<Option<usize>>,
    pub kernels: Vec<Kernel>,
    /// Why a node stayed alone in its kernel, for the ones that did.
    pub reasons: Vec<(NodeId, String)>,
}

/// How many nodes read each value, and whether it is a graph output.
fn consumers(g: &Graph) -> (Vec<usize>, Vec<bool>) {
    let mut uses = vec![0; g.nodes.len()];
    for n in &g.nodes {
        for a in &n.args {
            uses[a.0 as usize] += 1;
        }
    }
    let mut output = vec![false; g.nodes.len()];
    for (_, o) in &g.outputs {
        output[o.0 as usize] = true;
    }
    (uses, output)
}

/// Ops that can join the kernel of what they read.
fn is_injective(op: &Op) -> bool {
    matches!(op.class(), OpClass::Elementwise | OpClass::Broadcast)
        || matches!(op, Op::Reshape { .. })
}

pub fn plan(g: &Graph) -> FusionPlan {
    let (uses, output) = consumers(g);
    let mut kernel_of: Vec<Option<usize>> = vec![None; g.nodes.len()];
    let mut kernels: Vec<Kernel> = Vec::new();
    let mut reasons: Vec<(NodeId, String)> = Vec::new();
    // Whether a value may stay inside its kernel: read once, not an output.
    let private = |v: NodeId| uses[v.0 as usize] == 1 && !output[v.0 as usize];
    for (i, node) in g.nodes.iter().enumerate() {
        let class = node.op.class();
        if class == OpClass::Leaf {
            continue;
        }
        let id = NodeId(i as u32);
        // Epilogue: join the kernel of an argument that only this op reads.
        if is_injective(&node.op) {
            // The kernel's iteration domain stays what it is: an op that
            // broadcasts its argument up (the mean back over the batch)
            // starts a kernel of its own.
            let host = node.args.iter().find_map(|a| {
                let k = kernel_of[a.0 as usize]?;
                // A layout kernel moves values and takes nothing; the
                // gradient of a pooling window scatters into its result, so
                // no loop over that result exists to put an epilogue in.
                let anchor = &g.nodes[kernels[k].nodes[0].0 as usize].op;
                let takes =
                    kernels[k].class != OpClass::Layout && !crate::kernel::lower::scatters(anchor);
                let same_domain = g.shape(*a) == node.ty.shape.as_slice()
                    || matches!(node.op, Op::Reshape { .. });
                (private(*a) && takes && same_domain).then_some(k)
            });
            if let Some(k) = host {
                kernels[k].nodes.push(id);
                kernel_of[i] = Some(k);
                continue;
            }
        }
        // Prologue: a reduction takes over the elementwise kernel that
        // feeds only it.
        if class == OpClass::Reduction {
            let prologue = node.args.iter().find_map(|a| {
                let k = kernel_of[a.0 as usize]?;
                let last = *kernels[k].nodes.last()?;
                let injective =
                    matches!(kernels[k].class, OpClass::Elementwise | OpClass::Broadcast);
                (last == *a && private(*a) && injective).then_some(k)
            });
            if let Some(k) = prologue {
                kernels[k].nodes.push(id);
                kernels[k].class = OpClass::Reduction;
                kernel_of[i] = Some(k);
                continue;
            }
        }
        kernel_of[i] = Some(kernels.len());
        kernels.push(Kernel {
            nodes: vec![id],
            class,
        });
    }
    // A kernel that stayed a single op: say why. An elementwise op could
    // not join what it reads; for the others, nothing joined them.
    for k in &kernels {
        let anchor = k.nodes[0];
        if k.nodes.len() > 1 {
            continue;
        }
        let node = &g.nodes[anchor.0 as usize];
        if is_injective(&node.op) {
            reasons.push((
                anchor,
                alone_reason(g, node, &uses, &output, &kernel_of, &kernels),
            ));
        } else {
            let why = if output[anchor.0 as usize] {
                "its value is a graph output, so it is written to memory".to_string()
            } else if uses[anchor.0 as usize] != 1 {
                format!("{} ops read its value", uses[anchor.0 as usize])
            } else {
                let reader = g
                    .nodes
                    .iter()
                    .enumerate()
                    .find(|(_, n)| n.args.contains(&anchor))
                    .map(|(r, n)| (NodeId(r as u32), n));
                match reader {
                    Some((r, n)) if is_injective(&n.op) => format!(
                        "its reader {r} {} broadcasts it to {:?}",
                        n.op.name(),
                        n.ty.shape
                    ),
                    Some((r, n)) => format!(
                        "its reader {r} {} is a {:?} op, which starts a kernel of its own",
                        n.op.name(),
                        n.op.class()
                    ),
                    None => "nothing reads it".to_string(),
                }
            };
            reasons.push((anchor, why));
        }
    }
    reasons.sort_by_key(|(id, _)| *id);
    FusionPlan {
        kernel_of,
        kernels,
        reasons,
    }
}

/// Why an elementwise op could not join the kernel of what it reads.
fn alone_reason(
    g: &Graph,
    node: &crate::ir::Node,
    uses: &[usize],
    output: &[bool],
    kernel_of: &[Option<usize>],
    kernels: &[Kernel],
) -> String {
    let mut why = Vec::new();
    for a in &node.args {
        let v = a.0 as usize;
        let arg = &g.nodes[v];
        let reason = match kernel_of[v] {
            None => continue,
            Some(_) if output[v] => format!("{a} is a graph output"),
            Some(_) if uses[v] > 1 => format!("{a} is read by {} ops", uses[v]),
            Some(k) if kernels[k].class == OpClass::Layout => {
                format!("{a} = {} is a layout op", arg.op.name())
            }
            Some(k)
                if crate::kernel::lower::scatters(&g.nodes[kernels[k].nodes[0].0 as usize].op) =>
            {
                format!("{a} = {} scatters into its result", arg.op.name())
            }
            Some(_) if g.shape(*a) != node.ty.shape.as_slice() => {
                format!("it broadcasts {a} to {:?}", node.ty.shape)
            }
            Some(_) => continue,
        };
        why.push(reason);
    }
    if why.is_empty() {
        "it reads only inputs and constants".into()
    } else {
        why.join("; ")
    }
}

/// The plan as text, one line per kernel and one per op left alone, for
/// `nnc compile --explain` and the pass tests.
pub fn explain(g: &Graph, p: &FusionPlan) -> String {
    let mut out = String::new();
    let fused = p.kernels.iter().filter(|k| k.nodes.len() > 1).count();
    let ops: usize = p.kernels.iter().map(|k| k.nodes.len()).sum();
    out.push_str(&format!(
        "fusion: {ops} ops in {} kernels ({fused} of several ops)\n",
        p.kernels.len()
    ));
    for (k, kernel) in p.kernels.iter().enumerate() {
        if kernel.nodes.len() < 2 {
            continue;
        }
        let names: Vec<String> = kernel
            .nodes
            .iter()
            .map(|id| format!("{id} {}", g.nodes[id.0 as usize].op.name()))
            .collect();
        out.push_str(&format!(
            "kernel {k} ({:?}): {}\n",
            kernel.class,
            names.join(", ")
        ));
    }
    for (id, why) in &p.reasons {
        out.push_str(&format!(
            "unfused {id} {}: {why}\n",
            g.nodes[id.0 as usize].op.name()
        ));
    }
    out
}
