//! Go to definition, find references and document symbols, from the
//! syntax of a checked file and the program's name resolution.
//!
//! A file's references are the callees of its layer calls and function
//! calls (resolved as the checker resolves them: its own definitions,
//! imports, `std::`), the names of values (resolved to the parameter,
//! `input`, `let` or loop variable of the same name in the enclosing
//! definition), and the files of its imports. A definition in the
//! standard library has no file on the user's disk; its text is written
//! once to a folder named by its hash, so that an editor can open it.

use super::convert::range_in;
use super::uri;
use super::workspace::Analysis;
use crate::check::program::{Callee, Program};
use crate::syntax::ast::{self, DefBody, Expr, ImportTarget, Item, Stmt};
use crate::syntax::source::{FileId, Origin, Span};
use crate::syntax::visit;
use lsp_types as lsp;
use std::collections::HashMap;

/// What a reference points at.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// The name of a definition (block or network), in any file.
    Def(Span),
    /// The binding of a value in the same file.
    Value(Span),
    /// A whole file (an import).
    File(FileId),
}

/// The references of one file: where each use is, and what it names.
pub fn references_in(prog: &Program, file: FileId) -> Vec<(Span, Target)> {
    let mut out = Vec::new();
    for item in &prog.file(file).ast.items {
        match item {
            Item::Import(imp) => {
                if let Some(target) = import_target(prog, file, imp) {
                    out.push((imp.span, target));
                }
            }
            Item::Def(def) => {
                let mut w = Walk::new(prog, file, &mut out);
                for p in &def.params {
                    w.bind(&p.name);
                    if let Some(d) = &p.default {
                        w.expr(d);
                    }
                }
                match &def.body {
                    DefBody::Body { stmts, .. } => {
                        for s in ast::all_stmts(stmts) {
                            match s {
                                Stmt::Input { name, .. } => w.bind(name),
                                Stmt::Let { name, value, .. } => {
                                    w.expr(value);
                                    w.bind(name);
                                }
                                Stmt::Return { value, .. } => w.expr(value),
                                Stmt::For {
                                    var, start, end, ..
                                } => {
                                    w.expr(start);
                                    if let Some(e) = end {
                                        w.expr(e);
                                    }
                                    w.bind(var);
                                }
                            }
                        }
                    }
                    DefBody::Alias { callee, args, .. } => {
                        w.callee(callee);
                        args.iter().for_each(|a| w.expr(&a.value));
                    }
                }
            }
            Item::Train(t) => {
                let mut w = Walk::new(prog, file, &mut out);
                if let Some(n) = &t.network {
                    let path = ast::Path {
                        segments: vec![n.clone()],
                        span: n.span,
                    };
                    w.callee(&path);
                }
                for e in &t.entries {
                    w.expr(&e.value);
                }
            }
        }
    }
    out
}

fn import_target(prog: &Program, file: FileId, imp: &ast::Import) -> Option<Target> {
    match &imp.target {
        ImportTarget::Std { name: Some(n) } => {
            let path = ast::Path {
                segments: vec![n.clone()],
                span: n.span,
            };
            let std_file = prog.files.iter().find(|f| f.is_std)?.id;
            let id = prog.resolve_def(std_file, &path)?;
            Some(Target::Def(prog.def(id).name.span))
        }
        ImportTarget::File { path, .. } => {
            let here = prog.sources.get(file);
            let Origin::Disk(p) = &here.origin else {
                return None;
            };
            let full = p.parent()?.join(path);
            let full = full.canonicalize().unwrap_or(full);
            Some(Target::File(prog.sources.find_path(&full)?))
        }
        _ => None,
    }
}

struct Walk<'a> {
    prog: &'a Program,
    file: FileId,
    /// The first binding of each name in the definition.
    bindings: HashMap<String, Span>,
    out: &'a mut Vec<(Span, Target)>,
}

impl<'a> Walk<'a> {
    /// A walk of one definition or section (its own bindings).
    fn new(prog: &'a Program, file: FileId, out: &'a mut Vec<(Span, Target)>) -> Walk<'a> {
        Walk {
            prog,
            file,
            bindings: HashMap::new(),
            out,
        }
    }

    fn bind(&mut self, name: &ast::Ident) {
        self.bindings.entry(name.name.clone()).or_insert(name.span);
        self.out
            .push((name.span, Target::Value(self.bindings[&name.name])));
    }

    fn callee(&mut self, path: &ast::Path) {
        if let Some(Callee::Def(id)) = self.prog.resolve_callee(self.file, path) {
            self.out
                .push((path.span, Target::Def(self.prog.def(id).name.span)));
        }
    }

    fn expr(&mut self, e: &Expr) {
        visit::expr(self, e);
    }
}

impl visit::Visitor<'_> for Walk<'_> {
    fn name(&mut self, path: &ast::Path) {
        match path.segments.as_slice() {
            [one] if self.bindings.contains_key(&one.name) => {
                let at = self.bindings[&one.name];
                self.out.push((path.span, Target::Value(at)));
            }
            _ => Walk::callee(self, path),
        }
    }

    fn layer(&mut self, path: &ast::Path) {
        Walk::callee(self, path);
    }

    fn function(&mut self, path: &ast::Path) {
        Walk::callee(self, path);
    }

    fn bind(&mut self, name: &ast::Ident) {
        Walk::bind(self, name);
    }
}

/// The location of a span of the program: its file on disk (the standard
/// library's written out first).
pub fn location(prog: &Program, span: Span) -> Option<lsp::Location> {
    let file = prog.sources.get(span.file);
    let uri = file_uri(prog, span.file)?;
    Some(lsp::Location {
        uri,
        range: range_in(file, span.start as usize, span.end as usize),
    })
}

fn file_uri(prog: &Program, id: FileId) -> Option<lsp::Uri> {
    let file = prog.sources.get(id);
    match &file.origin {
        Origin::Disk(p) => uri::from_path(p),
        Origin::Stdlib => uri::from_path(&std_copy(&file.name, &file.text)?),
        Origin::Memory => None,
    }
}

/// A standard-library file written where an editor can open it: under the
/// temporary folder, in a folder named by a hash of its text, so that a
/// copy is never stale.
fn std_copy(name: &str, text: &str) -> Option<std::path::PathBuf> {
    let hash = crate::rng::name_hash(text);
    let dir = std::env::temp_dir().join(format!("nnc-std-{hash:016x}"));
    let base = std::path::Path::new(name).file_name()?;
    let path = dir.join(base);
    if std::fs::read_to_string(&path).ok().as_deref() != Some(text) {
        std::fs::create_dir_all(&dir).ok()?;
        crate::weights::atomic::write(&path, text.as_bytes()).ok()?;
    }
    Some(path)
}

/// The target under byte `offset` of the analysis's file: a reference's,
/// or a definition's own name.
pub fn target_at(a: &Analysis, offset: u32) -> Option<(Span, Target)> {
    let file = a.file?;
    let inside = |s: Span| s.file == file && s.start <= offset && offset <= s.end;
    let refs = references_in(&a.prog, file);
    if let Some(hit) = refs
        .into_iter()
        .filter(|(s, _)| inside(*s))
        .min_by_key(|(s, _)| s.end - s.start)
    {
        return Some(hit);
    }
    a.prog
        .file(file)
        .ast
        .items
        .iter()
        .find_map(|item| match item {
            Item::Def(d) if inside(d.name.span) => Some((d.name.span, Target::Def(d.name.span))),
            _ => None,
        })
}

/// Where a target is.
pub fn target_location(prog: &Program, t: Target) -> Option<lsp::Location> {
    match t {
        Target::Def(span) | Target::Value(span) => location(prog, span),
        Target::File(id) => Some(lsp::Location {
            uri: file_uri(prog, id)?,
            range: lsp::Range::default(),
        }),
    }
}

/// The outline of a file: its networks and blocks with their inputs and
/// values, and its training sections.
#[allow(deprecated)] // `DocumentSymbol::deprecated` must be written.
pub fn symbols(prog: &Program, file: FileId) -> Vec<lsp::DocumentSymbol> {
    let src = prog.sources.get(file);
    let range = |s: Span| range_in(src, s.start as usize, s.end as usize);
    let symbol = |name: String, detail: Option<String>, kind, span: Span, sel: Span, children| {
        lsp::DocumentSymbol {
            name,
            detail,
            kind,
            tags: None,
            deprecated: None,
            range: range(span),
            selection_range: range(sel),
            children,
        }
    };
    let mut out = Vec::new();
    for item in &prog.file(file).ast.items {
        match item {
            Item::Def(d) => {
                let mut children = Vec::new();
                if let DefBody::Body { stmts, .. } = &d.body {
                    for s in ast::all_stmts(stmts) {
                        let (name, kind) = match s {
                            Stmt::Input { name, .. } => (name, "input"),
                            Stmt::Let { name, .. } => (name, "value"),
                            Stmt::Return { .. } | Stmt::For { .. } => continue,
                        };
                        children.push(symbol(
                            name.name.clone(),
                            Some(kind.into()),
                            lsp::SymbolKind::VARIABLE,
                            s.span(),
                            name.span,
                            None,
                        ));
                    }
                }
                let kind = match d.kind {
                    ast::DefKind::Network => lsp::SymbolKind::CLASS,
                    ast::DefKind::Block => lsp::SymbolKind::FUNCTION,
                };
                out.push(symbol(
                    d.name.name.clone(),
                    Some(d.kind.keyword().into()),
                    kind,
                    d.span,
                    d.name.span,
                    Some(children),
                ));
            }
            Item::Train(t) => {
                let name = match &t.network {
                    Some(n) => format!("train {}", n.name),
                    None => "train".into(),
                };
                let sel = t.network.as_ref().map_or(t.span, |n| n.span);
                let children = t
                    .entries
                    .iter()
                    .map(|e| {
                        symbol(
                            e.key.name.clone(),
                            None,
                            lsp::SymbolKind::PROPERTY,
                            e.span,
                            e.key.span,
                            None,
                        )
                    })
                    .collect();
                out.push(symbol(
                    name,
                    None,
                    lsp::SymbolKind::NAMESPACE,
                    t.span,
                    sel,
                    Some(children),
                ));
            }
            Item::Import(_) => {}
        }
    }
    out
}
