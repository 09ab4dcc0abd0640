//! Optimizer and learning-rate schedule parity with torch.optim, from the
//! fixtures of scripts/make_fixtures.py: parameters within 1e-5 relative
//! after eight steps; learning rates equal to 1e-12.

mod common;

use nnc::autodiff::optimizer::{Optimizer, Stepper};
use nnc::check::train::{Optimizer as Spec, Schedule as ScheduleSpec, TrainConfig};
use nnc::train::schedule::Schedule;
use nnc::weights::WeightSet;

/// The training configuration of a one-line training section.
fn config(settings: &str) -> TrainConfig {
    let source = format!("network n {{ input x: [N, 4]\n return x -> linear(2) }}\ntrain {{ data = mnist(validation=0.1)\n {settings} }}");
    let (_, checked) = nnc::driver::check_bytes("t.nn", source.into_bytes());
    assert!(
        checked.diags.is_empty(),
        "{settings}: {:?}",
        checked.diags.iter().map(|d| &d.message).collect::<Vec<_>>()
    );
    checked
        .trains
        .into_iter()
        .next()
        .expect("a training section")
}

const SHAPES: [&[usize]; 3] = [&[4, 3], &[5], &[2, 2, 3]];

fn run_optimizer(spec: Spec) -> WeightSet {
    let mut params: WeightSet = (0..3)
        .map(|i| {
            (
                format!("p{i}"),
                common::fixture_tensor(&format!("opt/p{i}"), SHAPES[i]),
            )
        })
        .collect();
    let optimizer = Optimizer::new(spec);
    let lr = optimizer.base_lr();
    let mut stepper = Stepper::new(optimizer, &params);
    for t in 1..=8 {
        let grads: WeightSet = (0..3)
            .map(|i| {
                (
                    format!("p{i}"),
                    common::fixture_tensor(&format!("opt/g{i}/{t}"), SHAPES[i]),
                )
            })
            .collect();
        stepper.apply(&mut params, &grads, lr).unwrap();
    }
    params
}

#[test]
fn optimizers_match_torch_optim() {
    let f = common::read_fixture("optimizers.safetensors");
    let cases = [
        ("sgd", "sgd(lr=0.1)"),
        (
            "sgd_momentum",
            "sgd(lr=0.1, momentum=0.9, dampening=0.1, weight_decay=0.01)",
        ),
        (
            "sgd_nesterov",
            "sgd(lr=0.1, momentum=0.9, nesterov=true, weight_decay=0.01)",
        ),
        (
            "adam",
            "adam(lr=0.01, betas=[0.9, 0.99], weight_decay=0.01)",
        ),
        ("adamw", "adamw(lr=0.01, weight_decay=0.1)"),
        ("radam", "radam(lr=0.01, weight_decay=0.01)"),
        (
            "lookahead",
            "lookahead(sgd(lr=0.1, momentum=0.9), k=3, alpha=0.5)",
        ),
    ];
    let mut report = Vec::new();
    for (name, text) in cases {
        let spec = config(&format!("optimizer = {text}")).optimizer;
        let params = run_optimizer(spec);
        for i in 0..3 {
            let expected = &f[&format!("{name}/p{i}")];
            let err = common::relative_error(&params[&format!("p{i}")], expected);
            report.push(format!("{name}/p{i}: {err:e}"));
            assert!(
                err <= 1e-5,
                "{name}: p{i} differs from torch by {err:e} (relative)"
            );
        }
    }
    eprintln!("{}", report.join("\n"));
}

#[test]
fn schedules_match_torch_lr_scheduler() {
    let text = std::fs::read_to_string("tests/fixtures/schedules.json").unwrap();
    let fixture: serde_json::Value = serde_json::from_str(&text).unwrap();
    let epochs = fixture["epochs"].as_u64().unwrap();
    let spe = fixture["steps_per_epoch"].as_u64().unwrap();
    let metrics: Vec<f64> = fixture["plateau_metrics"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_f64().unwrap())
        .collect();
    for (text, expected) in fixture["schedules"].as_object().unwrap() {
        let expected: Vec<f64> = expected
            .as_array()
            .unwrap()
            .iter()
            .map(|v| v.as_f64().unwrap())
            .collect();
        let spec: ScheduleSpec = config(&format!("epochs = {epochs}\n schedule = {text}")).schedule;
        let mut schedule = Schedule::new(spec, 0.1, epochs, spe);
        let per_batch = expected.len() as u64 == epochs * spe;
        let mut actual = Vec::new();
        for e in 0..epochs {
            if per_batch {
                for s in 0..spe {
                    actual.push(schedule.lr(e, e * spe + s));
                }
            } else {
                actual.push(schedule.lr(e, e * spe));
                schedule.observe(metrics[e as usize]);
            }
        }
        for (i, (a, b)) in actual.iter().zip(&expected).enumerate() {
            assert!(
                (a - b).abs() <= 1e-12 * b.abs().max(1.0),
                "{text}: value {i}: nnc {a}, torch {b}\nnnc   {actual:?}\ntorch {expected:?}"
            );
        }
    }
}

#[test]
fn warmup_composes_with_a_schedule() {
    // Two epochs of per-batch warm-up from 0.1x, then multistep on the
    // remaining epochs (milestone at its epoch 2, that is the run's epoch 4).
    let spec = config("epochs = 6\n schedule = warmup(epochs=2, start_factor=0.1, then=multistep(milestones=[2], gamma=0.1))").schedule;
    let s = Schedule::new(spec, 1.0, 6, 4);
    assert!((s.lr(0, 0) - 0.1).abs() < 1e-12);
    assert!((s.lr(0, 4) - (0.1 + 0.9 * 4.0 / 8.0)).abs() < 1e-12);
    assert!((s.lr(2, 8) - 1.0).abs() < 1e-12);
    assert!((s.lr(3, 12) - 1.0).abs() < 1e-12);
    assert!((s.lr(4, 16) - 0.1).abs() < 1e-12);
}
