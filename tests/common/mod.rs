//! Helpers shared by the integration tests.

#![allow(dead_code)]

use ndarray::{ArrayD, IxDyn};
use nnc::check::program::Program;
use nnc::check::BuildOptions;
use nnc::driver::LoadedModel;
use nnc::ir::{Graph, Op, Output, Role};
use std::collections::HashMap;

/// FNV-1a of a name: the seed of its tensor's stream.
pub fn fnv1a(name: &str) -> u64 {
    nnc::rng::name_hash(name)
}

/// `n` uniforms in [0, 1) of the stream of `name` (splitmix64), exactly as
/// scripts/make_fixtures.py computes them.
pub fn uniform(name: &str, n: usize) -> Vec<f64> {
    let mut rng = nnc::rng::Rng::new(fnv1a(name));
    (0..n).map(|_| rng.uniform()).collect()
}

/// The value the fixtures give a tensor called `name` (see
/// `fixture_tensor` in scripts/make_fixtures.py).
pub fn fixture_tensor(name: &str, shape: &[usize]) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let u = uniform(name, n);
    let v: Vec<f32> = u
        .into_iter()
        .map(|u| {
            (if name.ends_with("running_var") {
                0.5 + u
            } else if name.ends_with("running_mean") {
                0.2 * (2.0 * u - 1.0)
            } else if shape.len() >= 2 {
                (2.0 * u - 1.0) / ((n / shape[0]) as f64).sqrt()
            } else if name.ends_with("weight") {
                0.5 + u
            } else {
                0.1 * (2.0 * u - 1.0)
            }) as f32
        })
        .collect();
    ArrayD::from_shape_vec(IxDyn(shape), v).unwrap()
}

/// Fixture values for every parameter and buffer input of a graph.
pub fn fixture_weights(g: &Graph) -> HashMap<String, ArrayD<f32>> {
    let mut out = HashMap::new();
    for role in [Role::Parameter, Role::Buffer] {
        for (id, name) in g.inputs(role) {
            out.insert(name.to_string(), fixture_tensor(name, g.shape(id)));
        }
    }
    out
}

pub fn load(model: &str, network: Option<&str>, input: &[usize]) -> LoadedModel {
    let mut prog = Program::new();
    let options = BuildOptions {
        input_shape: Some(input.iter().map(|&d| d as i64).collect()),
        params: Vec::new(),
    };
    match nnc::driver::load_model(&mut prog, model, network, &options) {
        Ok(l) => l,
        Err(d) => panic!(
            "{model}: {:?}",
            d.iter().map(|d| &d.message).collect::<Vec<_>>()
        ),
    }
}

/// `max |a - b| / max |b|`: the error relative to the largest expected
/// value. Tensors that are zero in exact arithmetic (the gradient of a bias
/// followed by batch norm: PyTorch computes rounding noise of 1e-9) are
/// compared against a floor of 1e-5 instead.
pub fn relative_error(a: &ArrayD<f32>, b: &ArrayD<f32>) -> f64 {
    assert_eq!(a.shape(), b.shape(), "shapes differ");
    let scale = b
        .iter()
        .fold(0f64, |m, &x| m.max((x as f64).abs()))
        .max(1e-5);
    let diff = a
        .iter()
        .zip(b.iter())
        .fold(0f64, |m, (&x, &y)| m.max((x as f64 - y as f64).abs()));
    diff / scale
}

pub fn read_fixture(name: &str) -> nnc::weights::WeightSet {
    let path = std::path::Path::new("tests/fixtures").join(name);
    nnc::weights::safetensors::read(&path).unwrap_or_else(|e| panic!("{e}"))
}

/// xorshift64*: deterministic, so a failure names a reproducible case.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

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

/// Compares a backend's outputs of `g` with the reference executor's:
/// forward values to 1e-4 relative, gradients and updates to 1e-3, per
/// output.
pub fn assert_outputs_close(
    what: &str,
    g: &Graph,
    got: &HashMap<String, ArrayD<f32>>,
    expected: &HashMap<String, ArrayD<f32>>,
) {
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

/// A graph of one op on data inputs `x0, x1, ...` of these shapes, its
/// result the output `y`.
pub fn single_op(op: &Op, shapes: &[Vec<usize>]) -> Graph {
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

/// Runs `g` on the cpu backend with the state taken from `inputs`, and
/// returns every output.
pub fn run_cpu(
    g: &Graph,
    inputs: &HashMap<String, ndarray::ArrayD<f32>>,
    seed: u64,
) -> HashMap<String, ndarray::ArrayD<f32>> {
    let mut state = nnc::weights::WeightSet::new();
    for node in &g.nodes {
        if let Op::Input { name, role, .. } = &node.op {
            if role.is_state() {
                state.insert(name.clone(), inputs[name].clone());
            }
        }
    }
    let mut exe = nnc::backend::Backend::instantiate(&nnc::backend::cpu::Cpu, state);
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

/// The networks whose forward pass and training step every backend is
/// compared on: the examples, and the parity fixtures' LeNet, residual and
/// small training networks, at small batches.
pub const NETWORKS: &[(&str, Option<&str>, &[usize])] = &[
    ("examples/lenet.nn", None, &[3, 1, 28, 28]),
    ("examples/mlp.nn", None, &[3, 1, 28, 28]),
    ("tests/fixtures/small_resnet.nn", None, &[2, 3, 16, 16]),
    ("tests/fixtures/tiny_train.nn", None, &[2, 1, 28, 28]),
];

/// Each network of `cases`, lowered for inference and as a training step:
/// `check(what, graph)` for both.
pub fn for_each_network_graph(
    cases: &[(&str, Option<&str>, &[usize])],
    mut check: impl FnMut(&str, &Graph),
) {
    for &(model, network, shape) in cases {
        let loaded = load(model, network, shape);
        check(
            &format!("{model} infer"),
            &loaded.lower(nnc::ir::Mode::Infer).unwrap(),
        );
        check(&format!("{model} step"), &loaded.lower_step().unwrap());
    }
}

/// A program found on the `PATH` (an editor the editor tests drive).
pub fn on_path(program: &str) -> Option<std::path::PathBuf> {
    let paths = std::env::var_os("PATH")?;
    std::env::split_paths(&paths)
        .map(|p| p.join(program))
        .find(|p| p.is_file())
}

/// The `PATH` with the `nnc` under test first, for editors that start
/// `nnc lsp` by name.
pub fn path_with_nnc() -> std::ffi::OsString {
    let bin = std::path::Path::new(env!("CARGO_BIN_EXE_nnc"))
        .parent()
        .unwrap();
    let rest = std::env::var_os("PATH").unwrap_or_default();
    std::env::join_paths(std::iter::once(bin.to_path_buf()).chain(std::env::split_paths(&rest)))
        .unwrap()
}
