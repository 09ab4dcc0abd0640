//! Snapshot tests of diagnostics: every `tests/ui/NAME.nn` is checked and
//! its rendered diagnostics are compared with `tests/ui/NAME.stderr`.
//!
//! After a deliberate change to a message, refresh the snapshots with
//! `NNC_BLESS=1 cargo test --test ui` and review the diff.

use nnc::diag::{render_all, RenderOptions};
use std::fs;
use std::path::{Path, PathBuf};

fn ui_files() -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = fs::read_dir("tests/ui")
        .expect("tests/ui exists")
        .map(|e| e.expect("readable entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "nn"))
        .collect();
    files.sort();
    files
}

fn render(path: &Path) -> String {
    let (prog, checked) = nnc::driver::check_paths(&[path]);
    let text = render_all(&checked.diags, &prog.sources, RenderOptions::plain());
    // Snapshots are compared without trailing spaces, which editors strip.
    text.lines()
        .map(str::trim_end)
        .collect::<Vec<_>>()
        .join("\n")
        + "\n"
}

#[test]
fn diagnostics_match_snapshots() {
    let bless = std::env::var_os("NNC_BLESS").is_some();
    let files = ui_files();
    assert!(
        files.len() >= 30,
        "expected at least 30 ui tests, found {}",
        files.len()
    );
    let mut failures = Vec::new();
    for nn in &files {
        let expected_path = nn.with_extension("stderr");
        let actual = render(nn);
        if bless {
            fs::write(&expected_path, &actual).expect("write snapshot");
            continue;
        }
        let expected = fs::read_to_string(&expected_path).unwrap_or_default();
        if expected != actual {
            failures.push(format!(
                "--- {} (expected)\n{expected}\n+++ actual\n{actual}",
                expected_path.display()
            ));
        }
    }
    assert!(
        failures.is_empty(),
        "{} snapshot(s) differ; run `NNC_BLESS=1 cargo test --test ui` after checking the change:\n{}",
        failures.len(),
        failures.join("\n")
    );
}

/// Every ui test must produce at least one diagnostic, each with a code and
/// a location, so that no snapshot silently records "nothing".
#[test]
fn every_ui_test_reports_something_located() {
    for nn in ui_files() {
        let (_, checked) = nnc::driver::check_paths(&[nn.as_path()]);
        assert!(
            !checked.diags.is_empty(),
            "{} produces no diagnostic",
            nn.display()
        );
        for d in &checked.diags {
            assert!(
                d.primary.is_some(),
                "{}: diagnostic without a location: {}",
                nn.display(),
                d.message
            );
            assert!(!d.code.is_empty());
        }
    }
}
