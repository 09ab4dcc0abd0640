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
//! Cheap elementwise values are not given a kernel at all: they are
//! *recomputed* by each reader (the bias added to a convolution, batch
//! norm's normalisation and affine, a ReLU). In a training step almost
//! every forward value is read twice, by the next op and by the backward
//! pass, so without recomputation nothing would fuse there; a few
//! arithmetic ops per element cost less than writing the value to memory
//! and reading it back. Small values (per-channel statistics) are
//! computed once instead, as are transcendental ones (`exp`, `sigmoid`).
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
    /// Per node: whether each reader recomputes it (it has no kernel).
    pub recompute: Vec<bool>,
}

/// The fewest elements a value must have to be recomputed rather than
/// computed once: below it, a kernel of its own is nearly free and
/// recomputing would repeat per-channel arithmetic for every element.
pub const RECOMPUTE_MIN_ELEMENTS: usize = 2048;

/// The most arithmetic ops a reader may repeat for one recomputed value
/// (its own op and those of the recomputed values it reads).
const RECOMPUTE_MAX_OPS: usize = 8;

/// The arithmetic cost of recomputing `op` per element, for the ops cheap
/// enough to recompute; `None` for the others.
fn recompute_cost(g: &Graph, id: NodeId) -> Option<usize> {
    use crate::ir::{BinaryFn, UnaryFn};
    let node = g.node(id);
    match &node.op {
        Op::Binary(BinaryFn::Add | BinaryFn::Sub | BinaryFn::Mul | BinaryFn::Max) => Some(1),
        Op::Unary(UnaryFn::Neg | UnaryFn::Relu | UnaryFn::Square) => Some(1),
        Op::Unary(UnaryFn::Relu6 | UnaryFn::LeakyRelu { .. }) => Some(2),
        Op::UnaryGrad(UnaryFn::Neg | UnaryFn::Relu | UnaryFn::Square) => Some(2),
        Op::BroadcastTo { .. } => Some(0),
        // A reshape that only adds or drops axes of size 1 is free, and so
        // is one that splits a single axis (a kernel's taps from 9 to
        // 3x3: `i * 3 + j`); one that regroups several axes costs a
        // division per index.
        Op::Reshape { .. } => {
            let (to, from) = (&node.ty.shape, g.shape(node.args[0]));
            let big = |s: &[usize]| s.iter().copied().filter(|&d| d != 1).collect::<Vec<_>>();
            let (lead, trail) = crate::kernel::lower::shared_axes(to, from);
            let split = from.len() - lead - trail <= 1;
            (big(to) == big(from) || split).then_some(0)
        }
        _ => None,
    }
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
    let recompute = recomputed(g, &uses, &output);
    for (i, node) in g.nodes.iter().enumerate() {
        let class = node.op.class();
        if class == OpClass::Leaf || recompute[i] {
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
        recompute,
    }
}

/// Which values every reader recomputes: cheap elementwise ops over many
/// elements, whose readers all compute at an index (neither a contraction
/// nor a pooling window), and
/// whose own arguments are in memory or recomputed too. An argument of the
/// same shape that would otherwise be fused into the value's kernel (an
/// `exp` read only by it) keeps the value in a kernel, so that no reader
/// repeats the `exp`; a smaller one (a bias, broadcast) is read in place.
fn recomputed(g: &Graph, uses: &[usize], output: &[bool]) -> Vec<bool> {
    // Readers that must find the value in memory: a contraction reads its
    // operands through strides; a pooling window reads each element once
    // per window that covers it (2.25 times for 3x3 windows at stride 2),
    // in loops that bounds checks keep scalar.
    let mut in_memory = vec![false; g.nodes.len()];
    for node in &g.nodes {
        if matches!(node.op.class(), OpClass::Contraction | OpClass::Window) {
            for a in &node.args {
                in_memory[a.0 as usize] = true;
            }
        }
    }
    let mut recompute = vec![false; g.nodes.len()];
    // Per recomputed node: the ops a reader repeats for it.
    let mut cost = vec![0usize; g.nodes.len()];
    for (i, node) in g.nodes.iter().enumerate() {
        let Some(own) = recompute_cost(g, NodeId(i as u32)) else {
            continue;
        };
        if output[i] || in_memory[i] || node.ty.numel() < RECOMPUTE_MIN_ELEMENTS {
            continue;
        }
        let mut total = own;
        let mut fits = true;
        for a in &node.args {
            let j = a.0 as usize;
            let arg = &g.nodes[j].op;
            if recompute[j] {
                total += cost[j];
            } else if is_injective(arg)
                && uses[j] == 1
                && !output[j]
                && g.shape(*a) == node.ty.shape.as_slice()
            {
                fits = false;
            }
        }
        if fits && total <= RECOMPUTE_MAX_OPS {
            recompute[i] = true;
            cost[i] = total;
        }
    }
    recompute
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
        if !why.contains(&reason) {
            why.push(reason);
        }
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
    let again: Vec<String> = (0..g.nodes.len())
        .filter(|&i| p.recompute[i])
        .map(|i| format!("%{i} {}", g.nodes[i].op.name()))
        .collect();
    if !again.is_empty() {
        out.push_str(&format!(
            "recomputed by each reader: {}\n",
            again.join(", ")
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
