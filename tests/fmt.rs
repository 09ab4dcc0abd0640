//! `nnc fmt`: before/after text for each case in `tests/fmt/in/` (expected
//! in `tests/fmt/out/`; `NNC_BLESS=1 cargo test --test fmt` rewrites them),
//! the repository's own files already formatted, formatting undoing any
//! scrambling of blanks, and the command line.

mod common;

use nnc::format::{self, diff};
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

fn nn_files(dir: &str) -> Vec<PathBuf> {
    format::files::nn_files(&[PathBuf::from(dir)]).unwrap()
}

#[test]
fn before_and_after_text() {
    let bless = std::env::var_os("NNC_BLESS").is_some();
    let cases = nn_files("tests/fmt/in");
    assert!(cases.len() >= 4);
    let mut failures = Vec::new();
    for path in &cases {
        let input = std::fs::read_to_string(path).unwrap();
        let got = format::format(&input).unwrap_or_else(|e| panic!("{}: {e:?}", path.display()));
        assert_eq!(
            format::format(&got).unwrap(),
            got,
            "{}: not idempotent",
            path.display()
        );
        let expected_path = Path::new("tests/fmt/out").join(path.file_name().unwrap());
        if bless {
            std::fs::write(&expected_path, &got).unwrap();
        }
        let expected = std::fs::read_to_string(&expected_path).unwrap_or_default();
        if got != expected {
            failures.push(diff::unified(
                &expected_path.display().to_string(),
                &expected,
                &got,
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "formatted differently (NNC_BLESS=1 to accept):\n{}",
        failures.join("\n")
    );
}

/// Every `.nn` file of the repository that parses (the syntax-error cases
/// of tests/ui do not).
fn repository_files() -> Vec<(PathBuf, String)> {
    let mut out = Vec::new();
    for dir in [
        "examples",
        "stdlib",
        "tests/ui",
        "tests/fmt/out",
        "fuzz/corpus/check",
    ] {
        for path in nn_files(dir) {
            let Ok(text) = std::fs::read_to_string(&path) else {
                continue; // tests/ui/invalid_utf8.nn
            };
            if nnc::syntax::tokens::tokens(&text).is_some() {
                out.push((path, text));
            }
        }
    }
    assert!(out.len() > 100, "only {} files", out.len());
    out
}

#[test]
fn the_repository_is_formatted() {
    let mut unformatted = Vec::new();
    for (path, text) in repository_files() {
        if path.starts_with("fuzz") {
            continue; // copies of files, some from before the formatter
        }
        let got = format::format(&text).unwrap();
        if got != text {
            unformatted.push(diff::unified(&path.display().to_string(), &text, &got));
        }
    }
    assert!(
        unformatted.is_empty(),
        "run `nnc fmt examples stdlib tests/ui`:\n{}",
        unformatted.join("\n")
    );
}

/// The text with its blanks changed at random: spaces added, removed where
/// the formatter puts none, and indentation and trailing blanks changed;
/// line breaks and comments kept. Formatting must undo all of it.
fn scramble(text: &str, rng: &mut common::Rng) -> String {
    let toks = nnc::syntax::tokens::tokens(text).unwrap();
    let mut out = String::new();
    let mut at = 0;
    for tok in &toks {
        scramble_gap(&text[at..tok.start], rng, &mut out);
        out.push_str(tok.text);
        at = tok.end();
    }
    scramble_gap(&text[at..], rng, &mut out);
    out
}

fn scramble_gap(gap: &str, rng: &mut common::Rng, out: &mut String) {
    use nnc::syntax::tokens::Trivia;
    let blanks = |rng: &mut common::Rng, out: &mut String, at_least: usize| {
        for _ in 0..at_least + rng.below(3) {
            out.push(if rng.below(4) == 0 { '\t' } else { ' ' });
        }
    };
    let pieces = nnc::syntax::tokens::trivia(gap);
    // A gap with no blanks at all must not get a line break; one with
    // blanks keeps at least one blank so that words stay apart.
    let min = usize::from(!gap.is_empty());
    if pieces.is_empty() {
        blanks(rng, out, min);
    }
    for piece in pieces {
        match piece {
            Trivia::Newlines(n) => {
                for _ in 0..n {
                    blanks(rng, out, 0);
                    out.push('\n');
                }
                blanks(rng, out, 0);
            }
            Trivia::LineComment(c) | Trivia::BlockComment(c) => {
                blanks(rng, out, 1);
                out.push_str(c);
                blanks(rng, out, 1);
            }
        }
    }
}

#[test]
fn scrambled_blanks_format_back() {
    let mut rng = common::Rng(0x9e37_79b9_7f4a_7c15);
    for (path, text) in repository_files() {
        let formatted = format::format(&text).unwrap();
        assert_eq!(
            format::format(&formatted).unwrap(),
            formatted,
            "{}: not idempotent",
            path.display()
        );
        for round in 0..3 {
            let scrambled = scramble(&text, &mut rng);
            let got = format::format(&scrambled)
                .unwrap_or_else(|e| panic!("{} round {round}: {e:?}\n{scrambled}", path.display()));
            assert!(
                got == formatted,
                "{} round {round}: scrambled blanks do not format back:\n{}\nscrambled:\n{scrambled}",
                path.display(),
                diff::unified("expected", &formatted, &got)
            );
        }
    }
}

fn nnc(args: &[&str], stdin: Option<&str>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .args(args)
        .env("NO_COLOR", "1")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run nnc");
    let mut input = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, stdin.unwrap_or("").as_bytes()).unwrap();
    drop(input);
    child.wait_with_output().unwrap()
}

fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("nnc-fmt-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

const MESSY: &str = "network n {\ninput x: [N, 4]\nreturn x->linear( 2 )\n}\n";
const TIDY: &str = "network n {\n    input x: [N, 4]\n    return x -> linear(2)\n}\n";

#[test]
fn check_lists_what_it_would_change_and_changes_nothing() {
    let dir = scratch("check");
    std::fs::write(dir.join("messy.nn"), MESSY).unwrap();
    std::fs::write(dir.join("tidy.nn"), TIDY).unwrap();
    let o = nnc(&["fmt", "--check", dir.to_str().unwrap()], None);
    let (out, err) = (
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr),
    );
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert!(
        out.contains("-return x->linear( 2 )") && out.contains("+    return x -> linear(2)"),
        "{out}"
    );
    assert!(!out.contains("tidy.nn"), "{out}");
    assert!(err.contains("1 file not formatted, 1 formatted"), "{err}");
    assert_eq!(
        std::fs::read_to_string(dir.join("messy.nn")).unwrap(),
        MESSY
    );

    let o = nnc(
        &["fmt", "--check", dir.join("tidy.nn").to_str().unwrap()],
        None,
    );
    assert_eq!(o.status.code(), Some(0));
    assert!(o.stdout.is_empty());
}

#[test]
fn fmt_rewrites_in_place_and_leaves_broken_files_alone() {
    let dir = scratch("write");
    let broken = "network n {\n  input x: [N, 4]\n  return x -> linear(2\n}\n";
    std::fs::write(dir.join("messy.nn"), MESSY).unwrap();
    std::fs::write(dir.join("broken.nn"), broken).unwrap();
    let o = nnc(&["fmt", dir.to_str().unwrap()], None);
    let err = String::from_utf8_lossy(&o.stderr);
    assert_eq!(o.status.code(), Some(1), "{err}");
    assert_eq!(std::fs::read_to_string(dir.join("messy.nn")).unwrap(), TIDY);
    assert_eq!(
        std::fs::read_to_string(dir.join("broken.nn")).unwrap(),
        broken
    );
    assert!(
        err.contains("broken.nn:4:1") && err.contains("left unchanged"),
        "{err}"
    );
    assert!(
        err.contains("formatted ") && err.contains("messy.nn"),
        "{err}"
    );
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(leftovers.len(), 2, "{leftovers:?}");

    // The second run finds nothing to do.
    std::fs::remove_file(dir.join("broken.nn")).unwrap();
    let o = nnc(&["fmt", dir.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(0));
    assert!(String::from_utf8_lossy(&o.stderr).contains("0 files formatted, 1 already formatted"));
}

#[test]
fn standard_input_goes_to_standard_output() {
    let o = nnc(&["fmt", "-"], Some(MESSY));
    assert_eq!(o.status.code(), Some(0));
    assert_eq!(String::from_utf8_lossy(&o.stdout), TIDY);
    let o = nnc(&["fmt", "--check", "-"], Some(MESSY));
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stdout).contains("+++ <stdin> (formatted)"));
    let o = nnc(&["fmt", "-"], Some("network {"));
    assert_eq!(o.status.code(), Some(1));
    assert!(o.stdout.is_empty());
    assert!(String::from_utf8_lossy(&o.stderr).contains("<stdin>:1:9"));
    let empty = scratch("empty");
    let o = nnc(&["fmt", "--check", empty.to_str().unwrap()], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("no .nn files"));
    let o = nnc(&["fmt", "missing-file.nn"], None);
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("missing-file.nn"));
}

#[test]
fn scrambling_changes_the_blanks() {
    let mut rng = common::Rng(7);
    let text = std::fs::read_to_string("examples/resnet.nn").unwrap();
    let scrambled = scramble(&text, &mut rng);
    assert_ne!(scrambled, text);
    let words = |t: &str| t.split_whitespace().collect::<String>();
    assert_eq!(words(&scrambled), words(&text));
    assert_eq!(scrambled.lines().count(), text.lines().count());
}
