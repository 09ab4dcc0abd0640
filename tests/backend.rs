//! The backend interface: what an executable promises (state it owns, fed
//! inputs by handle, nothing changed before a commit; on the reference and
//! the cpu backend), and the training step as one graph giving exactly what the
//! separate gradient and optimizer graphs gave.

mod common;

use nnc::autodiff::optimizer::{Optimizer, Stepper};
use nnc::backend::{Backend, BackendError};
use nnc::ir::{text, Mode, Output, Role};
use nnc::weights::WeightSet;

fn graph(src: &str) -> nnc::ir::Graph {
    text::parse(src).unwrap()
}

const AFFINE: &str = "graph g mode=train {
  %0 = input name=\"x\" role=\"data\" : f32[2]
  %1 = input name=\"w\" role=\"param\" : f32[2]
  %2 = input name=\"lr\" role=\"scalar\" : f32[]
  %3 = mul(%0, %1) : f32[2]
  %4 = mul(%3, %2) : f32[2]
  %5 = sub(%1, %4) : f32[2]
  output \"logits\" = %3
  output \"update:w\" = %5
}
";

fn state() -> WeightSet {
    let mut s = WeightSet::new();
    s.insert("w".into(), ndarray::arr1(&[1.0f32, 2.0]).into_dyn());
    s
}

/// On both backends: the cpu backend's commit exchanges an update's buffer
/// with the state tensor rather than copying it, which must not show.
#[test]
fn an_executable_owns_its_state_and_commits_updates() {
    let backends: [&dyn Backend; 2] =
        [&nnc::backend::reference::Reference, &nnc::backend::cpu::Cpu];
    for backend in backends {
        let mut exe = backend.instantiate(state());
        let e = exe.compile(&graph(AFFINE)).unwrap();
        let fed: Vec<(Role, String)> = exe
            .fed_inputs(e)
            .iter()
            .map(|i| (i.role, i.name.clone()))
            .collect();
        assert_eq!(
            fed,
            vec![(Role::Data, "x".into()), (Role::Scalar, "lr".into())]
        );
        let x = exe.handle(e, Role::Data).unwrap();
        let lr = exe.handle_named(e, "lr").unwrap();
        // A missing feed is an error, not a panic.
        let missing = exe.run(e, vec![(x, ndarray::arr1(&[1.0f32, 1.0]).into_dyn())], 0);
        assert!(matches!(missing, Err(BackendError::Feed(_))), "{missing:?}");
        let feeds = || {
            vec![
                (x, ndarray::arr1(&[3.0f32, 4.0]).into_dyn()),
                (lr, ndarray::arr0(0.5f32).into_dyn()),
            ]
        };
        exe.run(e, feeds(), 0).unwrap();
        assert_eq!(
            exe.read(e, &Output::Logits).unwrap(),
            ndarray::arr1(&[3.0f32, 8.0]).into_dyn()
        );
        // Nothing changes before the commit.
        assert_eq!(exe.read_state("w").unwrap(), state()["w"]);
        let updated = ndarray::arr1(&[-0.5f32, -2.0]).into_dyn();
        exe.commit(e).unwrap();
        assert_eq!(exe.read_state("w").unwrap(), updated);
        // The update still reads back, and a second commit changes nothing.
        let update = Output::Update("w".into());
        assert_eq!(exe.read(e, &update).unwrap(), updated);
        exe.commit(e).unwrap();
        assert_eq!(exe.read_state("w").unwrap(), updated);
        // The next run starts from the committed state; without a commit
        // the state stays.
        exe.run(e, feeds(), 0).unwrap();
        let again = ndarray::arr1(&[-0.5f32 + 0.75, -2.0 + 4.0]).into_dyn();
        assert_eq!(exe.read(e, &update).unwrap(), again);
        assert_eq!(exe.read_state("w").unwrap(), updated);
        exe.commit(e).unwrap();
        assert_eq!(exe.read_state("w").unwrap(), again);
        // State keeps its shape.
        assert!(exe
            .write_state("w", ndarray::arr1(&[1.0f32]).into_dyn())
            .is_err());
    }
}

#[test]
fn compiling_checks_the_state_a_graph_reads() {
    let mut exe = nnc::backend::reference::Reference.instantiate(WeightSet::new());
    assert!(matches!(
        exe.compile(&graph(AFFINE)),
        Err(BackendError::State(_))
    ));
    let mut wrong = WeightSet::new();
    wrong.insert("w".into(), ndarray::arr1(&[1.0f32, 2.0, 3.0]).into_dyn());
    let mut exe = nnc::backend::reference::Reference.instantiate(wrong);
    assert!(matches!(
        exe.compile(&graph(AFFINE)),
        Err(BackendError::State(_))
    ));
    assert!(nnc::backend::by_name("reference").is_some());
    assert!(nnc::backend::by_name("quantum").is_none());
}

/// One training step as one graph on the executable gives, bit for bit,
/// what the gradient graph followed by the standalone optimizer gave.
#[test]
fn the_training_step_graph_matches_gradients_then_update() {
    for optimizer in [
        "sgd(lr=0.1, momentum=0.9, nesterov=true, weight_decay=1e-4)",
        "lookahead(adam(lr=0.01, weight_decay=0.01), k=1)",
    ] {
        let source = std::fs::read_to_string("tests/fixtures/tiny_train.nn")
            .unwrap()
            .replace(
                "optimizer = sgd(lr=0.05, momentum=0.9, nesterov=true, weight_decay=1e-4)",
                &format!("optimizer = {optimizer}"),
            );
        let path = std::env::temp_dir().join(format!("nnc-backend-{}.nn", std::process::id()));
        std::fs::write(&path, source).unwrap();
        let loaded = common::load(path.to_str().unwrap(), None, &[4, 1, 28, 28]);
        let cfg = loaded.train.clone().unwrap();
        let weights = nnc::weights::init::initialize(&loaded.model, 5);
        let x = common::fixture_tensor("backend/x", &[4, 1, 28, 28]);
        let mut target = ndarray::ArrayD::<f32>::zeros(vec![4, 10]);
        for (i, c) in [3, 1, 4, 1].iter().enumerate() {
            target[[i, *c]] = 1.0;
        }
        let opt = Optimizer::new(cfg.optimizer.clone());
        let lr = opt.base_lr();
        let params: WeightSet = weights
            .iter()
            .filter(|(k, _)| k.ends_with("weight") || k.ends_with("bias"))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();

        // Before: the gradient graph, then the optimizer on its own.
        let g = loaded.lower(Mode::Train).unwrap();
        let mut inputs: std::collections::HashMap<String, _> =
            weights.clone().into_iter().collect();
        inputs.insert("x".into(), x.clone());
        inputs.insert("target".into(), target.clone());
        let out = nnc::backend::reference::run::<f32>(&g, &inputs, 9).unwrap();
        let grads: WeightSet = params
            .keys()
            .map(|k| (k.clone(), out[&format!("grad:{k}")].clone()))
            .collect();
        let mut expected = params.clone();
        let mut stepper = Stepper::new(Optimizer::new(cfg.optimizer.clone()), &params);
        stepper.apply(&mut expected, &grads, lr).unwrap();

        // After: one graph on an executable that owns the state.
        let step = loaded.lower_step().unwrap();
        for name in params.keys() {
            assert!(
                step.find(&Output::Update(name.clone())).is_some(),
                "no update of {name}"
            );
        }
        let mut state = weights.clone();
        state.extend(opt.initial_state(&params));
        let mut exe = nnc::backend::reference::Reference.instantiate(state);
        let e = exe.compile(&step).unwrap();
        let mut feeds = vec![
            (exe.handle(e, Role::Data).unwrap(), x),
            (exe.handle(e, Role::Target).unwrap(), target),
        ];
        for (name, v) in opt.scalars(1, lr) {
            feeds.push((
                exe.handle_named(e, name).unwrap(),
                ndarray::arr0(v as f32).into_dyn(),
            ));
        }
        exe.run(e, feeds, 9).unwrap();
        assert_eq!(exe.read(e, &Output::GradCheck).unwrap().sum(), 0.0);
        exe.commit(e).unwrap();
        if let Some((_, alpha)) = opt.lookahead() {
            // k = 1: Lookahead syncs after every step, as the stepper did.
            let shapes: Vec<(String, Vec<usize>)> = params
                .iter()
                .map(|(k, v)| (k.clone(), v.shape().to_vec()))
                .collect();
            let sync = exe.compile(&opt.lookahead_graph(&shapes, alpha)).unwrap();
            exe.run(sync, Vec::new(), 0).unwrap();
            exe.commit(sync).unwrap();
        }
        for (name, want) in &expected {
            let got = exe.read_state(name).unwrap();
            let bits = |t: &ndarray::ArrayD<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(bits(&got) == bits(want), "{optimizer}: `{name}` differs");
        }
        // Batch-norm statistics moved too.
        assert_ne!(
            exe.read_state("1.running_mean").unwrap(),
            weights["1.running_mean"]
        );
        let _ = std::fs::remove_file(path);
    }
}

/// Graphs for another batch size come from the checked model with the
/// batch bound, and are the graphs a model checked at that batch gives.
#[test]
fn lowering_at_a_batch_size_needs_no_second_check() {
    let with_shape = |model: &str, shape: Vec<i64>| {
        let mut prog = nnc::check::program::Program::new();
        let options = nnc::check::BuildOptions {
            input_shape: Some(shape),
            params: Vec::new(),
        };
        nnc::driver::load_model(&mut prog, model, None, &options)
            .unwrap_or_else(|_| panic!("{model}"))
    };
    let generic = |model: &str| {
        let mut prog = nnc::check::program::Program::new();
        nnc::driver::load_model(&mut prog, model, None, &Default::default())
            .unwrap_or_else(|_| panic!("{model}"))
    };
    let lenet = generic("examples/lenet.nn");
    let at = lenet.lower_step_at(Some(7)).unwrap();
    let checked = with_shape("examples/lenet.nn", vec![7, 1, 28, 28])
        .lower_step()
        .unwrap();
    assert_eq!(text::print(&at), text::print(&checked));
    // Free sizes other than the batch take their defaults (224 for ResNet).
    let resnet = generic("std::resnet18");
    let at = resnet.lower_evaluation_at(Some(3)).unwrap();
    let checked = with_shape("std::resnet18", vec![3, 3, 224, 224])
        .lower_evaluation()
        .unwrap();
    assert_eq!(text::print(&at), text::print(&checked));
    // A network whose input fixes the batch takes no other.
    let dir = std::env::temp_dir().join(format!("nnc-fixed-{}.nn", std::process::id()));
    std::fs::write(
        &dir,
        "network fixed {\n    input x: [4, 8]\n    return x -> linear(2)\n}\n",
    )
    .unwrap();
    let fixed = generic(dir.to_str().unwrap());
    assert!(fixed.lower_step_at(Some(4)).is_ok());
    let e = fixed.lower_step_at(Some(5)).unwrap_err();
    assert!(
        e.message.contains("fixes its batch size at 4"),
        "{}",
        e.message
    );
    let _ = std::fs::remove_file(dir);
}
