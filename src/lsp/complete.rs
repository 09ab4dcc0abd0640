//! Completion and signature help.
//!
//! The context comes from the text before the cursor, which may not parse
//! yet (a half-typed line): inside a call's parentheses, the callee's
//! arguments; at the start of a line of a `train` section, its settings;
//! after `->`, layers and blocks; elsewhere those and the values of the
//! enclosing definition. Names of blocks and values come from the last
//! check that parsed (`workspace::Analysis`).

use super::convert::LineIndex;
use super::navigate::{self, Target};
use super::workspace::{Analysis, Document};
use crate::check::ops::{self, ArgTy, Default as ArgDefault, OpDecl, ParamSpec};
use crate::check::train::SETTINGS_DOC;
use crate::syntax::ast::{self, Item};
use lsp_types as lsp;

/// What the cursor is in.
#[derive(Debug, PartialEq)]
enum Context {
    /// Inside `callee(...)`: the argument `active` (from 0), after those
    /// named in `given`.
    Args {
        callee: String,
        active: usize,
        given: Vec<String>,
    },
    /// At the start of a line of a `train` section.
    Setting,
    /// Right after `->`.
    Layer,
    /// Anywhere else in an expression.
    Expr,
}

fn is_name(c: char) -> bool {
    c.is_ascii_alphanumeric() || c == '_' || c == ':'
}

fn context(text: &str, offset: usize) -> Context {
    let before = &text[..offset];
    // The word being typed does not count.
    let start = before.trim_end_matches(|c: char| c.is_ascii_alphanumeric() || c == '_');
    // The enclosing item: the last line before the cursor that starts one.
    let item = before.lines().rev().find_map(|l| {
        ["train", "network", "block", "import"]
            .into_iter()
            .find(|k| l.starts_with(k))
    });
    let line = &start[start.rfind('\n').map_or(0, |i| i + 1)..];
    if item == Some("train") && line.trim().is_empty() {
        return Context::Setting;
    }
    if let Some(args) = call_around(start) {
        return args;
    }
    if start.trim_end().ends_with("->") {
        Context::Layer
    } else {
        Context::Expr
    }
}

/// The call whose parentheses hold the end of `before`, if any: scanning
/// back over balanced brackets to an open `(` within the item.
fn call_around(before: &str) -> Option<Context> {
    let mut depth = 0usize;
    let mut commas = 0;
    let mut given = Vec::new();
    for (i, c) in before.char_indices().rev() {
        match c {
            ')' | ']' => depth += 1,
            '[' if depth > 0 => depth -= 1,
            '(' if depth > 0 => depth -= 1,
            '(' => {
                let head = before[..i].trim_end();
                let name_start = head.rfind(|c: char| !is_name(c)).map_or(0, |j| j + 1);
                let callee = &head[name_start..];
                if callee.is_empty() {
                    return None;
                }
                return Some(Context::Args {
                    callee: callee.to_string(),
                    active: commas,
                    given,
                });
            }
            ',' if depth == 0 => commas += 1,
            '=' if depth == 0 => {
                let head = before[..i].trim_end();
                let name_start = head.rfind(|c: char| !is_name(c)).map_or(0, |j| j + 1);
                given.push(head[name_start..].to_string());
            }
            '{' | '}' | '[' => return None,
            _ => {}
        }
    }
    None
}

pub fn completion(
    doc: &Document,
    a: Option<&Analysis>,
    at: lsp::Position,
) -> Vec<lsp::CompletionItem> {
    let offset = LineIndex::new(&doc.text).offset(at);
    match context(&doc.text, offset) {
        Context::Setting => setting_items(&doc.text, offset),
        Context::Args { callee, given, .. } => arg_items(a, &callee, &given),
        Context::Layer => layer_items(a),
        Context::Expr => {
            let mut items = value_items(a, offset);
            items.extend(layer_items(a));
            items
        }
    }
}

fn item(
    label: &str,
    kind: lsp::CompletionItemKind,
    detail: String,
    doc: &str,
) -> lsp::CompletionItem {
    lsp::CompletionItem {
        label: label.to_string(),
        kind: Some(kind),
        detail: (!detail.is_empty()).then_some(detail),
        documentation: markdown(doc),
        ..Default::default()
    }
}

/// Documentation in Markdown, where there is any.
fn markdown(text: &str) -> Option<lsp::Documentation> {
    (!text.is_empty()).then(|| {
        lsp::Documentation::MarkupContent(lsp::MarkupContent {
            kind: lsp::MarkupKind::Markdown,
            value: text.to_string(),
        })
    })
}

fn setting_items(text: &str, offset: usize) -> Vec<lsp::CompletionItem> {
    // Settings already written in this section are left out.
    let section = &text[text[..offset].rfind("\ntrain").map_or(0, |i| i + 1)..offset];
    SETTINGS_DOC
        .iter()
        .filter(|(key, _)| {
            !section.lines().any(|l| {
                l.trim_start()
                    .strip_prefix(key)
                    .is_some_and(|r| r.trim_start().starts_with('='))
            })
        })
        .map(|(key, doc)| lsp::CompletionItem {
            insert_text: Some(format!("{key} = ")),
            ..item(key, lsp::CompletionItemKind::PROPERTY, String::new(), doc)
        })
        .collect()
}

fn layer_items(a: Option<&Analysis>) -> Vec<lsp::CompletionItem> {
    let mut items: Vec<lsp::CompletionItem> = ops::OPS
        .iter()
        .map(|op| {
            item(
                op.name,
                lsp::CompletionItemKind::FUNCTION,
                op_signature(op).0,
                op.doc,
            )
        })
        .collect();
    for (def, _) in visible_defs(a) {
        let kind = match def.kind {
            ast::DefKind::Network => lsp::CompletionItemKind::CLASS,
            ast::DefKind::Block => lsp::CompletionItemKind::MODULE,
        };
        let doc = def.doc.clone().unwrap_or_default();
        items.push(item(&def.name.name, kind, def_signature(def).0, &doc));
    }
    items
}

/// The networks and blocks the document can call: its own and its
/// imported files' (not the whole standard library).
fn visible_defs(a: Option<&Analysis>) -> Vec<(&ast::Def, bool)> {
    let Some(a) = a else {
        return Vec::new();
    };
    let mut out = Vec::new();
    for f in a.prog.files.iter().filter(|f| !f.is_std) {
        for item in &f.ast.items {
            if let Item::Def(d) = item {
                out.push((d, Some(f.id) == a.file));
            }
        }
    }
    out
}

fn value_items(a: Option<&Analysis>, offset: usize) -> Vec<lsp::CompletionItem> {
    let Some(a) = a else {
        return Vec::new();
    };
    let Some(file) = a.file else {
        return Vec::new();
    };
    let text = &a.prog.sources.get(file).text;
    // The definition around the cursor.
    let Some(def) = a.prog.file(file).ast.items.iter().find_map(|i| match i {
        Item::Def(d) if (d.span.start as usize) <= offset && offset <= d.span.end as usize => {
            Some(d)
        }
        _ => None,
    }) else {
        return Vec::new();
    };
    let mut names: Vec<&str> = Vec::new();
    for (span, target) in navigate::references_in(&a.prog, file) {
        if let Target::Value(bound) = target {
            let inside = def.span.start <= bound.start && bound.end <= def.span.end;
            let name = &text[span.start as usize..span.end as usize];
            if inside && !names.contains(&name) {
                names.push(name);
            }
        }
    }
    names
        .into_iter()
        .map(|n| item(n, lsp::CompletionItemKind::VARIABLE, String::new(), ""))
        .collect()
}

fn arg_items(a: Option<&Analysis>, callee: &str, given: &[String]) -> Vec<lsp::CompletionItem> {
    let params: Vec<(String, String)> = match callee_params(a, callee) {
        Some(p) => p,
        None => return Vec::new(),
    };
    params
        .into_iter()
        .filter(|(name, _)| !given.contains(name))
        .map(|(name, detail)| lsp::CompletionItem {
            insert_text: Some(format!("{name}=")),
            ..item(&name, lsp::CompletionItemKind::FIELD, detail, "")
        })
        .collect()
}

/// The parameters of a callee: names with their type and default.
fn callee_params(a: Option<&Analysis>, callee: &str) -> Option<Vec<(String, String)>> {
    if let Some(op) = ops::lookup(callee) {
        return Some(
            op.params
                .iter()
                .map(|p| (p.name.to_string(), param_text(p)))
                .collect(),
        );
    }
    let (def, _) = visible_defs(a)
        .into_iter()
        .find(|(d, _)| d.name.name == callee)?;
    Some(
        def.params
            .iter()
            .map(|p| (p.name.name.clone(), def_param_text(a, p)))
            .collect(),
    )
}

fn type_name(t: ArgTy) -> &'static str {
    match t {
        ArgTy::Int => "int",
        ArgTy::Float => "float",
        ArgTy::Bool => "bool",
        ArgTy::IntPair => "int | [int, int]",
        ArgTy::Padding => "int | [int, int] | \"same\" | \"valid\"",
        ArgTy::Sizes => "[int]",
    }
}

/// `kernel_size: int | [int, int]`, with ` = default` where it has one.
fn param_text(p: &ParamSpec) -> String {
    let default = match p.default {
        ArgDefault::Required | ArgDefault::Absent => String::new(),
        ArgDefault::Int(i) => format!(" = {i}"),
        ArgDefault::Float(f) => format!(" = {f}"),
        ArgDefault::Bool(b) => format!(" = {b}"),
        ArgDefault::Str(s) => format!(" = \"{s}\""),
    };
    format!("{}: {}{default}", p.name, type_name(p.ty))
}

fn def_param_text(a: Option<&Analysis>, p: &ast::Param) -> String {
    let source = |s: crate::syntax::source::Span| {
        a.map(|a| a.prog.sources.text(s).to_string())
            .unwrap_or_default()
    };
    let mut t = format!("{}: {}", p.name.name, source(p.ty.span()));
    if let Some(d) = &p.default {
        t.push_str(&format!(" = {}", source(d.span)));
    }
    t
}

/// `conv2d(out_channels: int, ...)` and the label offsets of each parameter.
fn op_signature(op: &OpDecl) -> (String, Vec<[u32; 2]>) {
    signature(op.name, op.params.iter().map(param_text))
}

fn def_signature(def: &ast::Def) -> (String, Vec<[u32; 2]>) {
    signature(
        &def.name.name,
        def.params
            .iter()
            .map(|p| format!("{}: {}", p.name.name, type_label(&p.ty))),
    )
}

fn type_label(t: &ast::TypeExpr) -> String {
    match t {
        ast::TypeExpr::Name(n) => n.name.clone(),
        ast::TypeExpr::List(inner, _) => format!("[{}]", type_label(inner)),
    }
}

fn signature(name: &str, params: impl Iterator<Item = String>) -> (String, Vec<[u32; 2]>) {
    let mut label = format!("{name}(");
    let mut offsets = Vec::new();
    for (i, p) in params.enumerate() {
        if i > 0 {
            label.push_str(", ");
        }
        let start = label.encode_utf16().count() as u32;
        label.push_str(&p);
        offsets.push([start, label.encode_utf16().count() as u32]);
    }
    label.push(')');
    (label, offsets)
}

pub fn signature_help(
    doc: &Document,
    a: Option<&Analysis>,
    at: lsp::Position,
) -> Option<lsp::SignatureHelp> {
    let offset = LineIndex::new(&doc.text).offset(at);
    let Context::Args { callee, active, .. } = context(&doc.text, offset) else {
        return None;
    };
    let (label, offsets, doc_text) = match ops::lookup(&callee) {
        Some(op) => {
            let (l, o) = op_signature(op);
            (l, o, op.doc.to_string())
        }
        None => {
            let (def, _) = visible_defs(a)
                .into_iter()
                .find(|(d, _)| d.name.name == callee)?;
            let (l, o) = def_signature(def);
            (l, o, def.doc.clone().unwrap_or_default())
        }
    };
    let parameters = offsets
        .into_iter()
        .map(|o| lsp::ParameterInformation {
            label: lsp::ParameterLabel::LabelOffsets(o),
            documentation: None,
        })
        .collect::<Vec<_>>();
    let active = (active < parameters.len()).then_some(active as u32);
    Some(lsp::SignatureHelp {
        signatures: vec![lsp::SignatureInformation {
            label,
            documentation: markdown(&doc_text),
            parameters: Some(parameters),
            active_parameter: active,
        }],
        active_signature: Some(0),
        active_parameter: active,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> Context {
        let offset = text.find('|').expect("a cursor");
        context(&text.replace('|', ""), offset)
    }

    #[test]
    fn contexts_from_the_text_before_the_cursor() {
        assert_eq!(at("network n {\n  return x -> |"), Context::Layer);
        assert_eq!(at("network n {\n  return x -> con|"), Context::Layer);
        assert_eq!(
            at("network n {\n  return x -> conv2d(6, [3, 3], stri|"),
            Context::Args {
                callee: "conv2d".into(),
                active: 2,
                given: vec![]
            }
        );
        assert_eq!(
            at("network n {\n  return x -> conv2d(6, padding=1, |"),
            Context::Args {
                callee: "conv2d".into(),
                active: 2,
                given: vec!["padding".into()]
            }
        );
        assert_eq!(at("train {\n    epochs = 3\n    ba|"), Context::Setting);
        assert_eq!(
            at("train {\n    optimizer = sgd(|"),
            Context::Args {
                callee: "sgd".into(),
                active: 0,
                given: vec![]
            }
        );
        assert_eq!(at("network n {\n  y = |"), Context::Expr);
    }
}
