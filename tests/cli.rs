//! The command line as a user meets it: exit codes, streams, colour, help.

use std::process::{Command, Output};

fn nnc(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .env_remove("NO_COLOR")
        .output()
        .expect("run nnc")
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn stdout(o: &Output) -> String {
    String::from_utf8_lossy(&o.stdout).into_owned()
}

#[test]
fn check_passes_on_every_example() {
    let mut args = vec!["check"];
    let files: Vec<String> = std::fs::read_dir("examples")
        .unwrap()
        .map(|e| e.unwrap().path().display().to_string())
        .filter(|p| p.ends_with(".nn"))
        .collect();
    args.extend(files.iter().map(String::as_str));
    let o = nnc(&args);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("no errors"));
}

#[test]
fn check_fails_with_code_1_and_a_located_diagnostic() {
    let o = nnc(&["check", "tests/ui/kernel_too_large.nn"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("[E0403]"), "{err}");
    assert!(err.contains("tests/ui/kernel_too_large.nn:8:23"), "{err}");
    // Not a terminal: no colour escapes.
    assert!(!err.contains('\u{1b}'), "{err}");
    assert!(stdout(&o).is_empty());
}

#[test]
fn warnings_alone_exit_0_unless_denied() {
    let o = nnc(&["check", "tests/ui/unused_value.nn"]);
    assert_eq!(o.status.code(), Some(0));
    assert!(stderr(&o).contains("[W0001]"));
    let o = nnc(&["check", "--deny-warnings", "tests/ui/unused_value.nn"]);
    assert_eq!(o.status.code(), Some(1));
}

#[test]
fn missing_file_is_a_user_error() {
    let o = nnc(&["check", "no/such/file.nn"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("cannot read `no/such/file.nn`"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn run_without_a_training_section_shows_one() {
    let o = nnc(&["run", "stdlib/lenet.nn", "--network", "lenet"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("has no training section for `lenet`"), "{err}");
    // The example it shows must itself check.
    let example = &err[err.find("train {").expect(&err)..];
    let path = temp("shown_train_section.nn");
    std::fs::write(
        &path,
        format!("network n {{\n    input x: [N, 1, 28, 28]\n    return x -> flatten -> linear(10)\n}}\n{example}"),
    )
    .unwrap();
    let o = nnc(&["check", path.to_str().unwrap()]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn bad_flags_are_user_errors() {
    let o = nnc(&["summary"]);
    assert_eq!(o.status.code(), Some(1));
    let o = nnc(&["compile", "std::lenet", "--target", "verilog"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("possible values"), "{}", stderr(&o));
    let o = nnc(&["summary", "std::resnet18", "--input-shape", "1,3,0,224"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("at least 1"));
}

#[test]
fn summary_prints_a_table_and_json() {
    let o = nnc(&["summary", "std::resnet18"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let out = stdout(&o);
    assert!(out.contains("layer4.1.conv2"), "{out}");
    assert!(out.contains("total params       11,689,512"), "{out}");
    assert!(
        out.contains("MACs               1,814,073,344 (1.81 G)"),
        "{out}"
    );

    let o = nnc(&[
        "summary",
        "std::vgg16",
        "--json",
        "--classes",
        "10",
        "--input-shape",
        "2,3,224,224",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let j: serde_json::Value = serde_json::from_slice(&o.stdout).expect("valid JSON");
    assert_eq!(j["network"], "vgg16");
    assert_eq!(j["input_shape"], serde_json::json!([2, 3, 224, 224]));
    assert_eq!(j["total_params"], 138_357_544 - 4097 * 990);
    assert_eq!(j["macs"], 2 * (15_470_264_320i64 - 4096 * 990));
}

#[test]
fn summary_of_an_unknown_std_network_suggests_one() {
    let o = nnc(&["summary", "std::resnet19"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(
        stderr(&o).contains("did you mean `std::resnet18`?"),
        "{}",
        stderr(&o)
    );
}

#[test]
fn summary_reports_a_too_small_input_inside_the_stdlib() {
    // Torchvision's AlexNet takes any height and width; 32 is too small
    // for its pooling, which the checker finds inside the standard library.
    let o = nnc(&["summary", "std::alexnet", "--input-shape", "1,3,32,32"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("[E0403]"), "{err}");
    assert!(err.contains("std/alexnet.nn"), "{err}");
    // ResNet takes 32x32 (CIFAR-sized) input; without a shape, its default.
    let o = nnc(&[
        "summary",
        "std::resnet18",
        "--input-shape",
        "1,3,32,32",
        "--json",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = nnc(&["summary", "std::resnet18", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    assert_eq!(v["input_shape"], serde_json::json!([1, 3, 224, 224]));
}

/// Sizes an `input` pattern fixes must be given as declared; sizes it
/// leaves free (`N`, `H`) may vary.
#[test]
fn the_declared_input_shape_is_enforced() {
    // A 3-channel image into a 1-channel network, in summary and in infer.
    let o = nnc(&["summary", "examples/lenet.nn", "--input-shape", "1,3,28,28"]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("[E0409]") && err.contains("the input is 3 on axis 1, but `x` declares 1"),
        "{err}"
    );
    assert!(
        err.contains("examples/lenet.nn:9"),
        "on the input line: {err}"
    );
    let (w, _) = mlp_inputs("declared");
    let x3 = temp("declared-x3.npy");
    nnc::weights::npy::write(
        &x3,
        &ndarray::ArrayD::zeros(ndarray::IxDyn(&[2, 3, 28, 28])),
    )
    .unwrap();
    let o = infer_to(&w, &x3, temp("declared-y.npy").to_str().unwrap());
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("[E0409]") && !err.contains("weights"), "{err}");
    // The batch is free.
    let o = nnc(&["summary", "examples/lenet.nn", "--input-shape", "7,1,28,28"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Named sizes are free too.
    let free = temp("free.nn");
    std::fs::write(
        &free,
        "network any_size {\n    input x: [N, 1, H, W]\n    return x -> conv2d(4, 3) -> adaptive_avg_pool(1) -> flatten -> linear(10)\n}\n",
    )
    .unwrap();
    for shape in ["1,1,28,28", "3,1,40,17"] {
        let o = nnc(&["summary", free.to_str().unwrap(), "--input-shape", shape]);
        assert_eq!(o.status.code(), Some(0), "{shape}: {}", stderr(&o));
    }
    let _ = std::fs::remove_file(free);
    let _ = std::fs::remove_file(w);
    let _ = std::fs::remove_file(x3);
}

#[test]
fn summary_needs_a_network_name_when_there_are_several() {
    let o = nnc(&["summary", "examples/transfer.nn"]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("--network"), "{}", stderr(&o));
    let o = nnc(&["summary", "examples/transfer.nn", "--network", "fashion"]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

#[test]
fn help_explains_each_command() {
    let o = nnc(&["--help"]);
    assert_eq!(o.status.code(), Some(0));
    let out = stdout(&o);
    assert!(
        out.contains("check")
            && out.contains("summary")
            && out.contains("run")
            && out.contains("infer")
            && out.contains("std::NAME"),
        "{out}"
    );
    for cmd in ["check", "summary", "compile", "infer", "run", "bench"] {
        let o = nnc(&[cmd, "--help"]);
        assert_eq!(o.status.code(), Some(0));
        assert!(stdout(&o).len() > 200, "{cmd} --help is too short");
    }
}

fn temp(name: &str) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("nnc-cli-{}-{name}", std::process::id()))
}

#[test]
fn compile_writes_the_kernels_of_a_training_step() {
    let o = nnc(&[
        "compile",
        "examples/lenet.nn",
        "--target",
        "kernels",
        "--mode",
        "train",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let text = stdout(&o);
    // Buffers first, then kernels. Where the CPU has AVX-512, products
    // read the patches in place: the first convolution (one input
    // channel) is such a product, and the second's weight gradient dot
    // products over its patches in place (`dots`). Elsewhere the first
    // is direct, and the dot products read an im2col copy. The input
    // gradient is a product either way.
    assert!(text.starts_with("buffer b0 = input \"x\""), "{text}");
    let in_place =
        text.contains("kernel k0_conv2d_gemm") && text.contains("conv2d_grad_weight_dots");
    let over_copies = text.contains("kernel k0_conv2d_direct")
        && text.contains("conv2d_grad_weight_im2col")
        && text.contains("conv2d_grad_weight_dot ");
    assert!(in_place || over_copies, "{text}");
    assert!(text.contains("gemm "), "{text}");
}

#[test]
fn compile_writes_ir_that_parses_and_dot() {
    let o = nnc(&[
        "compile",
        "examples/lenet.nn",
        "--target",
        "ir",
        "--mode",
        "train",
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let g = nnc::ir::text::parse(&stdout(&o)).expect("the printed IR parses");
    assert!(g.find_output("loss").is_some() && g.find_output("grad:15.weight").is_some());
    let out = temp("resnet50.dot");
    let o = nnc(&[
        "compile",
        "std::resnet50",
        "--target",
        "dot",
        "-o",
        out.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let dot = std::fs::read_to_string(&out).unwrap();
    assert!(dot.starts_with("digraph") && dot.contains("cluster"));
    let _ = std::fs::remove_file(out);
}

#[test]
fn infer_runs_a_model_on_an_npy_batch() {
    let loaded = mlp_model(3);
    let weights = nnc::weights::init::initialize(&loaded.model, 3);
    let w = temp("mlp.safetensors");
    nnc::weights::safetensors::save(&w, &weights).unwrap();
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[3, 1, 28, 28]), |i| {
        (i[2] as f32 - i[3] as f32) / 28.0
    });
    let xp = temp("x.npy");
    nnc::weights::npy::write(&xp, &x).unwrap();
    let yp = temp("y.npy");
    let o = infer_to(&w, &xp, yp.to_str().unwrap());
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let y = nnc::weights::npy::read(&yp).unwrap();
    assert_eq!(y.shape(), &[3, 10]);
    // The same as the reference executor, up to the rounding of another
    // summation order (infer runs on the cpu backend by default).
    let g = loaded.lower(nnc::ir::Mode::Infer).unwrap();
    let mut inputs: std::collections::HashMap<String, _> = weights.into_iter().collect();
    inputs.insert("x".into(), x);
    let expected = nnc::backend::reference::run::<f32>(&g, &inputs, 0)
        .unwrap()
        .remove("logits")
        .unwrap();
    let worst = y
        .iter()
        .zip(expected.iter())
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    assert!(worst <= 1e-5, "{y} vs {expected}");

    // Weights of another model: every problem listed, exit 1.
    let o = nnc(&[
        "infer",
        "examples/lenet.nn",
        "--weights",
        w.to_str().unwrap(),
        "--input",
        xp.to_str().unwrap(),
        "--output",
        yp.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("missing `0.weight`")
            && err.contains("`1.bias` has shape [256], but the model needs [6]"),
        "{err}"
    );
    // An input of the wrong shape is a located shape error.
    let bad = temp("bad.npy");
    nnc::weights::npy::write(&bad, &ndarray::ArrayD::zeros(ndarray::IxDyn(&[2, 5]))).unwrap();
    let o = infer_to(&w, &bad, yp.to_str().unwrap());
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("axes"), "{}", stderr(&o));
    for p in [w, xp, yp, bad] {
        let _ = std::fs::remove_file(p);
    }
}

#[test]
fn a_closed_pipe_ends_quietly() {
    use std::io::{BufRead as _, BufReader};
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["compile", "std::resnet50", "--target", "ir"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let mut first = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut first)
        .unwrap();
    // The reader is dropped here: the pipe is closed, as `| head -1` does.
    assert!(first.starts_with("graph resnet50"), "{first}");
    let o = child.wait_with_output().unwrap();
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).is_empty(), "{}", stderr(&o));
}

/// Opens `/dev/full` for writing, where the system has it.
fn dev_full() -> Option<std::fs::File> {
    let f = std::fs::OpenOptions::new().write(true).open("/dev/full");
    if f.is_err() {
        println!("skipped: no /dev/full on this system");
    }
    f.ok()
}

#[test]
fn a_full_output_is_an_io_error_and_a_full_stderr_no_crash() {
    let Some(full) = dev_full() else { return };
    let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["summary", "std::lenet"])
        .stdout(full.try_clone().unwrap())
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("E0606") && err.contains("standard output") && !err.contains("internal"),
        "{err}"
    );
    // Diagnostics into a full stderr: the exit code still says what the check found.
    let bad = temp("bad.nn");
    std::fs::write(
        &bad,
        "network x {\n  input [N, 1, 8, 8]\n  y = conv(3, 4)\n  return z\n}\n",
    )
    .unwrap();
    let o = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(["check", bad.to_str().unwrap()])
        .stderr(full)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    let _ = std::fs::remove_file(bad);
}

/// `examples/mlp.nn` built for a batch of `batch`.
fn mlp_model(batch: i64) -> nnc::driver::LoadedModel {
    let mut prog = nnc::check::program::Program::new();
    let options = nnc::check::BuildOptions {
        input_shape: Some(vec![batch, 1, 28, 28]),
        params: vec![],
    };
    nnc::driver::load_model(&mut prog, "examples/mlp.nn", None, &options)
        .unwrap_or_else(|_| panic!("mlp builds"))
}

/// Writes a small model's weights and an input batch for `infer`.
fn mlp_inputs(tag: &str) -> (std::path::PathBuf, std::path::PathBuf) {
    let loaded = mlp_model(2);
    let w = temp(&format!("{tag}-w.safetensors"));
    nnc::weights::safetensors::save(&w, &nnc::weights::init::initialize(&loaded.model, 3)).unwrap();
    let x = temp(&format!("{tag}-x.npy"));
    nnc::weights::npy::write(&x, &ndarray::ArrayD::zeros(ndarray::IxDyn(&[2, 1, 28, 28]))).unwrap();
    (w, x)
}

fn infer_to(w: &std::path::Path, x: &std::path::Path, out: &str) -> Output {
    nnc(&[
        "infer",
        "examples/mlp.nn",
        "--weights",
        w.to_str().unwrap(),
        "--input",
        x.to_str().unwrap(),
        "--output",
        out,
    ])
}

#[test]
fn infer_never_replaces_a_device_and_follows_a_link() {
    let (w, x) = mlp_inputs("dev");
    let o = infer_to(&w, &x, "/dev/null");
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("not a regular file"), "{}", stderr(&o));
    let meta = std::fs::metadata("/dev/null").unwrap();
    assert!(!meta.is_file(), "/dev/null is still a device");
    #[cfg(unix)]
    {
        let dir = temp("link-dir");
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join("real.npy"), b"old").unwrap();
        std::os::unix::fs::symlink("real.npy", dir.join("y.npy")).unwrap();
        let o = infer_to(&w, &x, dir.join("y.npy").to_str().unwrap());
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let link = std::fs::symlink_metadata(dir.join("y.npy")).unwrap();
        assert!(link.file_type().is_symlink(), "the link stays a link");
        let y = nnc::weights::npy::read(&dir.join("real.npy")).unwrap();
        assert_eq!(y.shape(), &[2, 10]);
        let _ = std::fs::remove_dir_all(dir);
    }
    let _ = std::fs::remove_file(w);
    let _ = std::fs::remove_file(x);
}

/// A disk that fills up while the output is written: simulated with a file
/// size limit (`ulimit -f`), under which a write fails with EFBIG.
#[cfg(unix)]
#[test]
fn a_failed_write_leaves_no_temporary_file() {
    let (w, x) = mlp_inputs("full");
    let dir = temp("full-dir");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    // A file that was there before stays, and nothing joins it.
    std::fs::write(dir.join("keep.txt"), b"kept").unwrap();
    let out = dir.join("y.npy");
    // The weights are read before the limit matters; only writing is limited.
    let script = format!(
        "trap '' XFSZ; ulimit -f 0; exec '{}' infer examples/mlp.nn --weights '{}' --input '{}' --output '{}'",
        env!("CARGO_BIN_EXE_nnc"),
        w.display(),
        x.display(),
        out.display()
    );
    let o = Command::new("bash").args(["-c", &script]).output().unwrap();
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    assert!(stderr(&o).contains("E0606"), "{}", stderr(&o));
    let names: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["keep.txt".to_string()], "nothing left behind");
    let _ = std::fs::remove_dir_all(dir);
    let _ = std::fs::remove_file(w);
    let _ = std::fs::remove_file(x);
}

#[test]
fn compile_prints_the_graph_before_and_after_passes() {
    let count = |args: &[&str]| {
        let o = nnc(args);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let g = nnc::ir::text::parse(&stdout(&o)).expect("the printed IR parses");
        (g.nodes.len(), stderr(&o))
    };
    let base = [
        "compile",
        "examples/lenet.nn",
        "--target",
        "ir",
        "--mode",
        "train",
    ];
    let (before, _) = count(&base);
    let mut with = base.to_vec();
    with.extend(["--passes", "default", "--explain"]);
    let (after, explained) = count(&with);
    assert!(
        after < before,
        "{after} nodes after the passes, {before} before"
    );
    assert!(
        explained.contains("cse: ")
            && explained.contains("dce: ")
            && explained.contains(&format!("{after} nodes")),
        "{explained}"
    );
    let o = nnc(&[
        "compile",
        "examples/lenet.nn",
        "--target",
        "ir",
        "--passes",
        "fold",
    ]);
    assert_eq!(o.status.code(), Some(1));
    assert!(stderr(&o).contains("unknown pass `fold`"), "{}", stderr(&o));
}

#[test]
fn bench_reports_throughput_compile_time_and_memory() {
    for mode in ["infer", "train"] {
        let o = nnc(&[
            "bench",
            "examples/lenet.nn",
            "--input-shape",
            "4,1,28,28",
            "--mode",
            mode,
            "--warmup",
            "1",
            "--steps",
            "2",
            "--json",
        ]);
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
        for key in ["images_per_second", "step_ms", "compile_ms"] {
            assert!(v[key].as_f64().is_some_and(|x| x > 0.0), "{key} in {v}");
        }
        let peak = v["peak_bytes"].as_u64().unwrap();
        let total = v["total_bytes"].as_u64().unwrap();
        assert!(peak > 0 && peak < total, "{v}");
        // The cpu backend (the default) says what it holds: at least the
        // logits or the loss, at most every value without reuse plus the
        // patches of the batch's convolutions.
        let allocated = v["allocated_bytes"].as_u64().unwrap();
        assert!(allocated > 0 && allocated < 4 * total, "{v}");
        assert_eq!(v["mode"], mode);
        assert_eq!(v["steps"], 2);
        assert_eq!(v["input_shape"], serde_json::json!([4, 1, 28, 28]));
        // The figure names its machine: CPU and threads.
        let machine = v["machine"].as_str().unwrap();
        assert!(
            machine.ends_with(" threads") || machine.ends_with(" thread"),
            "{v}"
        );
    }
    // The summary reports the planned memory of both graphs.
    let o = nnc(&["summary", "examples/lenet.nn", "--json"]);
    let v: serde_json::Value = serde_json::from_str(&stdout(&o)).unwrap();
    for graph in ["inference", "training_step"] {
        let m = &v["memory"][graph];
        assert!(
            m["peak_bytes"].as_u64().unwrap() < m["total_bytes"].as_u64().unwrap(),
            "{m}"
        );
    }
    let o = nnc(&["bench", "examples/lenet.nn", "--steps", "0"]);
    assert_eq!(o.status.code(), Some(1));
}
