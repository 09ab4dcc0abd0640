//! Gradients against central finite differences, in f64: every op of the
//! IR, and whole layers as lowering builds them (batch norm in training
//! mode, local response norm, maxout, softmax, the losses).
//! Relative error at most 1e-3 for every tensor.

mod common;

use ndarray::{ArrayD, IxDyn};
use nnc::backend::reference::run;
use nnc::ir::ops::{ConvGeom, PoolGeom};
use nnc::ir::{BinaryFn, Graph, Mode, NodeId, Op, Role, UnaryFn};
use std::collections::HashMap;

type Inputs = HashMap<String, ArrayD<f64>>;

/// Values in `[lo, hi)`, seeded by the name; `gap` keeps them at least that
/// far from zero (and from 6, for relu6), away from kinks.
fn values(name: &str, shape: &[usize], lo: f64, hi: f64, gap: f64) -> ArrayD<f64> {
    let n: usize = shape.iter().product();
    let v: Vec<f64> = common::uniform(name, n)
        .into_iter()
        .map(|u| {
            let mut x = lo + (hi - lo) * u;
            for kink in [0.0, 6.0] {
                if (x - kink).abs() < gap {
                    x = kink + gap.copysign(x - kink + 1e-300);
                }
            }
            x
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// Differentiates `g`'s scalar output `loss` with respect to every
/// parameter input and compares with central differences.
fn check_graph(what: &str, mut g: Graph, loss: NodeId, inputs: Inputs) {
    nnc::autodiff::differentiate(&mut g, loss, &|_| true).unwrap();
    nnc::ir::verify::verify(&g).unwrap_or_else(|p| panic!("{what}: {p:?}"));
    let out = run::<f64>(&g, &inputs, 7).unwrap();
    let loss_name = g
        .outputs
        .iter()
        .find(|(_, id)| *id == loss)
        .map(|(n, _)| n.name())
        .unwrap();
    let params: Vec<String> = g
        .inputs(Role::Parameter)
        .map(|(_, n)| n.to_string())
        .collect();
    assert!(!params.is_empty());
    for p in params {
        let analytic = &out[&format!("grad:{p}")];
        let mut numeric = ArrayD::<f64>::zeros(analytic.raw_dim());
        let eps = 1e-6;
        for i in 0..numeric.len() {
            let at = |delta: f64| {
                let mut perturbed = inputs.clone();
                let t = perturbed.get_mut(&p).unwrap();
                let slot = t.iter_mut().nth(i).unwrap();
                *slot += delta;
                run::<f64>(&g, &perturbed, 7).unwrap()[&loss_name]
                    .iter()
                    .next()
                    .copied()
                    .unwrap()
            };
            let d = (at(eps) - at(-eps)) / (2.0 * eps);
            *numeric.iter_mut().nth(i).unwrap() = d;
        }
        let scale = numeric.iter().fold(0f64, |m, x| m.max(x.abs())).max(1e-3);
        let err = analytic
            .iter()
            .zip(numeric.iter())
            .fold(0f64, |m, (a, n)| m.max((a - n).abs()))
            / scale;
        assert!(err <= 1e-3, "{what}: d loss / d {p}: relative error {err:e}\nanalytic {analytic}\nnumeric {numeric}");
    }
}

/// `sum(op(args) * r)` for a random `r`: every output element matters.
fn check_op(what: &str, op: Op, args: &[(&str, Vec<usize>, ArrayD<f64>)]) {
    let mut g = Graph::new(what, Mode::Train);
    let mut inputs = Inputs::new();
    let ids: Vec<NodeId> = args
        .iter()
        .map(|(name, shape, v)| {
            inputs.insert(name.to_string(), v.clone());
            g.input(name, Role::Parameter, shape.clone(), "")
        })
        .collect();
    let y = g.add(op, &ids, "");
    let shape = g.shape(y).to_vec();
    let r = g.input("r", Role::Data, shape.clone(), "");
    inputs.insert(
        "r".into(),
        values(&format!("{what}/r"), &shape, -1.0, 1.0, 0.0),
    );
    let prod = g.add(Op::Binary(BinaryFn::Mul), &[y, r], "");
    let total = g.add(
        Op::ReduceSum {
            axes: (0..shape.len()).collect(),
        },
        &[prod],
        "",
    );
    let loss = g.add(Op::Reshape { shape: vec![] }, &[total], "");
    g.output("loss", loss);
    check_graph(what, g, loss, inputs);
}

fn arg(name: &str, shape: &[usize]) -> (&'static str, Vec<usize>, ArrayD<f64>) {
    let leaked: &'static str = Box::leak(name.to_string().into_boxed_str());
    (leaked, shape.to_vec(), values(name, shape, -1.0, 1.0, 0.0))
}

#[test]
fn unary_functions() {
    for f in UnaryFn::ALL {
        let (lo, hi, gap) = match f {
            UnaryFn::Log | UnaryFn::Sqrt | UnaryFn::Rsqrt | UnaryFn::Pow { .. } => (0.5, 2.0, 0.0),
            UnaryFn::Relu6 => (-2.0, 8.0, 0.05),
            _ => (-2.0, 2.0, 0.05),
        };
        let x = values(f.name(), &[3, 4], lo, hi, gap);
        check_op(f.name(), Op::Unary(f), &[("x", vec![3, 4], x)]);
    }
    for f in [
        UnaryFn::Gelu { tanh: true },
        UnaryFn::Pow { exponent: -0.75 },
        UnaryFn::LeakyRelu { slope: 0.2 },
    ] {
        let x = values("variant", &[5], 0.5, 2.0, 0.0);
        check_op(f.name(), Op::Unary(f), &[("x", vec![5], x)]);
    }
}

#[test]
fn binary_functions_with_broadcasting() {
    for f in [
        BinaryFn::Add,
        BinaryFn::Sub,
        BinaryFn::Mul,
        BinaryFn::Div,
        BinaryFn::Max,
    ] {
        let b = if f == BinaryFn::Div {
            values("b", &[3, 1], 0.5, 2.0, 0.0)
        } else {
            values("b", &[3, 1], -1.0, 1.0, 0.0)
        };
        check_op(
            f.name(),
            Op::Binary(f),
            &[arg("a", &[2, 3, 4]), ("b", vec![3, 1], b)],
        );
    }
}

#[test]
fn reductions_and_reshapes() {
    check_op(
        "reduce_sum",
        Op::ReduceSum { axes: vec![0, 2] },
        &[arg("x", &[2, 3, 4])],
    );
    check_op(
        "reduce_mean",
        Op::ReduceMean { axes: vec![1] },
        &[arg("x", &[2, 3, 4])],
    );
    check_op(
        "reduce_max",
        Op::ReduceMax { axes: vec![2] },
        &[arg("x", &[2, 3, 4])],
    );
    check_op(
        "broadcast_to",
        Op::BroadcastTo {
            shape: vec![2, 3, 4],
        },
        &[arg("x", &[3, 1])],
    );
    check_op(
        "sum_to",
        Op::SumTo { shape: vec![3, 1] },
        &[arg("x", &[2, 3, 4])],
    );
    check_op(
        "reshape",
        Op::Reshape { shape: vec![4, 6] },
        &[arg("x", &[2, 3, 4])],
    );
    check_op(
        "concat",
        Op::Concat { axis: 1 },
        &[
            arg("a", &[2, 1, 3]),
            arg("b", &[2, 2, 3]),
            arg("c", &[2, 3, 3]),
        ],
    );
    check_op(
        "slice",
        Op::Slice {
            axis: 1,
            start: 1,
            end: 3,
        },
        &[arg("x", &[2, 4, 3])],
    );
    check_op(
        "pad_axis",
        Op::PadAxis {
            axis: 0,
            before: 1,
            after: 2,
        },
        &[arg("x", &[2, 3])],
    );
    check_op(
        "channel_window_sum",
        Op::ChannelWindowSum {
            size: 3,
            before: 1,
            after: 1,
        },
        &[arg("x", &[2, 5, 2, 2])],
    );
    check_op(
        "channel_window_sum_even",
        Op::ChannelWindowSum {
            size: 4,
            before: 2,
            after: 1,
        },
        &[arg("x", &[1, 6, 2])],
    );
    check_op(
        "dropout",
        Op::Dropout { p: 0.3, salt: 5 },
        &[arg("x", &[4, 6])],
    );
}

#[test]
fn matmul_with_every_transpose() {
    for (ta, tb) in [(false, false), (false, true), (true, false), (true, true)] {
        let a = if ta { [4, 3] } else { [3, 4] };
        let b = if tb { [5, 4] } else { [4, 5] };
        check_op(
            &format!("matmul {ta} {tb}"),
            Op::MatMul {
                trans_a: ta,
                trans_b: tb,
            },
            &[arg("a", &a), arg("b", &b)],
        );
    }
}

#[test]
fn convolutions_strided_padded_dilated_grouped() {
    let cases = [
        (
            "plain",
            ConvGeom {
                stride: [1, 1],
                padding: [0; 4],
                dilation: [1, 1],
                groups: 1,
            },
            [2, 3, 5, 5],
            [4, 3, 3, 3],
        ),
        (
            "strided, asymmetric padding",
            ConvGeom {
                stride: [2, 2],
                padding: [1, 0, 2, 1],
                dilation: [1, 1],
                groups: 1,
            },
            [2, 2, 6, 5],
            [3, 2, 3, 2],
        ),
        (
            "dilated",
            ConvGeom {
                stride: [1, 2],
                padding: [2, 2, 1, 1],
                dilation: [2, 2],
                groups: 1,
            },
            [1, 2, 7, 6],
            [2, 2, 3, 3],
        ),
        (
            "grouped",
            ConvGeom {
                stride: [1, 1],
                padding: [1; 4],
                dilation: [1, 1],
                groups: 2,
            },
            [2, 4, 4, 4],
            [6, 2, 3, 3],
        ),
        (
            "depthwise",
            ConvGeom {
                stride: [2, 1],
                padding: [1; 4],
                dilation: [1, 1],
                groups: 3,
            },
            [1, 3, 5, 4],
            [3, 1, 3, 3],
        ),
    ];
    for (what, geom, x, w) in cases {
        check_op(
            &format!("conv2d {what}"),
            Op::Conv2d(geom),
            &[arg("x", &x), arg("w", &w)],
        );
    }
}

#[test]
fn pooling_including_ceil_mode() {
    let pool = |k, s, p, d, ceil| PoolGeom {
        kernel: [k, k],
        stride: [s, s],
        padding: [p, p],
        dilation: [d, d],
        ceil_mode: ceil,
    };
    check_op(
        "max_pool",
        Op::MaxPool2d(pool(2, 2, 0, 1, false)),
        &[arg("x", &[2, 2, 4, 4])],
    );
    check_op(
        "max_pool ceil padded",
        Op::MaxPool2d(pool(3, 2, 1, 1, true)),
        &[arg("x", &[1, 2, 6, 6])],
    );
    check_op(
        "max_pool dilated",
        Op::MaxPool2d(pool(2, 1, 0, 2, false)),
        &[arg("x", &[1, 1, 5, 5])],
    );
    for include in [true, false] {
        check_op(
            &format!("avg_pool ceil padded include={include}"),
            Op::AvgPool2d {
                geom: pool(3, 2, 1, 1, true),
                count_include_pad: include,
            },
            &[arg("x", &[1, 2, 6, 5])],
        );
    }
    check_op(
        "adaptive_avg_pool",
        Op::AdaptiveAvgPool2d { size: [3, 2] },
        &[arg("x", &[1, 2, 7, 5])],
    );
    check_op(
        "adaptive_max_pool",
        Op::AdaptiveMaxPool2d { size: [2, 3] },
        &[arg("x", &[1, 2, 5, 7])],
    );
}

/// Whole layers as lowering builds them, with a loss.
fn check_model(what: &str, source: &str, input: &[usize]) {
    let (prog, checked) = nnc::driver::check_bytes("model.nn", source.as_bytes().to_vec());
    assert!(
        !nnc::diag::has_errors(&checked.diags),
        "{what}: {:?}",
        checked.diags
    );
    let _ = prog;
    let path = std::env::temp_dir().join(format!(
        "nnc-gradcheck-{}-{}.nn",
        std::process::id(),
        what.replace(' ', "_")
    ));
    std::fs::write(&path, source).unwrap();
    let loaded = common::load(path.to_str().unwrap(), None, input);
    let _ = std::fs::remove_file(&path);
    let g = nnc::ir::lower::lower(
        &loaded.model,
        Mode::Train,
        Some(&loaded.train.as_ref().map(|t| (&t.loss).into()).unwrap_or(
            nnc::ir::lower::LossSpec::CrossEntropy {
                label_smoothing: 0.0,
            },
        )),
    )
    .unwrap();
    let loss = g.find_output("loss").unwrap();
    let mut inputs = Inputs::new();
    for (id, name) in g.inputs(Role::Parameter).chain(g.inputs(Role::Buffer)) {
        let v = if name.ends_with("running_var") {
            values(name, g.shape(id), 0.5, 1.5, 0.0)
        } else {
            values(name, g.shape(id), -1.0, 1.0, 0.0)
        };
        inputs.insert(name.to_string(), v);
    }
    let xs = g.shape(g.find_input("x").unwrap()).to_vec();
    inputs.insert("x".into(), values("x", &xs, -1.0, 1.0, 0.0));
    let ts = g.shape(g.find_input("target").unwrap()).to_vec();
    let mut t = values("target", &ts, 0.0, 1.0, 0.0);
    // A soft target distribution per row.
    for mut row in t.rows_mut() {
        let s: f64 = row.sum();
        row.mapv_inplace(|v| v / s);
    }
    inputs.insert("target".into(), t);
    check_graph(what, g, loss, inputs);
}

#[test]
fn batch_norm_in_training_mode() {
    check_model(
        "batch_norm 2d",
        "network n { input x: [N, 2, 3, 3]\n return x -> conv2d(3, 2) -> batch_norm -> flatten -> linear(4) }\ntrain { data = mnist() }",
        &[3, 2, 3, 3],
    );
    check_model(
        "batch_norm 1d",
        "network n { input x: [N, 5]\n return x -> linear(4) -> batch_norm -> sigmoid -> linear(3) }\ntrain { data = mnist() }",
        &[4, 5],
    );
}

#[test]
fn composite_layers_and_losses() {
    check_model(
        "lrn maxout",
        "network n { input x: [N, 4, 3, 3]\n return x -> conv2d(6, 1) -> local_response_norm(3, alpha=0.1, k=1.5) -> maxout(2) -> global_avg_pool -> linear(3) }\ntrain { data = mnist() }",
        &[2, 4, 3, 3],
    );
    check_model(
        "softmax and label smoothing",
        "network n { input x: [N, 4]\n return x -> linear(5) -> softmax -> linear(3) -> log_softmax }\ntrain { data = mnist()\n loss = cross_entropy(label_smoothing=0.2) }",
        &[3, 4],
    );
    check_model(
        "mse",
        "network n { input x: [N, 4]\n return x -> linear(3) -> tanh -> linear(2) }\ntrain { data = mnist()\n loss = mse }",
        &[3, 4],
    );
    check_model(
        "residual and concat",
        "network n { input x: [N, 2, 4, 4]\n a = x -> conv2d(2, 3, padding=1)\n b = x -> avg_pool(3, stride=1, padding=1)\n return concat(a + x, b * x) -> adaptive_max_pool(2) -> flatten -> linear(3) }\ntrain { data = mnist() }",
        &[2, 2, 4, 4],
    );
}

/// Whether the catalogue classifies `op` as a forward op.
fn is_forward(op: &Op) -> bool {
    use nnc::ir::catalogue::{examples, Direction};
    let d = std::mem::discriminant(op);
    examples()
        .iter()
        .any(|(e, _, dir)| std::mem::discriminant(e) == d && *dir == Direction::Forward)
}

/// `autodiff::rule` on one example of every op of the IR: each forward op
/// gives a gradient of its argument's shape for every argument (but `eq`,
/// whose gradient is zero), and each backward op is refused, as nnc
/// computes first-order gradients only.
#[test]
fn every_op_has_a_gradient_rule_or_is_backward() {
    use nnc::ir::catalogue::{examples, Direction};
    for (op, shapes, direction) in examples() {
        let mut g = nnc::ir::Graph::new("rule", Mode::Train);
        let args: Vec<_> = shapes
            .iter()
            .enumerate()
            .map(|(k, s)| g.input(&format!("a{k}"), nnc::ir::Role::Data, s.clone(), ""))
            .collect();
        let y = g
            .try_add(op.clone(), &args, "")
            .unwrap_or_else(|e| panic!("the example of {op:?} does not type-check: {e:?}"));
        let dy = g.input("dy", nnc::ir::Role::Data, g.shape(y).to_vec(), "");
        let wanted = vec![true; args.len()];
        let got = nnc::autodiff::rule(&mut g, y, dy, &wanted);
        match direction {
            Direction::Leaf => assert!(got.is_ok_and(|v| v.is_empty()), "{op:?}"),
            Direction::Backward => assert!(got.is_err(), "{op:?} has a rule"),
            Direction::Forward => {
                let grads = got.unwrap_or_else(|e| panic!("{op:?}: {e}"));
                let zero_gradient = matches!(op, Op::Binary(nnc::ir::BinaryFn::Eq));
                for (k, grad) in grads.iter().enumerate() {
                    match grad {
                        Some(d) => assert_eq!(
                            g.shape(*d),
                            shapes[k].as_slice(),
                            "{op:?}: gradient {k} has the wrong shape"
                        ),
                        None => assert!(zero_gradient, "{op:?}: no gradient for argument {k}"),
                    }
                }
            }
        }
    }
}

#[test]
fn every_forward_op_has_a_rule() {
    // Lower a network that uses every layer kind, in training mode, and
    // differentiate it: every op that lowering emits must have a rule.
    let source = "network n { input x: [N, 4, 8, 8]\n\
        a = x -> conv2d(8, 3, padding=1) -> batch_norm -> relu -> max_pool(2) -> avg_pool(2) -> adaptive_avg_pool(2)\n\
        b = x -> local_response_norm(3) -> maxout(2) -> adaptive_max_pool(2) -> dropout(0.5) -> relu6 -> leaky_relu -> gelu -> elu -> silu -> sigmoid -> tanh\n\
        c = concat(a, b * b) -> global_avg_pool -> linear(6) -> softmax -> log_softmax -> reshape([N, 3, 2]) -> flatten\n\
        return c -> identity }\ntrain { data = mnist() }";
    let path = std::env::temp_dir().join(format!("nnc-every-op-{}.nn", std::process::id()));
    std::fs::write(&path, source).unwrap();
    let loaded = common::load(path.to_str().unwrap(), None, &[2, 4, 8, 8]);
    let _ = std::fs::remove_file(&path);
    let g = loaded.lower(Mode::Train).unwrap();
    let mut seen: Vec<&'static str> = g
        .nodes
        .iter()
        .filter(|n| is_forward(&n.op))
        .map(|n| n.op.name())
        .collect();
    seen.sort_unstable();
    seen.dedup();
    for op in [
        "conv2d",
        "max_pool2d",
        "avg_pool2d",
        "adaptive_avg_pool2d",
        "adaptive_max_pool2d",
        "channel_window_sum",
        "concat",
        "dropout",
        "matmul",
        "reduce_max",
        "reduce_mean",
        "reduce_sum",
        "reshape",
    ] {
        assert!(seen.contains(&op), "lowering emitted no `{op}`: {seen:?}");
    }
    // conv2d, batch_norm and linear: a weight and a bias each.
    assert_eq!(
        g.outputs
            .iter()
            .filter(|(n, _)| matches!(n, nnc::ir::Output::Grad(_)))
            .count(),
        6
    );
}
