//! `textDocument/formatting`: `nnc fmt` on the editor's text, answered as
//! one edit per changed run of lines, so that the editor keeps its cursor,
//! marks and folds on the lines formatting leaves alone.

use super::convert::LineIndex;
use crate::format::{self, diff};
use lsp_types as lsp;

/// The edits that format `text`, or why it cannot be formatted.
pub fn edits(text: &str) -> Result<Vec<lsp::TextEdit>, String> {
    let formatted = format::format(text).map_err(|e| match e {
        format::Error::Syntax => {
            "nnc fmt: the file does not parse; fix the syntax error first".to_string()
        }
        format::Error::Internal(why) => format!("nnc fmt: internal error ({why})"),
    })?;
    // Lines with their line breaks, so that a missing final one is a change.
    let old: Vec<&str> = text.split_inclusive('\n').collect();
    let new: Vec<&str> = formatted.split_inclusive('\n').collect();
    let mut starts = vec![0];
    starts.extend(old.iter().scan(0, |at, l| {
        *at += l.len();
        Some(*at)
    }));
    let index = LineIndex::new(text);
    Ok(diff::hunks(&old, &new)
        .into_iter()
        .map(|h| lsp::TextEdit {
            range: lsp::Range {
                start: index.position(starts[h.old.start]),
                end: index.position(starts[h.old.end]),
            },
            new_text: new[h.new].concat(),
        })
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Applies edits as an editor does: from the last to the first.
    fn apply(text: &str, edits: &[lsp::TextEdit]) -> String {
        let mut out = text.to_string();
        for e in edits.iter().rev() {
            let index = LineIndex::new(&out);
            let (s, t) = (index.offset(e.range.start), index.offset(e.range.end));
            out.replace_range(s..t, &e.new_text);
        }
        out
    }

    #[test]
    fn edits_format_the_text_and_touch_only_changed_lines() {
        let text = "network n {\n  input x: [N, 4]\n    // ok\n    y = x\n    return  y->relu\n}";
        let edits = edits(text).unwrap();
        let formatted = format::format(text).unwrap();
        assert_eq!(apply(text, &edits), formatted);
        assert_eq!(edits.len(), 2, "{edits:?}");
        assert_eq!(edits[0].range.start, lsp::Position::new(1, 0));
        assert_eq!(edits[0].range.end, lsp::Position::new(2, 0));
        // The last line had no line break.
        assert_eq!(edits[1].range.end, lsp::Position::new(5, 1));
        assert!(super::edits(&formatted).unwrap().is_empty());
        assert!(super::edits("network {")
            .unwrap_err()
            .contains("does not parse"));
    }
}
