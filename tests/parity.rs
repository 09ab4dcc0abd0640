//! Parity with PyTorch from the committed fixtures of
//! scripts/make_fixtures.py: forward within 1e-4 of the largest output,
//! gradients within 1e-3, on the reference executor (and ResNet-18's
//! logits on the cpu backend too).

mod common;

use common::*;
use nnc::ir::Mode;

#[test]
fn generators_agree_with_the_fixture_script() {
    let f = read_fixture("resnet18_eval.safetensors");
    let x = fixture_tensor("input", &[2, 3, 64, 64]);
    assert_eq!(f["input"], x, "Rust and Python fixture generators differ");
}

#[test]
fn torchvision_resnet18_eval_logits() {
    let f = read_fixture("resnet18_eval.safetensors");
    let loaded = load("std::resnet18", None, &[2, 3, 64, 64]);
    let g = loaded.lower(Mode::Infer).unwrap();
    let mut inputs = fixture_weights(&g);
    inputs.insert("x".into(), f["input"].clone());
    let out = nnc::backend::reference::run::<f32>(&g, &inputs, 0).unwrap();
    let err = relative_error(&out["logits"], &f["logits"]);
    eprintln!("resnet18 eval logits: relative error {err:e}");
    assert!(
        err <= 1e-4,
        "ResNet-18 logits differ from PyTorch by {err:e} (relative)"
    );
    let out = run_cpu(&g, &inputs, 0);
    let err = relative_error(&out["logits"], &f["logits"]);
    eprintln!("resnet18 eval logits, cpu backend: relative error {err:e}");
    assert!(
        err <= 1e-4,
        "ResNet-18 logits on the cpu backend differ from PyTorch by {err:e} (relative)"
    );
}

/// One training step: loss, every parameter gradient and the updated
/// running statistics against PyTorch. The reference executor runs in f64
/// here: the gradient of a bias followed by batch norm is zero in exact
/// arithmetic, and in f32 both sides only compute rounding noise there.
fn check_training(model: &str, fixture: &str, input: &[usize]) {
    use nnc::backend::reference::{cast, run};
    let f = read_fixture(fixture);
    let loaded = load(model, None, input);
    let g = loaded.lower(Mode::Train).unwrap();
    let mut inputs = fixture_weights(&g);
    inputs.insert("x".into(), f["input"].clone());
    inputs.insert("target".into(), f["target"].clone());
    let inputs64 = inputs
        .iter()
        .map(|(k, v)| (k.clone(), cast::<f32, f64>(v)))
        .collect();
    let out64 = run::<f64>(&g, &inputs64, 0).unwrap();
    let out: std::collections::HashMap<String, ndarray::ArrayD<f32>> = out64
        .iter()
        .map(|(k, v)| (k.clone(), cast::<f64, f32>(v)))
        .collect();
    let mut checked = 0;
    let mut worst = (0.0f64, String::new());
    let mut failures = Vec::new();
    for (name, expected) in &f {
        let (tolerance, key) = if name.starts_with("grad:") || name.starts_with("update:") {
            (1e-3, name.clone())
        } else if name == "loss" || name == "logits" {
            (1e-4, name.clone())
        } else {
            continue;
        };
        let Some(actual) = out.get(&key) else {
            failures.push(format!("nnc computes no `{key}`"));
            continue;
        };
        let expected = if name == "loss" {
            expected
                .clone()
                .into_shape_with_order(ndarray::IxDyn(&[]))
                .unwrap()
        } else {
            expected.clone()
        };
        let err = relative_error(actual, &expected);
        if err > worst.0 {
            worst = (err, key.clone());
        }
        if err > tolerance {
            failures.push(format!("{key}: relative error {err:e} > {tolerance:e}"));
        }
        checked += 1;
    }
    eprintln!(
        "{model}: {checked} tensors, worst relative error {:e} ({})",
        worst.0, worst.1
    );
    assert!(failures.is_empty(), "{model}:\n{}", failures.join("\n"));
    let grads = out.keys().filter(|k| k.starts_with("grad:")).count();
    assert!(checked > grads, "checked only {checked} tensors");
}

#[test]
fn d2l_lenet_bn_training_step() {
    check_training(
        "examples/lenet.nn",
        "lenet_bn_train.safetensors",
        &[8, 1, 28, 28],
    );
}

#[test]
fn small_residual_network_training_step() {
    check_training(
        "tests/fixtures/small_resnet.nn",
        "small_resnet_train.safetensors",
        &[4, 3, 16, 16],
    );
}

/// `model`'s `state_dict` keys with their shapes, in order, against
/// PyTorch's (`[[key, shape], ...]`), and its logits on `x` with fixture
/// weights, on the cpu backend, within 1e-4 of PyTorch's.
fn keys_and_logits(
    model: &str,
    x: &ndarray::ArrayD<f32>,
    keys: &serde_json::Value,
    logits: &ndarray::ArrayD<f32>,
) {
    let loaded = load(model, None, x.shape());
    let ours: Vec<serde_json::Value> = loaded
        .model
        .tensors()
        .map(|p| serde_json::json!([p.name, p.shape]))
        .collect();
    assert_eq!(
        &ours,
        keys.as_array().unwrap(),
        "{model}: state_dict keys or shapes"
    );
    let g = loaded.lower(Mode::Infer).unwrap();
    let mut inputs = fixture_weights(&g);
    inputs.insert("x".into(), x.clone());
    let out = run_cpu(&g, &inputs, 0);
    let err = relative_error(&out["logits"], logits);
    eprintln!("{model} eval logits, cpu backend: relative error {err:e}");
    assert!(
        err <= 1e-4,
        "{model}: logits differ from PyTorch by {err:e} (relative)"
    );
}

/// The torchvision families of the standard library beyond ResNet-18
/// (`ZOO` in scripts/make_fixtures.py): every `state_dict` key of
/// torchvision's model with its shape, and the logits of one small input
/// on random weights.
#[test]
fn torchvision_families_have_its_keys_and_logits() {
    use std::io::Read as _;
    let f = read_fixture("zoo_eval.safetensors");
    let x = fixture_tensor("zoo_input", &[1, 3, 32, 32]);
    assert_eq!(f["input"], x, "Rust and Python fixture generators differ");
    let mut text = String::new();
    flate2::read::GzDecoder::new(std::fs::File::open("tests/fixtures/zoo_keys.json.gz").unwrap())
        .read_to_string(&mut text)
        .unwrap();
    let keys: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(keys.len(), 13);
    for (name, expected) in &keys {
        keys_and_logits(
            &format!("std::{name}"),
            &x,
            expected,
            &f[&format!("{name}:logits")],
        );
    }
}

/// D2L's networks (examples/NAME.nn) against the book's own PyTorch code
/// (`D2L` in scripts/make_fixtures.py): its keys and shapes, and its logits
/// on random weights. They use every naming form: unnamed stages
/// (`0.0.weight`), `as` names (GoogLeNet's `b2_1`), computed names
/// (DenseNet's `dense_blk{i+1}`), and DenseNet's statement loop threading
/// `X = cat(X, blk(X))`.
#[test]
fn d2l_networks_have_the_books_keys_and_logits() {
    let f = read_fixture("d2l_eval.safetensors");
    let text = std::fs::read_to_string("tests/fixtures/d2l_keys.json").unwrap();
    let keys: serde_json::Map<String, serde_json::Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(keys.len(), 3);
    for (name, expected) in &keys {
        let side = if name == "nin" { 224 } else { 96 };
        let x = fixture_tensor(&format!("d2l_{name}_input"), &[1, 1, side, side]);
        keys_and_logits(
            &format!("examples/{name}.nn"),
            &x,
            expected,
            &f[&format!("{name}:logits")],
        );
    }
}
