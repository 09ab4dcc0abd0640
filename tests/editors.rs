//! The editor integrations in `editors/`: what can be checked without the
//! editors themselves (the Neovim configuration runs in `tests/lsp.rs`),
//! and the VS Code extension run by Node with the real
//! vscode-languageclient against `nnc lsp`.

mod common;

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

/// The VS Code extension, loaded as VS Code loads it, with the real
/// `vscode-languageclient` (`npm ci` in editors/vscode) and the real
/// `nnc lsp`; only VS Code's own API is a recorder
/// (`editors/vscode/test/smoke.js`). Skipped where Node or the npm
/// packages are missing, unless `NNC_REQUIRE_VSCODE_CLIENT` is set
/// (`.ci/run` installs them and sets it).
#[test]
fn the_vscode_extension_starts_the_server_through_the_real_client() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("editors/vscode");
    let node = common::on_path("node");
    let ready = dir.join("node_modules/vscode-languageclient").is_dir();
    let Some(node) = node.filter(|_| ready) else {
        assert!(
            std::env::var_os("NNC_REQUIRE_VSCODE_CLIENT").is_none(),
            "NNC_REQUIRE_VSCODE_CLIENT is set but node or editors/vscode/node_modules is missing"
        );
        eprintln!("skipped: needs node and `npm ci` in editors/vscode");
        return;
    };
    let scratch = std::env::temp_dir().join(format!("nnc-vscode-{}", std::process::id()));
    std::fs::create_dir_all(&scratch).unwrap();
    let file = scratch.join("net.nn");
    // A shape error on line 3, and line 2 not formatted.
    std::fs::write(
        &file,
        "network net {\n  input x:[N, 1, 28, 28]\n    return x -> conv2d(6, 5) -> max_pool(2) -> conv2d(16, 13)\n}\n",
    )
    .unwrap();
    let out = std::process::Command::new(node)
        .arg(dir.join("test/smoke.js"))
        .arg(&file)
        .env("PATH", common::path_with_nnc())
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let report: Value = serde_json::from_str(&stdout).unwrap();
    // The client registered VS Code providers from the server's answer to
    // `initialize`.
    for provider in [
        "Hover",
        "Definition",
        "CompletionItem",
        "DocumentFormattingEdit",
    ] {
        assert!(
            report["registered"]
                .as_array()
                .unwrap()
                .contains(&Value::from(provider)),
            "{report}"
        );
    }
    let d = &report["diagnostics"][0];
    assert_eq!(
        (d["line"].as_i64(), d["code"].as_str()),
        (Some(2), Some("E0403")),
        "{report}"
    );
    let edit = &report["formatting"][0];
    assert_eq!(edit["text"], "    input x: [N, 1, 28, 28]\n", "{report}");
    assert!(
        report["hover"]
            .as_str()
            .unwrap()
            .contains("**conv2d** → `[N, 6, 24, 24]`"),
        "{report}"
    );
    std::fs::remove_dir_all(&scratch).unwrap();
}
