//! Training end to end on small synthetic data: reproducibility, resume
//! after SIGKILL (bit-identical), data errors, non-finite detection.

mod common;

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::Command;

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nnc-train-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

/// Writes an IDX file (gzipped when `gz`).
fn write_idx(path: &Path, dims: &[u32], data: &[u8], gz: bool) {
    let mut bytes = vec![0u8, 0, 0x08, dims.len() as u8];
    for d in dims {
        bytes.extend_from_slice(&d.to_be_bytes());
    }
    bytes.extend_from_slice(data);
    if gz {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(&bytes).unwrap();
        bytes = e.finish().unwrap();
    }
    std::fs::write(path, bytes).unwrap();
}

/// MNIST-shaped synthetic data: the class is drawn as a bright row.
fn synthetic_mnist(dir: &Path, train: usize, test: usize) {
    for (prefix, n) in [("train", train), ("t10k", test)] {
        let mut images = vec![0u8; n * 28 * 28];
        let mut labels = vec![0u8; n];
        let u = common::uniform(prefix, n * 2);
        for i in 0..n {
            let class = (u[2 * i] * 10.0) as usize % 10;
            labels[i] = class as u8;
            let row = 2 + class * 2 + (u[2 * i + 1] * 2.0) as usize;
            for x in 4..24 {
                images[i * 784 + row * 28 + x] = 200;
            }
        }
        let gz = prefix == "train";
        let ext = if gz { ".gz" } else { "" };
        write_idx(
            &dir.join(format!("{prefix}-images-idx3-ubyte{ext}")),
            &[n as u32, 28, 28],
            &images,
            gz,
        );
        write_idx(
            &dir.join(format!("{prefix}-labels-idx1-ubyte{ext}")),
            &[n as u32],
            &labels,
            gz,
        );
    }
}

fn nnc(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .output()
        .unwrap()
}

fn stderr(o: &std::process::Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn run_args<'a>(data: &'a str, dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = vec![
        "run",
        "tests/fixtures/tiny_train.nn",
        "--data",
        data,
        "--checkpoint-dir",
        dir,
        "--seed",
        "7",
    ];
    v.extend_from_slice(extra);
    v
}

#[test]
fn training_learns_and_writes_metrics_and_checkpoints() {
    let data = temp("learn-data");
    synthetic_mnist(&data, 240, 60);
    let dir = temp("learn-run");
    let o = nnc(&run_args(
        data.to_str().unwrap(),
        dir.to_str().unwrap(),
        &[],
    ));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Before the first epoch: what runs, and on which machine (epoch
    // times mean little without the CPU).
    let log = stderr(&o);
    let mut lines = log.lines();
    assert!(lines.next().unwrap().starts_with("training `"), "{log}");
    assert!(lines.next().unwrap().starts_with("machine: "), "{log}");
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let rows: Vec<serde_json::Value> = metrics
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    // 4 epochs of train and val rows, then the test row.
    assert_eq!(rows.len(), 9, "{metrics}");
    for r in &rows {
        for key in ["epoch", "split", "loss", "accuracy", "lr", "seconds"] {
            assert!(r.get(key).is_some(), "missing {key} in {r}");
        }
    }
    assert!(rows[0].get("top5").is_some(), "top5 was requested");
    let test = rows.last().unwrap();
    assert_eq!(test["split"], "test");
    assert!(
        test["accuracy"].as_f64().unwrap() > 0.5,
        "the synthetic task is easy: {test}"
    );
    // The learning rate warms up over the first epoch, then follows the cosine.
    assert!(rows[0]["lr"].as_f64().unwrap() < 0.05);
    for f in ["last.safetensors", "best.safetensors"] {
        assert!(dir.join(f).exists(), "{f} missing");
    }
    // The curves, where a font for their text exists (Debian's fonts-dejavu-core).
    if Path::new("/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf").exists() {
        for f in ["metrics.png", "metrics.svg"] {
            let bytes = std::fs::read(dir.join(f))
                .unwrap_or_else(|_| panic!("{f} missing: {}", stderr(&o)));
            assert!(bytes.len() > 1000, "{f} is too small");
        }
        let svg = std::fs::read_to_string(dir.join("metrics.svg")).unwrap();
        // Loss, accuracy and learning-rate panels, and the test result.
        for text in ["accuracy", "learning rate", "test"] {
            assert!(svg.contains(text), "no `{text}` in the plot");
        }
    } else {
        println!("skipped the plot checks: no DejaVu font (apt-get install fonts-dejavu-core)");
    }
    // The end-of-run table.
    assert!(stderr(&o).contains("epoch  train loss"), "{}", stderr(&o));
    // best.safetensors is weights that `nnc infer` takes as they are.
    let best = nnc::weights::safetensors::read(&dir.join("best.safetensors")).unwrap();
    assert!(best.contains_key("0.weight") && best.contains_key("1.running_mean"));
}

/// Two runs with one seed give identical weights; a run killed with SIGKILL
/// and resumed gives the same weights, bit for bit.
#[test]
fn resume_after_sigkill_is_bit_identical() {
    let data = temp("resume-data");
    synthetic_mnist(&data, 480, 40);
    let d = data.to_str().unwrap();
    let full = temp("resume-full");
    let o = nnc(&run_args(d, full.to_str().unwrap(), &[]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    // Tensors (parameters, buffers, optimizer state) and metadata; the JSON
    // header's key order is not meaningful, so bytes are not compared.
    let read = |dir: &Path| {
        nnc::weights::safetensors::read_with_metadata(&dir.join("last.safetensors")).unwrap()
    };
    let expected = read(&full);

    // Kill the run at several moments after its first checkpoint; resume.
    let mut resumed = 0;
    for (k, delay_ms) in [0u64, 40, 150].into_iter().enumerate() {
        let dir = temp(&format!("resume-killed-{k}"));
        let ds = dir.to_str().unwrap().to_string();
        let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
            .args(run_args(d, &ds, &[]))
            .stderr(std::process::Stdio::null())
            .spawn()
            .unwrap();
        while !dir.join("last.safetensors").exists() && child.try_wait().unwrap().is_none() {
            std::thread::sleep(std::time::Duration::from_millis(2));
        }
        std::thread::sleep(std::time::Duration::from_millis(delay_ms));
        let finished = child.try_wait().unwrap().is_some();
        let _ = child.kill(); // SIGKILL on Unix
        let _ = child.wait();
        if !finished {
            resumed += 1;
        }
        let o = nnc(&run_args(d, &ds, &["--resume"]));
        assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
        let got = read(&dir);
        assert_eq!(
            got.1, expected.1,
            "checkpoint metadata after a kill at {delay_ms} ms"
        );
        assert_eq!(got.0.len(), expected.0.len());
        for (name, tensor) in &expected.0 {
            let bits = |t: &ndarray::ArrayD<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
            assert!(
                bits(&got.0[name]) == bits(tensor),
                "`{name}` differs after a kill at {delay_ms} ms and a resume"
            );
        }
    }
    assert!(
        resumed > 0,
        "no run was killed before it finished: the test did not test resuming"
    );
}

/// Runs nnc, expecting a user error (exit 1) whose text holds every needle.
fn fails_with(args: &[&str], needles: &[&str]) {
    let o = nnc(args);
    assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
    let err = stderr(&o);
    // Long messages wrap with a gutter; read them as one line.
    let flat = err
        .lines()
        .map(|l| l.trim_start().trim_start_matches('│').trim())
        .collect::<Vec<_>>()
        .join(" ");
    for n in needles {
        assert!(flat.contains(n), "no `{n}` in:\n{err}");
    }
}

#[test]
fn data_problems_name_the_file() {
    let data = temp("bad-data");
    synthetic_mnist(&data, 32, 8);
    let (d, dir) = (data.to_str().unwrap(), temp("bad-run"));
    let dir = dir.to_str().unwrap();
    // Truncated training images.
    let images = data.join("train-images-idx3-ubyte.gz");
    let bytes = std::fs::read(&images).unwrap();
    std::fs::write(&images, &bytes[..bytes.len() / 2]).unwrap();
    fails_with(&run_args(d, dir, &[]), &["train-images-idx3-ubyte.gz"]);

    // A count mismatch between images and labels.
    synthetic_mnist(&data, 32, 8);
    write_idx(
        &data.join("train-labels-idx1-ubyte.gz"),
        &[31],
        &[0; 31],
        true,
    );
    fails_with(&run_args(d, dir, &[]), &["32 images", "31 labels"]);

    // No data at all: say how to get it.
    fails_with(&run_args("/nonexistent/fashion", dir, &[]), &["not found"]);

    // A bad magic number.
    let junk = temp("junk");
    for f in [
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ] {
        std::fs::write(junk.join(f), b"\x01\x02\x03\x04 not idx").unwrap();
    }
    fails_with(&run_args(junk.to_str().unwrap(), dir, &[]), &["bad magic"]);
}

#[test]
fn a_diverging_run_stops_and_names_the_tensor() {
    let data = temp("nan-data");
    synthetic_mnist(&data, 64, 8);
    let source = std::fs::read_to_string("tests/fixtures/tiny_train.nn")
        .unwrap()
        .replace("lr=0.05", "lr=1e30");
    let file = temp("nan-file").join("tiny.nn");
    std::fs::write(&file, source).unwrap();
    let dir = temp("nan-run");
    let o = nnc(&[
        "run",
        file.to_str().unwrap(),
        "--data",
        data.to_str().unwrap(),
        "--checkpoint-dir",
        dir.to_str().unwrap(),
    ]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("[E0605]") && err.contains("non-finite") && err.contains("epoch 1"),
        "{err}"
    );
    assert!(err.contains("try a lower learning rate"), "{err}");
    assert!(
        err.contains("optimizer = sgd(lr=1e30"),
        "the diagnostic points at the optimizer: {err}"
    );
    // The first IR node whose value is not finite is named.
    assert!(err.contains(" = ") && err.contains("not finite"), "{err}");
}

#[test]
fn transfer_learning_loads_and_freezes_the_backbone() {
    let data = temp("transfer-data");
    synthetic_mnist(&data, 160, 20);
    let work = temp("transfer-work");
    let file = std::fs::canonicalize("tests/fixtures/tiny_transfer.nn").unwrap();
    let run = |network: &str| {
        Command::new(env!("CARGO_BIN_EXE_nnc"))
            .current_dir(&work)
            .args([
                "run",
                file.to_str().unwrap(),
                "--network",
                network,
                "--data",
                data.to_str().unwrap(),
                "--checkpoint-dir",
                &format!("runs/{network}"),
            ])
            .output()
            .unwrap()
    };
    let o = run("source");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let o = run("target");
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let err = stderr(&o);
    // The report of what was loaded and what was not.
    assert!(
        err.contains("initialized 6 tensors from `runs/source/best.safetensors`"),
        "{err}"
    );
    assert!(
        err.contains("keep their fresh initialization: fc.bias, fc.weight, head.bias, head.weight"),
        "{err}"
    );
    let source =
        nnc::weights::safetensors::read(&work.join("runs/source/best.safetensors")).unwrap();
    let target =
        nnc::weights::safetensors::read(&work.join("runs/target/last.safetensors")).unwrap();
    for (name, value) in &source {
        if name.starts_with("backbone.") {
            // Frozen: unchanged, running statistics included (batch norm stays in evaluation mode).
            assert!(
                target[name] == *value,
                "`{name}` changed although it is frozen"
            );
        }
    }
    assert!(
        target.contains_key("fc.weight") && target.contains_key("optimizer/exp_avg:head.weight")
    );
    assert!(
        !target
            .keys()
            .any(|k| k.starts_with("optimizer/") && k.contains("backbone.")),
        "frozen parameters have no optimizer state"
    );
}

#[test]
fn training_integers_are_not_rounded() {
    let dir = temp("int-seed");
    let file = dir.join("seed.nn");
    let text = std::fs::read_to_string("tests/fixtures/tiny_train.nn")
        .unwrap()
        .replace("epochs = 4", "epochs = 4\n    seed = 9007199254740993");
    std::fs::write(&file, text).unwrap();
    let mut prog = nnc::check::program::Program::new();
    let loaded = nnc::driver::load_model(
        &mut prog,
        file.to_str().unwrap(),
        None,
        &nnc::check::BuildOptions::default(),
    )
    .unwrap_or_else(|_| panic!("the file checks"));
    // 2^53 + 1: a double would round it to 2^53.
    assert_eq!(loaded.train.unwrap().seed, 9_007_199_254_740_993);
}

/// The tiny recipe with `from` replaced by `to`, written to its own file.
fn variant(tag: &str, from: &str, to: &str) -> PathBuf {
    let text = std::fs::read_to_string("tests/fixtures/tiny_train.nn").unwrap();
    assert!(text.contains(from), "`{from}` is not in the fixture");
    let file = temp(tag).join("tiny.nn");
    std::fs::write(&file, text.replace(from, to)).unwrap();
    file
}

fn run_file<'a>(file: &'a str, data: &'a str, dir: &'a str, extra: &[&'a str]) -> Vec<&'a str> {
    let mut v = run_args(data, dir, extra);
    v[1] = file;
    v
}

/// Every file of a folder with its bytes, to show that nothing changed.
fn snapshot(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut files: Vec<(String, Vec<u8>)> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| {
            let e = e.unwrap();
            (
                e.file_name().to_string_lossy().into_owned(),
                std::fs::read(e.path()).unwrap(),
            )
        })
        .collect();
    files.sort();
    files
}

/// `--resume` names the first way in which the checkpoint differs from the
/// run, before anything in the checkpoint directory is written; a finished
/// run says so and is not trained or tested again.
#[test]
fn resume_refuses_another_run_and_knows_a_finished_one() {
    let data = temp("mismatch-data");
    synthetic_mnist(&data, 96, 16);
    let d = data.to_str().unwrap();
    let dir = temp("mismatch-run");
    let ds = dir.to_str().unwrap();
    let o = nnc(&run_args(d, ds, &["--epochs", "1"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let before = snapshot(&dir);

    let other_net = variant("mismatch-net", "network tiny", "network small");
    let other_opt = variant(
        "mismatch-opt",
        "optimizer = sgd(",
        "optimizer = adam(lr=0.01)\n//",
    );
    let other_batch = variant("mismatch-batch", "batch_size = 16", "batch_size = 8");
    let cases: Vec<(Vec<&str>, Vec<&str>)> = vec![
        (
            run_file(other_net.to_str().unwrap(), d, ds, &["--resume"]),
            vec!["network `tiny`, not `small`"],
        ),
        (
            run_file(other_opt.to_str().unwrap(), d, ds, &["--resume"]),
            vec!["trained with `sgd(lr=0.05", "now says `adam(lr=0.01"],
        ),
        (
            run_file(other_batch.to_str().unwrap(), d, ds, &["--resume"]),
            vec!["batch size 16, not 8", "batch_size = 16"],
        ),
        (
            run_args(d, ds, &["--resume", "--limit", "64"]),
            vec!["no `--limit`, not `--limit 64`", "resume without `--limit`"],
        ),
        (
            vec![
                "run",
                "tests/fixtures/tiny_train.nn",
                "--data",
                d,
                "--checkpoint-dir",
                ds,
                "--seed",
                "8",
                "--resume",
            ],
            vec!["seed 7, not 8", "--seed 7"],
        ),
    ];
    for (args, needles) in cases {
        fails_with(&args, &needles);
        assert!(snapshot(&dir) == before, "a refused resume changed {ds}");
    }
    // A checkpoint of another shape of the same name: the first tensor named.
    let wider = variant("mismatch-shape", "linear(16)", "linear(17)");
    fails_with(
        &run_file(wider.to_str().unwrap(), d, ds, &["--resume"]),
        &["`6.bias` is [16] in the checkpoint but [17] in the model"],
    );
    assert!(snapshot(&dir) == before);

    // Finished: nothing is trained or tested again.
    let o = nnc(&run_args(d, ds, &["--epochs", "1", "--resume"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(
        stderr(&o).contains("already finished: 1 epoch; nothing to resume")
            && stderr(&o).contains("--epochs 2"),
        "{}",
        stderr(&o)
    );
    assert!(snapshot(&dir) == before, "a finished run was run again");
    // More epochs continue it.
    let o = nnc(&run_args(d, ds, &["--epochs", "2", "--resume"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    assert!(stderr(&o).contains("resuming `tiny` after epoch 1"));
    // No checkpoint at all.
    let empty = temp("mismatch-empty");
    fails_with(
        &run_args(d, empty.to_str().unwrap(), &["--resume"]),
        &["there is no checkpoint there"],
    );
}

/// Ctrl-C finishes the step, writes a checkpoint of the partial epoch and
/// exits 130 with the command that continues; continuing gives the weights
/// of an uninterrupted run, bit for bit.
#[cfg(unix)]
#[test]
fn ctrl_c_checkpoints_and_resumes_bit_identically() {
    let data = temp("sigint-data");
    synthetic_mnist(&data, 480, 40);
    let d = data.to_str().unwrap();
    let full = temp("sigint-full");
    let o = nnc(&run_args(d, full.to_str().unwrap(), &["--epochs", "2"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let expected =
        nnc::weights::safetensors::read_with_metadata(&full.join("last.safetensors")).unwrap();

    let dir = temp("sigint-run");
    let ds = dir.to_str().unwrap().to_string();
    let child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(run_args(d, &ds, &["--epochs", "2"]))
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Interrupt once training has started: the metrics file exists then.
    let metrics = dir.join("metrics.jsonl");
    let t0 = std::time::Instant::now();
    while !metrics.exists() && t0.elapsed().as_secs() < 60 {
        std::thread::sleep(std::time::Duration::from_millis(5));
    }
    std::thread::sleep(std::time::Duration::from_millis(50));
    let kill = Command::new("kill")
        .args(["-INT", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(kill.success());
    let o = child.wait_with_output().unwrap();
    let err = stderr(&o);
    if o.status.code() == Some(0) {
        // The run ended before the signal came: nothing to test here.
        println!("skipped: the run finished before Ctrl-C reached it");
        return;
    }
    assert_eq!(o.status.code(), Some(130), "{err}");
    assert!(
        err.contains("interrupted") && err.contains("--resume") && err.contains(&ds),
        "{err}"
    );
    assert!(dir.join("last.safetensors").exists(), "{err}");
    // The time spent on a partial epoch is kept, and counted in its record.
    let (_, meta) =
        nnc::weights::safetensors::read_with_metadata(&dir.join("last.safetensors")).unwrap();
    let partial: Option<(u64, f64)> = (meta["batches_done"] != "0").then(|| {
        let spent: f64 = meta["partial_seconds"].parse().unwrap();
        assert!(spent > 0.0, "{meta:?}");
        (meta["epoch"].parse::<u64>().unwrap() + 1, spent)
    });
    let o = nnc(&run_args(d, &ds, &["--epochs", "2", "--resume"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let got = nnc::weights::safetensors::read_with_metadata(&dir.join("last.safetensors")).unwrap();
    assert_eq!(got.1, expected.1);
    for (name, tensor) in &expected.0 {
        let bits = |t: &ndarray::ArrayD<f32>| t.iter().map(|v| v.to_bits()).collect::<Vec<_>>();
        assert!(
            bits(&got.0[name]) == bits(tensor),
            "`{name}` differs after Ctrl-C and a resume"
        );
    }
    // The epoch records are those of the uninterrupted run.
    let rows = |dir: &Path| -> Vec<(u64, String, String)> {
        std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .map(|v| {
                (
                    v["epoch"].as_u64().unwrap(),
                    v["split"].to_string(),
                    format!("{} {}", v["loss"], v["accuracy"]),
                )
            })
            .collect()
    };
    assert_eq!(rows(&dir), rows(&full));
    if let Some((epoch, spent)) = partial {
        let seconds = std::fs::read_to_string(dir.join("metrics.jsonl"))
            .unwrap()
            .lines()
            .map(|l| serde_json::from_str::<serde_json::Value>(l).unwrap())
            .find(|v| v["epoch"] == epoch && v["split"] == "train")
            .map(|v| v["seconds"].as_f64().unwrap())
            .unwrap();
        assert!(
            seconds >= spent,
            "epoch {epoch}: {seconds} s, {spent} before the interrupt"
        );
    }
}

#[test]
fn flags_get_the_checks_of_their_settings() {
    let data = temp("flags-data");
    synthetic_mnist(&data, 64, 8);
    let d = data.to_str().unwrap();
    let dir = temp("flags-run");
    let ds = dir.to_str().unwrap();
    fails_with(&run_args(d, ds, &["--epochs", "0"]), &["--epochs"]);
    fails_with(&run_args(d, ds, &["--limit", "0"]), &["at least 1 image"]);
    // A limit that leaves less than a batch blames the flag, not the file.
    let o = nnc(&run_args(d, ds, &["--limit", "10"]));
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(
        err.contains("`--limit 10` leaves") && err.contains("at least 21"),
        "{err}"
    );
    assert!(!err.contains("batch_size = "), "{err}");
}

/// Writes `.npy` data: `n` images of `shape` with labels `i % classes`.
fn npy_split(dir: &Path, prefix: &str, n: usize, shape: &[usize], classes: u32) {
    let mut dims = vec![n];
    dims.extend_from_slice(shape);
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&dims), |i| (i[0] % 7) as f32 / 7.0);
    nnc::weights::npy::write(&dir.join(format!("{prefix}images.npy")), &x).unwrap();
    let y =
        ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[n]), |i| (i[0] as u32 % classes) as f32);
    nnc::weights::npy::write(&dir.join(format!("{prefix}labels.npy")), &y).unwrap();
}

/// The test split is checked when the run starts, not after the last epoch.
#[test]
fn the_test_split_is_checked_before_training() {
    let file = variant("npy-file", "data = mnist(validation=0.25)", "data = npy()");
    let f = file.to_str().unwrap();
    let dir = temp("npy-run");
    let ds = dir.to_str().unwrap();
    let cases = [
        ([1, 28, 28], 10, [1, 32, 32], 10, "the test images"),
        ([1, 28, 28], 10, [1, 28, 28], 12, "include 10"),
    ];
    for (k, (train_shape, train_classes, test_shape, test_classes, needle)) in
        cases.into_iter().enumerate()
    {
        let data = temp(&format!("npy-data-{k}"));
        npy_split(&data, "", 64, &train_shape, train_classes);
        npy_split(&data, "test_", 16, &test_shape, test_classes);
        let o = nnc(&run_file(f, data.to_str().unwrap(), ds, &[]));
        assert_eq!(o.status.code(), Some(1), "{}", stderr(&o));
        let err = stderr(&o);
        assert!(err.contains(needle) && err.contains("E0604"), "{err}");
        assert!(
            !err.contains("epoch   1"),
            "the check came after training: {err}"
        );
    }
    // A test split that shows fewer classes than the training split is fine.
    let data = temp("npy-data-fewer");
    npy_split(&data, "", 64, &[1, 28, 28], 10);
    npy_split(&data, "test_", 16, &[1, 28, 28], 4);
    let o = nnc(&run_file(f, data.to_str().unwrap(), ds, &["--epochs", "1"]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
}

/// A run whose checkpoint directory cannot be created says which path and
/// why, with the I/O code, before it trains.
#[test]
fn an_unwritable_checkpoint_directory_is_an_io_error() {
    let data = temp("io-data");
    synthetic_mnist(&data, 64, 8);
    let blocker = temp("io-file").join("not-a-dir");
    std::fs::write(&blocker, b"a file").unwrap();
    let dir = blocker.join("run");
    fails_with(
        &run_args(data.to_str().unwrap(), dir.to_str().unwrap(), &[]),
        &["[E0606]", "cannot create", "not-a-dir"],
    );
}

/// Photos of mixed sizes train with `image_folder(..., size=...)`, which
/// resizes each as it is read; without `size`, the run names the odd image
/// and the fix.
#[test]
fn an_image_folder_of_mixed_sizes_trains_with_size() {
    let data = temp("mixed-sizes");
    for (class, shade) in [("dark", 30u8), ("light", 220u8)] {
        std::fs::create_dir_all(data.join(class)).unwrap();
        for i in 0..32u32 {
            let (w, h) = (20 + i % 5, 24 + i % 7);
            image::GrayImage::from_fn(w, h, |x, y| image::Luma([shade ^ ((x + y + i) % 8) as u8]))
                .save(data.join(class).join(format!("{i}.png")))
                .unwrap();
        }
    }
    let recipe = |data: &str| {
        format!(
            "network two {{\n    input x: [N, 1, 28, 28]\n    \
             return x -> conv2d(4, 3, stride=2) -> relu -> flatten -> linear(2)\n}}\n\
             train {{\n    data = {data}\n    batch_size = 8\n    epochs = 2\n    \
             optimizer = sgd(lr=0.05, momentum=0.9)\n}}\n"
        )
    };
    let dir = temp("mixed-sizes-run");
    let (ds, dirs) = (data.to_str().unwrap(), dir.to_str().unwrap());
    let without = dir.join("without.nn");
    std::fs::write(&without, recipe("image_folder()")).unwrap();
    // The hint may wrap (the path's length varies with the process id):
    // `fails_with` reads it as one line.
    fails_with(
        &run_file(without.to_str().unwrap(), ds, dirs, &[]),
        &["size=[24, 20]"],
    );
    let with = dir.join("with.nn");
    std::fs::write(&with, recipe("image_folder(size=28, validation=0.25)")).unwrap();
    let o = nnc(&run_file(with.to_str().unwrap(), ds, dirs, &[]));
    assert_eq!(o.status.code(), Some(0), "{}", stderr(&o));
    let metrics = std::fs::read_to_string(dir.join("metrics.jsonl")).unwrap();
    let last_val = metrics.lines().rfind(|l| l.contains("\"val\"")).unwrap();
    // Dark against light is learnt.
    assert!(last_val.contains("\"accuracy\":1"), "{metrics}");
}
