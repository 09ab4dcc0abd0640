//! `nnc summary` figures: the standard library against torchvision's
//! parameter counts and multiply-accumulates, and the per-layer shapes of
//! the Dive into Deep Learning examples.

use nnc::check::program::Program;
use nnc::check::value::Value;
use nnc::check::BuildOptions;
use nnc::summary::{summarize, Summary};

fn summary_of(
    model: &str,
    input: Option<Vec<i64>>,
    classes: Option<i64>,
) -> (Summary, nnc::check::model::Model) {
    let mut prog = Program::new();
    let options = BuildOptions {
        input_shape: input,
        params: classes
            .map(|k| vec![("classes".to_string(), Value::int(k))])
            .unwrap_or_default(),
    };
    let loaded = match nnc::driver::load_model(&mut prog, model, None, &options) {
        Ok(l) => l,
        Err(diags) => panic!(
            "{model} does not build: {:?}",
            diags.iter().map(|d| &d.message).collect::<Vec<_>>()
        ),
    };
    (summarize(&loaded.model, &loaded.freeze), loaded.model)
}

fn macs(s: &Summary) -> i64 {
    s.macs
        .as_ref()
        .and_then(|m| m.as_const())
        .expect("concrete MACs")
}

/// torchvision's figures at 1x3x224x224 (`torchvision.models` documents the
/// parameter counts; MACs as counted by its conv/linear convention).
#[test]
fn standard_library_matches_torchvision() {
    let table: &[(&str, u128, i64)] = &[
        ("std::alexnet", 61_100_840, 714_188_480),
        ("std::vgg11", 132_863_336, 7_609_090_048),
        ("std::vgg13", 133_047_848, 11_308_466_176),
        ("std::vgg16", 138_357_544, 15_470_264_320),
        ("std::vgg19", 143_667_240, 19_632_062_464),
        ("std::resnet18", 11_689_512, 1_814_073_344),
        ("std::resnet34", 21_797_672, 3_663_761_408),
        ("std::resnet50", 25_557_032, 4_089_184_256),
        ("std::resnet101", 44_549_160, 7_801_405_440),
        ("std::resnet152", 60_192_808, 11_513_626_624),
        ("std::vgg11_bn", 132_868_840, 7_609_090_048),
        ("std::vgg13_bn", 133_053_736, 11_308_466_176),
        ("std::vgg16_bn", 138_365_992, 15_470_264_320),
        ("std::vgg19_bn", 143_678_248, 19_632_062_464),
        ("std::resnext50_32x4d", 25_028_904, 4_230_479_872),
        ("std::resnext101_32x8d", 88_791_336, 16_414_015_488),
        ("std::wide_resnet50_2", 68_883_240, 11_398_021_120),
        ("std::wide_resnet101_2", 126_886_696, 22_753_050_624),
        ("std::googlenet", 6_624_904, 1_498_376_192),
        ("std::mobilenet_v2", 3_504_872, 300_774_272),
        ("std::densenet121", 7_978_856, 2_834_161_664),
        ("std::densenet169", 14_149_480, 3_359_843_328),
        ("std::densenet201", 20_013_928, 4_291_365_888),
    ];
    for &(name, params, expected_macs) in table {
        let (s, _) = summary_of(name, Some(vec![1, 3, 224, 224]), None);
        assert_eq!(s.total_params, params, "{name} parameters");
        assert_eq!(s.trainable_params, params, "{name} trainable parameters");
        assert_eq!(macs(&s), expected_macs, "{name} MACs");
    }
}

#[test]
fn default_input_is_the_declared_one_with_batch_one() {
    let (s, _) = summary_of("std::resnet50", None, None);
    assert_eq!(
        s.input_shape
            .iter()
            .map(|d| d.as_const().unwrap())
            .collect::<Vec<_>>(),
        [1, 3, 224, 224]
    );
    assert_eq!(macs(&s), 4_089_184_256);
}

#[test]
fn class_count_is_overridable() {
    // The 512x1000 head becomes 512x10.
    let (s, _) = summary_of("std::resnet18", None, Some(10));
    assert_eq!(s.total_params, 11_689_512 - 513 * 1000 + 513 * 10);
    let (s, _) = summary_of("std::alexnet", None, Some(10));
    assert_eq!(s.total_params, 61_100_840 - 4097 * 1000 + 4097 * 10);
}

#[test]
fn batch_size_scales_macs() {
    let (one, _) = summary_of("std::resnet18", Some(vec![1, 3, 224, 224]), None);
    let (eight, _) = summary_of("std::resnet18", Some(vec![8, 3, 224, 224]), None);
    assert_eq!(macs(&eight), 8 * macs(&one));
    assert_eq!(one.total_params, eight.total_params);
}

/// Parameter names and shapes are torchvision's state_dict keys.
#[test]
fn parameter_names_are_torchvision_keys() {
    let shape_of = |model: &nnc::check::model::Model, key: &str| -> Option<Vec<i64>> {
        model
            .tensors()
            .find(|p| p.name == key)
            .map(|p| p.shape.clone())
    };
    let (_, m) = summary_of("std::resnet50", None, None);
    assert_eq!(shape_of(&m, "conv1.weight"), Some(vec![64, 3, 7, 7]));
    assert_eq!(
        shape_of(&m, "layer1.0.downsample.0.weight"),
        Some(vec![256, 64, 1, 1])
    );
    assert_eq!(
        shape_of(&m, "layer1.0.downsample.1.running_var"),
        Some(vec![256])
    );
    assert_eq!(
        shape_of(&m, "layer3.5.conv2.weight"),
        Some(vec![256, 256, 3, 3])
    );
    assert_eq!(shape_of(&m, "layer4.2.bn3.weight"), Some(vec![2048]));
    assert_eq!(shape_of(&m, "layer1.1.downsample.0.weight"), None);
    assert_eq!(shape_of(&m, "fc.weight"), Some(vec![1000, 2048]));
    // torchvision's resnet50 state_dict has 320 entries with num_batches_tracked.
    assert_eq!(m.tensors().count(), 320);

    let (_, m) = summary_of("std::resnet18", None, None);
    assert_eq!(m.tensors().count(), 122);
    assert_eq!(
        shape_of(&m, "layer2.0.downsample.0.weight"),
        Some(vec![128, 64, 1, 1])
    );

    let (_, m) = summary_of("std::alexnet", None, None);
    let keys: Vec<&str> = m.tensors().map(|p| p.name.as_str()).collect();
    assert_eq!(
        keys,
        [
            "features.0.weight",
            "features.0.bias",
            "features.3.weight",
            "features.3.bias",
            "features.6.weight",
            "features.6.bias",
            "features.8.weight",
            "features.8.bias",
            "features.10.weight",
            "features.10.bias",
            "classifier.1.weight",
            "classifier.1.bias",
            "classifier.4.weight",
            "classifier.4.bias",
            "classifier.6.weight",
            "classifier.6.bias",
        ]
    );

    let (_, m) = summary_of("std::vgg16", None, None);
    assert_eq!(
        shape_of(&m, "features.28.weight"),
        Some(vec![512, 512, 3, 3])
    );
    assert_eq!(shape_of(&m, "classifier.0.weight"), Some(vec![4096, 25088]));
    assert_eq!(shape_of(&m, "classifier.6.weight"), Some(vec![1000, 4096]));
}

fn shapes_of(s: &Summary, ops: &[&str]) -> Vec<String> {
    s.rows
        .iter()
        .filter(|r| ops.contains(&r.op))
        .map(|r| {
            let dims: Vec<String> = r.output_shape[1..].iter().map(|d| d.to_string()).collect();
            dims.join("x")
        })
        .collect()
}

/// D2L section 7.1: the shapes its AlexNet prints for a 1x1x224x224 input.
#[test]
fn d2l_alexnet_shapes() {
    let (s, _) = summary_of("examples/alexnet.nn", Some(vec![1, 1, 224, 224]), None);
    assert_eq!(
        shapes_of(&s, &["conv2d", "max_pool", "flatten", "linear"]),
        [
            "96x54x54",
            "96x26x26",
            "256x26x26",
            "256x12x12",
            "384x12x12",
            "384x12x12",
            "256x12x12",
            "256x5x5",
            "6400",
            "4096",
            "4096",
            "10"
        ]
    );
}

#[test]
fn d2l_examples_shapes() {
    let (s, _) = summary_of("examples/lenet.nn", None, None);
    assert_eq!(
        shapes_of(&s, &["conv2d", "avg_pool", "flatten", "linear"]),
        ["6x24x24", "6x12x12", "16x8x8", "16x4x4", "256", "120", "84", "10"]
    );
    let (s, _) = summary_of("examples/vgg.nn", None, None);
    assert_eq!(
        shapes_of(&s, &["max_pool", "flatten"]),
        [
            "16x112x112",
            "32x56x56",
            "64x28x28",
            "128x14x14",
            "128x7x7",
            "6272"
        ]
    );
    // D2L 7.6 prints these after each stage of ResNet-18 at 96x96.
    let (s, _) = summary_of("examples/resnet.nn", None, None);
    assert_eq!(
        shapes_of(&s, &["max_pool", "adaptive_avg_pool", "linear"]),
        ["64x24x24", "512x1x1", "10"]
    );
    let adds: Vec<String> = shapes_of(&s, &["add"]);
    assert_eq!(
        adds,
        [
            "64x24x24",
            "64x24x24",
            "128x12x12",
            "128x12x12",
            "256x6x6",
            "256x6x6",
            "512x3x3",
            "512x3x3"
        ]
    );
    let (s, _) = summary_of("examples/mlp.nn", None, None);
    assert_eq!(s.total_params, 784 * 256 + 256 + 256 * 10 + 10);
}

#[test]
fn frozen_parameters_are_not_trainable() {
    let mut prog = Program::new();
    let loaded = nnc::driver::load_model(
        &mut prog,
        "examples/transfer.nn",
        Some("fashion"),
        &BuildOptions::default(),
    )
    .unwrap_or_else(|_| panic!("transfer.nn builds"));
    let s = summarize(&loaded.model, &loaded.freeze);
    let backbone: u128 = loaded
        .model
        .tensors()
        .filter(|p| {
            p.name.starts_with("backbone.") && p.kind == nnc::check::model::TensorKind::Parameter
        })
        .map(|p| p.numel())
        .sum();
    assert!(backbone > 0);
    assert_eq!(s.trainable_params, s.total_params - backbone);
}

#[test]
fn every_example_and_stdlib_file_checks_clean() {
    let mut paths: Vec<std::path::PathBuf> = Vec::new();
    for dir in ["examples", "stdlib"] {
        for e in std::fs::read_dir(dir).unwrap() {
            let p = e.unwrap().path();
            if p.extension().is_some_and(|x| x == "nn") {
                paths.push(p);
            }
        }
    }
    assert!(paths.len() >= 10);
    for p in paths {
        let (_, checked) = nnc::driver::check_paths(&[p.as_path()]);
        let msgs: Vec<&str> = checked.diags.iter().map(|d| d.message.as_str()).collect();
        assert!(msgs.is_empty(), "{}: {msgs:?}", p.display());
    }
}

#[test]
fn json_has_the_contract_fields() {
    let (s, _) = summary_of("std::lenet", None, None);
    let j = nnc::summary::to_json(&s);
    for key in [
        "network",
        "input_shape",
        "total_params",
        "trainable_params",
        "macs",
        "layers",
    ] {
        assert!(j.get(key).is_some(), "missing {key}");
    }
    let layer = &j["layers"][0];
    for key in ["path", "op", "output_shape", "params", "macs"] {
        assert!(layer.get(key).is_some(), "missing layers[].{key}");
    }
    assert_eq!(j["network"], "lenet");
    assert_eq!(j["total_params"], 61_706);
}

/// D2L builds networks as `nn.Sequential`s of unnamed `nn.Sequential`s
/// (`net.0.0.weight`) and names stages with `add_module(f'b{i}', ...)`:
/// an unnamed scope takes its position, and `as` with a computed name
/// names a scope or a layer.
#[test]
fn unnamed_scopes_and_computed_names_give_d2l_keys() {
    let dir = std::env::temp_dir().join(format!("nnc-summary-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("d2l.nn");
    std::fs::write(
        &path,
        "network net {
    input x: [N, 1, 28, 28]
    return x
        -> { conv2d(6, 5, padding=2) -> sigmoid -> avg_pool(2, stride=2) }
        -> for i in 0..2 { { conv2d(8, 3, padding=1) -> relu } as \"b{i + 2}\" }
        -> flatten
        -> linear(10)
}
",
    )
    .unwrap();
    let (_, m) = summary_of(path.to_str().unwrap(), None, None);
    let keys: Vec<&str> = m.tensors().map(|p| p.name.as_str()).collect();
    assert_eq!(
        keys,
        [
            "0.0.weight",
            "0.0.bias",
            "b2.0.weight",
            "b2.0.bias",
            "b3.0.weight",
            "b3.0.bias",
            "4.weight",
            "4.bias"
        ]
    );
    std::fs::remove_dir_all(&dir).unwrap();
}
