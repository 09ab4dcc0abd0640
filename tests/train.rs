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
        assert!(std::fs::read_to_string(dir.join("metrics.svg"))
            .unwrap()
            .contains("accuracy"));
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
    for n in needles {
        assert!(err.contains(n), "no `{n}` in:\n{err}");
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
