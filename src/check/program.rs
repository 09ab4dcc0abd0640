//! Loading files and resolving names across them.
//!
//! A [`Program`] is every file reachable from the ones given: the user's
//! files, the files they import, and the standard library when anything
//! refers to `std::`. Name resolution is by file: a file sees its own
//! definitions, then what it imports, then the built-in layers.

use super::ops::{self, OpDecl};
use crate::diag::Diagnostic;
use crate::diag_codes as codes;
use crate::syntax::ast::{self, Def, ImportTarget, Item};
use crate::syntax::source::{FileId, Origin, SourceMap, Span};
use std::cell::RefCell;
use std::collections::{HashMap, HashSet};
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct DefId(pub usize);

#[derive(Debug)]
pub struct ParsedFile {
    pub id: FileId,
    pub ast: ast::File,
    pub is_std: bool,
    /// Definitions by name.
    pub defs: HashMap<String, DefId>,
    /// `import std::x` and `import std::x as y`: local name to definition.
    named_imports: HashMap<String, (DefId, Span)>,
    /// `import std::*`.
    std_glob: Option<Span>,
    /// `import "f.nn"` (no alias): all of the file's definitions.
    file_globs: Vec<(FileId, Span)>,
    /// `import "f.nn" as m`.
    modules: HashMap<String, (FileId, Span)>,
    /// Names whose import failed (already reported), so that their uses
    /// are not reported again.
    pub failed_imports: Vec<String>,
}

#[derive(Debug)]
pub struct DefEntry {
    pub file: FileId,
    pub item: usize,
}

pub enum Callee {
    Def(DefId),
    Op(&'static OpDecl),
}

#[derive(Debug, Default)]
pub struct Program {
    pub sources: SourceMap,
    pub files: Vec<ParsedFile>,
    pub defs: Vec<DefEntry>,
    /// The standard library's namespace, once loaded.
    std_names: HashMap<String, DefId>,
    std_loaded: bool,
    /// Imports that resolved at least one name, for the unused-import lint.
    used_imports: RefCell<HashSet<Span>>,
    /// Files being loaded, for import cycles.
    loading: Vec<PathBuf>,
    /// Text to use instead of the disk's for these (canonical) paths: an
    /// editor's unsaved buffers (`nnc lsp`).
    overlay: HashMap<PathBuf, String>,
}

impl Program {
    pub fn new() -> Program {
        Program::default()
    }

    /// A program that reads these files' text from `overlay` (keyed by
    /// canonical path) rather than from the disk.
    pub fn with_overlay(overlay: HashMap<PathBuf, String>) -> Program {
        Program {
            overlay,
            ..Program::default()
        }
    }

    pub fn def(&self, id: DefId) -> &Def {
        let e = &self.defs[id.0];
        match &self.file(e.file).ast.items[e.item] {
            Item::Def(d) => d,
            _ => unreachable!("DefEntry points at a definition"),
        }
    }

    pub fn def_file(&self, id: DefId) -> FileId {
        self.defs[id.0].file
    }

    pub fn file(&self, id: FileId) -> &ParsedFile {
        self.files
            .iter()
            .find(|f| f.id == id)
            .expect("every FileId in the program has a parsed file")
    }

    /// Loads a file from disk with everything it imports.
    pub fn load_path(&mut self, path: &Path, diags: &mut Vec<Diagnostic>) -> Option<FileId> {
        let canonical = path.canonicalize().unwrap_or_else(|_| path.to_path_buf());
        if let Some(id) = self.sources.find_path(&canonical) {
            return Some(id);
        }
        let read = match self.overlay.get(&canonical) {
            Some(text) => Ok(text.clone().into_bytes()),
            None => std::fs::read(path),
        };
        let bytes = match read {
            Ok(b) => b,
            Err(e) => {
                diags.push(
                    Diagnostic::error(
                        codes::UNREADABLE,
                        format!("cannot read `{}`: {e}", path.display()),
                    )
                    .with_help("check the path and the file's permissions"),
                );
                return None;
            }
        };
        self.load_bytes(
            &path.display().to_string(),
            Origin::Disk(canonical),
            bytes,
            diags,
        )
    }

    /// Loads a file's bytes, which need not be UTF-8 (the error says where
    /// they stop being).
    pub fn load_bytes(
        &mut self,
        name: &str,
        origin: Origin,
        bytes: Vec<u8>,
        diags: &mut Vec<Diagnostic>,
    ) -> Option<FileId> {
        let text = match String::from_utf8(bytes) {
            Ok(t) => t,
            Err(e) => {
                let offset = e.utf8_error().valid_up_to();
                let lossy = String::from_utf8_lossy(e.as_bytes()).into_owned();
                // Offsets before the first bad byte are the same in the lossy text.
                let id = self.sources.add(name, origin, lossy);
                diags.push(
                    Diagnostic::error(codes::INVALID_UTF8, "the file is not valid UTF-8")
                        .at(
                            Span::new(id, offset, offset + 1),
                            format!("invalid byte at offset {offset}"),
                        )
                        .with_help("save the file as UTF-8"),
                );
                return None;
            }
        };
        let disk_path = match &origin {
            Origin::Disk(p) => Some(p.clone()),
            _ => None,
        };
        let id = self.sources.add(name, origin, text);
        self.loading.extend(disk_path.clone());
        self.add_parsed(id, false, diags);
        if disk_path.is_some() {
            self.loading.pop();
        }
        Some(id)
    }

    /// Loads source text that has no file behind it (tests, the editor).
    pub fn load_text(&mut self, name: &str, text: String, diags: &mut Vec<Diagnostic>) -> FileId {
        let id = self.sources.add(name, Origin::Memory, text);
        self.add_parsed(id, false, diags);
        id
    }

    /// Loads the standard library (once).
    pub fn load_std(&mut self, diags: &mut Vec<Diagnostic>) {
        if self.std_loaded {
            return;
        }
        self.std_loaded = true;
        for (name, text) in crate::stdlib::FILES {
            let id = self.sources.add(*name, Origin::Stdlib, text.to_string());
            self.add_parsed(id, true, diags);
        }
    }

    fn add_parsed(&mut self, id: FileId, is_std: bool, diags: &mut Vec<Diagnostic>) {
        let text = self.sources.get(id).text.clone();
        let (ast, parse_diags) = crate::syntax::parse(id, &text);
        diags.extend(parse_diags);
        let mut defs = HashMap::new();
        for (i, item) in ast.items.iter().enumerate() {
            let Item::Def(d) = item else { continue };
            let def_id = DefId(self.defs.len());
            self.defs.push(DefEntry { file: id, item: i });
            let table = if is_std {
                &mut self.std_names
            } else {
                &mut defs
            };
            if let Some(&prev) = table.get(&d.name.name) {
                // The first definition may be in this file, not yet stored.
                let prev_entry = &self.defs[prev.0];
                let prev_span = if prev_entry.file == id {
                    match &ast.items[prev_entry.item] {
                        Item::Def(p) => p.name.span,
                        _ => d.name.span,
                    }
                } else {
                    self.def(prev).name.span
                };
                diags.push(
                    Diagnostic::error(
                        codes::DUPLICATE_DEFINITION,
                        format!("`{}` is defined twice", d.name.name),
                    )
                    .at(d.name.span, "defined again here")
                    .with_label(prev_span, "first defined here")
                    .with_help("rename one of them"),
                );
                continue;
            }
            table.insert(d.name.name.clone(), def_id);
        }
        let imports: Vec<ast::Import> = ast
            .items
            .iter()
            .filter_map(|i| match i {
                Item::Import(imp) => Some(imp.clone()),
                _ => None,
            })
            .collect();
        let mut file = ParsedFile {
            id,
            ast,
            is_std,
            defs,
            named_imports: HashMap::new(),
            std_glob: None,
            file_globs: Vec::new(),
            modules: HashMap::new(),
            failed_imports: Vec::new(),
        };
        let uses_std = text.contains("std::");
        if uses_std && !is_std {
            self.load_std(diags);
        }
        for imp in imports {
            self.resolve_import(&mut file, &imp, diags);
        }
        self.files.push(file);
    }

    fn resolve_import(
        &mut self,
        file: &mut ParsedFile,
        imp: &ast::Import,
        diags: &mut Vec<Diagnostic>,
    ) {
        match &imp.target {
            ImportTarget::Std { name: None } => file.std_glob = Some(imp.span),
            ImportTarget::Std { name: Some(name) } => match self.std_names.get(&name.name) {
                Some(&def) => {
                    let local = imp.alias.as_ref().unwrap_or(name);
                    file.named_imports
                        .insert(local.name.clone(), (def, imp.span));
                }
                None => {
                    file.failed_imports
                        .push(imp.alias.as_ref().unwrap_or(name).name.clone());
                    let mut d = Diagnostic::error(
                        codes::UNKNOWN_IMPORT,
                        format!("the standard library has no `{}`", name.name),
                    )
                    .at(name.span, "not in `std`");
                    if let Some(s) = super::suggest::did_you_mean(
                        &name.name,
                        self.std_names.keys().map(|k| k.as_str()),
                    ) {
                        d = d.with_help(format!("did you mean `std::{s}`?"));
                    } else {
                        d = d.with_help(format!("`std` has: {}", self.std_list()));
                    }
                    diags.push(d);
                }
            },
            ImportTarget::OtherPath { path } => {
                let text: Vec<&str> = path.iter().map(|p| p.name.as_str()).collect();
                diags.push(
                    Diagnostic::error(
                        codes::UNKNOWN_IMPORT,
                        format!("cannot import `{}`", text.join("::")),
                    )
                    .at(imp.span, "unknown import")
                    .with_help("import `std::NAME`, `std::*`, or a file: `import \"layers.nn\"`"),
                );
            }
            ImportTarget::File { path, span } => {
                // Relative to the importing file, spelt as that file was, so
                // that messages show the path the user would type.
                let base = match &self.sources.get(file.id).origin {
                    Origin::Disk(_) => Path::new(&self.sources.get(file.id).name)
                        .parent()
                        .map(Path::to_path_buf)
                        .unwrap_or_default(),
                    _ => PathBuf::from("."),
                };
                let full = base.join(path);
                let canonical = full.canonicalize().unwrap_or_else(|_| full.clone());
                if self.loading.contains(&canonical) {
                    diags.push(
                        Diagnostic::error(
                            codes::IMPORT_CYCLE,
                            format!("`{path}` imports itself through this import"),
                        )
                        .at(*span, "import cycle")
                        .with_help("move the shared blocks into a third file that both import"),
                    );
                    return;
                }
                let mut load_diags = Vec::new();
                let loaded = self.load_path(&full, &mut load_diags);
                for d in load_diags {
                    if d.primary.is_none() && d.code == codes::UNREADABLE {
                        diags.push(
                            Diagnostic::error(codes::UNKNOWN_IMPORT, d.message.clone())
                                .at(*span, "cannot import this file")
                                .with_help(format!(
                                    "the path is relative to this file's folder: {}",
                                    full.display()
                                )),
                        );
                    } else {
                        diags.push(d);
                    }
                }
                if let Some(id) = loaded {
                    match &imp.alias {
                        Some(a) => {
                            file.modules.insert(a.name.clone(), (id, imp.span));
                        }
                        None => file.file_globs.push((id, imp.span)),
                    }
                }
            }
        }
    }

    pub fn std_list(&self) -> String {
        let mut names: Vec<&str> = self
            .std_names
            .iter()
            .filter(|(_, id)| self.def(**id).kind == ast::DefKind::Network)
            .map(|(n, _)| n.as_str())
            .collect();
        names.sort_unstable();
        names.join(", ")
    }

    /// A network or block of the standard library.
    pub fn std_def(&mut self, name: &str, diags: &mut Vec<Diagnostic>) -> Option<DefId> {
        self.load_std(diags);
        self.std_names.get(name).copied()
    }

    /// What a callee path means in `from`.
    pub fn resolve_callee(&self, from: FileId, path: &ast::Path) -> Option<Callee> {
        self.resolve_def(from, path)
            .map(Callee::Def)
            .or_else(|| match path.segments.as_slice() {
                [one] => ops::lookup(&one.name).map(Callee::Op),
                _ => None,
            })
    }

    pub fn resolve_def(&self, from: FileId, path: &ast::Path) -> Option<DefId> {
        let file = self.file(from);
        match path.segments.as_slice() {
            [one] => {
                let name = one.name.as_str();
                if file.is_std {
                    return self.std_names.get(name).copied();
                }
                if let Some(&d) = file.defs.get(name) {
                    return Some(d);
                }
                if let Some(&(d, span)) = file.named_imports.get(name) {
                    self.used_imports.borrow_mut().insert(span);
                    return Some(d);
                }
                if let Some(span) = file.std_glob {
                    if let Some(&d) = self.std_names.get(name) {
                        self.used_imports.borrow_mut().insert(span);
                        return Some(d);
                    }
                }
                for &(f, span) in &file.file_globs {
                    if let Some(&d) = self.file(f).defs.get(name) {
                        self.used_imports.borrow_mut().insert(span);
                        return Some(d);
                    }
                }
                None
            }
            [module, name] if module.name == "std" => self.std_names.get(&name.name).copied(),
            [module, name] => {
                let &(f, span) = file.modules.get(&module.name)?;
                let d = self.file(f).defs.get(&name.name).copied();
                if d.is_some() {
                    self.used_imports.borrow_mut().insert(span);
                }
                d
            }
            _ => None,
        }
    }

    /// Every layer name visible in `from`, for suggestions.
    pub fn visible_names(&self, from: FileId) -> Vec<String> {
        let file = self.file(from);
        let mut names: Vec<String> = ops::OPS.iter().map(|o| o.name.to_string()).collect();
        if file.is_std || file.std_glob.is_some() {
            names.extend(self.std_names.keys().cloned());
        }
        names.extend(file.defs.keys().cloned());
        names.extend(file.named_imports.keys().cloned());
        for &(f, _) in &file.file_globs {
            names.extend(self.file(f).defs.keys().cloned());
        }
        names
    }

    /// Imports of user files that resolved nothing.
    pub fn unused_imports(&self) -> Vec<Diagnostic> {
        let used = self.used_imports.borrow();
        let mut out = Vec::new();
        for f in self.files.iter().filter(|f| !f.is_std) {
            let mut spans: Vec<Span> = f.named_imports.values().map(|(_, s)| *s).collect();
            spans.extend(f.std_glob);
            spans.extend(f.file_globs.iter().map(|(_, s)| *s));
            spans.extend(f.modules.values().map(|(_, s)| *s));
            for s in spans {
                if !used.contains(&s) {
                    out.push(
                        Diagnostic::warning(codes::UNUSED_IMPORT, "unused import")
                            .at(s, "nothing uses this")
                            .with_help("remove the import"),
                    );
                }
            }
        }
        out
    }
}
