//! `nnc lsp`: the language server, on stdin and stdout (JSON-RPC with
//! LSP's `Content-Length` framing; lsp-server's message types, lsp-types'
//! protocol types).
//!
//! One thread reads, handles and answers messages in order, in batches
//! of what the client has already sent (`serve`): changes are checked
//! once per batch, and a request cancelled within its batch is not
//! handled. What it promises an editor:
//! - diagnostics of every open document (those of `nnc check`) after each
//!   open, change and save, and cleared when fixed (`workspace.rs`); also
//!   after a `.nn` file changes on disk, where the client watches files
//!   (it is asked to, when it says it can register watchers);
//! - hover: shapes, parameters and multiply-accumulates from the last
//!   check (`hover.rs`); go to definition, references across the open
//!   documents, and each document's outline (`navigate.rs`); completion
//!   and signature help, also while the text does not parse
//!   (`complete.rs`); shapes as inlay hints after each step, when the
//!   client asks for them (`initializationOptions: {"inlayHints": true}`);
//!   formatting as `nnc fmt` does, one edit per changed run of lines
//!   (`formatting.rs`);
//! - a malformed message is logged on stderr and skipped; an unknown
//!   request is answered `MethodNotFound`; a request before `initialize`
//!   `ServerNotInitialized`, and after `shutdown` `InvalidRequest`;
//! - a panic while handling a request answers that request with
//!   `InternalError`, and the server goes on;
//! - `exit` ends the server: status 0 after `shutdown`, 1 without (as LSP
//!   asks).
//!
//! Checking recurses over the program, so the loop runs on a thread with
//! a big stack (`crate::with_big_stack`).

mod complete;
mod convert;
mod formatting;
mod hover;
mod navigate;
mod uri;
mod workspace;

use lsp_server::{ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types as lsp;
use lsp_types::notification::Notification as _;
use serde_json::Value;
use std::io::Write;
use workspace::Workspace;

/// How a session ended.
#[derive(Debug, PartialEq, Eq)]
pub enum Ended {
    /// `exit` after `shutdown`.
    Clean,
    /// `exit` without `shutdown`, or the input ended.
    Abrupt,
}

/// Serves one client: reads messages from `input` until `exit` or the end
/// of the input, writes answers and notifications to `output`, and logs
/// to `log`. An error is an `output` that cannot be written.
///
/// Messages are handled in batches: what the client has sent by the time
/// one message is read (what `input` holds already) is read with it.
/// Within a batch, a request that a `$/cancelRequest` of the batch
/// cancels is answered `RequestCancelled` without being handled, and the
/// documents are checked once after a run of changes (before a request
/// that reads them, and at the end) rather than after each keystroke's.
pub fn serve<R: std::io::Read>(
    input: &mut std::io::BufReader<R>,
    output: &mut dyn Write,
    log: &mut dyn Write,
) -> std::io::Result<Ended> {
    let mut server = Server {
        workspace: Workspace::default(),
        state: State::Uninitialized,
        inlay_hints: false,
        watch_files: false,
        dirty: false,
        out: Vec::new(),
    };
    loop {
        let mut batch = Vec::new();
        let mut at_end = false;
        // One message, then those already buffered.
        while batch.is_empty() || !input.buffer().is_empty() {
            match Message::read(input) {
                Ok(Some(m)) => batch.push(m),
                Ok(None) => {
                    at_end = true;
                    break;
                }
                Err(e) if e.kind() == std::io::ErrorKind::InvalidData => {
                    let _ = writeln!(log, "nnc lsp: skipped a malformed message: {e}");
                }
                Err(e) => {
                    let _ = writeln!(log, "nnc lsp: cannot read the input: {e}");
                    at_end = true;
                    break;
                }
            }
        }
        let cancelled: Vec<RequestId> = batch
            .iter()
            .filter_map(|m| match m {
                Message::Notification(n) if n.method == lsp::notification::Cancel::METHOD => {
                    serde_json::from_value::<lsp::CancelParams>(n.params.clone())
                        .ok()
                        .map(|p| match p.id {
                            lsp::NumberOrString::Number(i) => RequestId::from(i),
                            lsp::NumberOrString::String(s) => RequestId::from(s),
                        })
                }
                _ => None,
            })
            .collect();
        let mut ended = None;
        for message in batch {
            match message {
                Message::Request(r) if cancelled.contains(&r.id) => {
                    let cancelled = error(r.id, ErrorCode::RequestCanceled, "cancelled".into());
                    server.out.push(cancelled.into());
                }
                m => ended = server.handle(m, log),
            }
            if ended.is_some() {
                break;
            }
        }
        if ended.is_none() {
            server.check_if_changed();
        }
        for m in server.out.drain(..) {
            m.write(&mut &mut *output)?;
        }
        output.flush()?;
        if let Some(ended) = ended {
            return Ok(ended);
        }
        if at_end {
            return Ok(Ended::Abrupt);
        }
    }
}

#[derive(PartialEq, Eq)]
enum State {
    Uninitialized,
    Running,
    ShutDown,
}

struct Server {
    workspace: Workspace,
    state: State,
    /// Shapes as inlay hints after each step: off unless the client's
    /// `initializationOptions` say `{"inlayHints": true}` (a hint on every
    /// step of every chain is a lot of text).
    inlay_hints: bool,
    /// The client watches files for us when asked (`initialized` asks):
    /// an imported file that changes on disk is then checked again.
    watch_files: bool,
    /// Documents changed since they were last checked.
    dirty: bool,
    /// Messages to send at the end of the batch.
    out: Vec<Message>,
}

impl Server {
    /// Handles one message; `Some` when the session ends.
    fn handle(&mut self, message: Message, log: &mut dyn Write) -> Option<Ended> {
        match message {
            Message::Request(req) => {
                let id = req.id.clone();
                let method = req.method.clone();
                let result =
                    std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| self.request(req)));
                let response = match result {
                    Ok(r) => r,
                    Err(panic) => {
                        let what = panic_message(&panic);
                        let _ = writeln!(log, "nnc lsp: `{method}` failed: {what}");
                        error(id, ErrorCode::InternalError, format!("nnc failed: {what}"))
                    }
                };
                self.out.push(response.into());
                None
            }
            Message::Notification(n) => {
                if n.method == lsp::notification::Exit::METHOD {
                    return Some(if self.state == State::ShutDown {
                        Ended::Clean
                    } else {
                        Ended::Abrupt
                    });
                }
                let method = n.method.clone();
                let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                    self.notification(n, &mut *log)
                }));
                if let Err(panic) = result {
                    let what = panic_message(&panic);
                    let _ = writeln!(log, "nnc lsp: `{method}` failed: {what}");
                }
                None
            }
            // The one request the server sends (`watch_nn_files`) needs no
            // answer: a client that refuses it just reports no changes.
            Message::Response(_) => None,
        }
    }

    fn request(&mut self, req: Request) -> Response {
        use lsp::request::{Initialize, Request as _, Shutdown};
        match (&self.state, req.method.as_str()) {
            (State::Uninitialized, Initialize::METHOD) => {
                self.state = State::Running;
                let options = req.params.get("initializationOptions");
                self.inlay_hints = options
                    .and_then(|o| o.get("inlayHints"))
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                self.watch_files = req
                    .params
                    .pointer("/capabilities/workspace/didChangeWatchedFiles/dynamicRegistration")
                    .and_then(Value::as_bool)
                    .unwrap_or(false);
                Response::new_ok(req.id, initialize_result(self.inlay_hints))
            }
            (State::Uninitialized, _) => error(
                req.id,
                ErrorCode::ServerNotInitialized,
                "the server is not initialized".into(),
            ),
            (State::ShutDown, _) => error(
                req.id,
                ErrorCode::InvalidRequest,
                "the server is shut down".into(),
            ),
            (State::Running, Shutdown::METHOD) => {
                self.state = State::ShutDown;
                Response::new_ok(req.id, Value::Null)
            }
            // For the test below: a handler that fails.
            #[cfg(test)]
            (State::Running, "nnc/test-panic") => panic!("a test of the panic guard"),
            (State::Running, Initialize::METHOD) => error(
                req.id,
                ErrorCode::InvalidRequest,
                "the server is already initialized".into(),
            ),
            (State::Running, lsp::request::Formatting::METHOD) => self.formatting(req),
            (State::Running, method) if self.answers(method) => {
                self.check_if_changed();
                let id = req.id.clone();
                match self.answer(req) {
                    Ok(result) => Response::new_ok(id, result),
                    Err(e) => error(id, ErrorCode::InvalidParams, e.to_string()),
                }
            }
            (State::Running, method) => error(
                req.id,
                ErrorCode::MethodNotFound,
                format!("nnc lsp does not handle `{method}`"),
            ),
        }
    }

    /// Formatting needs the document's text alone, not its check; a text
    /// that does not parse is an error the editor shows.
    fn formatting(&self, req: Request) -> Response {
        let p: lsp::DocumentFormattingParams = match serde_json::from_value(req.params) {
            Ok(p) => p,
            Err(e) => return error(req.id, ErrorCode::InvalidParams, e.to_string()),
        };
        let Some(doc) = self.workspace.document(&p.text_document.uri) else {
            return Response::new_ok(req.id, Value::Null);
        };
        match formatting::edits(&doc.text) {
            Ok(edits) => Response::new_ok(req.id, edits),
            Err(why) => error(req.id, ErrorCode::RequestFailed, why),
        }
    }

    /// Whether `method` is a request about documents that `answer` handles.
    fn answers(&self, method: &str) -> bool {
        use lsp::request::{
            Completion, DocumentSymbolRequest, GotoDefinition, HoverRequest, InlayHintRequest,
            References, Request as _, SignatureHelpRequest,
        };
        [
            HoverRequest::METHOD,
            GotoDefinition::METHOD,
            References::METHOD,
            DocumentSymbolRequest::METHOD,
            Completion::METHOD,
            SignatureHelpRequest::METHOD,
            InlayHintRequest::METHOD,
        ]
        .contains(&method)
    }

    /// The result of a request about documents, from their last check; a
    /// document that is not open has nothing to show (`null`).
    fn answer(&self, req: Request) -> Result<Value, serde_json::Error> {
        use lsp::request::{
            Completion, DocumentSymbolRequest, GotoDefinition, HoverRequest, InlayHintRequest,
            References, Request as _, SignatureHelpRequest,
        };
        let ws = &self.workspace;
        let result = match req.method.as_str() {
            HoverRequest::METHOD => {
                let p: lsp::HoverParams = serde_json::from_value(req.params)?;
                let at = p.text_document_position_params;
                let hover = ws
                    .analysis(&at.text_document.uri)
                    .and_then(|(doc, a)| hover::hover(doc, a, at.position));
                serde_json::to_value(hover)?
            }
            GotoDefinition::METHOD => {
                let p: lsp::GotoDefinitionParams = serde_json::from_value(req.params)?;
                let at = p.text_document_position_params;
                let found = ws.analysis(&at.text_document.uri).and_then(|(doc, a)| {
                    let offset = convert::LineIndex::new(&doc.text).offset(at.position);
                    let (_, target) = navigate::target_at(a, offset as u32)?;
                    navigate::target_location(&a.prog, target)
                });
                serde_json::to_value(found.map(lsp::GotoDefinitionResponse::Scalar))?
            }
            References::METHOD => {
                let p: lsp::ReferenceParams = serde_json::from_value(req.params)?;
                let at = p.text_document_position;
                let with_declaration = p.context.include_declaration;
                serde_json::to_value(ws.references(
                    &at.text_document.uri,
                    at.position,
                    with_declaration,
                ))?
            }
            DocumentSymbolRequest::METHOD => {
                let p: lsp::DocumentSymbolParams = serde_json::from_value(req.params)?;
                let symbols = ws.analysis(&p.text_document.uri).and_then(|(_, a)| {
                    Some(lsp::DocumentSymbolResponse::Nested(navigate::symbols(
                        &a.prog, a.file?,
                    )))
                });
                serde_json::to_value(symbols)?
            }
            Completion::METHOD => {
                let p: lsp::CompletionParams = serde_json::from_value(req.params)?;
                let at = p.text_document_position;
                let items = ws
                    .latest(&at.text_document.uri)
                    .map(|(doc, a)| complete::completion(doc, a, at.position));
                serde_json::to_value(items.map(lsp::CompletionResponse::Array))?
            }
            SignatureHelpRequest::METHOD => {
                let p: lsp::SignatureHelpParams = serde_json::from_value(req.params)?;
                let at = p.text_document_position_params;
                let help = ws
                    .latest(&at.text_document.uri)
                    .and_then(|(doc, a)| complete::signature_help(doc, a, at.position));
                serde_json::to_value(help)?
            }
            InlayHintRequest::METHOD => {
                let p: lsp::InlayHintParams = serde_json::from_value(req.params)?;
                let hints = ws
                    .analysis(&p.text_document.uri)
                    .filter(|_| self.inlay_hints)
                    .map(|(doc, a)| hover::inlay_hints(doc, a, p.range));
                serde_json::to_value(hints)?
            }
            _ => Value::Null,
        };
        Ok(result)
    }

    fn notification(&mut self, n: Notification, log: &mut dyn Write) {
        use lsp::notification::{
            DidChangeTextDocument, DidChangeWatchedFiles, DidCloseTextDocument,
            DidOpenTextDocument, DidSaveTextDocument, Initialized,
        };
        if self.state != State::Running {
            return;
        }
        let changed = match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Some(p) = params::<lsp::DidOpenTextDocumentParams>(n, log) else {
                    return;
                };
                let d = p.text_document;
                self.workspace.open(d.uri, d.text, d.version);
                true
            }
            DidChangeTextDocument::METHOD => {
                let Some(p) = params::<lsp::DidChangeTextDocumentParams>(n, log) else {
                    return;
                };
                let d = p.text_document;
                self.workspace.change(&d.uri, d.version, p.content_changes);
                true
            }
            DidCloseTextDocument::METHOD => {
                let Some(p) = params::<lsp::DidCloseTextDocumentParams>(n, log) else {
                    return;
                };
                self.workspace.close(&p.text_document.uri);
                true
            }
            // A saved file may be imported by an open one; so may a file
            // that changed on disk (another program, a `git checkout`).
            DidSaveTextDocument::METHOD | DidChangeWatchedFiles::METHOD => true,
            Initialized::METHOD => {
                if self.watch_files {
                    self.out.push(watch_nn_files().into());
                }
                false
            }
            // `$/cancelRequest`, `initialized`, `$/setTrace`, and what a
            // client may send that this server does not use.
            _ => false,
        };
        self.dirty |= changed;
    }

    /// Checks the documents again and publishes their diagnostics, when
    /// they changed since the last check.
    fn check_if_changed(&mut self) {
        use lsp::notification::PublishDiagnostics;
        if !std::mem::take(&mut self.dirty) {
            return;
        }
        for p in self.workspace.check() {
            self.out
                .push(Notification::new(PublishDiagnostics::METHOD.into(), p).into());
        }
    }
}

/// A notification's parameters; `None`, logged, when they do not parse.
fn params<P: serde::de::DeserializeOwned>(n: Notification, log: &mut dyn Write) -> Option<P> {
    match serde_json::from_value(n.params) {
        Ok(p) => Some(p),
        Err(e) => {
            let _ = writeln!(log, "nnc lsp: skipped `{}`: {e}", n.method);
            None
        }
    }
}

/// Asks the client to report changes of `.nn` files on disk
/// (`workspace/didChangeWatchedFiles`); its answer needs no handling.
fn watch_nn_files() -> Request {
    use lsp::request::{RegisterCapability, Request as _};
    let options = lsp::DidChangeWatchedFilesRegistrationOptions {
        watchers: vec![lsp::FileSystemWatcher {
            glob_pattern: lsp::GlobPattern::String("**/*.nn".into()),
            kind: None,
        }],
    };
    let params = lsp::RegistrationParams {
        registrations: vec![lsp::Registration {
            id: "nnc-watch-nn-files".into(),
            method: lsp::notification::DidChangeWatchedFiles::METHOD.into(),
            register_options: serde_json::to_value(options).ok(),
        }],
    };
    Request::new(
        RequestId::from("nnc-watch".to_string()),
        RegisterCapability::METHOD.into(),
        params,
    )
}

fn error(id: RequestId, code: ErrorCode, message: String) -> Response {
    Response::new_err(id, code as i32, message)
}

fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| panic.downcast_ref::<&str>().map(|s| s.to_string()))
        .unwrap_or_else(|| "a panic".into())
}

fn initialize_result(inlay_hints: bool) -> lsp::InitializeResult {
    lsp::InitializeResult {
        capabilities: lsp::ServerCapabilities {
            text_document_sync: Some(lsp::TextDocumentSyncCapability::Options(
                lsp::TextDocumentSyncOptions {
                    open_close: Some(true),
                    change: Some(lsp::TextDocumentSyncKind::FULL),
                    save: Some(lsp::TextDocumentSyncSaveOptions::Supported(true)),
                    ..Default::default()
                },
            )),
            hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
            definition_provider: Some(lsp::OneOf::Left(true)),
            references_provider: Some(lsp::OneOf::Left(true)),
            document_symbol_provider: Some(lsp::OneOf::Left(true)),
            completion_provider: Some(lsp::CompletionOptions {
                trigger_characters: Some(vec![">".into(), "(".into(), ",".into()]),
                ..Default::default()
            }),
            inlay_hint_provider: inlay_hints.then_some(lsp::OneOf::Left(true)),
            document_formatting_provider: Some(lsp::OneOf::Left(true)),
            signature_help_provider: Some(lsp::SignatureHelpOptions {
                trigger_characters: Some(vec!["(".into(), ",".into()]),
                ..Default::default()
            }),
            ..Default::default()
        },
        server_info: Some(lsp::ServerInfo {
            name: "nnc".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framed(messages: &[Value]) -> Vec<u8> {
        let mut out = Vec::new();
        for m in messages {
            let body = m.to_string();
            out.extend(format!("Content-Length: {}\r\n\r\n{body}", body.len()).bytes());
        }
        out
    }

    /// What a client sends in one go is one batch: three versions of a
    /// document are checked once, the last, and a request cancelled in
    /// the same batch is answered `RequestCancelled`.
    #[test]
    fn a_batch_is_checked_once_and_cancels_its_requests() {
        let uri = "untitled:net";
        let text = |v: &str| {
            format!("network net {{\n    input x: [N, 4]\n    return x -> linear({v})\n}}\n")
        };
        let change = |version: i64, v: &str| {
            serde_json::json!({"jsonrpc": "2.0", "method": "textDocument/didChange", "params": {
                "textDocument": {"uri": uri, "version": version},
                "contentChanges": [{"text": text(v)}]}})
        };
        let input = framed(&[
            serde_json::json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": {"capabilities": {}}}),
            serde_json::json!({"jsonrpc": "2.0", "method": "textDocument/didOpen", "params": {
                "textDocument": {"uri": uri, "languageId": "nn", "version": 1, "text": text("3")}}}),
            change(2, "true"),
            change(3, "2.5"),
            serde_json::json!({"jsonrpc": "2.0", "id": 7, "method": "textDocument/hover", "params": {
                "textDocument": {"uri": uri}, "position": {"line": 2, "character": 17}}}),
            serde_json::json!({"jsonrpc": "2.0", "method": "$/cancelRequest", "params": {"id": 7}}),
        ]);
        let (mut output, mut log) = (Vec::new(), Vec::new());
        let ended = serve(
            &mut std::io::BufReader::new(input.as_slice()),
            &mut output,
            &mut log,
        );
        assert_eq!(
            ended.unwrap(),
            Ended::Abrupt,
            "the input ended without exit"
        );
        let output = String::from_utf8(output).unwrap();
        assert_eq!(output.matches("publishDiagnostics").count(), 1, "{output}");
        assert!(
            output.contains(r#""version":3"#),
            "the last version: {output}"
        );
        assert!(
            output.contains(r#""id":7,"error":{"code":-32800"#),
            "{output}"
        );
    }

    /// A handler that panics answers its request with `InternalError`,
    /// and the next request is answered as usual.
    #[test]
    fn a_panicking_handler_answers_with_an_error_and_the_server_goes_on() {
        let rpc = |id: i64, method: &str, params: Value| serde_json::json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params});
        let input = framed(&[
            rpc(1, "initialize", serde_json::json!({"capabilities": {}})),
            rpc(2, "nnc/test-panic", Value::Null),
            rpc(3, "shutdown", Value::Null),
            serde_json::json!({"jsonrpc": "2.0", "method": "exit"}),
        ]);
        let (mut output, mut log) = (Vec::new(), Vec::new());
        let ended = serve(
            &mut std::io::BufReader::new(input.as_slice()),
            &mut output,
            &mut log,
        )
        .unwrap();
        assert_eq!(ended, Ended::Clean);
        let output = String::from_utf8(output).unwrap();
        assert!(
            output.contains(r#""id":2,"error":{"code":-32603"#),
            "{output}"
        );
        assert!(output.contains(r#""id":3,"result":null"#), "{output}");
        assert!(String::from_utf8(log)
            .unwrap()
            .contains("a test of the panic guard"));
    }
}
