//! The examples in the documentation are programs: they must check.

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
