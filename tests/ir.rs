//! The IR's text form, verifier and Graphviz output; weights and arrays in
//! and out; initialization.

mod common;

use nnc::ir::{text, verify, Graph, Mode, Op, Role};
use nnc::weights::{npy, safetensors as st, WeightSet};
use std::path::PathBuf;

fn models() -> Vec<(&'static str, Option<&'static str>, Vec<usize>)> {
    vec![
        ("std::resnet50", None, vec![1, 3, 64, 64]),
        ("std::alexnet", None, vec![1, 3, 224, 224]),
        ("std::vgg11", None, vec![1, 3, 32, 32]),
        ("examples/lenet.nn", None, vec![2, 1, 28, 28]),
        ("examples/transfer.nn", Some("fashion"), vec![2, 1, 28, 28]),
        ("tests/fixtures/small_resnet.nn", None, vec![2, 3, 16, 16]),
    ]
}

#[test]
fn text_round_trips_for_every_model_and_mode() {
    for (model, network, input) in models() {
        let loaded = common::load(model, network, &input);
        for mode in [Mode::Infer, Mode::Train] {
            let g = loaded.lower(mode).unwrap();
            verify::verify(&g).unwrap_or_else(|p| panic!("{model}: {p:?}"));
            let printed = text::print(&g);
            let parsed = text::parse(&printed).unwrap_or_else(|e| panic!("{model} {mode:?}: {e}"));
            assert_eq!(parsed, g, "{model} {mode:?} does not round-trip");
            assert_eq!(text::print(&parsed), printed);
        }
    }
}

#[test]
fn a_handwritten_graph_parses_and_runs() {
    let source = "
        // y = relu(x @ w^T + b)
        graph tiny mode=infer {
          %0 = input name=\"x\" role=\"data\" : f32[2, 3]
          %1 = input name=\"w\" role=\"param\" : f32[4, 3]
          %2 = input name=\"b\" role=\"param\" : f32[4]
          %3 = matmul(%0, %1) trans_a=false trans_b=true : f32[2, 4] @fc
          %4 = add(%3, %2) : f32[2, 4] @fc
          %5 = relu(%4) : f32[2, 4]
          output \"y\" = %5
        }";
    let g = text::parse(source).unwrap();
    verify::verify(&g).unwrap();
    let mut inputs = std::collections::HashMap::new();
    inputs.insert(
        "x".to_string(),
        ndarray::ArrayD::<f32>::ones(ndarray::IxDyn(&[2, 3])),
    );
    inputs.insert(
        "w".to_string(),
        ndarray::ArrayD::<f32>::from_elem(ndarray::IxDyn(&[4, 3]), -1.0),
    );
    inputs.insert(
        "b".to_string(),
        ndarray::ArrayD::<f32>::from_elem(ndarray::IxDyn(&[4]), 5.0),
    );
    let y = nnc::backend::reference::run(&g, &inputs, 0).unwrap();
    assert!(y["y"].iter().all(|&v| v == 2.0));
}

#[test]
fn the_parser_rejects_ill_typed_and_malformed_text() {
    let cases = [
        ("graph g mode=infer {\n %0 = input name=\"x\" role=\"data\" : f32[2]\n %1 = relu(%0) : f32[3]\n}", "the op gives"),
        ("graph g mode=infer {\n %0 = relu(%1) : f32[3]\n}", "not defined before its use"),
        ("graph g mode=infer {\n %0 = frobnicate : f32[3]\n}", "unknown op"),
        ("graph g mode=infer {\n %0 = input name=\"x\" role=\"data\" : f32[2]\n", "missing closing"),
        ("graph g mode=sideways {\n}", "unknown mode"),
        ("graph g mode=infer {\n %1 = const value=1.0 : f32[]\n}", "expected %0"),
    ];
    for (src, expected) in cases {
        let err = text::parse(src).unwrap_err();
        assert!(err.message.contains(expected), "{src:?}: {err}");
    }
}

#[test]
fn the_verifier_reports_every_broken_invariant() {
    let mut g = Graph::new("g", Mode::Infer);
    let x = g.input("x", Role::Data, vec![2, 2], "");
    let y = g.add(Op::Unary(nnc::ir::UnaryFn::Relu), &[x], "");
    g.output("y", y);
    verify::verify(&g).unwrap();
    let mut bad = g.clone();
    bad.nodes[1].ty.shape = vec![3];
    bad.nodes.push(bad.nodes[0].clone());
    bad.nodes[1].args = vec![nnc::ir::NodeId(1)];
    bad.output("y", nnc::ir::NodeId(99));
    let problems = verify::verify(&bad).unwrap_err();
    let all = problems.join("\n");
    for expected in ["not defined before it", "declared twice", "does not exist"] {
        assert!(all.contains(expected), "missing `{expected}` in:\n{all}");
    }
}

#[test]
fn dot_draws_blocks_as_nested_clusters() {
    let loaded = common::load("std::resnet50", None, &[1, 3, 224, 224]);
    let dot = nnc::ir::dot::print(&loaded.lower(Mode::Infer).unwrap());
    assert!(dot.starts_with("digraph"));
    assert!(dot.contains("label=\"layer3\""), "no layer3 cluster");
    assert!(
        dot.contains("label=\"downsample\""),
        "no nested downsample cluster"
    );
    assert!(!dot.contains("conv1.weight"), "parameters should be hidden");
    let opens = dot.matches('{').count();
    assert_eq!(opens, dot.matches('}').count(), "unbalanced braces");
}

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("nnc-ir-test-{}-{name}", std::process::id()))
}

#[test]
fn safetensors_round_trip_and_every_problem_at_once() {
    let loaded = common::load("examples/lenet.nn", None, &[1, 1, 28, 28]);
    let g = loaded.lower(Mode::Infer).unwrap();
    let weights = nnc::weights::init::initialize(&loaded.model, 1);
    let path = temp("lenet.safetensors");
    st::save(&path, &weights).unwrap();
    assert_eq!(st::load_for(&path, &g).unwrap(), weights);

    // A missing key, an unexpected one and a wrong shape, all reported.
    let mut broken: WeightSet = weights.clone();
    broken.remove("0.weight");
    broken.insert(
        "extra.weight".into(),
        ndarray::ArrayD::zeros(ndarray::IxDyn(&[2])),
    );
    broken.insert(
        "15.bias".into(),
        ndarray::ArrayD::zeros(ndarray::IxDyn(&[11])),
    );
    broken.insert(
        "1.num_batches_tracked".into(),
        ndarray::ArrayD::zeros(ndarray::IxDyn(&[])),
    );
    st::save(&path, &broken).unwrap();
    let err = st::load_for(&path, &g).unwrap_err();
    let text = err.problems.join("\n");
    assert_eq!(err.problems.len(), 3, "{text}");
    assert!(text.contains("missing `0.weight` [6, 1, 5, 5]"), "{text}");
    assert!(text.contains("unexpected `extra.weight`"), "{text}");
    assert!(
        text.contains("`15.bias` has shape [11], but the model needs [10]"),
        "{text}"
    );

    // Truncated and corrupt files are errors that name the file.
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    let err = st::read(&path).unwrap_err();
    assert!(
        err.to_string().contains(&path.display().to_string())
            && err.to_string().contains("not a valid safetensors"),
        "{err}"
    );
    std::fs::write(&path, b"garbage").unwrap();
    assert!(st::read(&path).is_err());
    let _ = std::fs::remove_file(&path);
}

#[test]
fn safetensors_of_other_dtypes_are_rejected_by_name() {
    use safetensors::tensor::{serialize, Dtype, TensorView};
    let data = [0u8; 8];
    let view = TensorView::new(Dtype::F64, vec![1], &data).unwrap();
    let bytes = serialize(vec![("w", view)], None).unwrap();
    let err = st::parse(&bytes).unwrap_err();
    assert!(err[0].contains("`w` is F64"), "{err:?}");
}

/// `bytes` with the first `from` replaced by `to` (of the same length).
fn replace(bytes: &[u8], from: &[u8], to: &[u8]) -> Vec<u8> {
    let at = bytes
        .windows(from.len())
        .position(|w| w == from)
        .expect("pattern present");
    let mut out = bytes.to_vec();
    out[at..at + to.len()].copy_from_slice(to);
    out
}

#[test]
fn npy_round_trip_and_clear_rejections() {
    let a = ndarray::ArrayD::from_shape_vec(
        ndarray::IxDyn(&[2, 3]),
        vec![1.0f32, 2.0, 3.0, 4.0, 5.0, 6.0],
    )
    .unwrap();
    let bytes = npy::to_bytes(&a);
    // The header pads the data to a 64-byte boundary; 6 floats follow.
    assert_eq!(
        (bytes.len() - 6 * 4) % 64,
        0,
        "data should start on a 64-byte boundary"
    );
    assert_eq!(npy::parse(&bytes).unwrap(), a);
    // float64 files say what they hold and how to convert.
    let err = npy::parse(&replace(&bytes, b"<f4", b"<f8")).unwrap_err();
    assert!(
        err.contains("float64") && err.contains("astype(np.float32)"),
        "{err}"
    );
    assert!(npy::parse(b"not numpy at all")
        .unwrap_err()
        .contains("bad magic"));
    assert!(npy::parse(&bytes[..bytes.len() - 4])
        .unwrap_err()
        .contains("truncated"));
    // Fortran order is read correctly.
    let fortran = replace(&bytes, b"False", b"True ");
    let mut f = fortran[..fortran.len() - 24].to_vec();
    for v in [1.0f32, 4.0, 2.0, 5.0, 3.0, 6.0] {
        f.extend_from_slice(&v.to_le_bytes());
    }
    assert_eq!(npy::parse(&f).unwrap(), a);
}

#[test]
fn initialization_follows_pytorch_defaults() {
    let loaded = common::load("std::resnet18", None, &[1, 3, 224, 224]);
    let w = nnc::weights::init::initialize(&loaded.model, 42);
    // Kaiming-uniform with a = sqrt(5): bound 1 / sqrt(fan_in).
    let conv1 = &w["conv1.weight"];
    let bound = 1.0 / (3.0f32 * 7.0 * 7.0).sqrt();
    assert!(conv1.iter().all(|v| v.abs() <= bound));
    assert!(
        conv1.iter().any(|v| v.abs() > 0.9 * bound),
        "samples should fill the range"
    );
    let fc_bias = &w["fc.bias"];
    assert!(fc_bias.iter().all(|v| v.abs() <= 1.0 / 512f32.sqrt()));
    assert!(w["bn1.weight"].iter().all(|&v| v == 1.0));
    assert!(w["bn1.bias"].iter().all(|&v| v == 0.0));
    assert!(w["layer1.0.bn1.running_var"].iter().all(|&v| v == 1.0));
    assert!(w["layer1.0.bn1.running_mean"].iter().all(|&v| v == 0.0));
    assert!(!w.contains_key("bn1.num_batches_tracked"));
    // Seeded: the same seed gives the same weights, another seed others.
    assert_eq!(
        nnc::weights::init::initialize(&loaded.model, 42)["conv1.weight"],
        *conv1
    );
    assert_ne!(
        nnc::weights::init::initialize(&loaded.model, 43)["conv1.weight"],
        *conv1
    );
    // Every parameter and buffer the graph takes is initialized, with its shape.
    let g = loaded.lower(Mode::Infer).unwrap();
    assert!(st::check_against(&w, &g).is_empty());
}

/// A training section's `initializer` draws convolution and linear weights
/// with PyTorch's formulas (D2L's `init_cnn` is `xavier_uniform`), and
/// leaves biases and batch norms at PyTorch's defaults.
#[test]
fn initializers_draw_weights_with_pytorchs_formulas() {
    let source = "network n {\n    input x: [N, 3, 8, 8]\n    return x -> conv2d(16, 3) -> batch_norm -> relu -> flatten -> linear(10)\n}\ntrain {\n    data = mnist()\n    initializer = INIT\n}\n";
    let (_, checked) = nnc::driver::check_bytes(
        "t.nn",
        source
            .replace("INIT", "kaiming_normal(mode=fan_out)")
            .into_bytes(),
    );
    assert!(checked.diags.is_empty(), "{:?}", checked.diags);
    let initializer = checked.trains[0].initializer;
    assert_eq!(
        initializer,
        nnc::check::train::Initializer::KaimingNormal {
            fan: nnc::check::train::Fan::Out
        }
    );
    let dir = std::env::temp_dir().join(format!("nnc-initializer-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = dir.join("n.nn");
    std::fs::write(&file, source).unwrap();
    let loaded = common::load(file.to_str().unwrap(), None, &[2, 3, 8, 8]);
    std::fs::remove_dir_all(&dir).unwrap();
    let w = nnc::weights::init::initialize_with(&loaded.model, 1, initializer);
    let std = |name: &str| {
        let v = &w[name];
        let n = v.len() as f64;
        (v.iter().map(|&x| f64::from(x).powi(2)).sum::<f64>() / n).sqrt()
    };
    // conv: fan_out 16 * 3 * 3; linear [10, 16 * 6 * 6]: fan_out 10.
    let conv = std("0.weight");
    assert!((conv / (2.0f64 / 144.0).sqrt() - 1.0).abs() < 0.1, "{conv}");
    let fc = std("4.weight");
    assert!((fc / (2.0f64 / 10.0).sqrt() - 1.0).abs() < 0.05, "{fc}");
    // Biases keep PyTorch's bound, batch norms their constants.
    assert!(w["0.bias"].iter().all(|v| v.abs() <= 1.0 / 27f32.sqrt()));
    assert!(w["1.weight"].iter().all(|&v| v == 1.0));
    // Xavier-uniform with a gain: within, and filling, gain * sqrt(6 / (fan_in + fan_out)).
    let w = nnc::weights::init::initialize_with(
        &loaded.model,
        1,
        nnc::check::train::Initializer::XavierUniform { gain: 2.0 },
    );
    let bound = 2.0 * (6.0f32 / (27.0 + 144.0)).sqrt();
    assert!(w["0.weight"].iter().all(|v| v.abs() <= bound));
    assert!(w["0.weight"].iter().any(|v| v.abs() > 0.9 * bound));
}

/// Sizes in IR text are untrusted: window arithmetic that overflows is an
/// answer of "no such window", never a panic or a wrapped size.
#[test]
fn window_sizes_never_overflow() {
    use nnc::ir::ops::window_out;
    assert_eq!(window_out(28, 5, 1, [2, 2], 1, false), Some(28));
    assert_eq!(window_out(usize::MAX, 3, 1, [1, 1], 1, false), None);
    assert_eq!(window_out(32, 3, 1, [0, 0], usize::MAX, false), None);
    assert_eq!(window_out(32, 0, 1, [0, 0], 1, false), None);
    assert_eq!(
        window_out(usize::MAX - 1, 1, usize::MAX, [0, 1], 1, true),
        Some(1)
    );
}

/// Found by the `ir_text` fuzz target: names with control characters did
/// not survive a print and a parse (the printer escapes as Rust's `{:?}`).
#[test]
fn names_with_control_characters_round_trip() {
    let mut g = nnc::ir::Graph::new("g\u{1}", nnc::ir::Mode::Infer);
    let x = g.input(
        "a\0b\u{7f}\"\\\u{202e}",
        nnc::ir::Role::Data,
        vec![2],
        "s\tc\r",
    );
    g.output("out\0", x);
    let text = nnc::ir::text::print(&g);
    let back = nnc::ir::text::parse(&text).unwrap();
    assert_eq!(back, g);
    assert_eq!(nnc::ir::text::print(&back), text);
}

/// Frozen layers are lowered in evaluation mode inside a training graph,
/// and the graph says which, in memory and in its text form.
#[test]
fn a_training_graph_names_its_frozen_layers() {
    let loaded = common::load(
        "tests/fixtures/tiny_transfer.nn",
        Some("target"),
        &[2, 1, 28, 28],
    );
    let g = loaded.lower(nnc::ir::Mode::Train).unwrap();
    assert_eq!(
        g.eval_layers,
        vec!["backbone.0".to_string(), "backbone.1".to_string()]
    );
    let text = nnc::ir::text::print(&g);
    assert!(
        text.starts_with("graph target mode=train eval_layers=[\"backbone.0\", \"backbone.1\"] {"),
        "{}",
        text.lines().next().unwrap()
    );
    assert_eq!(nnc::ir::text::parse(&text).unwrap(), g);
    // No running-statistics update for the frozen batch norm.
    assert!(g.find_output("update:backbone.1.running_mean").is_none());
    let inference = loaded.lower(nnc::ir::Mode::Infer).unwrap();
    assert!(inference.eval_layers.is_empty());
}

/// Names, attributes and parsing of ops are written in three places in
/// `ir/ops.rs`; for every op of the catalogue they must agree: parsing an
/// op's name and attributes gives the op back, and its class and key
/// exist (an input has no key: it is never merged).
#[test]
fn every_op_reads_back_from_its_name_and_attributes() {
    use nnc::ir::ops::{Attr, Attrs, Op};
    for (op, shapes, _) in nnc::ir::catalogue::examples() {
        let attrs = Attrs(
            op.attrs()
                .into_iter()
                .map(|(k, v): (&str, Attr)| (k.to_string(), v))
                .collect(),
        );
        let shape = match &op {
            Op::Input { shape, .. } | Op::Const { shape, .. } => shape.clone(),
            _ => shapes.first().cloned().unwrap_or_default(),
        };
        let back = Op::from_parts(op.name(), &attrs, &shape);
        assert_eq!(
            back.as_ref(),
            Some(&op),
            "`{}` does not read back",
            op.name()
        );
        let _ = op.class();
        assert_eq!(op.key().is_none(), matches!(op, Op::Input { .. }), "{op:?}");
    }
}
