//! The kernel IR against the reference executor: every op of the
//! catalogue alone, and whole networks (forward and a training step) with
//! their fusion groups, lowered to loop nests, verified, and interpreted.
//! The cpu backend's own comparisons are in tests/cpu.rs; these isolate
//! the lowering from code generation.

mod common;

use common::{fixture_tensor, relative_error, Rng};
use ndarray::{ArrayD, IxDyn};
use nnc::backend::reference;
use nnc::ir::{Graph, Op, Output, Role};
use std::collections::HashMap;

/// Values for every input of `g`: fixture weights for the state, numbers in
/// [-1, 1) for data, a soft target whose rows sum to one, lr = 0.1.
pub fn inputs_for(g: &Graph, seed: u64) -> HashMap<String, ArrayD<f32>> {
    let mut rng = Rng(seed | 1);
    let mut out = HashMap::new();
    for node in &g.nodes {
        let Op::Input { name, role, shape } = &node.op else {
            continue;
        };
        let n: usize = shape.iter().product();
        let v = match role {
            Role::Parameter | Role::Buffer => fixture_tensor(name, shape),
            Role::Scalar => ArrayD::from_elem(IxDyn(shape), 0.1),
            Role::Data => ArrayD::from_shape_vec(
                IxDyn(shape),
                (0..n)
                    .map(|_| (rng.next() % 2000) as f32 / 1000.0 - 1.0)
                    .collect(),
            )
            .unwrap(),
            Role::Target => {
                let k = *shape.last().unwrap_or(&1);
                let mut t = ArrayD::zeros(IxDyn(shape));
                for (i, v) in t.iter_mut().enumerate() {
                    *v = if rng.below(k) == i % k { 1.0 } else { 0.0 };
                }
                t
            }
        };
        out.insert(name.clone(), v);
    }
    out
}

/// Compares the kernel path with the reference on `g`: forward values to
/// 1e-4 relative, gradients and updates to 1e-3, per output.
fn compare(what: &str, g: &Graph, seed: u64) {
    let inputs = inputs_for(g, seed);
    let expected = reference::run::<f32>(g, &inputs, seed).unwrap();
    let got =
        nnc::kernel::interp::evaluate(g, &inputs, seed).unwrap_or_else(|e| panic!("{what}: {e}"));
    // A gradient that is zero in exact arithmetic (a bias before batch
    // norm) is rounding noise in both, of a size set by the sums that make
    // it: it is compared on the scale of the step's largest gradient.
    let largest = |t: &ArrayD<f32>| t.iter().fold(0f32, |m, v| m.max(v.abs()));
    let grad_scale = g
        .outputs
        .iter()
        .filter(|(o, _)| matches!(o, Output::Grad(_)))
        .map(|(o, _)| largest(&expected[&o.name()]))
        .fold(0f32, f32::max);
    let mut bad = Vec::new();
    for (output, _) in &g.outputs {
        let name = output.name();
        let tolerance = match output {
            Output::Grad(_) | Output::Update(_) => 1e-3,
            _ => 1e-4,
        };
        let (a, b) = (&got[&name], &expected[&name]);
        let mut err = relative_error(a, b);
        if matches!(output, Output::Grad(_)) && largest(b) < 1e-3 * grad_scale {
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            err = f64::from(diff / grad_scale);
        }
        if err > tolerance {
            let max = largest(b);
            bad.push(format!("`{name}` by {err:e} (largest value {max:e})"));
        }
    }
    assert!(bad.is_empty(), "{what}: outputs differ: {}", bad.join(", "));
}

#[test]
fn every_op_alone_matches_the_reference() {
    for (op, shapes, _) in nnc::ir::catalogue::examples() {
        if matches!(op, Op::Input { .. }) {
            continue;
        }
        let mut g = Graph::new("op", nnc::ir::Mode::Train);
        let args: Vec<_> = shapes
            .iter()
            .enumerate()
            .map(|(i, s)| g.input(&format!("x{i}"), Role::Data, s.clone(), ""))
            .collect();
        let y = g.add(op.clone(), &args, "");
        g.set_output(Output::Named("y".into()), y);
        compare(&format!("{op:?}"), &g, 7);
    }
}

#[test]
fn networks_forward_and_training_step_match_the_reference() {
    let cases: &[(&str, Option<&str>, &[usize])] = &[
        ("examples/lenet.nn", None, &[3, 1, 28, 28]),
        ("examples/mlp.nn", None, &[3, 1, 28, 28]),
        ("tests/fixtures/small_resnet.nn", None, &[2, 3, 16, 16]),
        ("tests/fixtures/tiny_train.nn", None, &[2, 1, 28, 28]),
    ];
    for &(model, network, shape) in cases {
        let loaded = common::load(model, network, shape);
        let infer = loaded.lower(nnc::ir::Mode::Infer).unwrap();
        compare(&format!("{model} infer"), &infer, 3);
        let step = loaded.lower_step().unwrap();
        compare(&format!("{model} step"), &step, 3);
    }
}

#[test]
fn the_verifier_refuses_an_access_it_cannot_prove() {
    use nnc::kernel::{BufId, Buffer, BufferKind, IExpr, Kernel, Program, SExpr, Stmt, Var};
    let program = |end: i64| Program {
        buffers: vec![Buffer {
            kind: BufferKind::Input("x".into()),
            len: 4,
            shape: vec![4],
        }],
        kernels: vec![Kernel {
            name: "k".into(),
            parallel: true,
            body: vec![Stmt::For {
                var: Var(0),
                start: IExpr::c(0),
                end: IExpr::c(end),
                body: vec![Stmt::Store {
                    buf: BufId(0),
                    index: IExpr::var(Var(0)),
                    value: SExpr::c(1.0),
                }],
            }],
            vars: 1,
            regs: 0,
        }],
    };
    assert!(nnc::kernel::verify::verify(&program(4)).is_ok());
    let err = nnc::kernel::verify::verify(&program(5)).unwrap_err();
    assert!(err.message.contains("outside the buffer of 4"), "{err}");
}
