//! A parsed file as a flat list of tokens, each with the syntactic role the
//! formatter needs (which bracket a `(` opens, whether a `=` names an
//! argument, which token begins a statement), and the comments between
//! them. The AST drops both punctuation and comments; the formatter must
//! keep every one of them, so it works from this list instead.
//!
//! Invariant: the tokens are exactly the non-blank, non-comment pieces of
//! the text, in order, so that `format` can prove it changed nothing but
//! blanks by comparing the lists of the input and the output.

use super::parser::{self, Rule};
use pest::iterators::Pair;

/// One token of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Token<'a> {
    pub text: &'a str,
    /// Byte offset in the file.
    pub start: usize,
    pub kind: Kind,
    /// Begins a statement, a training setting or a top-level item, which
    /// the formatter puts on a line of its own.
    pub starts_line: bool,
    /// Begins an element of the innermost bracket: an argument, a
    /// parameter, a list item, a dimension, a chain of steps.
    pub starts_element: bool,
}

impl Token<'_> {
    pub fn end(&self) -> usize {
        self.start + self.text.len()
    }
}

/// What a bracket holds; the formatter spaces and indents by it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Bracket {
    /// `{ ... }` of a network, block or training section: statements.
    Body,
    /// `{ ... }` of `repeat`, `for`, `if` and named scopes: a chain of steps.
    Steps,
    /// `{ ... }` of an `if` value: one expression.
    Value,
    /// `(...)` of a call.
    Args,
    /// `(...)` of a definition's parameters.
    Params,
    /// `(...)` around an expression.
    Group,
    /// `[...]` list value.
    List,
    /// `[...]` tensor shape.
    Shape,
    /// `[...]` after a value: indexing.
    Index,
    /// `[...]` in a parameter's type.
    ListType,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    Open(Bracket),
    Close(Bracket),
    /// `->` between steps (or before a definition's output type).
    Arrow,
    Comma,
    Colon,
    /// `=` of a named argument: `stride=2`.
    NamedArgEq,
    /// Every other `=`: statements, settings, defaults, aliases.
    Eq,
    /// `..` of a `for` range.
    Range,
    /// Unary minus.
    Neg,
    Else,
    /// Names, numbers, strings, keywords and binary operators.
    Word,
}

/// The tokens of `text`, or `None` when it does not parse.
pub fn tokens(text: &str) -> Option<Vec<Token<'_>>> {
    let file = parser::parse_tree(text)?;
    let mut walk = Walk {
        text,
        tokens: Vec::new(),
        starts_line: false,
        starts_element: false,
    };
    walk.node(file, Rule::file);
    Some(walk.tokens)
}

/// A piece of the text between two tokens.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Trivia<'a> {
    /// This many line breaks (in a run of blanks).
    Newlines(usize),
    /// A `// ...` comment, without its line break.
    LineComment(&'a str),
    /// A `/* ... */` comment.
    BlockComment(&'a str),
}

/// The comments and line breaks of a gap between tokens, which holds
/// nothing else.
pub fn trivia(gap: &str) -> Vec<Trivia<'_>> {
    let mut out = Vec::new();
    let mut rest = gap;
    while !rest.is_empty() {
        if let Some(body) = rest.strip_prefix("//") {
            let len = 2 + body.find('\n').unwrap_or(body.len());
            out.push(Trivia::LineComment(&rest[..len]));
            rest = &rest[len..];
        } else if let Some(body) = rest.strip_prefix("/*") {
            let len = 2 + body.find("*/").map_or(body.len(), |i| i + 2);
            out.push(Trivia::BlockComment(&rest[..len]));
            rest = &rest[len..];
        } else {
            let blank = rest
                .find(|c: char| !c.is_whitespace() && c != '\u{FEFF}')
                .unwrap_or(rest.len());
            let newlines = rest[..blank].matches('\n').count();
            if newlines > 0 {
                out.push(Trivia::Newlines(newlines));
            }
            if blank == 0 {
                // Not trivia: the caller's invariant is broken. Stop rather
                // than loop; the formatter's token comparison reports it.
                break;
            }
            rest = &rest[blank..];
        }
    }
    out
}

struct Walk<'a> {
    text: &'a str,
    tokens: Vec<Token<'a>>,
    /// The next token begins a line / an element.
    starts_line: bool,
    starts_element: bool,
}

impl<'a> Walk<'a> {
    fn node(&mut self, pair: Pair<'a, Rule>, parent: Rule) {
        let rule = pair.as_rule();
        let span = pair.as_span();
        if rule == Rule::EOI {
            return;
        }
        if let Some(kind) = leaf(rule) {
            self.push(span.start(), span.as_str(), kind);
            return;
        }
        let before = (self.tokens.len(), self.starts_line, self.starts_element);
        match rule {
            Rule::let_stmt
            | Rule::input_stmt
            | Rule::return_stmt
            | Rule::train_entry
            | Rule::for_stmt
            | Rule::import
            | Rule::definition
            | Rule::train => self.starts_line = true,
            Rule::arg | Rule::param | Rule::steps => self.starts_element = true,
            Rule::expr if matches!(parent, Rule::list | Rule::shape) => self.starts_element = true,
            _ => {}
        }
        let mut at = span.start();
        for child in pair.into_inner() {
            let child_span = child.as_span();
            self.punctuation(at, child_span.start(), rule);
            at = child_span.end();
            self.node(child, rule);
        }
        self.punctuation(at, span.end(), rule);
        if self.tokens.len() == before.0 {
            // An empty node (the steps of `{}`) must not pass its marks on.
            (self.starts_line, self.starts_element) = (before.1, before.2);
        }
    }

    /// The literal tokens of `rule` in `start..end`, which holds nothing
    /// but them, blanks and comments.
    fn punctuation(&mut self, start: usize, end: usize, rule: Rule) {
        let mut at = start;
        while at < end {
            let rest = &self.text[at..end];
            let skip = trivia_len(rest);
            if skip > 0 {
                at += skip;
                continue;
            }
            let (len, kind) = match rest.as_bytes() {
                [b'-', b'>', ..] => (2, Kind::Arrow),
                [b'.', b'.', ..] => (2, Kind::Range),
                [b'(' | b'[' | b'{', ..] => (1, Kind::Open(bracket(rule))),
                [b')' | b']' | b'}', ..] => (1, Kind::Close(bracket(rule))),
                [b',', ..] => (1, Kind::Comma),
                [b':', ..] => (1, Kind::Colon),
                [b'=', ..] if rule == Rule::arg => (1, Kind::NamedArgEq),
                [b'=', ..] => (1, Kind::Eq),
                // Unreachable for text pest accepted; kept as a word so that
                // nothing is ever dropped.
                _ => (rest.chars().next().map_or(1, char::len_utf8), Kind::Word),
            };
            self.push(at, &rest[..len], kind);
            at += len;
        }
    }

    fn push(&mut self, start: usize, text: &'a str, kind: Kind) {
        self.tokens.push(Token {
            text,
            start,
            kind,
            starts_line: std::mem::take(&mut self.starts_line),
            starts_element: std::mem::take(&mut self.starts_element),
        });
    }
}

/// The length of the blanks and comments at the start of `text`.
fn trivia_len(text: &str) -> usize {
    let mut at = 0;
    loop {
        let rest = &text[at..];
        let len = if rest.starts_with("//") {
            rest.find('\n').unwrap_or(rest.len())
        } else if let Some(body) = rest.strip_prefix("/*") {
            2 + body.find("*/").map_or(body.len(), |i| i + 2)
        } else {
            rest.find(|c: char| !c.is_whitespace() && c != '\u{FEFF}')
                .unwrap_or(rest.len())
        };
        if len == 0 {
            return at;
        }
        at += len;
    }
}

/// The kind of a token that is a whole pest pair, or `None` for a rule with
/// parts.
fn leaf(rule: Rule) -> Option<Kind> {
    Some(match rule {
        Rule::op_neg => Kind::Neg,
        Rule::kw_else => Kind::Else,
        Rule::ident
        | Rule::int
        | Rule::float
        | Rule::boolean
        | Rule::string
        | Rule::name_format
        | Rule::path
        | Rule::std_path
        | Rule::op_or
        | Rule::op_and
        | Rule::op_not
        | Rule::op_cmp
        | Rule::op_sum
        | Rule::op_prod => Kind::Word,
        kw if parser::is_keyword_token(kw) => Kind::Word,
        _ => return None,
    })
}

/// What a bracket literal of `rule` holds.
fn bracket(rule: Rule) -> Bracket {
    match rule {
        Rule::body | Rule::train | Rule::for_stmt => Bracket::Body,
        Rule::if_value => Bracket::Value,
        Rule::call_args => Bracket::Args,
        Rule::param_list => Bracket::Params,
        Rule::group => Bracket::Group,
        Rule::list => Bracket::List,
        Rule::shape => Bracket::Shape,
        Rule::index => Bracket::Index,
        Rule::list_type => Bracket::ListType,
        // scope_step, repeat_step, for_step, if_step
        _ => Bracket::Steps,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn kinds(text: &str) -> Vec<(&str, Kind, bool, bool)> {
        tokens(text)
            .unwrap()
            .into_iter()
            .map(|t| (t.text, t.kind, t.starts_line, t.starts_element))
            .collect()
    }

    #[test]
    fn every_piece_of_the_text_is_a_token_or_trivia() {
        let text = "// a\nnetwork n(c: int = 2) {\n  input x: [N, 4] /* b */\n  return x -> linear(c, bias=true) -> for i in 0..2 { relu }\n}\n";
        let toks = tokens(text).unwrap();
        let mut rebuilt = String::new();
        let mut at = 0;
        for t in &toks {
            let gap = &text[at..t.start];
            assert_eq!(trivia_len(gap), gap.len(), "gap {gap:?}");
            rebuilt.push_str(t.text);
            at = t.end();
        }
        assert_eq!(
            rebuilt,
            "networkn(c:int=2){inputx:[N,4]returnx->linear(c,bias=true)->foriin0..2{relu}}"
        );
    }

    #[test]
    fn tokens_know_their_role() {
        let k = kinds("network n(c: int = 2) { input x: [N] return x -> f(-c[0], s=1) }");
        let find = |text: &str, nth: usize| *k.iter().filter(|t| t.0 == text).nth(nth).unwrap();
        assert_eq!(find("network", 0), ("network", Kind::Word, true, false));
        assert_eq!(find("(", 0).1, Kind::Open(Bracket::Params));
        assert_eq!(find("c", 0), ("c", Kind::Word, false, true));
        assert_eq!(find("=", 0).1, Kind::Eq);
        assert_eq!(find("{", 0).1, Kind::Open(Bracket::Body));
        assert_eq!(find("input", 0), ("input", Kind::Word, true, false));
        assert_eq!(find("[", 0).1, Kind::Open(Bracket::Shape));
        assert_eq!(find("N", 0), ("N", Kind::Word, false, true));
        assert!(find("return", 0).2);
        assert_eq!(find("(", 1).1, Kind::Open(Bracket::Args));
        assert_eq!(find("-", 0), ("-", Kind::Neg, false, true));
        assert_eq!(find("=", 1).1, Kind::NamedArgEq);
        assert_eq!(find("[", 1).1, Kind::Open(Bracket::Index));
    }

    #[test]
    fn empty_steps_pass_no_marks_to_the_closing_brace() {
        let k = kinds("network n { input x: [N] return x -> repeat 2 {} }");
        let close = k.iter().find(|t| t.0 == "}").unwrap();
        assert_eq!(*close, ("}", Kind::Close(Bracket::Steps), false, false));
    }

    #[test]
    fn trivia_keeps_comments_and_counts_line_breaks() {
        assert_eq!(
            trivia(" // a \n\n  /* b\n c */ \n"),
            vec![
                Trivia::LineComment("// a "),
                Trivia::Newlines(2),
                Trivia::BlockComment("/* b\n c */"),
                Trivia::Newlines(1),
            ]
        );
    }
}
