//! The documents an editor has open, and their diagnostics.
//!
//! Every check reads open documents from the editor's buffers (saved or
//! not) and other files from the disk, so an import's unsaved edits count.
//! After any change every open document is checked again: the one that
//! changed may be imported by the others. Diagnostics go to the file their
//! primary label is in (an imported file's own errors to that file), and a
//! file that had diagnostics and has none now gets an empty list, which
//! clears the editor's.

use super::convert::{self, LineIndex};
use super::uri;
use crate::check::program::Program;
use crate::check::Checked;
use crate::diag::Diagnostic;
use crate::syntax::source::{FileId, Origin, Span};
use lsp_types as lsp;
use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;

pub struct Document {
    pub uri: lsp::Uri,
    pub text: String,
    pub version: i32,
}

/// The last check of an open document: every file it reached, and what
/// the checker found (models of its networks, diagnostics).
pub struct Analysis {
    pub prog: Program,
    pub checked: Checked,
    /// The document's own file in `prog`, which parsed.
    pub file: Option<FileId>,
    /// The document changed since, and its text does not parse now: the
    /// spans are of an older text (names stay useful for completion).
    pub stale: bool,
}

#[derive(Default)]
pub struct Workspace {
    /// Open documents by URI.
    docs: BTreeMap<String, Document>,
    /// Their last checks, by URI.
    analyses: BTreeMap<String, Analysis>,
    /// URIs that were last published with diagnostics.
    published: Vec<lsp::Uri>,
}

impl Workspace {
    pub fn open(&mut self, uri: lsp::Uri, text: String, version: i32) {
        let key = uri.as_str().to_string();
        self.docs.insert(key, Document { uri, text, version });
    }

    /// Applies an editor's changes: whole texts, or ranges replaced.
    pub fn change(
        &mut self,
        uri: &lsp::Uri,
        version: i32,
        changes: Vec<lsp::TextDocumentContentChangeEvent>,
    ) {
        let Some(doc) = self.docs.get_mut(uri.as_str()) else {
            return;
        };
        for change in changes {
            match change.range {
                None => doc.text = change.text,
                Some(range) => {
                    let lines = LineIndex::new(&doc.text);
                    let start = lines.offset(range.start);
                    let end = lines.offset(range.end).max(start);
                    doc.text.replace_range(start..end, &change.text);
                }
            }
        }
        doc.version = version;
    }

    pub fn close(&mut self, uri: &lsp::Uri) {
        self.docs.remove(uri.as_str());
        self.analyses.remove(uri.as_str());
    }

    /// Every use, in the open documents, of what is under `at` in `uri`
    /// (and where it is defined, with `with_declaration`).
    pub fn references(
        &self,
        uri: &lsp::Uri,
        at: lsp::Position,
        with_declaration: bool,
    ) -> Vec<lsp::Location> {
        use super::navigate;
        let Some((doc, a)) = self.analysis(uri) else {
            return Vec::new();
        };
        let offset = LineIndex::new(&doc.text).offset(at) as u32;
        let Some((_, target)) = navigate::target_at(a, offset) else {
            return Vec::new();
        };
        let Some(home) = navigate::target_location(&a.prog, target) else {
            return Vec::new();
        };
        let mut out = Vec::new();
        if with_declaration {
            out.push(home.clone());
        }
        for other in self.analyses.values().filter(|a| !a.stale) {
            let Some(file) = other.file else { continue };
            for (span, t) in navigate::references_in(&other.prog, file) {
                if navigate::target_location(&other.prog, t).as_ref() != Some(&home) {
                    continue;
                }
                if let Some(l) = navigate::location(&other.prog, span) {
                    if !out.contains(&l) {
                        out.push(l);
                    }
                }
            }
        }
        out
    }

    pub fn document(&self, uri: &lsp::Uri) -> Option<&Document> {
        self.docs.get(uri.as_str())
    }

    /// An open document and its check, when that is of its current text.
    pub fn analysis(&self, uri: &lsp::Uri) -> Option<(&Document, &Analysis)> {
        let (doc, a) = self.latest(uri)?;
        Some((doc, a.filter(|a| !a.stale)?))
    }

    /// An open document and its last check that parsed, if any.
    pub fn latest(&self, uri: &lsp::Uri) -> Option<(&Document, Option<&Analysis>)> {
        Some((
            self.docs.get(uri.as_str())?,
            self.analyses.get(uri.as_str()),
        ))
    }

    /// Checks every open document; returns what to publish: each file's
    /// diagnostics, and empty lists where there were some before.
    pub fn check(&mut self) -> Vec<lsp::PublishDiagnosticsParams> {
        // Open documents by canonical path: their text, and their URI.
        let open: HashMap<PathBuf, &Document> = self
            .docs
            .values()
            .filter_map(|d| Some((canonical(&uri::to_path(&d.uri)?), d)))
            .collect();
        let overlay: HashMap<PathBuf, String> = open
            .iter()
            .map(|(p, d)| (p.clone(), d.text.clone()))
            .collect();
        let mut by_uri: BTreeMap<String, (lsp::Uri, Vec<lsp::Diagnostic>)> = BTreeMap::new();
        let docs = &self.docs;
        self.analyses.retain(|key, _| docs.contains_key(key));
        for (key, doc) in &self.docs {
            by_uri
                .entry(doc.uri.as_str().to_string())
                .or_insert_with(|| (doc.uri.clone(), Vec::new()));
            let (prog, checked, file) = check_document(doc, &overlay);
            let diags = &checked.diags;
            let files = Files {
                prog: &prog,
                open: &open,
                this: doc,
                lines: Default::default(),
            };
            for d in diags {
                let Some((uri, file)) = files.home(d) else {
                    continue;
                };
                let lsp_d = convert::diagnostic(d, &files.lines_of(file), &|s| files.locate(s));
                let list = &mut by_uri
                    .entry(uri.as_str().to_string())
                    .or_insert_with(|| (uri.clone(), Vec::new()))
                    .1;
                // Two open documents that import one file report its
                // errors twice.
                if !list.contains(&lsp_d) {
                    list.push(lsp_d);
                }
            }
            let parsed = file.filter(|id| parses(&prog, &checked, *id));
            match (parsed, self.analyses.get_mut(key)) {
                // Keep the last check that parsed, for completion.
                (None, Some(old)) if old.file.is_some() => old.stale = true,
                _ => {
                    let analysis = Analysis {
                        prog,
                        checked,
                        file: parsed,
                        stale: false,
                    };
                    self.analyses.insert(key.clone(), analysis);
                }
            }
        }
        let mut out = Vec::new();
        for (key, (uri, diagnostics)) in &by_uri {
            out.push(lsp::PublishDiagnosticsParams {
                uri: uri.clone(),
                diagnostics: diagnostics.clone(),
                version: self.docs.get(key).map(|d| d.version),
            });
        }
        for old in &self.published {
            if !by_uri.contains_key(old.as_str()) {
                out.push(lsp::PublishDiagnosticsParams {
                    uri: old.clone(),
                    diagnostics: Vec::new(),
                    version: None,
                });
            }
        }
        self.published = by_uri
            .into_values()
            .filter(|(_, d)| !d.is_empty())
            .map(|(u, _)| u)
            .collect();
        out
    }
}

/// Whether a file of the check parsed: the parser gives a file with a
/// syntax error the items it could read, whose spans no longer say much.
fn parses(prog: &Program, checked: &Checked, id: FileId) -> bool {
    use crate::diag_codes as codes;
    let syntax = |d: &Diagnostic| {
        [codes::SYNTAX, codes::NESTING_TOO_DEEP].contains(&d.code)
            && d.primary.as_ref().is_some_and(|l| l.span.file == id)
    };
    prog.files.iter().any(|f| f.id == id) && !checked.diags.iter().any(syntax)
}

/// A path canonicalized where it exists (as `Program::load_path` does).
fn canonical(p: &std::path::Path) -> PathBuf {
    p.canonicalize().unwrap_or_else(|_| p.to_path_buf())
}

/// Checks one document: from its path, so that its imports resolve
/// beside it, or as text with no file behind it. Also returns the
/// document's own file in the program.
fn check_document(
    doc: &Document,
    overlay: &HashMap<PathBuf, String>,
) -> (Program, Checked, Option<FileId>) {
    match uri::to_path(&doc.uri) {
        Some(path) => {
            let prog = Program::with_overlay(overlay.clone());
            let (prog, checked) = crate::driver::check_paths_in(prog, &[path.as_path()]);
            let file = prog.sources.find_path(&canonical(&path));
            (prog, checked, file)
        }
        None => {
            let mut prog = Program::new();
            let mut diags = Vec::new();
            let id = prog.load_text(doc.uri.as_str(), doc.text.clone(), &mut diags);
            let mut checked = crate::check::check_files(&prog, &[id]);
            diags.append(&mut checked.diags);
            crate::check::sort(&mut diags);
            checked.diags = diags;
            (prog, checked, Some(id))
        }
    }
}

/// The files of one check, and the open documents, to place spans.
struct Files<'a> {
    prog: &'a Program,
    /// The open documents by canonical path.
    open: &'a HashMap<PathBuf, &'a Document>,
    this: &'a Document,
    /// Line indexes made so far, by file (`None`: the checked document's
    /// text, for diagnostics without a place).
    lines: std::cell::RefCell<HashMap<Option<FileId>, std::rc::Rc<LineIndex<'a>>>>,
}

impl<'a> Files<'a> {
    /// The line index of a file of the program (made once per check).
    fn lines_of(&self, file: Option<FileId>) -> std::rc::Rc<LineIndex<'a>> {
        let text: &'a str = match file {
            Some(f) => self.prog.sources.get(f).text.as_str(),
            None => self.this.text.as_str(),
        };
        self.lines
            .borrow_mut()
            .entry(file)
            .or_insert_with(|| std::rc::Rc::new(LineIndex::new(text)))
            .clone()
    }

    /// The URI of a file of the program (an open document's own URI where
    /// it is one); `None` for the standard library.
    fn uri_of(&self, file: FileId) -> Option<lsp::Uri> {
        match &self.prog.sources.get(file).origin {
            Origin::Disk(path) => match self.open.get(path) {
                Some(d) => Some(d.uri.clone()),
                None => uri::from_path(path),
            },
            Origin::Memory => Some(self.this.uri.clone()),
            Origin::Stdlib => None,
        }
    }

    /// Where a diagnostic goes: its primary label's file, or the checked
    /// document when it has none (then with no file of the program).
    fn home(&self, d: &Diagnostic) -> Option<(lsp::Uri, Option<FileId>)> {
        match &d.primary {
            Some(l) => Some((self.uri_of(l.span.file)?, Some(l.span.file))),
            None => Some((self.this.uri.clone(), None)),
        }
    }

    fn locate(&self, span: Span) -> Option<lsp::Location> {
        Some(lsp::Location {
            uri: self.uri_of(span.file)?,
            range: self
                .lines_of(Some(span.file))
                .range(span.start as usize, span.end as usize),
        })
    }
}
