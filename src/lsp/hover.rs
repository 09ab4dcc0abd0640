//! Hover: what the checker knows about the code under the cursor.
//!
//! - On a layer call (or any step of a chain): its output shape in each
//!   place it is instantiated (a block used by two networks, or twice by
//!   one, has one shape per use), with its path in the network, its
//!   parameters and multiply-accumulates. Inside a block no network uses,
//!   the shapes of the block checked alone, in its symbolic sizes.
//! - On a name that stands for a tensor (an input, a `let`, a use): its
//!   shape, per place when they differ. On a name that stands for a
//!   number, a flag or a list (a parameter, a size an input pattern binds,
//!   a loop variable): its value in each place.
//! - On a network's or block's name where it is defined: its input and
//!   output shapes and its totals.
//! - On a training setting: what it means and its default.
//!
//! Everything comes from the last check of the document
//! (`workspace::Analysis`); hovering checks nothing again.

use super::convert::LineIndex;
use super::workspace::{Analysis, Document};
use crate::check::dim::Dim;
use crate::check::model::Model;
use crate::summary::{group_digits, summarize};
use crate::syntax::source::Span;
use lsp_types as lsp;

/// The most places a hover lists for one piece of code.
const MOST_PLACES: usize = 8;

pub fn hover(doc: &Document, a: &Analysis, at: lsp::Position) -> Option<lsp::Hover> {
    let file = a.file?;
    let lines = LineIndex::new(&doc.text);
    let offset = lines.offset(at) as u32;
    let inside = |s: Span| s.file == file && s.start <= offset && offset <= s.end;
    let models = || a.checked.models.iter().chain(&a.checked.alone);
    // A training setting's key: what it means and its default.
    for item in &a.prog.file(file).ast.items {
        let crate::syntax::ast::Item::Train(t) = item else {
            continue;
        };
        if let Some(e) = t.entries.iter().find(|e| inside(e.key.span)) {
            let doc = crate::check::train::SETTINGS_DOC
                .iter()
                .find(|(k, _)| *k == e.key.name)?;
            return Some(answer(
                &lines,
                e.key.span,
                format!("**{}**: {}", doc.0, doc.1),
            ));
        }
    }
    // A definition's name.
    for m in models() {
        if let Some(span) = definition_span(a, m).filter(|s| inside(*s)) {
            return Some(answer(&lines, span, network_text(m)));
        }
    }
    // A name that stands for a tensor.
    if let Some(span) = models()
        .flat_map(|m| m.names.iter().map(|(s, _)| *s))
        .filter(|s| inside(*s))
        .min_by_key(|s| s.end - s.start)
    {
        let name = &doc.text[span.start as usize..span.end as usize];
        let mut shapes: Vec<(String, &str)> = Vec::new();
        for m in models() {
            for (s, v) in &m.names {
                let place = (shape(m.shape(*v)), m.name.as_str());
                if *s == span && !shapes.contains(&place) {
                    shapes.push(place);
                }
            }
        }
        let mut text = format!("`{name}`: `{}`", shapes.first()?.0);
        if shapes.len() > 1 {
            text.push('\n');
            for (sh, model) in shapes.iter().take(MOST_PLACES) {
                text.push_str(&format!("\n- `{sh}` in `{model}`"));
            }
        }
        return Some(answer(&lines, span, text));
    }
    // A name that stands for a number, a flag or a list: its values.
    if let Some(span) = models()
        .flat_map(|m| m.name_values.iter().map(|(s, _)| *s))
        .filter(|s| inside(*s))
        .min_by_key(|s| s.end - s.start)
    {
        let name = &doc.text[span.start as usize..span.end as usize];
        let mut values: Vec<&str> = Vec::new();
        for (s, v) in models().flat_map(|m| &m.name_values) {
            if *s == span && !values.contains(&v.as_str()) {
                values.push(v);
            }
        }
        let text = match values.as_slice() {
            [one] => format!("`{name}` = `{one}`"),
            many => {
                let shown: Vec<String> = many
                    .iter()
                    .take(MOST_PLACES)
                    .map(|v| format!("`{v}`"))
                    .collect();
                let more = many.len().saturating_sub(MOST_PLACES);
                let more = if more > 0 {
                    format!(" and {more} more")
                } else {
                    String::new()
                };
                format!(
                    "`{name}` = {}{more}, one per place this code is used",
                    shown.join(", ")
                )
            }
        };
        return Some(answer(&lines, span, text));
    }
    // The innermost layer span around the cursor, in every model.
    let span = models()
        .flat_map(|m| m.layers.iter().map(|l| l.span))
        .filter(|s| inside(*s))
        .min_by_key(|s| s.end - s.start)?;
    let mut places = Vec::new();
    for m in models() {
        let rows = summarize(m, &[]).rows;
        for (layer, row) in m.layers.iter().zip(rows) {
            if layer.span == span {
                places.push((m, row));
            }
        }
    }
    let (_, first) = places.first()?;
    let mut text = format!("**{}** → `{}`\n", first.op, shape(&first.output_shape));
    let same = places
        .iter()
        .all(|(_, r)| r.output_shape == first.output_shape);
    for (m, row) in places.iter().take(MOST_PLACES) {
        text.push_str(&format!("\n- `{}` in `{}`", row.path, m.name));
        if !same {
            text.push_str(&format!(": `{}`", shape(&row.output_shape)));
        }
        if row.params > 0 {
            text.push_str(&format!(", {} parameters", group_digits(row.params)));
        }
        if let Some(macs) = row.macs.as_ref().filter(|m| m.as_const() != Some(0)) {
            text.push_str(&format!(", {} MACs", count(macs)));
        }
    }
    if places.len() > MOST_PLACES {
        text.push_str(&format!("\n- and {} more", places.len() - MOST_PLACES));
    }
    Some(answer(&lines, span, text))
}

fn answer(lines: &LineIndex, span: Span, markdown: String) -> lsp::Hover {
    lsp::Hover {
        contents: lsp::HoverContents::Markup(lsp::MarkupContent {
            kind: lsp::MarkupKind::Markdown,
            value: markdown,
        }),
        range: Some(lines.range(span.start as usize, span.end as usize)),
    }
}

/// The span of the name of the definition a model was built from.
fn definition_span(a: &Analysis, m: &Model) -> Option<Span> {
    let file = a.prog.file(a.file?);
    let id = file.defs.get(&m.name)?;
    Some(a.prog.def(*id).name.span)
}

fn network_text(m: &Model) -> String {
    let s = summarize(m, &[]);
    let output = m.output.map(|o| shape(m.shape(o))).unwrap_or_default();
    let mut text = format!(
        "**{}**: `{}` → `{}`\n\n",
        m.name,
        shape(&s.input_shape),
        output
    );
    text.push_str(&format!(
        "{} layers, {} parameters",
        s.rows.len(),
        group_digits(s.total_params)
    ));
    if let Some(macs) = &s.macs {
        text.push_str(&format!(", {} MACs", count(macs)));
    }
    text
}

fn shape(dims: &[Dim]) -> String {
    let parts: Vec<String> = dims.iter().map(|d| d.to_string()).collect();
    format!("[{}]", parts.join(", "))
}

/// A count, with digits grouped when it is a number.
fn count(d: &Dim) -> String {
    match d.as_const() {
        Some(n) if n >= 0 => group_digits(n as u128),
        _ => d.to_string(),
    }
}

/// Inlay hints in `range`: after each step of a chain (`Model::steps`: a
/// layer's or a block's call, a loop), the shape it gives,
/// where every place it is instantiated gives the same one (inside a block
/// used at several sizes there is no one shape to show).
pub fn inlay_hints(doc: &Document, a: &Analysis, range: lsp::Range) -> Vec<lsp::InlayHint> {
    let Some(file) = a.file else {
        return Vec::new();
    };
    let lines = LineIndex::new(&doc.text);
    let (lo, hi) = (
        lines.offset(range.start) as u32,
        lines.offset(range.end) as u32,
    );
    let mut shapes: Vec<(Span, String, bool)> = Vec::new();
    for m in a.checked.models.iter().chain(&a.checked.alone) {
        for &(s, value) in &m.steps {
            if s.file != file || s.end < lo || s.end > hi {
                continue;
            }
            let text = shape(m.shape(value));
            match shapes.iter_mut().find(|(span, _, _)| *span == s) {
                Some((_, t, same)) => *same &= *t == text,
                None => shapes.push((s, text, true)),
            }
        }
    }
    shapes.sort_by_key(|(s, _, _)| (s.end, s.start));
    shapes
        .into_iter()
        .filter(|(_, _, same)| *same)
        .map(|(s, text, _)| lsp::InlayHint {
            position: lines.position(s.end as usize),
            label: lsp::InlayHintLabel::String(format!(": {text}")),
            kind: Some(lsp::InlayHintKind::TYPE),
            text_edits: None,
            tooltip: None,
            padding_left: Some(false),
            padding_right: Some(true),
            data: None,
        })
        .collect()
}
