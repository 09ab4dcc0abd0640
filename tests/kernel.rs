//! The kernel IR against the reference executor: every op of the
//! catalogue alone, and whole networks (forward and a training step) with
//! their fusion groups, lowered to loop nests, verified, and interpreted.
//! The cpu backend's own comparisons are in tests/cpu.rs; these isolate
//! the lowering from code generation.

mod common;

use nnc::backend::reference;
use nnc::ir::{Graph, Op};

/// Both schedules of convolutions: patches copied by im2col, and read in
/// place by the products.
fn compare(what: &str, g: &Graph, seed: u64) {
    let inputs = common::inputs_for(g, seed);
    let expected = reference::run::<f32>(g, &inputs, seed).unwrap();
    for patches_in_place in [false, true] {
        let target = nnc::kernel::Target {
            patches_in_place,
            panel_columns: if patches_in_place { 32 } else { 0 },
        };
        let got = nnc::kernel::interp::evaluate(g, target, &inputs, seed)
            .unwrap_or_else(|e| panic!("{what} ({target:?}): {e}"));
        common::assert_outputs_close(what, g, &got, &expected);
    }
}

#[test]
fn every_op_alone_matches_the_reference() {
    for (op, shapes, _) in nnc::ir::catalogue::examples() {
        if matches!(op, Op::Input { .. }) {
            continue;
        }
        let g = common::single_op(&op, &shapes);
        compare(&format!("{op:?}"), &g, 7);
    }
}

#[test]
fn networks_forward_and_training_step_match_the_reference() {
    common::for_each_network_graph(common::NETWORKS, |what, g| compare(what, g, 3));
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

/// The loop nests of the fusion test graphs, as text:
/// `tests/passes/NAME.fusion.ir` lowers to `tests/passes/NAME.kernels.txt`
/// (`NNC_BLESS=1` rewrites them). They show where each fused op went.
/// Where the schedule for a machine that reads patches in place differs
/// (a forward convolution), it is in `NAME.kernels.in-place.txt`.
#[test]
fn kernel_programs_as_text() {
    let bless = std::env::var_os("NNC_BLESS").is_some();
    let mut cases: Vec<_> = std::fs::read_dir("tests/passes")
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.to_string_lossy().ends_with(".fusion.ir"))
        .collect();
    cases.sort();
    let mut failures = Vec::new();
    for path in &cases {
        let g = nnc::ir::text::parse(&std::fs::read_to_string(path).unwrap()).unwrap();
        // Both schedules, whichever this machine uses.
        let text = |patches_in_place| {
            let target = nnc::kernel::Target {
                patches_in_place,
                panel_columns: if patches_in_place { 32 } else { 0 },
            };
            nnc::kernel::program_of(&g, target)
                .unwrap()
                .program
                .to_string()
        };
        let (copied, in_place) = (text(false), text(true));
        let mut expect = vec![(".kernels.txt", copied.clone())];
        if in_place != copied {
            expect.push((".kernels.in-place.txt", in_place));
        }
        for (suffix, got) in expect {
            let name = path.to_string_lossy().replace(".fusion.ir", suffix);
            if bless {
                std::fs::write(&name, &got).unwrap();
            }
            if std::fs::read_to_string(&name).unwrap_or_default() != got {
                failures.push(format!("{name}:\n{got}"));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "(NNC_BLESS=1 to accept)\n{}",
        failures.join("\n")
    );
}
