//! Reverse-mode automatic differentiation as a graph-to-graph transform.
//!
//! [`differentiate`] appends the backward pass to a forward graph: starting
//! from a scalar loss, it walks the nodes in reverse and adds, for each, the
//! IR that computes the gradients of its arguments ([`rule`]). No tape is
//! kept at run time; the result is one graph that every backend compiles.
//!
//! Every op kind is handled in [`rule`]'s exhaustive match, so adding an op
//! to the IR does not compile until its gradient is written (or it is
//! declared backward-only).
//!
//! [`optimizer`] appends the optimizer's update to the result, so that a
//! training step (forward, loss, backward, update) is one graph.

pub mod optimizer;

use crate::ir::{BinaryFn, Graph, NodeId, Op, Role, UnaryFn};

/// Adds `grad:NAME` outputs for every parameter input for which `trainable`
/// holds, differentiating the scalar `loss`. Parameters that the loss does
/// not depend on get a zero gradient.
pub fn differentiate(
    g: &mut Graph,
    loss: NodeId,
    trainable: &dyn Fn(&str) -> bool,
) -> Result<(), String> {
    if !g.shape(loss).iter().all(|&d| d == 1) {
        return Err(format!(
            "the loss must be a scalar, but it has shape {:?}",
            g.shape(loss)
        ));
    }
    let targets: Vec<(NodeId, String)> = g
        .inputs(Role::Parameter)
        .filter(|(_, name)| trainable(name))
        .map(|(id, name)| (id, name.to_string()))
        .collect();
    // Which nodes lie on a path from a trainable parameter: only their
    // gradients are worth computing (not the image's, nor a frozen part's).
    let n = loss.0 as usize + 1;
    let mut needed = vec![false; n];
    for (id, _) in &targets {
        if (id.0 as usize) < n {
            needed[id.0 as usize] = true;
        }
    }
    for i in 0..n {
        if g.nodes[i].args.iter().any(|a| needed[a.0 as usize]) {
            needed[i] = true;
        }
    }
    let mut grads: Vec<Option<NodeId>> = vec![None; n];
    let one = g.add(
        Op::Const {
            value: 1.0,
            shape: g.shape(loss).to_vec(),
        },
        &[],
        "grad",
    );
    grads[loss.0 as usize] = Some(one);
    for i in (0..n).rev() {
        let Some(dy) = grads[i] else { continue };
        if !needed[i] {
            continue;
        }
        let node = g.nodes[i].clone();
        let wanted: Vec<bool> = node.args.iter().map(|a| needed[a.0 as usize]).collect();
        if !wanted.iter().any(|w| *w) {
            continue;
        }
        let contributions = rule(g, NodeId(i as u32), dy, &wanted)?;
        for (arg, d) in node.args.iter().zip(contributions) {
            let Some(d) = d else { continue };
            let slot = &mut grads[arg.0 as usize];
            *slot = Some(match *slot {
                None => d,
                Some(prev) => g.add(Op::Binary(BinaryFn::Add), &[prev, d], &node.scope),
            });
        }
    }
    for (id, name) in targets {
        let grad = match grads.get(id.0 as usize).copied().flatten() {
            Some(d) => d,
            None => g.add(
                Op::Const {
                    value: 0.0,
                    shape: g.shape(id).to_vec(),
                },
                &[],
                "grad",
            ),
        };
        g.set_output(crate::ir::Output::Grad(name.to_string()), grad);
    }
    crate::ir::verify::debug_verify(g, "autodiff");
    Ok(())
}

/// The gradients of node `id`'s arguments given the gradient `dy` of its
/// result; `None` where an argument's gradient is not wanted or is zero.
pub fn rule(
    g: &mut Graph,
    id: NodeId,
    dy: NodeId,
    wanted: &[bool],
) -> Result<Vec<Option<NodeId>>, String> {
    let node = g.node(id).clone();
    let scope = node.scope.as_str();
    let args = node.args.clone();
    let shape_of = |g: &Graph, k: usize| g.shape(args[k]).to_vec();
    let mut out: Vec<Option<NodeId>> = vec![None; args.len()];
    // `want!(k, expr)` computes arg k's gradient only if it is wanted.
    macro_rules! want {
        ($k:expr, $e:expr) => {
            if wanted[$k] {
                out[$k] = Some($e);
            }
        };
    }
    let add = |g: &mut Graph, op: Op, a: &[NodeId]| g.add(op, a, scope);
    // Undo broadcasting: sum a gradient down to argument k's shape.
    let unbroadcast = |g: &mut Graph, d: NodeId, k: usize| {
        let s = g.shape(args[k]).to_vec();
        if g.shape(d) == s.as_slice() {
            d
        } else {
            g.add(Op::SumTo { shape: s }, &[d], scope)
        }
    };
    match &node.op {
        Op::Input { .. } | Op::Const { .. } => {}
        Op::Unary(f) => want!(0, add(g, Op::UnaryGrad(*f), &[args[0], dy])),
        Op::Binary(f) => match f {
            BinaryFn::Add => {
                want!(0, unbroadcast(g, dy, 0));
                want!(1, unbroadcast(g, dy, 1));
            }
            BinaryFn::Sub => {
                want!(0, unbroadcast(g, dy, 0));
                if wanted[1] {
                    let neg = add(g, Op::Unary(UnaryFn::Neg), &[dy]);
                    out[1] = Some(unbroadcast(g, neg, 1));
                }
            }
            BinaryFn::Mul => {
                if wanted[0] {
                    let d = add(g, Op::Binary(BinaryFn::Mul), &[dy, args[1]]);
                    out[0] = Some(unbroadcast(g, d, 0));
                }
                if wanted[1] {
                    let d = add(g, Op::Binary(BinaryFn::Mul), &[dy, args[0]]);
                    out[1] = Some(unbroadcast(g, d, 1));
                }
            }
            BinaryFn::Div => {
                if wanted[0] {
                    let d = add(g, Op::Binary(BinaryFn::Div), &[dy, args[1]]);
                    out[0] = Some(unbroadcast(g, d, 0));
                }
                if wanted[1] {
                    // d(a/b)/db = -(a/b)/b
                    let t = add(g, Op::Binary(BinaryFn::Mul), &[dy, id]);
                    let t = add(g, Op::Binary(BinaryFn::Div), &[t, args[1]]);
                    let t = add(g, Op::Unary(UnaryFn::Neg), &[t]);
                    out[1] = Some(unbroadcast(g, t, 1));
                }
            }
            BinaryFn::Max => {
                // The gradient goes to the larger argument (to `a` on ties).
                let mask = add(g, Op::Binary(BinaryFn::Eq), &[id, args[0]]);
                if wanted[0] {
                    let d = add(g, Op::Binary(BinaryFn::Mul), &[dy, mask]);
                    out[0] = Some(unbroadcast(g, d, 0));
                }
                if wanted[1] {
                    let da = add(g, Op::Binary(BinaryFn::Mul), &[dy, mask]);
                    let d = add(g, Op::Binary(BinaryFn::Sub), &[dy, da]);
                    out[1] = Some(unbroadcast(g, d, 1));
                }
            }
            // A step function: zero gradient almost everywhere.
            BinaryFn::Eq => {}
        },
        Op::ReduceSum { .. } => want!(
            0,
            add(
                g,
                Op::BroadcastTo {
                    shape: shape_of(g, 0)
                },
                &[dy]
            )
        ),
        Op::ReduceMean { axes } => {
            if wanted[0] {
                let s = shape_of(g, 0);
                let count: usize = axes.iter().map(|&a| s[a]).product();
                let b = add(g, Op::BroadcastTo { shape: s }, &[dy]);
                let c = add(
                    g,
                    Op::Const {
                        value: 1.0 / count as f64,
                        shape: Vec::new(),
                    },
                    &[],
                );
                out[0] = Some(add(g, Op::Binary(BinaryFn::Mul), &[b, c]));
            }
        }
        Op::ReduceMax { axes } => {
            if wanted[0] {
                // Ties share the gradient equally, as torch.amax does.
                let s = shape_of(g, 0);
                let mask = add(g, Op::Binary(BinaryFn::Eq), &[args[0], id]);
                let count = add(g, Op::ReduceSum { axes: axes.clone() }, &[mask]);
                let share = add(g, Op::Binary(BinaryFn::Div), &[dy, count]);
                let share = add(g, Op::BroadcastTo { shape: s }, &[share]);
                out[0] = Some(add(g, Op::Binary(BinaryFn::Mul), &[mask, share]));
            }
        }
        Op::BroadcastTo { .. } => want!(
            0,
            add(
                g,
                Op::SumTo {
                    shape: shape_of(g, 0)
                },
                &[dy]
            )
        ),
        Op::SumTo { .. } => want!(
            0,
            add(
                g,
                Op::BroadcastTo {
                    shape: shape_of(g, 0)
                },
                &[dy]
            )
        ),
        Op::Reshape { .. } => want!(
            0,
            add(
                g,
                Op::Reshape {
                    shape: shape_of(g, 0)
                },
                &[dy]
            )
        ),
        Op::MatMul { trans_a, trans_b } => {
            let (a, b) = (args[0], args[1]);
            let mm = |ta, tb| Op::MatMul {
                trans_a: ta,
                trans_b: tb,
            };
            let (da, db) = match (trans_a, trans_b) {
                (false, false) => ((mm(false, true), [dy, b]), (mm(true, false), [a, dy])),
                (false, true) => ((mm(false, false), [dy, b]), (mm(true, false), [dy, a])),
                (true, false) => ((mm(false, true), [b, dy]), (mm(false, false), [a, dy])),
                (true, true) => ((mm(true, true), [b, dy]), (mm(true, true), [dy, a])),
            };
            want!(0, add(g, da.0, &da.1));
            want!(1, add(g, db.0, &db.1));
        }
        Op::Conv2d(geom) => {
            want!(
                0,
                add(
                    g,
                    Op::Conv2dGradInput {
                        geom: *geom,
                        shape: shape_of(g, 0)
                    },
                    &[dy, args[1]]
                )
            );
            want!(
                1,
                add(
                    g,
                    Op::Conv2dGradWeight {
                        geom: *geom,
                        shape: shape_of(g, 1)
                    },
                    &[args[0], dy]
                )
            );
        }
        Op::MaxPool2d(geom) => want!(0, add(g, Op::MaxPool2dGrad(*geom), &[args[0], dy])),
        Op::AvgPool2d {
            geom,
            count_include_pad,
        } => want!(
            0,
            add(
                g,
                Op::AvgPool2dGrad {
                    geom: *geom,
                    count_include_pad: *count_include_pad,
                    shape: shape_of(g, 0)
                },
                &[dy]
            )
        ),
        Op::AdaptiveAvgPool2d { .. } => want!(
            0,
            add(
                g,
                Op::AdaptiveAvgPool2dGrad {
                    shape: shape_of(g, 0)
                },
                &[dy]
            )
        ),
        Op::AdaptiveMaxPool2d { .. } => want!(0, add(g, Op::AdaptiveMaxPool2dGrad, &[args[0], dy])),
        Op::ChannelWindowSum {
            size,
            before,
            after,
        } => want!(
            0,
            add(
                g,
                Op::ChannelWindowSum {
                    size: *size,
                    before: *after,
                    after: *before
                },
                &[dy]
            )
        ),
        Op::Concat { axis } => {
            let mut start = 0;
            for k in 0..args.len() {
                let len = g.shape(args[k])[*axis];
                want!(
                    k,
                    add(
                        g,
                        Op::Slice {
                            axis: *axis,
                            start,
                            end: start + len
                        },
                        &[dy]
                    )
                );
                start += len;
            }
        }
        Op::Slice { axis, start, end } => {
            let len = shape_of(g, 0)[*axis];
            want!(
                0,
                add(
                    g,
                    Op::PadAxis {
                        axis: *axis,
                        before: *start,
                        after: len - end
                    },
                    &[dy]
                )
            );
        }
        Op::PadAxis { axis, before, .. } => {
            let len = shape_of(g, 0)[*axis];
            want!(
                0,
                add(
                    g,
                    Op::Slice {
                        axis: *axis,
                        start: *before,
                        end: before + len
                    },
                    &[dy]
                )
            );
        }
        // The mask is a function of (seed, salt, index): the same op on dy.
        Op::Dropout { p, salt } => want!(0, add(g, Op::Dropout { p: *p, salt: *salt }, &[dy])),
        Op::UnaryGrad(_)
        | Op::Conv2dGradInput { .. }
        | Op::Conv2dGradWeight { .. }
        | Op::MaxPool2dGrad(_)
        | Op::AvgPool2dGrad { .. }
        | Op::AdaptiveAvgPool2dGrad { .. }
        | Op::AdaptiveMaxPool2dGrad => {
            return Err(format!(
                "`{}` is a backward op; nnc computes first-order gradients only",
                node.op.name()
            ))
        }
    }
    Ok(out)
}
