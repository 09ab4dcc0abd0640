//! nnc's diagnostics as LSP diagnostics: byte offsets to the UTF-16
//! positions LSP counts in, severities, codes with a link to their
//! documentation, secondary labels as related information, and notes and
//! help appended to the message (LSP has no field for them).

use crate::diag::{Diagnostic, Severity};
use crate::syntax::source::SourceFile;
use lsp_types as lsp;

/// Line starts of a text, to turn byte offsets into LSP positions.
pub struct LineIndex<'a> {
    text: &'a str,
    starts: Vec<usize>,
}

impl<'a> LineIndex<'a> {
    pub fn new(text: &'a str) -> LineIndex<'a> {
        let mut starts = vec![0];
        starts.extend(text.match_indices('\n').map(|(i, _)| i + 1));
        LineIndex { text, starts }
    }

    /// The position of byte `offset` (clamped to the text, and back to a
    /// character boundary): its line, and its column in UTF-16 code units.
    pub fn position(&self, offset: usize) -> lsp::Position {
        let mut offset = offset.min(self.text.len());
        while !self.text.is_char_boundary(offset) {
            offset -= 1;
        }
        let line = self.starts.partition_point(|&s| s <= offset) - 1;
        let column = self.text[self.starts[line]..offset].encode_utf16().count();
        lsp::Position::new(line as u32, column as u32)
    }

    /// The byte offset of an LSP position (clamped to its line).
    pub fn offset(&self, p: lsp::Position) -> usize {
        let Some(&start) = self.starts.get(p.line as usize) else {
            return self.text.len();
        };
        let end = self
            .starts
            .get(p.line as usize + 1)
            .map_or(self.text.len(), |&e| e - 1);
        let mut units = 0;
        for (i, c) in self.text[start..end].char_indices() {
            if units >= p.character as usize {
                return start + i;
            }
            units += c.len_utf16();
        }
        end
    }

    pub fn range(&self, start: usize, end: usize) -> lsp::Range {
        lsp::Range::new(self.position(start), self.position(end))
    }
}

/// Where the documentation of the diagnostic codes is: the page in the
/// source tree nnc was built from.
fn codes_page() -> Option<lsp::Uri> {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/codes.md");
    super::uri::from_path(&path)
}

/// `d` as an LSP diagnostic in `file`, whose line index is `lines`;
/// `locate` gives the URI and range of a secondary label's span (which
/// may be in another file).
pub fn diagnostic(
    d: &Diagnostic,
    lines: &LineIndex,
    locate: &dyn Fn(crate::syntax::source::Span) -> Option<lsp::Location>,
) -> lsp::Diagnostic {
    let range = match &d.primary {
        Some(l) => lines.range(l.span.start as usize, l.span.end as usize),
        None => lsp::Range::default(),
    };
    let mut message = d.message.clone();
    if let Some(l) = d.primary.as_ref().filter(|l| !l.message.is_empty()) {
        message.push_str(&format!(": {}", l.message));
    }
    for note in &d.notes {
        message.push_str(&format!("\nnote: {note}"));
    }
    if let Some(help) = &d.help {
        message.push_str(&format!("\nhelp: {help}"));
    }
    let related: Vec<lsp::DiagnosticRelatedInformation> = d
        .secondary
        .iter()
        .filter_map(|l| {
            Some(lsp::DiagnosticRelatedInformation {
                location: locate(l.span)?,
                message: l.message.clone(),
            })
        })
        .collect();
    lsp::Diagnostic {
        range,
        severity: Some(match d.severity {
            Severity::Error => lsp::DiagnosticSeverity::ERROR,
            Severity::Warning => lsp::DiagnosticSeverity::WARNING,
        }),
        code: Some(lsp::NumberOrString::String(d.code.to_string())),
        code_description: codes_page().map(|href| lsp::CodeDescription { href }),
        source: Some("nnc".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags: None,
        data: None,
    }
}

/// The LSP range of a span of `file`.
pub fn range_in(file: &SourceFile, start: usize, end: usize) -> lsp::Range {
    LineIndex::new(&file.text).range(start, end)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn positions_count_utf16_units() {
        // "é" is two bytes and one UTF-16 unit; "𝑥" four bytes and two.
        let text = "ab\né𝑥 = 1\n";
        let lines = LineIndex::new(text);
        let x = text.find('𝑥').unwrap();
        assert_eq!(lines.position(x), lsp::Position::new(1, 1));
        let eq = text.find('=').unwrap();
        assert_eq!(lines.position(eq), lsp::Position::new(1, 4));
        assert_eq!(lines.offset(lsp::Position::new(1, 4)), eq);
        assert_eq!(lines.offset(lsp::Position::new(1, 99)), text.len() - 1);
        // Inside a character: back to its start.
        assert_eq!(lines.position(x + 1), lsp::Position::new(1, 1));
        assert_eq!(lines.position(text.len() + 5), lsp::Position::new(2, 0));
    }
}
