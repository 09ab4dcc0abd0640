//! The cpu backend (kernels compiled by Cranelift) against the reference
//! executor, through the backend interface: every op of the catalogue, odd
//! shapes for every kernel kind, and whole networks, forward and a
//! training step (loss, gradients, updated parameters and buffers).

mod common;

use nnc::backend::{cpu::Cpu, reference, Backend};
use nnc::ir::{Graph, Op, Output, Role};
use nnc::weights::WeightSet;
use std::collections::HashMap;

/// Runs `g` on the cpu backend with the state taken from `inputs`, and
/// returns every output.
fn run_cpu(
    g: &Graph,
    inputs: &HashMap<String, ndarray::ArrayD<f32>>,
    seed: u64,
) -> HashMap<String, ndarray::ArrayD<f32>> {
    let mut state = WeightSet::new();
    for node in &g.nodes {
        if let Op::Input { name, role, .. } = &node.op {
            if role.is_state() {
                state.insert(name.clone(), inputs[name].clone());
            }
        }
    }
    let mut exe = Cpu.instantiate(state);
    let e = exe.compile(g).unwrap();
    let feeds = exe
        .fed_inputs(e)
        .iter()
        .map(|f| (f.handle, inputs[&f.name].clone()))
        .collect();
    exe.run(e, feeds, seed).unwrap();
    g.outputs
        .iter()
        .map(|(o, _)| (o.name(), exe.read(e, o).unwrap()))
        .collect()
}

fn compare(what: &str, g: &Graph, seed: u64) {
    let inputs = common::inputs_for(g, seed);
    let expected = reference::run::<f32>(g, &inputs, seed).unwrap();
    let got = run_cpu(g, &inputs, seed);
    common::assert_outputs_close(what, g, &got, &expected);
}

fn single_op(op: &Op, shapes: &[Vec<usize>]) -> Graph {
    let mut g = Graph::new("op", nnc::ir::Mode::Train);
    let args: Vec<_> = shapes
        .iter()
        .enumerate()
        .map(|(i, s)| g.input(&format!("x{i}"), Role::Data, s.clone(), ""))
        .collect();
    let y = g.add(op.clone(), &args, "");
    g.set_output(Output::Named("y".into()), y);
    g
}

#[test]
fn every_op_alone_matches_the_reference() {
    for (op, shapes, _) in nnc::ir::catalogue::examples() {
        if matches!(op, Op::Input { .. }) {
            continue;
        }
        compare(&format!("{op:?}"), &single_op(&op, &shapes), 7);
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
