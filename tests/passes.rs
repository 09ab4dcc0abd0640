//! Graph passes: before/after IR text for each case in `tests/passes/`
//! (`NAME.ir`, expected `NAME.out.ir`; the first line names the passes;
//! `NNC_BLESS=1 cargo test --test passes` rewrites the expectations), and on
//! every example network the outputs before and after are bit-identical.

mod common;

use nnc::ir::{text, Graph, Mode, Role};
use nnc::passes::{self, Pass};
use std::collections::HashMap;

fn run_passes(g: &mut Graph, names: &str) {
    for name in names.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let pass = Pass::from_name(name).unwrap_or_else(|| panic!("unknown pass `{name}`"));
        pass.run(g);
    }
}

#[test]
fn before_and_after_text() {
    let bless = std::env::var_os("NNC_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir("tests/passes")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let name = p.to_string_lossy();
            name.ends_with(".ir") && !name.ends_with(".out.ir") && !name.ends_with(".fusion.ir")
        })
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for path in &cases {
        let source = std::fs::read_to_string(path).unwrap();
        let names = source
            .lines()
            .next()
            .and_then(|l| l.strip_prefix("// passes:"))
            .unwrap_or_else(|| panic!("{} must start with `// passes: ...`", path.display()));
        let mut g = text::parse(&source).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        run_passes(&mut g, names);
        nnc::ir::verify::verify(&g).unwrap();
        let got = text::print(&g);
        let expected_path = path.with_extension("out.ir");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(format!("{}:\n{got}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "after the passes (NNC_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}

/// Random inputs for every input of a graph, the same for the same name.
fn inputs(g: &Graph) -> HashMap<String, ndarray::ArrayD<f64>> {
    let mut out = HashMap::new();
    for role in [Role::Data, Role::Target, Role::Parameter, Role::Buffer] {
        for (id, name) in g.inputs(role) {
            let shape = g.shape(id).to_vec();
            let n: usize = shape.iter().product();
            let values: Vec<f64> = common::uniform(name, n)
                .into_iter()
                .map(|u| {
                    if role == Role::Buffer {
                        u + 0.5
                    } else {
                        u * 2.0 - 1.0
                    }
                })
                .collect();
            out.insert(
                name.to_string(),
                ndarray::ArrayD::from_shape_vec(shape, values).unwrap(),
            );
        }
    }
    out
}

#[test]
fn passes_keep_every_output_bit_for_bit() {
    for (model, network, input) in [
        ("examples/lenet.nn", None, vec![3, 1, 28, 28]),
        ("tests/fixtures/tiny_train.nn", None, vec![2, 1, 28, 28]),
        ("tests/fixtures/small_resnet.nn", None, vec![2, 3, 16, 16]),
    ] {
        let loaded = common::load(model, network, &input);
        for mode in [Mode::Infer, Mode::Train] {
            let g = loaded.lower(mode).unwrap();
            let mut optimized = g.clone();
            let merged = Pass::Cse.run(&mut optimized);
            let removed = Pass::Dce.run(&mut optimized);
            assert_eq!(
                merged, removed,
                "{model}: cse leaves exactly its duplicates dead"
            );
            let feed = inputs(&g);
            let a = nnc::backend::reference::run::<f64>(&g, &feed, 3).unwrap();
            let b = nnc::backend::reference::run::<f64>(&optimized, &feed, 3).unwrap();
            assert_eq!(a.len(), b.len());
            for (name, value) in &a {
                let bits =
                    |t: &ndarray::ArrayD<f64>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
                assert!(
                    bits(value) == bits(&b[name]),
                    "{model} {mode:?}: `{name}` changed"
                );
            }
            assert_eq!(
                g.inputs(Role::Parameter).count(),
                optimized.inputs(Role::Parameter).count(),
                "inputs stay"
            );
        }
    }
}

/// Batch-norm folding changes rounding, not values: on the inference
/// graphs of the examples, with random weights and statistics, the folded
/// graph's outputs agree with the unfolded ones in f64 to 1e-10 (relative
/// to the output's largest magnitude).
#[test]
fn batch_norm_folding_keeps_the_outputs() {
    for (model, input, folds) in [
        ("examples/lenet.nn", vec![3, 1, 28, 28], 2),
        ("tests/fixtures/small_resnet.nn", vec![2, 3, 16, 16], 6),
    ] {
        let loaded = common::load(model, None, &input);
        let g = loaded.lower(Mode::Infer).unwrap();
        let mut folded = g.clone();
        assert_eq!(Pass::FoldBatchNorm.run(&mut folded), folds, "{model}");
        Pass::Dce.run(&mut folded);
        let convolutions = |g: &Graph| g.nodes.iter().filter(|n| n.op.name() == "conv2d").count();
        assert_eq!(convolutions(&g), convolutions(&folded), "{model}");
        let feed = inputs(&g);
        let a = nnc::backend::reference::run::<f64>(&g, &feed, 3).unwrap();
        let b = nnc::backend::reference::run::<f64>(&folded, &feed, 3).unwrap();
        for (name, value) in &a {
            let scale = value.iter().fold(1e-30f64, |m, v| m.max(v.abs()));
            let worst = value
                .iter()
                .zip(b[name].iter())
                .map(|(x, y)| (x - y).abs() / scale)
                .fold(0.0, f64::max);
            assert!(worst < 1e-10, "{model}: `{name}` moved by {worst:e}");
        }
    }
}

#[test]
fn use_lists_and_replacing_uses() {
    let mut g = text::parse(
        "graph g mode=infer {\n  %0 = input name=\"x\" role=\"data\" : f32[2]\n  %1 = exp(%0) : f32[2]\n  %2 = exp(%0) : f32[2]\n  %3 = add(%1, %2) : f32[2]\n  output \"y\" = %2\n}\n",
    )
    .unwrap();
    let users = passes::users(&g);
    assert_eq!(users[0].len(), 2);
    assert_eq!(users[2], vec![nnc::ir::NodeId(3)]);
    passes::replace_all_uses(&mut g, nnc::ir::NodeId(2), nnc::ir::NodeId(1));
    assert_eq!(
        g.nodes[3].args,
        vec![nnc::ir::NodeId(1), nnc::ir::NodeId(1)]
    );
    assert_eq!(g.outputs[0].1, nnc::ir::NodeId(1));
    assert!(passes::users(&g)[2].is_empty());
}

/// Memory planning: values that are not alive at once share buffers, and
/// no plan ever puts two live values in one buffer.
#[test]
fn memory_plans_reuse_buffers_and_stay_valid() {
    use nnc::passes::memory;
    // A chain: each value dies when the next is computed, so two buffers
    // of 8 bytes take turns.
    let chain = text::parse(
        "graph g mode=infer {\n  %0 = input name=\"x\" role=\"data\" : f32[2]\n  %1 = exp(%0) : f32[2]\n  %2 = log(%1) : f32[2]\n  %3 = neg(%2) : f32[2]\n  %4 = relu(%3) : f32[2]\n  output \"y\" = %4\n}\n",
    )
    .unwrap();
    let p = memory::plan(&chain);
    memory::check(&chain, &p).unwrap();
    assert_eq!(
        (p.buffers.len(), p.peak_bytes, p.live_bytes, p.total_bytes),
        (2, 16, 16, 32)
    );
    assert_eq!(p.buffer_of[0], None, "inputs are not planned");
    // The checker catches a plan that puts two live values in one buffer.
    let mut bad = p.clone();
    bad.buffer_of = vec![None, Some(0), Some(0), Some(1), Some(0)];
    assert!(memory::check(&chain, &bad).is_err());
    // Every lowered graph of the examples: valid, and never worse than no
    // reuse.
    for (model, input) in [
        ("examples/lenet.nn", vec![8, 1, 28, 28]),
        ("tests/fixtures/small_resnet.nn", vec![2, 3, 16, 16]),
    ] {
        let loaded = common::load(model, None, &input);
        for g in [
            loaded.lower(Mode::Infer).unwrap(),
            loaded.lower_step().unwrap(),
        ] {
            let p = memory::plan(&g);
            memory::check(&g, &p).unwrap_or_else(|e| panic!("{model}: {e}"));
            assert!(
                p.live_bytes <= p.peak_bytes && p.peak_bytes < p.total_bytes,
                "{model}: {p:?}"
            );
        }
    }
}

/// Fusion plans: `tests/passes/NAME.fusion.ir` with the expected
/// `--explain` text in `NAME.fusion.txt` (`NNC_BLESS=1` rewrites it).
#[test]
fn fusion_plans_as_text() {
    let bless = std::env::var_os("NNC_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir("tests/passes")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".fusion.ir"))
        .collect();
    cases.sort();
    assert!(!cases.is_empty());
    let mut failures = Vec::new();
    for path in &cases {
        let g = text::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        let plan = nnc::passes::fusion::plan(&g);
        let got = nnc::passes::fusion::explain(&g, &plan);
        let expected_path = path.with_extension("txt");
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
        }
        if std::fs::read_to_string(&expected_path).unwrap_or_default() != got {
            failures.push(format!("{}:\n{got}", path.display()));
        }
    }
    assert!(
        failures.is_empty(),
        "(NNC_BLESS=1 to accept)\n{}",
        failures.join("\n")
    );
}

/// Every op of a real training step is planned into exactly one kernel
/// or recomputed by its readers, a kernel's values other than its last are
/// read only inside it, and a recomputed value is neither an output nor
/// read by a contraction (which reads its operands from memory).
#[test]
fn fusion_keeps_fused_values_private() {
    let loaded = common::load("tests/fixtures/small_resnet.nn", None, &[2, 3, 16, 16]);
    for g in [
        loaded.lower(Mode::Infer).unwrap(),
        loaded.lower_step().unwrap(),
    ] {
        let plan = nnc::passes::fusion::plan(&g);
        let users = passes::users(&g);
        let outputs: std::collections::HashSet<_> = g.outputs.iter().map(|(_, id)| *id).collect();
        for (k, kernel) in plan.kernels.iter().enumerate() {
            for id in &kernel.nodes {
                assert_eq!(plan.kernel_of[id.0 as usize], Some(k));
            }
            // A value consumed inside the kernel stays there.
            for id in &kernel.nodes {
                let inside = users[id.0 as usize]
                    .iter()
                    .any(|u| plan.kernel_of[u.0 as usize] == Some(k));
                if inside {
                    assert!(!outputs.contains(id), "{id} is fused but an output");
                    assert_eq!(
                        users[id.0 as usize].len(),
                        1,
                        "{id} is fused but read twice"
                    );
                }
            }
        }
        for (i, n) in g.nodes.iter().enumerate() {
            let leaf = matches!(n.op, nnc::ir::Op::Input { .. } | nnc::ir::Op::Const { .. });
            let again = plan.recompute[i];
            assert!(!(leaf && again), "%{i}");
            assert_eq!(plan.kernel_of[i].is_none(), leaf || again, "%{i}");
            if again {
                assert!(!outputs.contains(&nnc::ir::NodeId(i as u32)), "%{i}");
                for u in &users[i] {
                    let class = g.nodes[u.0 as usize].op.class();
                    assert_ne!(class, nnc::ir::ops::OpClass::Contraction, "%{i}");
                }
            }
        }
        assert!(plan.recompute.iter().any(|&r| r), "nothing was recomputed");
    }
}
