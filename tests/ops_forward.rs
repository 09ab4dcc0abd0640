//! Forward results of every op against cases worked out by hand.

mod common;

use ndarray::{arr1, ArrayD, IxDyn};
use nnc::backend::reference::run;
use nnc::ir::ops::{ConvGeom, PoolGeom};
use nnc::ir::{BinaryFn, Graph, Mode, Op, Role, UnaryFn};
use std::collections::HashMap;

fn t(shape: &[usize], v: &[f64]) -> ArrayD<f64> {
    ArrayD::from_shape_vec(IxDyn(shape), v.to_vec()).unwrap()
}

fn seq(shape: &[usize]) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    t(shape, &(1..=n).map(|v| v as f64).collect::<Vec<_>>())
}

/// Runs one op on the given arguments.
fn apply(op: Op, args: &[ArrayD<f64>]) -> ArrayD<f64> {
    let mut g = Graph::new("op", Mode::Infer);
    let mut inputs = HashMap::new();
    let ids: Vec<_> = args
        .iter()
        .enumerate()
        .map(|(i, a)| {
            inputs.insert(format!("a{i}"), a.clone());
            g.input(&format!("a{i}"), Role::Data, a.shape().to_vec(), "")
        })
        .collect();
    let y = g.add(op, &ids, "");
    g.output("y", y);
    run::<f64>(&g, &inputs, 1).unwrap().remove("y").unwrap()
}

fn close(a: &ArrayD<f64>, expected: &[f64]) {
    let got: Vec<f64> = a.iter().copied().collect();
    assert_eq!(got.len(), expected.len(), "{got:?} vs {expected:?}");
    for (x, y) in got.iter().zip(expected) {
        assert!((x - y).abs() < 1e-9, "{got:?} vs {expected:?}");
    }
}

fn conv(stride: usize, pad: usize, dilation: usize, groups: usize) -> Op {
    Op::Conv2d(ConvGeom {
        stride: [stride; 2],
        padding: [pad; 4],
        dilation: [dilation; 2],
        groups,
    })
}

fn pool(k: usize, s: usize, p: usize, ceil: bool) -> PoolGeom {
    PoolGeom {
        kernel: [k; 2],
        stride: [s; 2],
        padding: [p; 2],
        dilation: [1, 1],
        ceil_mode: ceil,
    }
}

#[test]
fn convolution() {
    // 2x2 blocks of 1..16, summed.
    let y = apply(
        conv(2, 0, 1, 1),
        &[seq(&[1, 1, 4, 4]), t(&[1, 1, 2, 2], &[1.0; 4])],
    );
    assert_eq!(y.shape(), &[1, 1, 2, 2]);
    close(&y, &[14.0, 22.0, 46.0, 54.0]);
    // Padding 1, a 3x3 kernel of ones over a 2x2 image: every window sees all of it.
    let y = apply(
        conv(1, 1, 1, 1),
        &[seq(&[1, 1, 2, 2]), t(&[1, 1, 3, 3], &[1.0; 9])],
    );
    close(&y, &[10.0; 4]);
    // Dilation 2: the corners of 1..9.
    let y = apply(
        conv(1, 0, 2, 1),
        &[seq(&[1, 1, 3, 3]), t(&[1, 1, 2, 2], &[1.0; 4])],
    );
    close(&y, &[20.0]);
    // Two groups of one channel: each channel scaled by its own weight.
    let y = apply(
        conv(1, 0, 1, 2),
        &[seq(&[1, 2, 1, 2]), t(&[2, 1, 1, 1], &[10.0, -1.0])],
    );
    close(&y, &[10.0, 20.0, -3.0, -4.0]);
    // Asymmetric padding (top 1, bottom 0, left 0, right 1).
    let geom = ConvGeom {
        stride: [1, 1],
        padding: [1, 0, 0, 1],
        dilation: [1, 1],
        groups: 1,
    };
    let y = apply(
        Op::Conv2d(geom),
        &[seq(&[1, 1, 2, 2]), t(&[1, 1, 2, 2], &[1.0; 4])],
    );
    close(&y, &[3.0, 2.0, 10.0, 6.0]);
}

#[test]
fn pooling() {
    close(
        &apply(Op::MaxPool2d(pool(2, 2, 0, false)), &[seq(&[1, 1, 4, 4])]),
        &[6.0, 8.0, 14.0, 16.0],
    );
    // Ceil mode keeps the partial last window.
    close(
        &apply(Op::MaxPool2d(pool(2, 2, 0, true)), &[seq(&[1, 1, 3, 3])]),
        &[5.0, 6.0, 8.0, 9.0],
    );
    // Average with padding: PyTorch divides by 9 with count_include_pad, else by 4.
    let x = seq(&[1, 1, 2, 2]);
    let avg = |include| Op::AvgPool2d {
        geom: pool(3, 1, 1, false),
        count_include_pad: include,
    };
    close(
        &apply(avg(true), std::slice::from_ref(&x)),
        &[10.0 / 9.0; 4],
    );
    close(&apply(avg(false), &[x]), &[2.5; 4]);
    // Adaptive windows [0, 2) and [1, 3) of three values.
    close(
        &apply(
            Op::AdaptiveAvgPool2d { size: [1, 2] },
            &[seq(&[1, 1, 1, 3])],
        ),
        &[1.5, 2.5],
    );
    close(
        &apply(
            Op::AdaptiveMaxPool2d { size: [1, 2] },
            &[t(&[1, 1, 1, 3], &[4.0, 1.0, 3.0])],
        ),
        &[4.0, 3.0],
    );
}

#[test]
fn elementwise_and_reductions() {
    let a = t(&[2, 2], &[1.0, 2.0, 3.0, 4.0]);
    close(
        &apply(
            Op::Binary(BinaryFn::Sub),
            &[a.clone(), t(&[2], &[1.0, 2.0])],
        ),
        &[0.0, 0.0, 2.0, 2.0],
    );
    close(
        &apply(Op::Binary(BinaryFn::Max), &[a.clone(), t(&[], &[2.5])]),
        &[2.5, 2.5, 3.0, 4.0],
    );
    close(
        &apply(Op::ReduceSum { axes: vec![1] }, std::slice::from_ref(&a)),
        &[3.0, 7.0],
    );
    close(
        &apply(Op::ReduceMean { axes: vec![0] }, std::slice::from_ref(&a)),
        &[2.0, 3.0],
    );
    close(
        &apply(Op::ReduceMax { axes: vec![0, 1] }, std::slice::from_ref(&a)),
        &[4.0],
    );
    close(
        &apply(Op::SumTo { shape: vec![2] }, std::slice::from_ref(&a)),
        &[4.0, 6.0],
    );
    close(
        &apply(
            Op::MatMul {
                trans_a: false,
                trans_b: false,
            },
            &[a.clone(), t(&[2, 2], &[5.0, 6.0, 7.0, 8.0])],
        ),
        &[19.0, 22.0, 43.0, 50.0],
    );
    close(
        &apply(
            Op::MatMul {
                trans_a: false,
                trans_b: true,
            },
            &[a.clone(), t(&[2, 2], &[5.0, 6.0, 7.0, 8.0])],
        ),
        &[17.0, 23.0, 39.0, 53.0],
    );
    let x = t(&[3], &[-1.0, 0.0, 1.0]);
    close(
        &apply(Op::Unary(UnaryFn::Relu), std::slice::from_ref(&x)),
        &[0.0, 0.0, 1.0],
    );
    close(
        &apply(Op::Unary(UnaryFn::Sigmoid), &[t(&[1], &[0.0])]),
        &[0.5],
    );
    close(
        &apply(Op::Unary(UnaryFn::Elu { alpha: 1.0 }), &[t(&[1], &[-1.0])]),
        &[(-1f64).exp() - 1.0],
    );
    close(
        &apply(Op::Unary(UnaryFn::Gelu { tanh: false }), &[t(&[1], &[1.0])]),
        &[0.841_344_746_068_542_9],
    );
    close(
        &apply(Op::Unary(UnaryFn::LeakyRelu { slope: 0.1 }), &[x]),
        &[-0.1, 0.0, 1.0],
    );
}

#[test]
fn layout_ops() {
    close(
        &apply(
            Op::ChannelWindowSum {
                size: 3,
                before: 1,
                after: 1,
            },
            &[t(&[1, 3], &[1.0, 2.0, 3.0])],
        ),
        &[3.0, 6.0, 5.0],
    );
    close(
        &apply(
            Op::Concat { axis: 1 },
            &[seq(&[2, 1]), t(&[2, 2], &[7.0, 8.0, 9.0, 10.0])],
        ),
        &[1.0, 7.0, 8.0, 2.0, 9.0, 10.0],
    );
    close(
        &apply(
            Op::Slice {
                axis: 1,
                start: 1,
                end: 3,
            },
            &[seq(&[2, 3])],
        ),
        &[2.0, 3.0, 5.0, 6.0],
    );
    close(
        &apply(
            Op::PadAxis {
                axis: 0,
                before: 1,
                after: 0,
            },
            &[seq(&[2])],
        ),
        &[0.0, 1.0, 2.0],
    );
    close(
        &apply(Op::Reshape { shape: vec![3, 2] }, &[seq(&[2, 3])]),
        &[1.0, 2.0, 3.0, 4.0, 5.0, 6.0],
    );
}

#[test]
fn dropout_zeroes_and_rescales() {
    let x = ArrayD::<f64>::ones(IxDyn(&[10_000]));
    let y = apply(Op::Dropout { p: 0.25, salt: 3 }, &[x]);
    let kept = y.iter().filter(|&&v| v != 0.0).count();
    assert!(y
        .iter()
        .all(|&v| v == 0.0 || (v - 1.0 / 0.75).abs() < 1e-12));
    assert!(
        (7_200..7_800).contains(&kept),
        "kept {kept} of 10000 at p = 0.25"
    );
    // Inverted scaling keeps the expectation.
    let mean = y.sum() / 10_000.0;
    assert!((mean - 1.0).abs() < 0.03, "mean {mean}");
}

/// Whole layers through lowering, in inference mode.
fn run_layer(source: &str, input: ArrayD<f64>, weights: &[(&str, ArrayD<f64>)]) -> ArrayD<f64> {
    let path = std::env::temp_dir().join(format!(
        "nnc-forward-{}-{}.nn",
        std::process::id(),
        common::fnv1a(source)
    ));
    std::fs::write(&path, source).unwrap();
    let shape: Vec<usize> = input.shape().to_vec();
    let loaded = common::load(path.to_str().unwrap(), None, &shape);
    let _ = std::fs::remove_file(&path);
    let g = loaded.lower(Mode::Infer).unwrap();
    let mut inputs: HashMap<String, ArrayD<f64>> = weights
        .iter()
        .map(|(k, v)| (k.to_string(), v.clone()))
        .collect();
    inputs.insert("x".into(), input);
    run::<f64>(&g, &inputs, 0)
        .unwrap()
        .remove("logits")
        .unwrap()
}

#[test]
fn layers_in_inference_mode() {
    // Batch norm uses the running statistics: (x - 2) / sqrt(4) * 2 + 1.
    let y = run_layer(
        "network n { input x: [N, 1]\n return x -> batch_norm(eps=1e-12) as bn }",
        t(&[2, 1], &[1.0, 3.0]),
        &[
            ("bn.weight", arr1(&[2.0]).into_dyn()),
            ("bn.bias", arr1(&[1.0]).into_dyn()),
            ("bn.running_mean", arr1(&[2.0]).into_dyn()),
            ("bn.running_var", arr1(&[4.0]).into_dyn()),
        ],
    );
    close(&y, &[0.0, 2.0]);
    // Dropout is the identity in inference.
    close(
        &run_layer(
            "network n { input x: [N, 2]\n return x -> dropout(0.9) }",
            t(&[1, 2], &[3.0, 4.0]),
            &[],
        ),
        &[3.0, 4.0],
    );
    // Maxout over pairs of channels.
    close(
        &run_layer(
            "network n { input x: [N, 4]\n return x -> maxout(2) }",
            t(&[1, 4], &[1.0, 5.0, 3.0, 2.0]),
            &[],
        ),
        &[5.0, 3.0],
    );
    // Softmax of equal logits is uniform; log-softmax is its log.
    close(
        &run_layer(
            "network n { input x: [N, 4]\n return x -> softmax }",
            t(&[1, 4], &[7.0; 4]),
            &[],
        ),
        &[0.25; 4],
    );
    close(
        &run_layer(
            "network n { input x: [N, 2]\n return x -> log_softmax }",
            t(&[1, 2], &[0.0, 0.0]),
            &[],
        ),
        &[(0.5f64).ln(); 2],
    );
    // Local response norm, size 2: x_c / (k + alpha/size * sum over the window of x^2)^beta,
    // the window being channels c-1 and c.
    let y = run_layer(
        "network n { input x: [N, 2, 1]\n return x -> local_response_norm(2, alpha=1.0, beta=1.0, k=1.0) }",
        t(&[1, 2, 1], &[1.0, 2.0]),
        &[],
    );
    close(&y, &[1.0 / 1.5, 2.0 / 3.5]);
    // Global average pooling and a linear layer: mean 2.5, then 2 * 2.5 + 1.
    let y = run_layer(
        "network n { input x: [N, 1, 2, 2]\n return x -> global_avg_pool -> linear(1) as fc }",
        seq(&[1, 1, 2, 2]),
        &[
            ("fc.weight", t(&[1, 1], &[2.0])),
            ("fc.bias", arr1(&[1.0]).into_dyn()),
        ],
    );
    close(&y, &[6.0]);
}

/// A unary function and its closed form.
type Case = (UnaryFn, Box<dyn Fn(f64) -> f64>);

/// Closed forms for the unary functions that the layer tests do not reach
/// independently; each value is computed here from its textbook definition.
#[test]
fn unary_functions_against_closed_forms() {
    let xs = [-2.5, -0.5, 0.25, 1.5, 7.0];
    let sigmoid = |v: f64| 1.0 / (1.0 + (-v).exp());
    let cases: Vec<Case> = vec![
        (UnaryFn::Neg, Box::new(|v| -v)),
        (UnaryFn::Exp, Box::new(f64::exp)),
        (UnaryFn::Square, Box::new(|v| v * v)),
        (UnaryFn::Tanh, Box::new(f64::tanh)),
        (UnaryFn::Silu, Box::new(move |v| v * sigmoid(v))),
        (UnaryFn::Relu6, Box::new(|v| v.clamp(0.0, 6.0))),
        (
            UnaryFn::Gelu { tanh: true },
            Box::new(|v| {
                let inner = (2.0 / std::f64::consts::PI).sqrt() * (v + 0.044715 * v.powi(3));
                0.5 * v * (1.0 + inner.tanh())
            }),
        ),
        (UnaryFn::Pow { exponent: 3.0 }, Box::new(|v| v * v * v)),
    ];
    for (f, expected) in &cases {
        let y = apply(Op::Unary(*f), &[t(&[xs.len()], &xs)]);
        let want: Vec<f64> = xs.iter().map(|&v| expected(v)).collect();
        close(&y, &want);
    }
    // Functions defined on positive numbers only.
    let pos = [0.25, 1.0, 4.0, 9.0];
    let positive: Vec<Case> = vec![
        (UnaryFn::Log, Box::new(f64::ln)),
        (UnaryFn::Sqrt, Box::new(f64::sqrt)),
        (UnaryFn::Rsqrt, Box::new(|v| 1.0 / v.sqrt())),
        (UnaryFn::Pow { exponent: 0.5 }, Box::new(f64::sqrt)),
    ];
    for (f, expected) in &positive {
        let y = apply(Op::Unary(*f), &[t(&[pos.len()], &pos)]);
        let want: Vec<f64> = pos.iter().map(|&v| expected(v)).collect();
        close(&y, &want);
    }
    // Spot values worked out by hand.
    close(&apply(Op::Unary(UnaryFn::Log), &[t(&[1], &[1.0])]), &[0.0]);
    close(
        &apply(Op::Unary(UnaryFn::Rsqrt), &[t(&[1], &[4.0])]),
        &[0.5],
    );
    close(
        &apply(Op::Unary(UnaryFn::Relu6), &[t(&[3], &[-1.0, 3.0, 8.0])]),
        &[0.0, 3.0, 6.0],
    );
}

/// A NaN anywhere stays a NaN, as in PyTorch: an op that swallowed it would
/// hide a diverging run from the non-finite guard.
#[test]
fn nan_propagates_through_every_op() {
    let nan = f64::NAN;
    for f in UnaryFn::ALL {
        let y = apply(Op::Unary(f), &[t(&[2], &[nan, 1.0])]);
        assert!(y[[0]].is_nan(), "{} turned NaN into {}", f.name(), y[[0]]);
    }
    let with_nan = t(&[2], &[nan, 1.0]);
    let plain = t(&[2], &[0.5, 0.5]);
    for f in [
        BinaryFn::Add,
        BinaryFn::Sub,
        BinaryFn::Mul,
        BinaryFn::Div,
        BinaryFn::Max,
    ] {
        for args in [
            [with_nan.clone(), plain.clone()],
            [plain.clone(), with_nan.clone()],
        ] {
            let y = apply(Op::Binary(f), &args);
            assert!(y[[0]].is_nan(), "{f:?} dropped a NaN operand: {y}");
            assert!(!y[[1]].is_nan(), "{f:?} made a NaN from numbers: {y}");
        }
    }
    let y = apply(
        Op::ReduceMax { axes: vec![0] },
        &[t(&[3], &[1.0, nan, 2.0])],
    );
    assert!(y[[0]].is_nan(), "reduce_max dropped a NaN: {y}");
    let mut img = seq(&[1, 1, 2, 2]);
    img[[0, 0, 1, 0]] = nan;
    let y = apply(Op::MaxPool2d(pool(2, 2, 0, false)), &[img]);
    assert!(y[[0, 0, 0, 0]].is_nan(), "max pooling dropped a NaN: {y}");
}
