//! The examples in the documentation are programs: they must check, and
//! they are written as `nnc fmt` writes them.

fn nn_blocks(markdown: &str) -> Vec<String> {
    markdown
        .split("```nn\n")
        .skip(1)
        .map(|rest| rest.split("```").next().unwrap_or("").to_string())
        .collect()
}

fn errors_in(text: &str) -> Vec<String> {
    let (_, checked) = nnc::driver::check_bytes("doc.nn", text.as_bytes().to_vec());
    checked
        .diags
        .iter()
        .filter(|d| d.is_error())
        .map(|d| format!("[{}] {}", d.code, d.message))
        .collect()
}

/// Examples that define a network are complete files and must check
/// without errors; fragments must at least parse.
fn check_markdown(path: &str) {
    let text = std::fs::read_to_string(path).unwrap();
    let blocks = nn_blocks(&text);
    assert!(!blocks.is_empty(), "{path} has no nn examples");
    for (i, block) in blocks.iter().enumerate() {
        let errors = errors_in(block);
        let syntax: Vec<&String> = errors.iter().filter(|e| e.starts_with("[E01")).collect();
        assert!(
            syntax.is_empty(),
            "{path} example {i} does not parse: {syntax:?}\n{block}"
        );
        let formatted = nnc::format::format(block).unwrap();
        assert!(
            formatted == *block,
            "{path} example {i} is not formatted:\n{}",
            nnc::format::diff::unified("example", block, &formatted)
        );
        let complete =
            block.lines().any(|l| l.starts_with("network ")) && !block.contains("= resnet(");
        if complete {
            assert!(errors.is_empty(), "{path} example {i}: {errors:?}\n{block}");
        }
    }
}

#[test]
fn readme_examples_check() {
    check_markdown("README.md");
}

#[test]
fn language_reference_examples_check() {
    check_markdown("docs/language.md");
}

/// `docs/codes.md` is rendered from `src/diag_codes.rs` (each code with its
/// doc comment, by section), so the reference cannot drift from the code.
/// `NNC_BLESS=1 cargo test --test docs` rewrites it.
#[test]
fn code_reference_matches_the_code() {
    let source = std::fs::read_to_string("src/diag_codes.rs").unwrap();
    let mut out = String::from(
        "# Diagnostic codes\n\n\
         Every diagnostic nnc prints has a stable code. E01xx–E05xx are found by\n\
         `nnc check` before anything runs (`tests/ui/` has an example of each);\n\
         E06xx are found when a model is loaded, run or trained (exit code 1,\n\
         except E0699, a bug in nnc, exit code 2); W00xx are warnings.\n\
         This page is generated from `src/diag_codes.rs`.\n",
    );
    let mut doc = Vec::new();
    for line in source.lines() {
        let line = line.trim();
        if let Some(section) = line
            .strip_prefix("// ---- ")
            .and_then(|s| s.strip_suffix(" ----"))
        {
            let mut title = section.to_string();
            title[..1].make_ascii_uppercase();
            out.push_str(&format!("\n## {title}\n\n| code | meaning |\n|---|---|\n"));
        } else if let Some(d) = line.strip_prefix("/// ") {
            doc.push(d.to_string());
        } else if let Some(rest) = line.strip_prefix("pub const ") {
            let code = rest.split('"').nth(1).expect("a code string");
            out.push_str(&format!("| {code} | {} |\n", doc.join(" ")));
            doc.clear();
        } else {
            doc.clear();
        }
    }
    let path = "docs/codes.md";
    if std::env::var_os("NNC_BLESS").is_some() {
        std::fs::write(path, &out).unwrap();
    }
    let stored = std::fs::read_to_string(path).unwrap_or_default();
    assert!(
        stored == out,
        "{path} is out of date: run `NNC_BLESS=1 cargo test --test docs`"
    );
}
