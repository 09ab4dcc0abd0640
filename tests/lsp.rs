//! `nnc lsp` as an editor sees it: the binary started with pipes, spoken
//! to in JSON-RPC with LSP's framing.

mod common;

use serde_json::{json, Value};
use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, ChildStdin, Command, Stdio};
use std::sync::mpsc::{channel, Receiver};
use std::time::Duration;

struct Client {
    child: Child,
    stdin: Option<ChildStdin>,
    messages: Receiver<Value>,
    next_id: i64,
    /// What the server said it can do.
    capabilities: Value,
}

impl Client {
    fn start() -> Client {
        Client::start_with(json!(null))
    }

    /// Starts the server with these `initializationOptions`.
    fn start_with(options: Value) -> Client {
        Client::start_as(json!({}), options)
    }

    /// Starts the server as a client with these capabilities.
    fn start_as(capabilities: Value, options: Value) -> Client {
        let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
            .arg("lsp")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("nnc lsp starts");
        let stdout = child.stdout.take().unwrap();
        let (tx, messages) = channel();
        std::thread::spawn(move || {
            let mut r = BufReader::new(stdout);
            loop {
                let mut len = None;
                loop {
                    let mut line = String::new();
                    if r.read_line(&mut line).unwrap_or(0) == 0 {
                        return;
                    }
                    let line = line.trim_end();
                    if line.is_empty() {
                        break;
                    }
                    if let Some(v) = line.strip_prefix("Content-Length: ") {
                        len = v.parse::<usize>().ok();
                    }
                }
                let mut body = vec![0; len.expect("a Content-Length header")];
                if r.read_exact(&mut body).is_err() {
                    return;
                }
                let _ = tx.send(serde_json::from_slice(&body).expect("the server sends JSON"));
            }
        });
        let stdin = child.stdin.take();
        let mut c = Client {
            child,
            stdin,
            messages,
            next_id: 1,
            capabilities: Value::Null,
        };
        let init = c.request(
            "initialize",
            json!({"capabilities": capabilities, "initializationOptions": options}),
        );
        assert!(
            init["result"]["capabilities"]["textDocumentSync"].is_object(),
            "{init}"
        );
        c.capabilities = init["result"]["capabilities"].clone();
        c.notify("initialized", json!({}));
        c
    }

    fn send_raw(&mut self, bytes: &[u8]) {
        let stdin = self.stdin.as_mut().unwrap();
        stdin.write_all(bytes).unwrap();
        stdin.flush().unwrap();
    }

    fn send(&mut self, message: Value) {
        let body = message.to_string();
        let framed = format!("Content-Length: {}\r\n\r\n{body}", body.len());
        self.send_raw(framed.as_bytes());
    }

    fn notify(&mut self, method: &str, params: Value) {
        self.send(json!({"jsonrpc": "2.0", "method": method, "params": params}));
    }

    /// Sends a request and returns its response (skipping notifications).
    fn request(&mut self, method: &str, params: Value) -> Value {
        let id = self.next_id;
        self.next_id += 1;
        self.send(json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}));
        self.wait(|m| m["id"] == id)
    }

    /// The next message that `want` accepts, within ten seconds.
    fn wait(&mut self, want: impl Fn(&Value) -> bool) -> Value {
        loop {
            let m = self
                .messages
                .recv_timeout(Duration::from_secs(10))
                .expect("the server answers");
            if want(&m) {
                return m;
            }
        }
    }

    /// The next diagnostics published for `uri`.
    fn diagnostics(&mut self, uri: &str) -> Vec<Value> {
        let m = self.wait(|m| {
            m["method"] == "textDocument/publishDiagnostics" && m["params"]["uri"] == uri
        });
        m["params"]["diagnostics"].as_array().unwrap().clone()
    }

    fn open(&mut self, uri: &str, text: &str) {
        self.notify(
            "textDocument/didOpen",
            json!({"textDocument": {"uri": uri, "languageId": "nn", "version": 1, "text": text}}),
        );
    }

    fn change(&mut self, uri: &str, version: i64, text: &str) {
        self.notify(
            "textDocument/didChange",
            json!({"textDocument": {"uri": uri, "version": version}, "contentChanges": [{"text": text}]}),
        );
    }

    /// Shuts down (or only exits) and returns the exit status and stderr.
    fn finish(mut self, shutdown: bool) -> (i32, String) {
        if shutdown {
            let r = self.request("shutdown", Value::Null);
            assert_eq!(r["result"], Value::Null, "{r}");
        }
        self.notify("exit", Value::Null);
        drop(self.stdin.take());
        let status = self.child.wait().unwrap();
        let mut log = String::new();
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut log)
            .unwrap();
        (status.code().unwrap_or(-1), log)
    }
}

/// A folder of its own for one test's files, and the `file:` URI of a
/// file in it.
fn folder(name: &str) -> (std::path::PathBuf, impl Fn(&str) -> String) {
    let dir = std::env::temp_dir().join(format!("nnc-lsp-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let dir = dir.canonicalize().unwrap();
    let base = dir.clone();
    (dir, move |file: &str| {
        format!("file://{}", base.join(file).display())
    })
}

const SHAPE_ERROR: &str = "network net {
    input x: [N, 1, 28, 28]
    return x -> conv2d(6, 5) -> max_pool(2) -> conv2d(16, 13)
}
";

const FIXED: &str = "network net {
    input x: [N, 1, 28, 28]
    return x -> conv2d(6, 5) -> max_pool(2) -> flatten -> linear(10)
}
";

#[test]
fn a_shape_error_is_reported_on_its_line_and_cleared_when_fixed() {
    let (_dir, uri) = folder("shape");
    let mut c = Client::start();
    let net = uri("net.nn");
    c.open(&net, SHAPE_ERROR);
    let diags = c.diagnostics(&net);
    assert_eq!(diags.len(), 1, "{diags:?}");
    let d = &diags[0];
    assert_eq!(d["severity"], 1, "an error: {d}");
    assert_eq!(d["range"]["start"]["line"], 2, "on the line of `add`: {d}");
    assert!(
        d["code"].as_str().unwrap().starts_with("E04"),
        "a shape code: {d}"
    );
    assert!(
        d["source"] == "nnc" && d["codeDescription"]["href"].is_string(),
        "{d}"
    );
    let message = d["message"].as_str().unwrap();
    assert!(
        message.contains("larger than its input") && message.contains("\nhelp: "),
        "{d}"
    );
    // The secondary label (the shape the layer gets) as related information.
    let related = &d["relatedInformation"][0];
    assert_eq!(related["location"]["uri"], net);
    assert!(
        related["message"]
            .as_str()
            .unwrap()
            .contains("[N, 6, 12, 12]"),
        "{d}"
    );
    c.change(&net, 2, FIXED);
    assert_eq!(c.diagnostics(&net), Vec::<Value>::new(), "cleared");
    let (status, _) = c.finish(true);
    assert_eq!(status, 0, "exit after shutdown");
}

#[test]
fn positions_count_utf16_code_units() {
    let (_dir, uri) = folder("utf16");
    let mut c = Client::start();
    let net = uri("net.nn");
    // A comment with characters outside the BMP before the error on the
    // same line: columns count UTF-16 units (two per emoji), not bytes
    // (four) or characters (one).
    let text =
        "network net {\n    input x: [N, 4]\n    return x -> linear(3) -> nope /* 🙂🙂 */\n}\n";
    let text = text.replace("-> nope /* 🙂🙂 */", "/* 🙂🙂 */ -> nope");
    c.open(&net, &text);
    let diags = c.diagnostics(&net);
    let d = diags
        .iter()
        .find(|d| d["code"] == "E0202")
        .unwrap_or_else(|| panic!("an unknown layer: {diags:?}"));
    let line = text.lines().nth(2).unwrap();
    let byte = line.find("nope").unwrap();
    let units = line[..byte].encode_utf16().count();
    assert_eq!(d["range"]["start"]["line"], 2);
    assert_eq!(d["range"]["start"]["character"], units as i64, "{d}");
    c.finish(true);
}

#[test]
fn an_import_edited_in_the_editor_is_checked_from_its_buffer() {
    let (dir, uri) = folder("import");
    std::fs::write(
        dir.join("lib.nn"),
        "block head(k: int) {\n    input x: [N, F]\n    return x -> linear(k)\n}\n",
    )
    .unwrap();
    let main =
        "import \"lib.nn\"\n\nnetwork net {\n    input x: [N, 8]\n    return x -> head(10)\n}\n";
    let mut c = Client::start();
    let (main_uri, lib_uri) = (uri("main.nn"), uri("lib.nn"));
    c.open(&main_uri, main);
    assert_eq!(c.diagnostics(&main_uri), Vec::<Value>::new());
    // The block renamed in the editor, not saved: `head` is gone.
    let lib = std::fs::read_to_string(dir.join("lib.nn")).unwrap();
    c.open(&lib_uri, &lib.replace("head", "tail"));
    let diags = c.diagnostics(&main_uri);
    assert!(
        diags.iter().any(|d| d["range"]["start"]["line"] == 4),
        "main.nn's use of `head` is an error now: {diags:?}"
    );
    // An error inside the import is reported on the import's own file.
    c.change(&lib_uri, 2, &lib.replace("linear(k)", "linear(k, 3)"));
    let lib_diags = c.diagnostics(&lib_uri);
    assert!(
        lib_diags.iter().any(|d| d["range"]["start"]["line"] == 2),
        "{lib_diags:?}"
    );
    c.finish(true);
}

#[test]
fn an_import_changed_on_disk_is_checked_again_where_the_client_watches_files() {
    let (dir, uri) = folder("watch");
    let lib = "block head(k: int) {\n    input x: [N, F]\n    return x -> linear(k)\n}\n";
    std::fs::write(dir.join("lib.nn"), lib).unwrap();
    let main =
        "import \"lib.nn\"\n\nnetwork net {\n    input x: [N, 8]\n    return x -> head(10)\n}\n";
    let capabilities =
        json!({"workspace": {"didChangeWatchedFiles": {"dynamicRegistration": true}}});
    let mut c = Client::start_as(capabilities, Value::Null);
    // After `initialized`, the server asks to be told about .nn files.
    let ask = c.wait(|m| m["method"] == "client/registerCapability");
    let registration = &ask["params"]["registrations"][0];
    assert_eq!(
        registration["method"], "workspace/didChangeWatchedFiles",
        "{ask}"
    );
    assert_eq!(
        registration["registerOptions"]["watchers"][0]["globPattern"],
        "**/*.nn"
    );
    c.send(json!({"jsonrpc": "2.0", "id": ask["id"], "result": null}));
    let main_uri = uri("main.nn");
    c.open(&main_uri, main);
    assert_eq!(c.diagnostics(&main_uri), Vec::<Value>::new());
    // Another program renames the block in lib.nn, which is not open.
    std::fs::write(dir.join("lib.nn"), lib.replace("head", "tail")).unwrap();
    c.notify(
        "workspace/didChangeWatchedFiles",
        json!({"changes": [{"uri": uri("lib.nn"), "type": 2}]}),
    );
    let diags = c.diagnostics(&main_uri);
    assert!(
        diags.iter().any(|d| d["range"]["start"]["line"] == 4),
        "main.nn's use of `head` is an error now: {diags:?}"
    );
    c.finish(true);

    // A client that cannot register watchers is not asked to.
    let mut c = Client::start();
    let r = c.request("shutdown", Value::Null);
    assert_eq!(r["result"], Value::Null);
    c.notify("exit", Value::Null);
    while let Ok(m) = c.messages.recv_timeout(Duration::from_millis(200)) {
        assert_ne!(m["method"], "client/registerCapability", "{m}");
    }
}

fn hover_text(c: &mut Client, uri: &str, line: u32, character: u32) -> Option<String> {
    let r = c.request(
        "textDocument/hover",
        json!({"textDocument": {"uri": uri}, "position": {"line": line, "character": character}}),
    );
    assert!(r.get("error").is_none(), "{r}");
    r["result"]["contents"]["value"]
        .as_str()
        .map(str::to_string)
}

#[test]
fn hover_shows_shapes_parameters_and_totals() {
    let (_dir, uri) = folder("hover");
    let mut c = Client::start();
    let net = uri("net.nn");
    let text = "block twice(k: int) {\n    input x: [N, F]\n    return x -> linear(k)\n}\n\nnetwork net {\n    input x: [N, 1, 28, 28]\n    y = x -> conv2d(6, 5) -> flatten\n    return y -> twice(32) -> twice(10)\n}\n";
    c.open(&net, text);
    assert_eq!(c.diagnostics(&net), Vec::<Value>::new());
    // A layer call: its output shape, path, parameters and MACs.
    let conv = hover_text(&mut c, &net, 7, 14).expect("a hover on conv2d");
    assert!(conv.contains("**conv2d** → `[N, 6, 24, 24]`"), "{conv}");
    assert!(
        conv.contains("`0` in `net`, 156 parameters, 86400*N MACs"),
        "{conv}"
    );
    // A name: its shape.
    let y = hover_text(&mut c, &net, 8, 11).expect("a hover on y");
    assert_eq!(y, "`y`: `[N, 3456]`");
    // A layer inside a block used twice: one shape per use.
    let inner = hover_text(&mut c, &net, 2, 17).expect("a hover in the block");
    assert!(
        inner.contains("`2.0` in `net`: `[N, 32]`") && inner.contains("`3.0` in `net`: `[N, 10]`"),
        "{inner}"
    );
    // A parameter, where it is used and where it is declared: its value
    // in each use of the block; a size the input pattern binds.
    let k = hover_text(&mut c, &net, 2, 24).expect("a hover on k");
    assert_eq!(k, "`k` = `32`, `10`, one per place this code is used");
    assert_eq!(hover_text(&mut c, &net, 0, 12).as_deref(), Some(k.as_str()));
    let f = hover_text(&mut c, &net, 1, 17).expect("a hover on F");
    assert_eq!(f, "`F` = `3456`, `32`, one per place this code is used");
    // The network's name: its signature and totals.
    let total = hover_text(&mut c, &net, 5, 9).expect("a hover on the network");
    assert!(
        total.starts_with("**net**: `[N, 1, 28, 28]` → `[N, 10]`"),
        "{total}"
    );
    assert!(total.contains("111,110 parameters"), "{total}");
    // Whitespace, and a file that was never opened: no hover, no error.
    assert_eq!(hover_text(&mut c, &net, 4, 0), None);
    assert_eq!(hover_text(&mut c, &uri("never-opened.nn"), 0, 0), None);
    c.finish(true);
}

/// `(uri, line, character)` of a location.
fn place(l: &Value) -> (String, i64, i64) {
    (
        l["uri"].as_str().unwrap().to_string(),
        l["range"]["start"]["line"].as_i64().unwrap(),
        l["range"]["start"]["character"].as_i64().unwrap(),
    )
}

#[test]
fn definitions_references_and_symbols() {
    let (dir, uri) = folder("navigate");
    std::fs::write(
        dir.join("lib.nn"),
        "block head(k: int) {\n    input x: [N, F]\n    return x -> linear(k)\n}\n",
    )
    .unwrap();
    let text = "import \"lib.nn\"\nimport std::resnet18\n\nblock twice(k: int) {\n    input x: [N, F]\n    return x -> linear(k) -> linear(k)\n}\n\nnetwork net {\n    input x: [N, 8]\n    y = x -> twice(16)\n    return y -> twice(4) -> head(10)\n}\n\ntrain net {\n    epochs = 1\n}\n";
    let mut c = Client::start();
    let net = uri("net.nn");
    c.open(&net, text);
    c.diagnostics(&net);
    let at = |line: u32, character: u32| json!({"textDocument": {"uri": net}, "position": {"line": line, "character": character}});
    let definition = |c: &mut Client, line, character| {
        let r = c.request("textDocument/definition", at(line, character));
        r["result"].clone()
    };
    // A block call: the block's name.
    assert_eq!(place(&definition(&mut c, 11, 16)), (net.clone(), 3, 6));
    // A value's use: its binding.
    assert_eq!(place(&definition(&mut c, 11, 12)), (net.clone(), 10, 4));
    // A block from an imported file, and the import itself.
    assert_eq!(place(&definition(&mut c, 11, 29)), (uri("lib.nn"), 0, 6));
    assert_eq!(place(&definition(&mut c, 0, 9)), (uri("lib.nn"), 0, 0));
    // The standard library: a copy of its file that an editor can open.
    let std_def = definition(&mut c, 1, 15);
    let (std_uri, line, _) = place(&std_def);
    let std_path = std_uri.strip_prefix("file://").unwrap();
    let std_text = std::fs::read_to_string(std_path).unwrap();
    let line_text = std_text.lines().nth(line as usize).unwrap();
    assert!(line_text.contains("resnet18"), "{line_text}");
    // A built-in layer has no definition in a file.
    assert_eq!(definition(&mut c, 5, 18), Value::Null);
    // References of `twice`, from its definition, with the declaration.
    let r = c.request(
        "textDocument/references",
        json!({"textDocument": {"uri": net}, "position": {"line": 3, "character": 8}, "context": {"includeDeclaration": true}}),
    );
    let mut places: Vec<_> = r["result"].as_array().unwrap().iter().map(place).collect();
    places.sort();
    assert_eq!(
        places,
        vec![
            (net.clone(), 3, 6),
            (net.clone(), 10, 13),
            (net.clone(), 11, 16)
        ]
    );
    // The outline.
    let r = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": net}}),
    );
    let names: Vec<(&str, i64)> = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| (s["name"].as_str().unwrap(), s["kind"].as_i64().unwrap()))
        .collect();
    assert_eq!(names, vec![("twice", 12), ("net", 5), ("train net", 3)]);
    let values: Vec<&str> = r["result"][1]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(values, vec!["x", "y"]);
    c.finish(true);
}

#[test]
fn completion_and_signature_help_while_typing() {
    let (_dir, uri) = folder("complete");
    let mut c = Client::start();
    let net = uri("net.nn");
    let valid = "/// Two linear layers.\nblock twice(k: int) {\n    input x: [N, F]\n    return x -> linear(k) -> linear(k)\n}\n\nnetwork net {\n    input x: [N, 8]\n    y = x -> twice(16)\n    return y\n}\n\ntrain net {\n    epochs = 1\n    \n}\n";
    c.open(&net, valid);
    c.diagnostics(&net);
    let labels = |r: &Value| -> Vec<String> {
        r["result"]
            .as_array()
            .unwrap()
            .iter()
            .map(|i| i["label"].as_str().unwrap().to_string())
            .collect()
    };
    let complete = |c: &mut Client, line: u32, character: u32| {
        c.request(
            "textDocument/completion",
            json!({"textDocument": {"uri": net}, "position": {"line": line, "character": character}}),
        )
    };
    // Half-typed: the file does not parse, the last check's names stay.
    let typing = valid.replace("    return y\n", "    return y -> \n");
    c.change(&net, 2, &typing);
    let r = complete(&mut c, 9, 16);
    let items = labels(&r);
    assert!(
        items.contains(&"conv2d".into()) && items.contains(&"twice".into()),
        "{items:?}"
    );
    let conv = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"] == "conv2d")
        .unwrap();
    assert!(
        conv["detail"]
            .as_str()
            .unwrap()
            .starts_with("conv2d(out: int, kernel: "),
        "{conv}"
    );
    let twice = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"] == "twice")
        .unwrap();
    assert_eq!(
        twice["documentation"]["value"], "Two linear layers.",
        "{twice}"
    );
    // Arguments: those not given yet, inserted as `name=`.
    let typing = valid.replace("    return y\n", "    return y -> conv2d(6, padding=1, \n");
    c.change(&net, 3, &typing);
    let r = complete(&mut c, 9, 37);
    let items = labels(&r);
    assert!(
        items.contains(&"stride".into()) && !items.contains(&"padding".into()),
        "{items:?}"
    );
    let stride = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"] == "stride")
        .unwrap();
    assert_eq!(stride["insertText"], "stride=");
    let help = c.request(
        "textDocument/signatureHelp",
        json!({"textDocument": {"uri": net}, "position": {"line": 9, "character": 37}}),
    );
    let sig = &help["result"]["signatures"][0];
    assert!(
        sig["label"]
            .as_str()
            .unwrap()
            .starts_with("conv2d(out: int, kernel: "),
        "{help}"
    );
    assert_eq!(help["result"]["activeParameter"], 2, "{help}");
    // Settings of a training section, with what they mean; those written
    // already are left out.
    c.change(&net, 4, valid);
    c.diagnostics(&net);
    let r = complete(&mut c, 14, 4);
    let items = labels(&r);
    assert!(
        items.contains(&"batch_size".into()) && !items.contains(&"epochs".into()),
        "{items:?}"
    );
    let batch = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .find(|i| i["label"] == "batch_size")
        .unwrap();
    assert!(
        batch["documentation"]["value"]
            .as_str()
            .unwrap()
            .contains("Default 64"),
        "{batch}"
    );
    // Hover on a setting says the same.
    let epochs = hover_text(&mut c, &net, 13, 6).expect("a hover on `epochs`");
    assert!(
        epochs.starts_with("**epochs**: Passes over the training set")
            && epochs.contains("Default 10"),
        "{epochs}"
    );
    c.finish(true);
}

#[test]
fn inlay_hints_show_shapes_when_asked_for() {
    let (_dir, uri) = folder("inlay");
    let text = "block twice(k: int) {\n    input x: [N, F]\n    return x -> linear(k)\n}\n\nnetwork net {\n    input x: [N, 1, 28, 28]\n    y = x -> conv2d(6, 5) -> flatten\n    return y -> twice(32) -> twice(10)\n}\n";
    let whole = json!({"start": {"line": 0, "character": 0}, "end": {"line": 10, "character": 0}});
    // Off by default: not offered, and nothing answered.
    let mut c = Client::start();
    let net = uri("net.nn");
    c.open(&net, text);
    c.diagnostics(&net);
    let r = c.request(
        "textDocument/inlayHint",
        json!({"textDocument": {"uri": net}, "range": whole}),
    );
    assert_eq!(r["result"], Value::Null, "{r}");
    c.finish(true);
    // Asked for at initialization.
    let mut c = Client::start_with(json!({"inlayHints": true}));
    c.open(&net, text);
    c.diagnostics(&net);
    let r = c.request(
        "textDocument/inlayHint",
        json!({"textDocument": {"uri": net}, "range": whole}),
    );
    let hints: Vec<(i64, i64, &str)> = r["result"]
        .as_array()
        .unwrap()
        .iter()
        .map(|h| {
            (
                h["position"]["line"].as_i64().unwrap(),
                h["position"]["character"].as_i64().unwrap(),
                h["label"].as_str().unwrap(),
            )
        })
        .collect();
    // `linear(k)` in the block has two shapes, so no hint of its own.
    assert_eq!(
        hints,
        vec![
            (7, 25, ": [N, 6, 24, 24]"),
            (7, 36, ": [N, 3456]"),
            (8, 25, ": [N, 32]"),
            (8, 38, ": [N, 10]"),
        ]
    );
    c.finish(true);
}

#[test]
fn formatting_answers_edits_that_give_what_nnc_fmt_gives() {
    let mut c = Client::start();
    let (_dir, uri) = folder("format");
    let net = uri("net.nn");
    let messy = "// kept\nnetwork net {\n  input x:[N, 4]\n    return x->linear(2)   // two\n}";
    c.open(&net, messy);
    let r = c.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": net}, "options": {"tabSize": 4, "insertSpaces": true}}),
    );
    let edits = r["result"].as_array().unwrap_or_else(|| panic!("{r}"));
    // Only lines 2 to 4 change; the comment on line 0 and the header keep
    // their place.
    assert_eq!(edits.len(), 1, "{r}");
    assert_eq!(
        edits[0]["range"]["start"],
        json!({"line": 2, "character": 0})
    );
    assert_eq!(edits[0]["range"]["end"], json!({"line": 4, "character": 1}));
    assert_eq!(
        edits[0]["new_text"]
            .as_str()
            .or(edits[0]["newText"].as_str()),
        Some("    input x: [N, 4]\n    return x -> linear(2) // two\n}\n")
    );

    // A text that does not parse: an error the editor shows, not edits.
    c.change(&net, 2, "network net {\n  input x:[N, 4]\n");
    let r = c.request(
        "textDocument/formatting",
        json!({"textDocument": {"uri": net}, "options": {"tabSize": 4, "insertSpaces": true}}),
    );
    assert_eq!(r["error"]["code"], -32803, "RequestFailed: {r}");
    assert!(
        r["error"]["message"]
            .as_str()
            .unwrap()
            .contains("does not parse"),
        "{r}"
    );
    // A document that is not open: nothing to do.
    let r = c.request("textDocument/formatting", json!({"textDocument": {"uri": uri("other.nn")}, "options": {"tabSize": 4, "insertSpaces": true}}));
    assert_eq!(r["result"], Value::Null, "{r}");
    assert_eq!(c.capabilities["documentFormattingProvider"], true);
    c.finish(true);
}

#[test]
fn garbage_unknown_methods_and_early_requests_do_not_stop_the_server() {
    let mut c = Client::start();
    // Not JSON, then JSON that is not a message.
    c.send_raw(b"Content-Length: 7\r\n\r\n{oops!}");
    c.send(json!({"hello": "world"}));
    let r = c.request("textDocument/definitely-not-a-method", json!({}));
    assert_eq!(r["error"]["code"], -32601, "MethodNotFound: {r}");
    // Parameters of the wrong type are skipped too.
    c.notify("textDocument/didOpen", json!({"textDocument": 42}));
    let (_dir, uri) = folder("garbage");
    let net = uri("net.nn");
    c.open(&net, "network {{{ half-typed");
    let diags = c.diagnostics(&net);
    assert!(
        diags.iter().any(|d| d["code"] == "E0101"),
        "a syntax error: {diags:?}"
    );
    let (status, log) = c.finish(true);
    assert_eq!(status, 0);
    assert!(log.contains("malformed"), "logged: {log}");
}

#[test]
fn requests_before_initialize_and_exit_without_shutdown() {
    let mut child = Command::new(env!("CARGO_BIN_EXE_nnc"))
        .arg("lsp")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut input = Vec::new();
    for m in [
        json!({"jsonrpc": "2.0", "id": 1, "method": "textDocument/hover", "params": {}}),
        json!({"jsonrpc": "2.0", "method": "exit"}),
    ] {
        let body = m.to_string();
        input.extend(format!("Content-Length: {}\r\n\r\n{body}", body.len()).bytes());
    }
    child.stdin.take().unwrap().write_all(&input).unwrap();
    let out = child.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(text.contains("-32002"), "ServerNotInitialized: {text}");
    assert_eq!(out.status.code(), Some(1), "exit without shutdown");
}

/// A real client no one here wrote: Neovim's built-in LSP client, headless,
/// configured by `editors/nvim/nnc.lua`, opens a file with a shape error
/// and writes out the diagnostics and a hover it received, then formats the
/// buffer through `:NncFormat`. Skipped where `nvim` is not
/// installed, unless `NNC_REQUIRE_NVIM` is set (`.ci/run` installs Debian's
/// Neovim and sets it).
#[test]
fn neovim_receives_the_diagnostics_and_a_hover() {
    let nvim = common::on_path("nvim");
    let Some(nvim) = nvim else {
        assert!(
            std::env::var_os("NNC_REQUIRE_NVIM").is_none(),
            "NNC_REQUIRE_NVIM is set but nvim is not on the PATH"
        );
        eprintln!("skipped: nvim is not installed (apt-get install neovim)");
        return;
    };
    let (dir, _) = folder("nvim");
    // Unformatted on its second line only, so that the positions below hold.
    let messy = SHAPE_ERROR.replace("    input x: [N, 1, 28, 28]", "  input x:[N,1,28,28]");
    assert_ne!(messy, SHAPE_ERROR);
    std::fs::write(dir.join("net.nn"), messy).unwrap();
    let report = dir.join("report.json");
    let script = dir.join("report.lua");
    std::fs::write(
        &script,
        r#"
local ok = vim.wait(10000, function() return #vim.diagnostic.get(0) > 0 end, 50)
local out = {}
for _, d in ipairs(vim.diagnostic.get(0)) do
  table.insert(out, { lnum = d.lnum, col = d.col, code = d.code, message = d.message })
end
-- Hover on `conv2d(6, 5)`: line 3, column 17 (1-based).
vim.api.nvim_win_set_cursor(0, { 3, 16 })
local params = vim.lsp.util.make_position_params()
local answers = vim.lsp.buf_request_sync(0, "textDocument/hover", params, 5000) or {}
local hover = ""
for _, a in pairs(answers) do
  if a.result and a.result.contents then hover = a.result.contents.value end
end
vim.cmd("NncFormat")
local text = table.concat(vim.api.nvim_buf_get_lines(0, 0, -1, false), "\n") .. "\n"
local f = io.open(vim.env.NNC_NVIM_REPORT, "w")
f:write(vim.fn.json_encode({ waited = ok, diagnostics = out, hover = hover, formatted = text }))
f:close()
vim.cmd("qa!")
"#,
    )
    .unwrap();
    let config = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("editors/nvim/nnc.lua");
    let mut child = Command::new(nvim)
        .current_dir(&dir)
        .env("PATH", common::path_with_nnc())
        .env("NNC_NVIM_REPORT", &report)
        .args(["--headless", "-u"])
        .arg(&config)
        .args(["net.nn", "-c"])
        .arg(format!("luafile {}", script.display()))
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("nvim starts");
    // Neovim quits by itself once it has the diagnostics (or after ten
    // seconds without them).
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while child.try_wait().unwrap().is_none() {
        assert!(std::time::Instant::now() < deadline, "nvim did not quit");
        std::thread::sleep(Duration::from_millis(50));
    }
    let got: Value = serde_json::from_str(&std::fs::read_to_string(&report).unwrap()).unwrap();
    assert_eq!(got["waited"], true, "diagnostics arrived: {got}");
    let d = &got["diagnostics"][0];
    assert_eq!(
        (d["lnum"].as_i64(), d["code"].as_str()),
        (Some(2), Some("E0403")),
        "{got}"
    );
    assert!(
        d["message"]
            .as_str()
            .unwrap()
            .contains("larger than its input"),
        "{got}"
    );
    let hover = got["hover"].as_str().unwrap();
    assert!(hover.contains("**conv2d** → `[N, 6, 24, 24]`"), "{got}");
    assert_eq!(got["formatted"].as_str(), Some(SHAPE_ERROR), "{got}");
}

/// The language's loops over statements and computed names, as an editor
/// meets them in D2L's DenseNet: the values bound in a loop in the outline,
/// a use of a value bound in the loop going to its binding, and hover
/// on the loop variable (its values) and on a layer the loop adds.
#[test]
fn statement_loops_in_the_outline_navigation_and_hover() {
    let (_dir, uri) = folder("loops");
    let text = "block dense(convs: int) {\n    input x: [N, C, H, W]\n    for i in 0..convs {\n        y = x -> net { conv2d(8, 3, padding=1) as \"{i}\" }\n        x = concat(x, y)\n    }\n    return x\n}\n\nnetwork net {\n    input x: [N, 4, 8, 8]\n    return x -> dense(2) -> flatten -> linear(10)\n}\n";
    let mut c = Client::start();
    let net = uri("net.nn");
    c.open(&net, text);
    assert_eq!(c.diagnostics(&net), Vec::<Value>::new());
    let r = c.request(
        "textDocument/documentSymbol",
        json!({"textDocument": {"uri": net}}),
    );
    let values: Vec<&str> = r["result"][0]["children"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["name"].as_str().unwrap())
        .collect();
    assert_eq!(values, vec!["x", "y", "x"]);
    // `y` in `concat(x, y)` goes to its binding in the loop; `x` (first
    // bound by `input`, as every name goes to its first binding) there.
    let definition = |c: &mut Client, line: u32, character: u32| {
        let r = c.request(
            "textDocument/definition",
            json!({"textDocument": {"uri": net}, "position": {"line": line, "character": character}}),
        );
        place(&r["result"])
    };
    assert_eq!(definition(&mut c, 4, 22), (net.clone(), 3, 8));
    assert_eq!(definition(&mut c, 6, 11), (net.clone(), 1, 10));
    assert_eq!(
        hover_text(&mut c, &net, 2, 8).as_deref(),
        Some("`i` = `0`, `1`, one per place this code is used")
    );
    let conv = hover_text(&mut c, &net, 3, 25).expect("a hover on conv2d");
    assert!(
        conv.contains("`0.net.0` in `net`, 296 parameters")
            && conv.contains("`0.net.1` in `net`, 872 parameters"),
        "{conv}"
    );
    c.finish(true);
}
