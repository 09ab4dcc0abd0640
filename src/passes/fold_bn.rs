//! Batch-norm folding: a convolution followed by a per-channel affine map
//! whose factors come from the state alone — an inference batch norm
//! `(y - mean) * rsqrt(var + eps) * gamma + beta`, a bias, or a chain of
//! them — becomes one convolution with a scaled weight and one bias:
//!
//! ```text
//! conv2d(x, w) * s + t  =  conv2d(x, w * s[:, None, None, None]) + t
//! ```
//!
//! `s` and `t` (`[C]`) and the scaled weight depend on the state alone, so
//! the cpu backend computes them once and keeps them while the state is
//! unchanged (`backend/cpu/cache.rs`); each inference then pays one
//! convolution and one addition per output instead of the convolution and
//! four elementwise ops.
//!
//! A chain is folded only where each of its values has one user (else the
//! unfolded values would be computed anyway) and has at least one scale
//! (a bias alone has nothing to fold into the weight). A training step's
//! batch norm scales by the batch's own statistics, which depend on the
//! convolution, so it never folds; a frozen one (`eval_layers`) does.
//!
//! The folded graph rounds differently: the products `w * s` are rounded
//! once, and `t` gathers the shift, so outputs move in their last bits.

use super::users;
use crate::ir::ops::{BinaryFn, Role};
use crate::ir::{Graph, NodeId, Op};

/// One step of a chain: the op and the per-channel operand, as `[C]`.
#[derive(Clone, Copy)]
enum Step {
    Add(NodeId),
    Sub(NodeId),
    Mul(NodeId),
    Div(NodeId),
}

/// A foldable chain: the convolution and its steps (`find_chains` pairs
/// it with its last value, whose readers will read the folded result).
struct Chain {
    conv: NodeId,
    steps: Vec<Step>,
}

/// Folds every chain; returns how many convolutions took one.
pub fn fold_batch_norm(g: &mut Graph) -> usize {
    let chains = find_chains(g);
    if chains.is_empty() {
        return 0;
    }
    super::rebuild(g, |g, old, i, _, map| {
        let (_, chain) = chains.iter().find(|(end, _)| end.0 as usize == i)?;
        Some(fold(g, old, chain, map))
    })
}

/// The chains of `g`, each with its last value.
fn find_chains(g: &Graph) -> Vec<(NodeId, Chain)> {
    let users = users(g);
    let outputs: Vec<NodeId> = g.outputs.iter().map(|(_, id)| *id).collect();
    let state = state_only(g);
    let mut chains = Vec::new();
    for (i, node) in g.nodes.iter().enumerate() {
        if !matches!(node.op, Op::Conv2d(_)) {
            continue;
        }
        let conv = NodeId(i as u32);
        let channels = node.ty.shape[1];
        let (mut steps, mut end) = (Vec::new(), conv);
        while let ([user], false) = (users[end.0 as usize].as_slice(), outputs.contains(&end)) {
            let Some(step) = step_of(g, *user, end, channels, &state) else {
                break;
            };
            steps.push(step);
            end = *user;
        }
        if steps
            .iter()
            .any(|s| matches!(s, Step::Mul(_) | Step::Div(_)))
        {
            chains.push((end, Chain { conv, steps }));
        }
    }
    chains
}

/// `user` as a step applied to `value`: an elementwise op whose other
/// operand is a per-channel vector of the state alone, with `value` on
/// the left of a subtraction or division.
fn step_of(
    g: &Graph,
    user: NodeId,
    value: NodeId,
    channels: usize,
    state: &[bool],
) -> Option<Step> {
    let node = &g.nodes[user.0 as usize];
    let Op::Binary(f) = node.op else {
        return None;
    };
    let [a, b] = node.args[..] else {
        return None;
    };
    if g.shape(user) != g.shape(value) || a == b {
        return None;
    }
    let (other, left) = if a == value { (b, true) } else { (a, false) };
    let shape = g.shape(other);
    let per_channel = shape.len() == g.shape(value).len()
        && shape
            .iter()
            .enumerate()
            .all(|(d, &s)| s == if d == 1 { channels } else { 1 });
    if !per_channel || !state[other.0 as usize] {
        return None;
    }
    let v = vector(g, other);
    match (f, left) {
        (BinaryFn::Add, _) => Some(Step::Add(v)),
        (BinaryFn::Mul, _) => Some(Step::Mul(v)),
        (BinaryFn::Sub, true) => Some(Step::Sub(v)),
        (BinaryFn::Div, true) => Some(Step::Div(v)),
        _ => None,
    }
}

/// The `[C]` vector behind a per-channel operand: the argument of its
/// reshape when it is one (batch norm's `reshape(gamma)`), else the
/// operand itself (reshaped when folding).
fn vector(g: &Graph, v: NodeId) -> NodeId {
    let node = &g.nodes[v.0 as usize];
    match (&node.op, node.args.first()) {
        (Op::Reshape { .. }, Some(&inner)) if g.shape(inner).len() == 1 => inner,
        _ => v,
    }
}

/// Per node: whether its value depends on parameters, buffers and
/// constants alone (not on the batch, the target or a fed scalar).
fn state_only(g: &Graph) -> Vec<bool> {
    let mut state = Vec::with_capacity(g.nodes.len());
    for node in &g.nodes {
        let own = match &node.op {
            Op::Input { role, .. } => matches!(role, Role::Parameter | Role::Buffer),
            // A dropout mask changes from run to run.
            Op::Dropout { .. } => false,
            // Constants, and ops on the state.
            _ => true,
        };
        state.push(own && node.args.iter().all(|a| state[a.0 as usize]));
    }
    state
}

/// Emits the folded chain into `g` (the new graph); `map` takes the old
/// graph's nodes to the new one's.
fn fold(g: &mut Graph, old: &Graph, chain: &Chain, map: &[NodeId]) -> NodeId {
    let conv = &old.nodes[chain.conv.0 as usize];
    let scope = conv.scope.as_str();
    let at = |id: NodeId| map[id.0 as usize];
    let channels = conv.ty.shape[1];
    let bin =
        |g: &mut Graph, f: BinaryFn, a: NodeId, b: NodeId| g.add(Op::Binary(f), &[a, b], scope);
    let flat = |g: &mut Graph, v: NodeId| {
        let v = at(v);
        if g.shape(v) == [channels] {
            v
        } else {
            g.add(
                Op::Reshape {
                    shape: vec![channels],
                },
                &[v],
                scope,
            )
        }
    };
    // Scale `s` and shift `t` of `y * s + t`; `None` is 1 and 0.
    let (mut s, mut t): (Option<NodeId>, Option<NodeId>) = (None, None);
    for &step in &chain.steps {
        match step {
            Step::Add(v) => {
                let v = flat(g, v);
                t = Some(t.map_or(v, |t| bin(g, BinaryFn::Add, t, v)));
            }
            Step::Sub(v) => {
                let v = flat(g, v);
                t = Some(match t {
                    Some(t) => bin(g, BinaryFn::Sub, t, v),
                    None => g.add(Op::Unary(crate::ir::ops::UnaryFn::Neg), &[v], scope),
                });
            }
            Step::Mul(v) | Step::Div(v) => {
                let f = if matches!(step, Step::Mul(_)) {
                    BinaryFn::Mul
                } else {
                    BinaryFn::Div
                };
                let v = flat(g, v);
                t = t.map(|t| bin(g, f, t, v));
                s = Some(match s {
                    Some(s) => bin(g, f, s, v),
                    None if f == BinaryFn::Mul => v,
                    None => {
                        let one = g.add(
                            Op::Const {
                                value: 1.0,
                                shape: Vec::new(),
                            },
                            &[],
                            scope,
                        );
                        bin(g, BinaryFn::Div, one, v)
                    }
                });
            }
        }
    }
    let (x, w) = (at(conv.args[0]), at(conv.args[1]));
    let mut y_shape = conv.ty.shape.clone();
    let w = match s {
        Some(s) => {
            let mut shape = vec![1; g.shape(w).len()];
            shape[0] = channels;
            let s = g.add(Op::Reshape { shape }, &[s], scope);
            bin(g, BinaryFn::Mul, w, s)
        }
        None => w,
    };
    let y = g.add(conv.op.clone(), &[x, w], scope);
    match t {
        Some(t) => {
            y_shape.iter_mut().enumerate().for_each(|(d, s)| {
                if d != 1 {
                    *s = 1
                }
            });
            let t = g.add(Op::Reshape { shape: y_shape }, &[t], scope);
            bin(g, BinaryFn::Add, y, t)
        }
        None => y,
    }
}
