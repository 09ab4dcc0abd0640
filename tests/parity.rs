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
