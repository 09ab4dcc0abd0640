//! The source text a diagnostic shows. Two things in a file would make the
//! rendering lie or drown the reader: control characters (a NUL byte shows
//! as a space in a terminal) and very long lines (a 20 KB line would be
//! echoed whole). The excerpt replaces control characters with their
//! visible Unicode pictures (`␀`) and cuts long lines to windows around the
//! labelled spans, and maps every byte offset of the original text to the
//! excerpt so that the labels still point at the right characters.

/// Lines longer than this (in bytes) are cut around the labels.
const LONG_LINE: usize = 160;
/// Bytes kept on each side of a label's start and end in a cut line.
const CONTEXT: usize = 40;
/// What stands for the text cut from a long line.
const CUT: &str = "…";

#[derive(Debug)]
pub struct Excerpt {
    /// The file's name, for the report's header.
    pub name: String,
    pub text: String,
    /// The original text, for the header's true line and column.
    original: String,
    /// `map[i]` is where byte `i` of the original text starts in `text`
    /// (`map[len]` is the end).
    map: Vec<usize>,
}

impl Excerpt {
    /// The excerpt of `text` for labels at `spans` (byte ranges).
    pub fn new(name: &str, text: &str, spans: &[(usize, usize)]) -> Excerpt {
        let keep = kept_ranges(text, spans);
        let mut out = String::with_capacity(text.len().min(1 << 16));
        let mut map = vec![0; text.len() + 1];
        let mut ranges = keep.iter().peekable();
        let mut in_cut = false;
        for (i, c) in text.char_indices() {
            while ranges.peek().is_some_and(|r| r.1 <= i) {
                ranges.next();
            }
            let kept = ranges.peek().is_some_and(|r| r.0 <= i);
            let here = out.len();
            for m in &mut map[i..i + c.len_utf8()] {
                *m = here;
            }
            if !kept {
                if !in_cut {
                    out.push_str(CUT);
                    in_cut = true;
                }
                continue;
            }
            in_cut = false;
            out.push(visible(c, text.as_bytes().get(i + 1).copied()));
        }
        map[text.len()] = out.len();
        Excerpt {
            name: name.to_string(),
            text: out,
            original: text.to_string(),
            map,
        }
    }

    /// The 0-based line and byte column in the original text of an offset
    /// into the excerpt.
    fn original_position(&self, offset: usize) -> (usize, usize) {
        let i = self.map.partition_point(|&m| m < offset);
        let before = &self.original.as_bytes()[..i.min(self.original.len())];
        let line = before.iter().filter(|&&b| b == b'\n').count();
        let column = before.len()
            - before
                .iter()
                .rposition(|&b| b == b'\n')
                .map_or(0, |p| p + 1);
        (line, column)
    }

    /// Where the original byte range `(start, end)` lies in the excerpt.
    pub fn span(&self, start: usize, end: usize) -> (usize, usize) {
        let last = self.map.len() - 1;
        let s = self.map[start.min(last)];
        let e = self.map[end.min(last)].max(s);
        (s, e)
    }
}

/// miette reads the excerpt; the location in a report's header (the one
/// read without context lines) is that of the original text, so that
/// `file:line:column` stays true where a line was cut.
impl miette::SourceCode for Excerpt {
    fn read_span<'a>(
        &'a self,
        span: &miette::SourceSpan,
        before: usize,
        after: usize,
    ) -> Result<Box<dyn miette::SpanContents<'a> + 'a>, miette::MietteError> {
        let inner = self.text.as_str().read_span(span, before, after)?;
        let (line, column) = if before == 0 && after == 0 {
            self.original_position(span.offset())
        } else {
            (inner.line(), inner.column())
        };
        Ok(Box::new(miette::MietteSpanContents::new_named(
            self.name.clone(),
            inner.data(),
            *inner.span(),
            line,
            column,
            inner.line_count(),
        )))
    }
}

/// A control character as its Unicode picture (U+2400 ...); line breaks
/// and tabs stay what they are.
fn visible(c: char, next: Option<u8>) -> char {
    match c {
        '\n' | '\t' => c,
        '\r' if next == Some(b'\n') => c,
        '\u{7f}' => '\u{2421}',
        c if (c as u32) < 0x20 => char::from_u32(0x2400 + c as u32).unwrap_or('?'),
        c => c,
    }
}

/// The byte ranges of `text` to show, sorted and disjoint: every line up
/// to `LONG_LINE` bytes whole; of a longer line, windows around the starts
/// and ends of the labels on it (or its beginning, for a context line).
fn kept_ranges(text: &str, spans: &[(usize, usize)]) -> Vec<(usize, usize)> {
    let mut keep = Vec::new();
    let mut line_start = 0;
    for line in text.split_inclusive('\n') {
        let line_end = line_start + line.len();
        if line.len() <= LONG_LINE {
            keep.push((line_start, line_end));
        } else {
            let mut windows: Vec<(usize, usize)> = Vec::new();
            for &(s, e) in spans {
                for point in [s, e] {
                    if (line_start..=line_end).contains(&point) {
                        windows.push((
                            point.saturating_sub(CONTEXT).max(line_start),
                            (point + CONTEXT).min(line_end),
                        ));
                    }
                }
            }
            if windows.is_empty() {
                windows.push((line_start, line_start + 2 * CONTEXT));
            }
            // The line break stays, so that lines stay lines.
            if line.ends_with('\n') {
                windows.push((line_end - 1, line_end));
            }
            windows.sort();
            for (s, e) in windows {
                let s = floor_char(text, s);
                let e = ceil_char(text, e);
                match keep.last_mut() {
                    Some(last) if s <= last.1 => last.1 = last.1.max(e),
                    _ => keep.push((s, e)),
                }
            }
        }
        line_start = line_end;
    }
    keep
}

fn floor_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i -= 1;
    }
    i
}

fn ceil_char(text: &str, mut i: usize) -> usize {
    while !text.is_char_boundary(i) {
        i += 1;
    }
    i
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_become_visible_and_spans_follow() {
        let text = "a\0b = 1\n";
        let ex = Excerpt::new("t", text, &[(2, 3)]);
        assert_eq!(ex.text, "a\u{2400}b = 1\n");
        let (s, e) = ex.span(2, 3);
        assert_eq!(&ex.text[s..e], "b");
    }

    #[test]
    fn a_long_line_is_cut_around_its_label() {
        let mut text = "x".repeat(20_000);
        text.replace_range(10_000..10_003, "BAD");
        text.push('\n');
        let ex = Excerpt::new("t", &text, &[(10_000, 10_003)]);
        assert!(ex.text.len() < 200, "{}", ex.text.len());
        assert!(ex.text.starts_with(CUT) && ex.text.ends_with("\n"));
        let (s, e) = ex.span(10_000, 10_003);
        assert_eq!(&ex.text[s..e], "BAD");
        assert_eq!(ex.original_position(s), (0, 10_000));
    }

    #[test]
    fn short_text_is_unchanged() {
        let text = "network n {\r\n    input x: [N, 4]\r\n}\r\n";
        let ex = Excerpt::new("t", text, &[(0, 7)]);
        assert_eq!(ex.text, text);
        assert_eq!(ex.span(4, 9), (4, 9));
    }
}
