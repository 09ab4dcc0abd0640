//! `nnc fmt`: one layout for every `.nn` file.
//!
//! The author chooses where lines break, because a chain of layers reads
//! best grouped the way its author thinks of it (a convolution with its
//! batch norm and activation on one line); the formatter owns everything
//! else:
//! * spaces within a line (`conv2d(64, 3, stride=2)`, `a + b`, `0..n`,
//!   `x: [N, C]`, `{ relu }`);
//! * indentation: four spaces per open bracket; a line that continues a
//!   chain with `->` lines up under the first `->` of its statement, or is
//!   indented four more when the first line has none; inside the braces of
//!   `repeat`, `for`, `if` and scopes it stays at the braces' indentation;
//! * one statement, setting or definition per line, every `{` on the line
//!   before it, at most one blank line in a row and none just inside
//!   brackets;
//! * comments stay where they are: a comment on a line of its own is
//!   indented like the code after it, and the end-of-line comments of
//!   consecutive lines inside the same brackets are aligned one space
//!   after the longest code.
//!
//! It never breaks or joins lines of a chain, so a long line stays long.
//!
//! Invariants, checked on every run: the output has exactly the input's
//! tokens and comments (so nothing is lost and the program means the same),
//! and formatting the output again changes nothing (a test).

pub mod diff;
pub mod files;

use crate::syntax::tokens::{self, Bracket, Kind, Token, Trivia};

#[derive(Debug, PartialEq, Eq)]
pub enum Error {
    /// The text does not parse; `nnc check` says why.
    Syntax,
    /// The formatter would have changed more than blanks: a bug, and the
    /// text is left alone.
    Internal(String),
}

/// `text` laid out in the one style.
pub fn format(text: &str) -> Result<String, Error> {
    let toks = tokens::tokens(text).ok_or(Error::Syntax)?;
    let out = Printer::new(text).print(&toks);
    verify(text, &toks, &out)?;
    Ok(out)
}

/// The output must hold the input's tokens and comments, in order.
fn verify(input: &str, toks: &[Token], output: &str) -> Result<(), Error> {
    let Some(after) = tokens::tokens(output) else {
        return Err(Error::Internal("the formatted text does not parse".into()));
    };
    let before: Vec<&str> = toks.iter().map(|t| t.text).collect();
    let after_words: Vec<&str> = after.iter().map(|t| t.text).collect();
    if before != after_words {
        let at = before
            .iter()
            .zip(&after_words)
            .take_while(|(a, b)| a == b)
            .count();
        return Err(Error::Internal(format!(
            "the formatted text differs from the input at token {at}"
        )));
    }
    if comments(input, toks) != comments(output, &after) {
        return Err(Error::Internal("a comment changed while formatting".into()));
    }
    Ok(())
}

/// Every comment of a file, each line without its trailing blanks.
fn comments(text: &str, toks: &[Token]) -> Vec<String> {
    gaps(text, toks)
        .flat_map(tokens::trivia)
        .filter_map(|t| match t {
            Trivia::LineComment(c) | Trivia::BlockComment(c) => {
                Some(c.lines().map(str::trim_end).collect::<Vec<_>>().join("\n"))
            }
            Trivia::Newlines(_) => None,
        })
        .collect()
}

/// The text before each token, then the text after the last.
fn gaps<'a>(text: &'a str, toks: &'a [Token]) -> impl Iterator<Item = &'a str> + 'a {
    let ends = std::iter::once(0).chain(toks.iter().map(Token::end));
    let starts = toks
        .iter()
        .map(|t| t.start)
        .chain(std::iter::once(text.len()));
    ends.zip(starts).map(move |(a, b)| &text[a..b])
}

const INDENT: usize = 4;

/// One output line.
#[derive(Default)]
struct Line {
    indent: usize,
    /// Brackets open at its start: end-of-line comments align within a
    /// run of lines of one depth.
    depth: usize,
    code: String,
    /// A `//` comment after the code, aligned later.
    comment: Option<String>,
    /// A line inside a block comment: printed exactly as written.
    verbatim: bool,
}

impl Line {
    fn width(&self) -> usize {
        self.indent + self.code.chars().count()
    }
}

/// An open bracket (or the file itself, at the bottom of the stack).
struct Frame {
    bracket: Option<Bracket>,
    /// Indentation of the line that opened it: its closing bracket's.
    open_indent: usize,
    /// Indentation of its elements.
    content: usize,
    /// Indentation of the line where the current element began.
    element_indent: usize,
    /// Column of the current element's first `->`.
    arrow: Option<usize>,
}

struct Printer<'a> {
    text: &'a str,
    lines: Vec<Line>,
    frames: Vec<Frame>,
    prev: Option<Token<'a>>,
    /// The last thing printed was a comment / an opening bracket (which
    /// allows no blank line after it).
    after_comment: bool,
    after_open: bool,
    /// The next token is the first inside a bracket.
    element_pending: bool,
}

impl<'a> Printer<'a> {
    fn new(text: &'a str) -> Self {
        Printer {
            text,
            lines: Vec::new(),
            frames: vec![Frame {
                bracket: None,
                open_indent: 0,
                content: 0,
                element_indent: 0,
                arrow: None,
            }],
            prev: None,
            after_comment: false,
            after_open: false,
            element_pending: false,
        }
    }

    fn print(mut self, toks: &[Token<'a>]) -> String {
        let mut at = 0;
        for tok in toks {
            let gap = tokens::trivia(&self.text[at..tok.start]);
            self.token(&gap, tok);
            at = tok.end();
        }
        let tail = tokens::trivia(&self.text[at..]);
        self.comments(&tail, None);
        self.render()
    }

    fn top(&self) -> &Frame {
        self.frames.last().expect("the file frame is never popped")
    }

    fn top_mut(&mut self) -> &mut Frame {
        self.frames
            .last_mut()
            .expect("the file frame is never popped")
    }

    /// Prints the comments of a gap; returns the line breaks after the
    /// last of them.
    fn comments(&mut self, gap: &[Trivia<'a>], next: Option<&Token<'a>>) -> usize {
        let mut newlines = 0;
        for piece in gap {
            let comment = match *piece {
                Trivia::Newlines(n) => {
                    newlines += n;
                    continue;
                }
                Trivia::LineComment(c) | Trivia::BlockComment(c) => c,
            };
            let line_comment = matches!(piece, Trivia::LineComment(_));
            let current_open = self.lines.last().is_some_and(|l| l.comment.is_none());
            if newlines == 0 && current_open {
                let line = self.lines.last_mut().expect("checked above");
                if line_comment {
                    line.comment = Some(comment.trim_end().to_string());
                } else {
                    line.code.push(' ');
                    self.push_block_comment(comment);
                }
            } else {
                if newlines >= 2 && self.blank_allowed() {
                    self.lines.push(Line::default());
                }
                let indent = match next {
                    Some(t) if matches!(t.kind, Kind::Close(_)) => self.top().content,
                    Some(t) => self.indent_for(t),
                    None => 0,
                };
                self.lines.push(Line {
                    indent,
                    depth: self.frames.len(),
                    ..Line::default()
                });
                if line_comment {
                    let line = self.lines.last_mut().expect("pushed");
                    line.comment = Some(comment.trim_end().into());
                } else {
                    self.push_block_comment(comment);
                }
            }
            self.after_comment = true;
            self.after_open = false;
            newlines = 0;
        }
        newlines
    }

    /// Appends a block comment to the current line; its later lines are
    /// kept as written.
    fn push_block_comment(&mut self, comment: &str) {
        let mut parts = comment.split('\n');
        let first = parts.next().unwrap_or_default();
        self.lines
            .last_mut()
            .expect("a line is open")
            .code
            .push_str(first.trim_end());
        for part in parts {
            self.lines.push(Line {
                code: part.trim_end().to_string(),
                verbatim: true,
                ..Line::default()
            });
        }
    }

    fn blank_allowed(&self) -> bool {
        !self.lines.is_empty() && !self.after_open
    }

    fn token(&mut self, gap: &[Trivia<'a>], tok: &Token<'a>) {
        let had_comment = gap.iter().any(|t| !matches!(t, Trivia::Newlines(_)));
        let newlines = self.comments(gap, Some(tok));
        let line_closed = self.lines.last().is_none_or(|l| l.comment.is_some());
        let closes_body = tok.kind == Kind::Close(Bracket::Body)
            && !self
                .prev
                .is_some_and(|p| p.kind == Kind::Open(Bracket::Body));
        // A `{` goes on the line of what it belongs to, unless it begins an
        // element itself (an unnamed scope as the first step in braces).
        let joins = matches!(tok.kind, Kind::Open(_))
            && tok.text == "{"
            && !had_comment
            && !tok.starts_element
            && !self.element_pending;
        let new_line = line_closed
            || (!joins
                && (newlines > 0 || (tok.starts_line && self.prev.is_some()) || closes_body));
        if new_line {
            if newlines >= 2 && self.blank_allowed() && !matches!(tok.kind, Kind::Close(_)) {
                self.lines.push(Line::default());
            }
            let indent = self.indent_for(tok);
            self.lines.push(Line {
                indent,
                depth: self.frames.len() - usize::from(matches!(tok.kind, Kind::Close(_))),
                ..Line::default()
            });
        } else if self.after_comment || self.prev.is_some_and(|p| spaced(&p, tok)) {
            self.lines
                .last_mut()
                .expect("a line is open")
                .code
                .push(' ');
        }
        let line = self.lines.last_mut().expect("a line is open");
        let column = line.width();
        let line_indent = if line.verbatim { 0 } else { line.indent };
        line.code.push_str(tok.text);

        let starts = tok.starts_line || tok.starts_element || self.element_pending;
        let frame = self.top_mut();
        if starts {
            frame.element_indent = line_indent;
            frame.arrow = None;
        }
        if tok.kind == Kind::Arrow && frame.arrow.is_none() {
            frame.arrow = Some(column);
        }
        match tok.kind {
            Kind::Open(bracket) => self.frames.push(Frame {
                bracket: Some(bracket),
                open_indent: line_indent,
                content: line_indent + INDENT,
                element_indent: line_indent + INDENT,
                arrow: None,
            }),
            Kind::Close(_) if self.frames.len() > 1 => {
                self.frames.pop();
            }
            _ => {}
        }
        self.after_open = matches!(tok.kind, Kind::Open(_));
        self.element_pending = self.after_open;
        self.after_comment = false;
        self.prev = Some(*tok);
    }

    /// The indentation of a line that begins with `tok`.
    fn indent_for(&self, tok: &Token) -> usize {
        let frame = self.top();
        if matches!(tok.kind, Kind::Close(_)) {
            return frame.open_indent;
        }
        if tok.starts_line || tok.starts_element || self.element_pending {
            return frame.content;
        }
        let continues_chain = matches!(tok.kind, Kind::Arrow | Kind::Else);
        if continues_chain && frame.bracket == Some(Bracket::Steps) {
            return frame.content;
        }
        match frame.arrow {
            Some(column) if continues_chain => column,
            _ => frame.element_indent + INDENT,
        }
    }

    fn render(mut self) -> String {
        align_comments(&mut self.lines);
        let mut out = String::new();
        for line in &self.lines {
            let blank = line.code.is_empty() && line.comment.is_none();
            if !line.verbatim && !blank {
                out.extend(std::iter::repeat_n(' ', line.indent));
            }
            out.push_str(&line.code);
            if let Some(c) = &line.comment {
                out.push_str(c);
            }
            out.push('\n');
        }
        out
    }
}

/// Gives each run of consecutive lines of one bracket depth that end in a
/// `//` comment one comment column, one space after the longest code of
/// the run; the comment is stored with its padding.
fn align_comments(lines: &mut [Line]) {
    let mut i = 0;
    while i < lines.len() {
        let trailing = |l: &Line| l.comment.is_some() && !l.verbatim && !l.code.is_empty();
        if !trailing(&lines[i]) {
            i += 1;
            continue;
        }
        let depth = lines[i].depth;
        let end = (i..lines.len())
            .find(|&j| !trailing(&lines[j]) || lines[j].depth != depth)
            .unwrap_or(lines.len());
        let column = lines[i..end].iter().map(Line::width).max().unwrap_or(0) + 1;
        for line in &mut lines[i..end] {
            let pad = column - line.width();
            let c = line.comment.take().unwrap_or_default();
            line.comment = Some(format!("{}{c}", " ".repeat(pad)));
        }
        i = end;
    }
}

/// Whether `prev` and `next`, on one line, have a space between them.
fn spaced(prev: &Token, next: &Token) -> bool {
    use Kind::*;
    match (prev.kind, next.kind) {
        (Open(Bracket::Body | Bracket::Steps | Bracket::Value), Close(_)) => false,
        (Open(Bracket::Body | Bracket::Steps | Bracket::Value), _) => true,
        (Open(_), _) => false,
        (_, Close(Bracket::Body | Bracket::Steps | Bracket::Value)) => true,
        (_, Close(_) | Comma | Colon) => false,
        (Comma | Colon, _) => true,
        (Neg, _) => false,
        (Range, _) | (_, Range) => false,
        (NamedArgEq, _) | (_, NamedArgEq) => false,
        (_, Open(Bracket::Args | Bracket::Params | Bracket::Index)) => false,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    //! The layout rules have before/after cases in tests/fmt; these are the
    //! edges.
    use super::*;

    fn fmt(text: &str) -> String {
        let once = format(text).unwrap();
        assert_eq!(format(&once).unwrap(), once, "not idempotent on\n{once}");
        once
    }

    #[test]
    fn bad_input_is_refused_and_odd_input_survives() {
        assert_eq!(format("network {"), Err(Error::Syntax));
        assert_eq!(fmt(""), "");
        assert_eq!(fmt("\n\n// only a comment\n\n"), "// only a comment\n");
        assert_eq!(fmt("\u{FEFF}import std::*\r\n"), "import std::*\n");
        assert_eq!(
            fmt("import \"a.nn\" as a import std::*"),
            "import \"a.nn\" as a\nimport std::*\n"
        );
    }
}
