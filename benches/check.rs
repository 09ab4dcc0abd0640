//! How long checking takes: `cargo bench --bench check`.
//!
//! The figure the front end is held to is `nnc check std::resnet152`
//! under 50 ms. Measured here in-process (load the standard library, parse,
//! expand and shape-check ResNet-152 from nothing, as the command does) and
//! as a whole process (the release binary, start-up included).
//!
//! A plain harness: the numbers are medians of many runs, printed, never
//! asserted.

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

fn measure(runs: usize, mut f: impl FnMut()) -> (Duration, Duration, Duration) {
    for _ in 0..3 {
        f();
    }
    let mut times: Vec<Duration> = (0..runs)
        .map(|_| {
            let t = Instant::now();
            f();
            t.elapsed()
        })
        .collect();
    times.sort();
    (times[0], times[runs / 2], times[runs * 9 / 10])
}

fn report(what: &str, (min, median, p90): (Duration, Duration, Duration)) {
    let ms = |d: Duration| d.as_secs_f64() * 1e3;
    println!(
        "{what:<44} min {:>7.2} ms   median {:>7.2} ms   p90 {:>7.2} ms",
        ms(min),
        ms(median),
        ms(p90)
    );
}

fn main() {
    // `cargo bench` passes `--bench`; a filter argument is not supported.
    let check = |target: &str| {
        let (_, checked) = nnc::driver::check_paths(&[Path::new(target)]);
        assert!(
            !nnc::diag::has_errors(&checked.diags),
            "{target} has errors"
        );
        assert!(!checked.models.is_empty() || target.ends_with(".nn"));
    };
    report(
        "check std::resnet152 (in-process)",
        measure(50, || check("std::resnet152")),
    );
    report(
        "check std::resnet18 (in-process)",
        measure(50, || check("std::resnet18")),
    );
    report(
        "check stdlib/resnet.nn, 5 networks",
        measure(50, || check("stdlib/resnet.nn")),
    );
    report(
        "check examples/resnet.nn",
        measure(50, || check("examples/resnet.nn")),
    );

    // The whole command, as a user runs it, when the release binary exists.
    let exe = Path::new(env!("CARGO_MANIFEST_DIR")).join("target/release/nnc");
    if exe.exists() {
        let run = || {
            let status = Command::new(&exe)
                .args(["check", "std::resnet152"])
                .output()
                .expect("run nnc");
            assert!(status.status.success());
        };
        report("process: nnc check std::resnet152", measure(30, run));
    } else {
        println!("(build with `cargo build --release` to time the nnc process too)");
    }
}
