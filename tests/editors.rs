//! The editor integrations in `editors/`: what can be checked without the
//! editors themselves (the Neovim configuration runs in `tests/lsp.rs`).

use serde_json::Value;

fn json(path: &str) -> Value {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{path}: {e}"));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{path}: {e}"))
}

/// The VS Code extension's manifest, language configuration and grammar
/// are valid JSON and agree with each other, and the extension starts
/// `nnc lsp`.
#[test]
fn the_vscode_extension_is_consistent() {
    let manifest = json("editors/vscode/package.json");
    let contributes = &manifest["contributes"];
    let language = &contributes["languages"][0];
    assert_eq!(language["id"], "nn");
    assert_eq!(language["extensions"][0], ".nn");
    let grammar_entry = &contributes["grammars"][0];
    assert_eq!(grammar_entry["language"], "nn");
    let dir = "editors/vscode/";
    let config = json(&format!(
        "{dir}{}",
        language["configuration"].as_str().unwrap()
    ));
    assert_eq!(config["comments"]["lineComment"], "//");
    let grammar = json(&format!("{dir}{}", grammar_entry["path"].as_str().unwrap()));
    assert_eq!(grammar["scopeName"], grammar_entry["scopeName"]);
    assert!(manifest["activationEvents"]
        .as_array()
        .unwrap()
        .contains(&Value::from("onLanguage:nn")));
    let main = manifest["main"].as_str().unwrap();
    let script = std::fs::read_to_string(format!("{dir}{main}")).unwrap();
    assert!(script.contains(r#"args: ["lsp"]"#), "starts `nnc lsp`");
    assert!(manifest["dependencies"]["vscode-languageclient"].is_string());
}

/// Every layer the checker knows is highlighted as one, and every keyword
/// of the grammar as a keyword.
#[test]
fn the_vscode_grammar_knows_every_layer_and_keyword() {
    let grammar = json("editors/vscode/syntaxes/nn.tmLanguage.json");
    let layers = grammar["repository"]["layers"]["match"].as_str().unwrap();
    for op in nnc::check::ops::OPS {
        assert!(
            layers.contains(&format!("|{}|", op.name))
                || layers.contains(&format!("({}|", op.name))
                || layers.contains(&format!("|{})", op.name)),
            "`{}` is not in the grammar's layers",
            op.name
        );
    }
    let pest = std::fs::read_to_string("grammar/nn.pest").unwrap();
    let text = serde_json::to_string(&grammar).unwrap();
    let start = pest.find("keyword    = @{").unwrap();
    let end = start + pest[start..].find('}').unwrap();
    for word in pest[start..end].split('"').skip(1).step_by(2) {
        assert!(
            text.contains(word),
            "keyword `{word}` is not in the grammar"
        );
    }
}
