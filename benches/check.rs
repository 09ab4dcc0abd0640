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

    lsp_recheck();

    // `nnc fmt` (and the server's formatting) of the same 1,000 lines,
    // its scrambled blanks undone.
    let messy = thousand_lines(0)
        .replace("    ", "  ")
        .replace(" -> ", "->");
    let tidy = thousand_lines(0);
    report(
        "nnc fmt: format 1,000 lines",
        measure(50, || {
            assert_eq!(nnc::format::format(&messy).unwrap(), tidy);
        }),
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

/// A 1,000-line file: 160 blocks of five lines and a network that chains
/// them, one call a line.
fn thousand_lines(k: usize) -> String {
    let mut text = String::new();
    for i in 0..160 {
        text.push_str(&format!(
            "block b{i}(c: int) {{\n    input x: [N, C, H, W]\n    return x -> conv2d(c, 3, padding=1) -> batch_norm -> relu\n}}\n\n"
        ));
    }
    text.push_str("network net {\n    input x: [N, 3, 32, 32]\n    y = x\n");
    for i in 0..(1000 - 160 * 5 - 5) {
        text.push_str(&format!("    y = y -> b{}({})\n", i % 160, 8 + (i + k) % 8));
    }
    text.push_str("    return y -> flatten -> linear(10)\n}\n");
    text
}

/// `nnc lsp`'s re-check after an edit: a session of `didChange`s of a
/// 1,000-line file, each answered by its diagnostics (the message read,
/// the text replaced, the file and what it imports checked, the
/// diagnostics converted and written), timed per change.
fn lsp_recheck() {
    use serde_json::json;
    let frame = |m: serde_json::Value| {
        let body = m.to_string();
        format!("Content-Length: {}\r\n\r\n{body}", body.len()).into_bytes()
    };
    let uri = format!("file://{}/bench.nn", std::env::temp_dir().display());
    assert_eq!(thousand_lines(0).lines().count(), 1000);
    let session = |changes: usize| {
        let mut input = frame(
            json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}),
        );
        input.extend(frame(json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {"textDocument": {"uri": uri, "languageId": "nn", "version": 0, "text": thousand_lines(0)}}})));
        for k in 1..=changes {
            input.extend(frame(json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {"textDocument": {"uri": uri, "version": k}, "contentChanges": [{"text": thousand_lines(k)}]}})));
        }
        input
    };
    let run = |input: &[u8]| {
        nnc::with_big_stack(|| {
            let (mut out, mut log) = (Vec::new(), Vec::new());
            nnc::lsp::serve(&mut std::io::BufReader::new(input), &mut out, &mut log).unwrap();
            assert!(log.is_empty(), "{}", String::from_utf8_lossy(&log));
            out
        })
    };
    let (one, many) = (session(0), session(20));
    // The session with 20 changes less the one with none, per change.
    let per_change = measure(10, || {
        run(&many);
    });
    let open_only = measure(10, || {
        run(&one);
    });
    let per = |a: Duration, b: Duration| a.saturating_sub(b) / 20;
    report(
        "nnc lsp: re-check after an edit, 1,000 lines",
        (
            per(per_change.0, open_only.0),
            per(per_change.1, open_only.1),
            per(per_change.2, open_only.2),
        ),
    );
}
