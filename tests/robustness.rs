//! Robustness: thousands of random mutations of every example and
//! standard-library file. Each must end in a clean check or in located
//! diagnostics that render, never in a panic or a hang (the checker bounds
//! nesting, expansion and work, so every case finishes).

mod common;

use nnc::diag::{render_all, RenderOptions};
use std::panic::{catch_unwind, AssertUnwindSafe};

use common::Rng;

const TOKENS: &[&str] = &[
    "->",
    "(",
    ")",
    "[",
    "]",
    "{",
    "}",
    ",",
    "=",
    ":",
    "+",
    "*",
    "/",
    "-",
    "..",
    "as",
    "if",
    "else",
    "for",
    "in",
    "repeat",
    "return",
    "input",
    "network",
    "block",
    "train",
    "import",
    "std::",
    "x",
    "N",
    "0",
    "-1",
    "1e309",
    "99999999999999999999",
    "conv2d(",
    "relu",
    "\"",
    "/*",
    "//",
    "\n",
    "true",
    "concat(",
    "flatten",
    "linear(",
    "repeat 100000 {",
    "for i in 0..100000 {",
    "é",
    "\u{0}",
];

fn mutate(src: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut s = src.to_vec();
    let rounds = 1 + rng.below(3);
    for _ in 0..rounds {
        let len = s.len().max(1);
        match rng.below(8) {
            // Delete a span.
            0 => {
                let a = rng.below(len);
                let b = (a + 1 + rng.below(40)).min(s.len());
                if a < b {
                    s.drain(a..b);
                }
            }
            // Insert a token.
            1 => {
                let at = rng.below(len);
                let t = TOKENS[rng.below(TOKENS.len())].as_bytes();
                s.splice(at.min(s.len())..at.min(s.len()), t.iter().copied());
            }
            // Swap two lines.
            2 => {
                let mut lines: Vec<Vec<u8>> =
                    s.split(|&b| b == b'\n').map(<[u8]>::to_vec).collect();
                let (i, j) = (rng.below(lines.len()), rng.below(lines.len()));
                lines.swap(i, j);
                s = lines.join(&b'\n');
            }
            // Change a number.
            3 => {
                let digits: Vec<usize> = (0..s.len()).filter(|&i| s[i].is_ascii_digit()).collect();
                if !digits.is_empty() {
                    let at = digits[rng.below(digits.len())];
                    let replacement = [
                        "0",
                        "1",
                        "7",
                        "1000000",
                        "-3",
                        "4096",
                        "3.5",
                        "1000000000000",
                    ][rng.below(8)];
                    s.splice(at..at + 1, replacement.bytes());
                }
            }
            // Change a name: swap one identifier for another from the file.
            4 => {
                let text = String::from_utf8_lossy(&s).into_owned();
                let words: Vec<(usize, &str)> = text
                    .match_indices(|c: char| c.is_ascii_alphabetic())
                    .filter(|(i, _)| *i == 0 || !text.as_bytes()[i - 1].is_ascii_alphanumeric())
                    .map(|(i, _)| {
                        let end = text[i..]
                            .find(|c: char| !c.is_ascii_alphanumeric() && c != '_')
                            .map_or(text.len(), |e| i + e);
                        (i, &text[i..end])
                    })
                    .collect();
                if words.len() > 1 {
                    let (at, w) = words[rng.below(words.len())];
                    let (_, other) = words[rng.below(words.len())];
                    let mut out = text[..at].to_string();
                    out.push_str(other);
                    out.push_str(&text[at + w.len()..]);
                    s = out.into_bytes();
                }
            }
            // Random bytes.
            5 => {
                for _ in 0..1 + rng.below(4) {
                    let at = rng.below(len).min(s.len().saturating_sub(1));
                    if !s.is_empty() {
                        s[at] = rng.next() as u8;
                    }
                }
            }
            // Truncate.
            6 => {
                let at = rng.below(len);
                s.truncate(at);
            }
            // Duplicate a span (repeated definitions, doubled layers).
            _ => {
                let a = rng.below(len);
                let b = (a + rng.below(80)).min(s.len());
                let copy = s[a..b].to_vec();
                s.splice(b..b, copy);
            }
        }
    }
    s
}

fn sources() -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for dir in ["examples", "stdlib", "tests/ui"] {
        let mut paths: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        paths.sort();
        for p in paths {
            if p.extension().is_some_and(|e| e == "nn") {
                out.push((p.display().to_string(), std::fs::read(&p).unwrap()));
            }
        }
    }
    out
}

fn check_case(name: &str, bytes: Vec<u8>) -> Result<(), String> {
    let result = catch_unwind(AssertUnwindSafe(|| {
        // `nnc fmt` formats every text that parses, keeps its tokens and
        // comments (checked inside `format`), and formats its output to
        // itself.
        if let Ok(text) = std::str::from_utf8(&bytes) {
            match nnc::format::format(text) {
                Ok(once) if nnc::format::format(&once).as_ref() != Ok(&once) => {
                    return Err(format!("formatting is not idempotent:\n{once}"));
                }
                Err(nnc::format::Error::Internal(why)) => {
                    return Err(format!("formatting failed: {why}"));
                }
                _ => {}
            }
        }
        let (prog, checked) = nnc::driver::check_bytes(name, bytes);
        for d in &checked.diags {
            if d.primary.is_none() {
                return Err(format!(
                    "diagnostic without a location: [{}] {}",
                    d.code, d.message
                ));
            }
        }
        // Rendering must cope with every span the checker produces.
        let text = render_all(&checked.diags, &prog.sources, RenderOptions::plain());
        if nnc::diag::has_errors(&checked.diags) && !text.contains('×') {
            return Err("errors rendered without a marker".to_string());
        }
        Ok(())
    }));
    match result {
        Ok(r) => r,
        Err(_) => Err("panicked".to_string()),
    }
}

#[test]
fn mutated_sources_never_panic() {
    let files = sources();
    // NNC_MUTATIONS=k multiplies the counts, for a longer run by hand.
    let scale: usize = std::env::var("NNC_MUTATIONS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1);
    let mut failures = Vec::new();
    let mut cases = 0;
    for (i, (name, src)) in files.iter().enumerate() {
        let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ (i as u64 + 1));
        // Examples and the standard library get the most; each ui test some.
        let per_file = scale * if name.starts_with("tests/") { 10 } else { 300 };
        for k in 0..per_file {
            let mutated = mutate(src, &mut rng);
            cases += 1;
            if let Err(why) = check_case(name, mutated.clone()) {
                failures.push(format!(
                    "{name} mutation {k}: {why}\n---\n{}\n---",
                    String::from_utf8_lossy(&mutated)
                ));
                if failures.len() > 5 {
                    break;
                }
            }
        }
    }
    assert!(cases >= 3_000, "only {cases} cases");
    assert!(
        failures.is_empty(),
        "{} of {cases} cases failed:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

#[test]
fn hostile_inputs_end_in_diagnostics() {
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("empty", Vec::new()),
        ("invalid utf-8", vec![0xff, 0xfe, 0x00, 0x80]),
        ("huge channels", b"network n { input x: [N, 3, 8, 8]\n return x -> conv2d(1000000000000000000000000000000, 3) }".to_vec()),
        ("big but valid channels", b"network n { input x: [N, 3, 8, 8]\n return x -> conv2d(4611686018427387904, 3) -> conv2d(4611686018427387904, 3) }".to_vec()),
        ("huge input", b"network n { input x: [9223372036854775807, 9223372036854775807, 8, 8]\n return x -> flatten }".to_vec()),
        ("deep parens", format!("network n {{ input x: [N, 3]\n return x -> linear({}1{}) }}", "(".repeat(10_000), ")".repeat(10_000)).into_bytes()),
        ("long sum", format!("network n {{ input x: [N, 3]\n return x -> linear({}1) }}", "1 + ".repeat(50_000)).into_bytes()),
        ("many negations", format!("network n {{ input x: [N, 3]\n return x -> linear({}1) }}", "-".repeat(50_000)).into_bytes()),
        ("many nots", format!("network n {{ input x: [N, 3]\n return x -> if {}true {{ relu }} }}", "not ".repeat(50_000)).into_bytes()),
        ("mutual recursion", b"block a() { input x: [N, C]\n return x -> b }\nblock b() { input x: [N, C]\n return x -> a }\nnetwork n { input x: [N, 3]\n return x -> a }".to_vec()),
        ("nested loops", b"network n { input x: [N, 3]\n return x -> for i in 0..100000 { for j in 0..100000 { } } }".to_vec()),
        ("exponential blocks", {
            let mut s = String::from("block b0() { input x: [N, C]\n return x -> relu }\n");
            for i in 1..40 {
                s.push_str(&format!("block b{i}() {{ input x: [N, C]\n return x -> b{} -> b{} }}\n", i - 1, i - 1));
            }
            s.push_str("network n { input x: [N, 3]\n return x -> b39 }\n");
            s.into_bytes()
        }),
        ("only a comment", b"// nothing".to_vec()),
        ("unterminated comment", b"/* network".to_vec()),
        ("unterminated string", b"import \"x.nn".to_vec()),
        ("overflowing shape arithmetic", b"network n(k: int = 9223372036854775807) { input x: [N, 3]\n return x -> linear(k * k) }".to_vec()),
        ("deep scopes", format!("network n {{ input x: [N, 3]\n return x -> {}relu{} }}", "a { ".repeat(60), " }".repeat(60)).into_bytes()),
    ];
    for (what, bytes) in cases {
        if let Err(why) = check_case(what, bytes) {
            panic!("{what}: {why}");
        }
    }
}
