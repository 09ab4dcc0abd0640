//! One example of every op with argument shapes that type-check: for the
//! tests that must cover every op (a gradient rule for each forward op, a
//! kernel for each op on every backend). The `match` in `examples` lists
//! every variant, so a new op does not compile until it has an example.

use super::ops::{ConvGeom, Op, PoolGeom};
use super::{BinaryFn, Role, UnaryFn};

/// Whether an op belongs to forward graphs (and so needs a gradient rule)
/// or is one of the backward ops that gradient rules emit.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    /// Graph inputs and constants: no arguments, nothing to differentiate.
    Leaf,
    Forward,
    Backward,
}

const CONV: ConvGeom = ConvGeom {
    stride: [2, 1],
    padding: [1, 0, 1, 1],
    dilation: [1, 2],
    groups: 2,
};

const POOL: PoolGeom = PoolGeom {
    kernel: [2, 2],
    stride: [2, 1],
    padding: [1, 0],
    dilation: [1, 1],
    ceil_mode: true,
};

/// Every op kind, each with its argument shapes and direction.
pub fn examples() -> Vec<(Op, Vec<Vec<usize>>, Direction)> {
    use Direction::*;
    let x = vec![2, 4, 5, 6];
    let mut out: Vec<(Op, Vec<Vec<usize>>, Direction)> = Vec::new();
    for f in UnaryFn::ALL {
        out.push((Op::Unary(f), vec![x.clone()], Forward));
        out.push((Op::UnaryGrad(f), vec![x.clone(), x.clone()], Backward));
    }
    for f in BinaryFn::ALL {
        out.push((Op::Binary(f), vec![x.clone(), vec![4, 1, 1]], Forward));
    }
    let conv_out = vec![2, 6, 3, 4];
    // 5x6 pooled by POOL: ceil mode drops the window that would start in
    // the padding, so 3x5.
    let pooled = vec![2, 4, 3, 5];
    let rest = vec![
        (
            Op::Input {
                name: "x".into(),
                role: Role::Data,
                shape: x.clone(),
            },
            vec![],
            Leaf,
        ),
        (
            Op::Const {
                value: 1.0,
                shape: vec![3],
            },
            vec![],
            Leaf,
        ),
        (Op::ReduceSum { axes: vec![1, 3] }, vec![x.clone()], Forward),
        (Op::ReduceMean { axes: vec![0] }, vec![x.clone()], Forward),
        (Op::ReduceMax { axes: vec![2] }, vec![x.clone()], Forward),
        (
            Op::BroadcastTo {
                shape: vec![2, 4, 5, 6],
            },
            vec![vec![4, 1, 1]],
            Forward,
        ),
        (
            Op::SumTo {
                shape: vec![4, 1, 1],
            },
            vec![x.clone()],
            Forward,
        ),
        (Op::Reshape { shape: vec![8, 30] }, vec![x.clone()], Forward),
        (
            Op::MatMul {
                trans_a: true,
                trans_b: false,
            },
            vec![vec![3, 2], vec![3, 5]],
            Forward,
        ),
        (Op::Conv2d(CONV), vec![x.clone(), vec![6, 2, 2, 3]], Forward),
        (
            Op::Conv2dGradInput {
                geom: CONV,
                shape: x.clone(),
            },
            vec![conv_out.clone(), vec![6, 2, 2, 3]],
            Backward,
        ),
        (
            Op::Conv2dGradWeight {
                geom: CONV,
                shape: vec![6, 2, 2, 3],
            },
            vec![x.clone(), conv_out],
            Backward,
        ),
        (Op::MaxPool2d(POOL), vec![x.clone()], Forward),
        (
            Op::MaxPool2dGrad(POOL),
            vec![x.clone(), pooled.clone()],
            Backward,
        ),
        (
            Op::AvgPool2d {
                geom: POOL,
                count_include_pad: false,
            },
            vec![x.clone()],
            Forward,
        ),
        (
            Op::AvgPool2dGrad {
                geom: POOL,
                count_include_pad: false,
                shape: x.clone(),
            },
            vec![pooled],
            Backward,
        ),
        (
            Op::AdaptiveAvgPool2d { size: [2, 3] },
            vec![x.clone()],
            Forward,
        ),
        (
            Op::AdaptiveAvgPool2dGrad { shape: x.clone() },
            vec![vec![2, 4, 2, 3]],
            Backward,
        ),
        (
            Op::AdaptiveMaxPool2d { size: [2, 3] },
            vec![x.clone()],
            Forward,
        ),
        (
            Op::AdaptiveMaxPool2dGrad,
            vec![x.clone(), vec![2, 4, 2, 3]],
            Backward,
        ),
        (
            Op::ChannelWindowSum {
                size: 3,
                before: 1,
                after: 1,
            },
            vec![x.clone()],
            Forward,
        ),
        (
            Op::Concat { axis: 1 },
            vec![x.clone(), vec![2, 3, 5, 6]],
            Forward,
        ),
        (
            Op::Slice {
                axis: 3,
                start: 1,
                end: 4,
            },
            vec![x.clone()],
            Forward,
        ),
        (
            Op::PadAxis {
                axis: 2,
                before: 1,
                after: 2,
            },
            vec![x.clone()],
            Forward,
        ),
        (Op::Dropout { p: 0.5, salt: 7 }, vec![x], Forward),
    ];
    out.extend(rest);
    // Exhaustiveness: this match names every variant, so adding an op
    // breaks the build here until it has an example above.
    for (op, ..) in &out {
        match op {
            Op::Input { .. }
            | Op::Const { .. }
            | Op::Unary(_)
            | Op::UnaryGrad(_)
            | Op::Binary(_)
            | Op::ReduceSum { .. }
            | Op::ReduceMean { .. }
            | Op::ReduceMax { .. }
            | Op::BroadcastTo { .. }
            | Op::SumTo { .. }
            | Op::Reshape { .. }
            | Op::MatMul { .. }
            | Op::Conv2d(_)
            | Op::Conv2dGradInput { .. }
            | Op::Conv2dGradWeight { .. }
            | Op::MaxPool2d(_)
            | Op::MaxPool2dGrad(_)
            | Op::AvgPool2d { .. }
            | Op::AvgPool2dGrad { .. }
            | Op::AdaptiveAvgPool2d { .. }
            | Op::AdaptiveAvgPool2dGrad { .. }
            | Op::AdaptiveMaxPool2d { .. }
            | Op::AdaptiveMaxPool2dGrad
            | Op::ChannelWindowSum { .. }
            | Op::Concat { .. }
            | Op::Slice { .. }
            | Op::PadAxis { .. }
            | Op::Dropout { .. } => {}
        }
    }
    out
}
