//! Dead convolution taps: a tap of a convolution's kernel that reads only
//! padding, at every output position, adds nothing but products with zero.
//! Such taps come from small inputs: ResNet-18's last stage on a 32x32
//! image is 1x1 spatially, where a 3x3 kernel with padding 1 reads real
//! input through its centre tap alone, so eight ninths of the stage's
//! arithmetic (forward and both gradients) multiply zeros.
//!
//! The pass gives such a convolution the kernel from its first live tap
//! to its last on each axis, and less padding, so that every output reads
//! the same inputs with the same weights:
//!
//! - `conv2d(x, w)` becomes `conv2d(x, slice(w))`;
//! - `conv2d_grad_input(dy, w)` becomes `conv2d_grad_input(dy, slice(w))`;
//! - `conv2d_grad_weight(x, dy)` computes the live taps' gradient and pads
//!   it with zeros: a dead tap's gradient is a sum of products with
//!   padding, exactly zero. A single row of live taps is padded once, in
//!   the flattened kernel.
//!
//! One value changes: a weight that is infinite or NaN on a dead tap no
//! longer makes the output NaN (infinity times the padding's zero). The
//! graph computes what the convolution means, the sum over real inputs.

use crate::ir::ops::ConvGeom;
use crate::ir::{Graph, NodeId, Op};

/// The live taps of one spatial axis, `start..end` of `taps`: those that
/// read `0 <= o * stride + t * dilation - pad_before < size` for some
/// output position `o`.
fn live_taps(
    size: usize,
    out: usize,
    taps: usize,
    stride: usize,
    dilation: usize,
    pad_before: usize,
) -> Option<(usize, usize)> {
    let live = |t: usize| {
        (0..out).any(|o| {
            let at = (o * stride + t * dilation) as i64 - pad_before as i64;
            (0..size as i64).contains(&at)
        })
    };
    let start = (0..taps).find(|&t| live(t))?;
    let end = (0..taps).rev().find(|&t| live(t))? + 1;
    Some((start, end))
}

/// The live taps of both axes and the geometry that reads only them, when
/// some tap is dead; `x` is the input's shape, `y` the output's, `w` the
/// weight's.
fn trim(x: &[usize], w: &[usize], y: &[usize], g: &ConvGeom) -> Option<Trim> {
    let mut ranges = [(0, 0); 2];
    let mut geom = *g;
    for axis in 0..2 {
        let (start, end) = live_taps(
            x[2 + axis],
            y[2 + axis],
            w[2 + axis],
            g.stride[axis],
            g.dilation[axis],
            g.padding[2 * axis],
        )?;
        let d = g.dilation[axis];
        // The padding the remaining taps still need; a live tap never
        // reaches further into the padding than the original kernel did.
        let before = g.padding[2 * axis].checked_sub(start * d)?;
        let after = g.padding[2 * axis + 1].checked_sub((w[2 + axis] - end) * d)?;
        // The padding after the input that the last output's last tap
        // still reads; the rest was there only for the dropped taps (the
        // output's size, rounded down, stays the same).
        let reach = (y[2 + axis] - 1) * g.stride[axis] + (end - start - 1) * d;
        let needed = (reach + 1).saturating_sub(before + x[2 + axis]);
        geom.padding[2 * axis] = before;
        geom.padding[2 * axis + 1] = after.min(needed);
        ranges[axis] = (start, end);
    }
    let size = |axis: usize| {
        let k = ranges[axis].1 - ranges[axis].0;
        let span = x[2 + axis] + geom.padding[2 * axis] + geom.padding[2 * axis + 1];
        span.checked_sub(g.dilation[axis] * (k - 1) + 1)
            .map(|s| s / g.stride[axis] + 1)
    };
    if size(0) != Some(y[2]) || size(1) != Some(y[3]) {
        return None;
    }
    let dead = ranges
        .iter()
        .zip(&w[2..])
        .any(|(&(s, e), &k)| (s, e) != (0, k));
    dead.then_some(Trim { ranges, geom })
}

struct Trim {
    ranges: [(usize, usize); 2],
    geom: ConvGeom,
}

/// The weight's live taps: slices of its two spatial axes.
fn slice_weight(g: &mut Graph, w: NodeId, t: &Trim, scope: &str) -> NodeId {
    let mut w = w;
    for (axis, &(start, end)) in t.ranges.iter().enumerate() {
        if (start, end) != (0, g.shape(w)[2 + axis]) {
            let op = Op::Slice {
                axis: 2 + axis,
                start,
                end,
            };
            w = g.add(op, &[w], scope);
        }
    }
    w
}

/// Rewrites every convolution with dead taps; returns how many.
pub fn dead_taps(g: &mut Graph) -> usize {
    super::rebuild(g, |g, old, i, args, _| {
        let node = &old.nodes[i];
        let shape = |i: usize| old.shape(node.args[i]);
        let scope = node.scope.as_str();
        match &node.op {
            Op::Conv2d(geom) => trim(shape(0), shape(1), &node.ty.shape, geom).map(|t| {
                let w = slice_weight(g, args[1], &t, scope);
                g.add(Op::Conv2d(t.geom), &[args[0], w], scope)
            }),
            Op::Conv2dGradInput { geom, shape: xs } => {
                trim(xs, shape(1), shape(0), geom).map(|t| {
                    let w = slice_weight(g, args[1], &t, scope);
                    let op = Op::Conv2dGradInput {
                        geom: t.geom,
                        shape: xs.clone(),
                    };
                    g.add(op, &[args[0], w], scope)
                })
            }
            Op::Conv2dGradWeight { geom, shape: ws } => {
                trim(shape(0), ws, shape(1), geom).map(|t| {
                    let mut live = ws.clone();
                    for (axis, &(start, end)) in t.ranges.iter().enumerate() {
                        live[2 + axis] = end - start;
                    }
                    let op = Op::Conv2dGradWeight {
                        geom: t.geom,
                        shape: live,
                    };
                    let mut dw = g.add(op, args, scope);
                    let [(s0, e0), (s1, e1)] = t.ranges;
                    if e0 - s0 == 1 {
                        // One row of live taps: contiguous in the flattened
                        // kernel, so one padding of it (a 3x3 kernel's
                        // centre is element 4 of 9).
                        let (o, c, kh, kw) = (ws[0], ws[1], ws[2], ws[3]);
                        let flat = Op::Reshape {
                            shape: vec![o, c, e1 - s1],
                        };
                        dw = g.add(flat, &[dw], scope);
                        let pad = Op::PadAxis {
                            axis: 2,
                            before: s0 * kw + s1,
                            after: kh * kw - (s0 * kw + e1),
                        };
                        dw = g.add(pad, &[dw], scope);
                        let back = Op::Reshape { shape: ws.clone() };
                        return g.add(back, &[dw], scope);
                    }
                    for (axis, &(start, end)) in t.ranges.iter().enumerate() {
                        if (start, end) != (0, ws[2 + axis]) {
                            let pad = Op::PadAxis {
                                axis: 2 + axis,
                                before: start,
                                after: ws[2 + axis] - end,
                            };
                            dw = g.add(pad, &[dw], scope);
                        }
                    }
                    dw
                })
            }
            _ => None,
        }
    })
}

#[cfg(test)]
mod tests {
    use super::live_taps;

    #[test]
    fn live_taps_of_small_inputs() {
        // 3x3, padding 1, on a 1x1 input: the centre tap alone.
        assert_eq!(live_taps(1, 1, 3, 1, 1, 1), Some((1, 2)));
        // Stride 2 from 2x2 to 1x1: taps 1 and 2.
        assert_eq!(live_taps(2, 1, 3, 2, 1, 1), Some((1, 3)));
        // 2x2 input: every tap is live for some output.
        assert_eq!(live_taps(2, 2, 3, 1, 1, 1), Some((0, 3)));
        // Dilation 2 on a 3-wide input with padding 2: the centre alone.
        assert_eq!(live_taps(1, 1, 3, 1, 2, 2), Some((1, 2)));
    }
}
