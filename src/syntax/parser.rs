//! From text to [`ast::File`] with pest. Syntax errors become diagnostics.

use super::ast::*;
use super::source::{FileId, Span};
use crate::diag::Diagnostic;
use crate::diag_codes as codes;
use pest::iterators::Pair;
use pest::Parser as _;
use std::num::NonZeroUsize;

#[derive(pest_derive::Parser)]
#[grammar = "../grammar/nn.pest"]
struct NnParser;

/// Brackets may nest this deep; beyond it the file is rejected before pest
/// sees it, so that neither pest nor the checker can exhaust the stack.
pub const MAX_NESTING: usize = 64;

/// Work bound for pest: far above what any real file needs (ResNet-152 uses
/// a few hundred thousand calls) and far below a hang.
const CALL_LIMIT: usize = 20_000_000;

/// Parses one file. On a syntax error the returned file is empty and the
/// diagnostic says where and what was expected.
pub fn parse(file: FileId, text: &str) -> (File, Vec<Diagnostic>) {
    if let Some(d) = check_nesting(file, text) {
        return (File::default(), vec![d]);
    }
    pest::set_call_limit(NonZeroUsize::new(CALL_LIMIT));
    let pairs = match NnParser::parse(Rule::file, text) {
        Ok(p) => p,
        Err(e) => return (File::default(), vec![syntax_error(file, text, e)]),
    };
    let mut b = Builder {
        file,
        text,
        diags: Vec::new(),
    };
    let mut items = Vec::new();
    for pair in pairs.flatten().take(1) {
        for item in pair.into_inner() {
            match item.as_rule() {
                Rule::import => items.push(Item::Import(b.import(item))),
                Rule::definition => items.push(Item::Def(b.definition(item))),
                Rule::train => items.push(Item::Train(b.train(item))),
                _ => {}
            }
        }
    }
    (File { items }, b.diags)
}

/// The parse tree of a file that parses, for the formatter's token list
/// ([`super::tokens`]); `None` on any syntax error.
pub(super) fn parse_tree(text: &str) -> Option<Pair<'_, Rule>> {
    if check_nesting(FileId::default(), text).is_some() {
        return None;
    }
    pest::set_call_limit(NonZeroUsize::new(CALL_LIMIT));
    NnParser::parse(Rule::file, text).ok()?.next()
}

/// Finds the first bracket that opens deeper than [`MAX_NESTING`].
fn check_nesting(file: FileId, text: &str) -> Option<Diagnostic> {
    let mut depth = 0usize;
    for (i, b) in brackets(text) {
        if matches!(b, b'(' | b'[' | b'{') {
            depth += 1;
            if depth > MAX_NESTING {
                return Some(
                    Diagnostic::error(
                        codes::NESTING_TOO_DEEP,
                        format!("brackets nest more than {MAX_NESTING} levels deep"),
                    )
                    .at(
                        Span::new(file, i, i + 1),
                        "this bracket is one level too deep",
                    )
                    .with_help("split the expression into named values or blocks"),
                );
            }
        } else {
            depth = depth.saturating_sub(1);
        }
    }
    None
}

/// The positions and bytes of the brackets of `text`, outside strings and
/// comments. A linear scan that needs no parse, for the checks that must
/// run before (or after a failed) parse.
fn brackets(text: &str) -> impl Iterator<Item = (usize, u8)> + '_ {
    let bytes = text.as_bytes();
    let mut i = 0;
    std::iter::from_fn(move || {
        while i < bytes.len() {
            let at = i;
            i += 1;
            match bytes[at] {
                b'"' => {
                    while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                        i += if bytes[i] == b'\\' { 2 } else { 1 };
                    }
                    i += 1;
                }
                b'/' if bytes.get(at + 1) == Some(&b'/') => {
                    while i < bytes.len() && bytes[i] != b'\n' {
                        i += 1;
                    }
                }
                b'/' if bytes.get(at + 1) == Some(&b'*') => {
                    i += 1;
                    while i + 1 < bytes.len() && !(bytes[i] == b'*' && bytes[i + 1] == b'/') {
                        i += 1;
                    }
                    i += 2;
                }
                b @ (b'(' | b'[' | b'{' | b')' | b']' | b'}') => return Some((at, b)),
                _ => {}
            }
        }
        None
    })
}

fn syntax_error(file: FileId, text: &str, e: pest::error::Error<Rule>) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let pos = match e.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let found = token_at(text, pos);
    let end = pos + found.len().max(usize::from(pos < text.len()));
    let end = end.min(text.len()).max(pos);
    let span = Span::new(file, pos, end);
    let (message, label) = match &e.variant {
        ErrorVariant::ParsingError { positives, .. } => {
            let mut names: Vec<&'static str> =
                positives.iter().filter_map(|r| rule_name(*r)).collect();
            names.sort_unstable();
            names.dedup();
            let expected = join_or(&names);
            let found_text = if found.is_empty() {
                "end of file".to_string()
            } else {
                format!("`{found}`")
            };
            if expected.is_empty() {
                (
                    format!("unexpected {found_text}"),
                    "not expected here".to_string(),
                )
            } else {
                (
                    format!("expected {expected}, found {found_text}"),
                    format!("expected {expected}"),
                )
            }
        }
        ErrorVariant::CustomError { message } => (
            format!("the parser gave up: {message}"),
            "while parsing this".to_string(),
        ),
    };
    let mut d = Diagnostic::error(codes::SYNTAX, message).at(span, label);
    if let Some(help) = syntax_help(text, pos, found) {
        d = d.with_help(help);
    }
    if found.is_empty() {
        if let Some(open) = unclosed_bracket(text) {
            let ch = &text[open..open + 1];
            d = d
                .with_label(
                    Span::new(file, open, open + 1),
                    format!("this `{ch}` is never closed"),
                )
                .with_help(format!("close it with `{}`", closing(ch)));
        }
    }
    d
}

fn closing(open: &str) -> &'static str {
    match open {
        "(" => ")",
        "[" => "]",
        _ => "}",
    }
}

/// The position of the innermost bracket still open at the end of the text.
fn unclosed_bracket(text: &str) -> Option<usize> {
    innermost_open(text, text.len()).map(|(i, _)| i)
}

/// The grammar's `keyword` rule.
const KEYWORDS: [&str; 17] = [
    "network", "block", "input", "return", "import", "train", "repeat", "for", "in", "if", "else",
    "as", "true", "false", "and", "or", "not",
];

/// A hint for the mistakes people coming from Python make most.
fn syntax_help(text: &str, pos: usize, found: &str) -> Option<String> {
    let before = text[..pos].trim_end();
    // The word just before, when it is one: after a keyword, a chain of
    // layers is not what was meant.
    let word_before = before
        .rsplit(|c: char| !(c.is_alphanumeric() || c == '_'))
        .next()
        .unwrap_or("");
    let line_rest = text[pos..].lines().next().unwrap_or("");
    let line_rest = line_rest.split("//").next().unwrap_or("").trim_end();
    match found {
        _ if inside_name_hole(text, pos) => Some(
            "a `{` in a layer name starts a value that ends at `}`, as in `as \"b{i + 2}\"`; \
             a name cannot contain braces"
                .into(),
        ),
        _ if word_before == "import" && line_rest.contains("::") => {
            let path = line_rest
                .split("::")
                .map(str::trim)
                .collect::<Vec<_>>()
                .join("::");
            Some(format!(
                "a path is one word, without spaces around `::`: `import {path}`"
            ))
        }
        ":" if before.ends_with(|c: char| c.is_alphanumeric() || c == '_') => Some(
            "named arguments are written with `=`, as in Python: `conv2d(64, 3, stride=2)`".into(),
        ),
        "=" if before.ends_with("=") => None,
        ";" => Some("statements end at the end of the line; remove the `;`".into()),
        "," if inside_tuple(text, pos) => Some(tuple_help(text, pos)),
        "return" | "input" if inside_for_loop(text, pos) => Some(format!(
            "`{found}` cannot be inside a `for` loop; put it before or after the loop"
        )),
        "def" | "class" | "self" => {
            Some("define layers with `network NAME { ... }` or `block NAME(...) { ... }`".into())
        }
        _ if found.starts_with('\'') => Some("strings use double quotes: \"...\"".into()),
        _ if found.starts_with(|c: char| c.is_alphabetic())
            && !KEYWORDS.contains(&word_before)
            && before.ends_with(|c: char| c == ')' || c.is_alphanumeric() || c == '_')
            && !text[before.len()..pos].contains('\n') =>
        {
            Some(format!("layers are chained with `->`: write `-> {found}`"))
        }
        _ => None,
    }
}

/// The innermost bracket still open at `pos`: its position and character.
fn innermost_open(text: &str, pos: usize) -> Option<(usize, u8)> {
    let mut stack = Vec::new();
    for (i, b) in brackets(&text[..pos]) {
        if matches!(b, b'(' | b'[' | b'{') {
            stack.push((i, b));
        } else {
            stack.pop();
        }
    }
    stack.pop()
}

/// Whether a `,` at `pos` is inside a parenthesis that is not a call's, as
/// Python's tuple `(0.9, 0.999)`: the `(` follows `=`, `,`, `(` or `[`.
fn inside_tuple(text: &str, pos: usize) -> bool {
    match innermost_open(text, pos) {
        Some((i, b'(')) => text[..i].trim_end().ends_with(['=', ',', '(', '[']),
        _ => false,
    }
}

/// The fix for a Python tuple: the same items in brackets, when the tuple
/// closes on its line.
fn tuple_help(text: &str, pos: usize) -> String {
    let generic = "there are no tuples: write a list in brackets, as `[0.9, 0.999]`".to_string();
    let Some((open, _)) = innermost_open(text, pos) else {
        return generic;
    };
    let line = text[open..].lines().next().unwrap_or("");
    match line.find(')') {
        Some(close) if !line[1..close].contains(['(', '[']) => format!(
            "there are no tuples: write a list in brackets, `[{}]`",
            line[1..close].trim()
        ),
        _ => generic,
    }
}

/// Whether `pos` is inside a `{` of a computed layer name (`as "b{i"`)
/// that is not closed yet. Names are on one line, so the line is enough.
fn inside_name_hole(text: &str, pos: usize) -> bool {
    let line_start = text[..pos].rfind('\n').map_or(0, |n| n + 1);
    let line = &text[line_start..pos];
    let Some(name_start) = line.rfind("as \"") else {
        return false;
    };
    let name = &line[name_start + 4..];
    name.matches('{').count() > name.matches('}').count()
}

/// Whether the innermost bracket open at `pos` is the `{` of a `for` loop
/// (a line that begins with `for`).
fn inside_for_loop(text: &str, pos: usize) -> bool {
    match innermost_open(text, pos) {
        Some((i, b'{')) => {
            let line_start = text[..i].rfind('\n').map_or(0, |n| n + 1);
            text[line_start..i].trim_start().starts_with("for ")
        }
        _ => false,
    }
}

/// The token starting at `pos`, for messages: an identifier, a number or one
/// character.
fn token_at(text: &str, pos: usize) -> &str {
    let Some(rest) = text.get(pos..) else {
        return "";
    };
    let word: usize = rest
        .char_indices()
        .take_while(|(_, c)| c.is_alphanumeric() || *c == '_')
        .map(|(i, c)| i + c.len_utf8())
        .last()
        .unwrap_or(0);
    if word > 0 {
        return &rest[..word.min(40)];
    }
    for op in ["->", "==", "!=", "<=", ">=", "::", ".."] {
        if rest.starts_with(op) {
            return &rest[..2];
        }
    }
    match rest.chars().next() {
        Some(c) => &rest[..c.len_utf8()],
        None => "",
    }
}

fn join_or(names: &[&str]) -> String {
    match names {
        [] => String::new(),
        [one] => one.to_string(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// Human names for the rules pest reports; `None` hides a rule.
fn rule_name(rule: Rule) -> Option<&'static str> {
    Some(match rule {
        Rule::EOI => "end of file",
        Rule::import | Rule::kw_import => "`import`",
        Rule::definition | Rule::def_kind | Rule::kw_network | Rule::kw_block => {
            "`network` or `block`"
        }
        Rule::train | Rule::kw_train => "`train`",
        Rule::ident | Rule::path | Rule::callee => "a name",
        Rule::std_path => "a path such as `std::resnet18`",
        Rule::string | Rule::string_inner => "a string",
        Rule::int | Rule::float => "a number",
        Rule::expr
        | Rule::or_expr
        | Rule::and_expr
        | Rule::not_expr
        | Rule::cmp_expr
        | Rule::sum
        | Rule::product
        | Rule::unary
        | Rule::postfix
        | Rule::boolean
        | Rule::list
        | Rule::group
        | Rule::call
        | Rule::if_value => "an expression",
        Rule::op_or | Rule::op_and | Rule::op_cmp | Rule::op_sum | Rule::op_prod => "an operator",
        Rule::index => "`[`",
        Rule::step | Rule::step_core | Rule::scope_step | Rule::repeat_step | Rule::for_step => {
            "a layer"
        }
        Rule::if_step => "a layer",
        Rule::steps => "layers",
        Rule::kw_as => "`as`",
        Rule::step_name | Rule::name_format => "a layer name",
        Rule::param_list => "`(`",
        Rule::param => "a parameter",
        Rule::type_expr | Rule::list_type => "a type",
        Rule::body => "`{`",
        Rule::def_alias => "`=`",
        Rule::out_type => "`->`",
        Rule::input_stmt | Rule::kw_input => "`input`",
        Rule::return_stmt | Rule::kw_return => "`return`",
        Rule::let_stmt => "a statement",
        Rule::shape => "a shape such as `[N, 3, 224, 224]`",
        Rule::train_entry => "a setting such as `epochs = 10`",
        Rule::call_args => "`(`",
        Rule::arg => "an argument",
        Rule::for_range => "a range such as `0..n`",
        Rule::kw_in => "`in`",
        Rule::kw_else => "`else`",
        Rule::kw_if => "`if`",
        _ => return None,
    })
}

struct Builder<'t> {
    file: FileId,
    text: &'t str,
    diags: Vec<Diagnostic>,
}

pub(super) fn is_keyword_token(rule: Rule) -> bool {
    matches!(
        rule,
        Rule::kw_network
            | Rule::kw_block
            | Rule::kw_input
            | Rule::kw_return
            | Rule::kw_import
            | Rule::kw_train
            | Rule::kw_repeat
            | Rule::kw_for
            | Rule::kw_in
            | Rule::kw_if
            | Rule::kw_else
            | Rule::kw_as
    )
}

/// The children of a pair without the keyword tokens.
fn children(pair: Pair<'_, Rule>) -> impl Iterator<Item = Pair<'_, Rule>> {
    pair.into_inner().filter(|p| !is_keyword_token(p.as_rule()))
}

impl<'t> Builder<'t> {
    /// The span of a pair without the whitespace and comments that pest
    /// leaves at its end when an optional trailing part is absent.
    fn span(&self, pair: &Pair<'_, Rule>) -> Span {
        let s = pair.as_span();
        let end = trim_trivia_end(self.text, s.start(), s.end());
        Span::new(self.file, s.start(), end)
    }

    fn ident(&self, pair: Pair<'_, Rule>) -> Ident {
        Ident {
            name: pair.as_str().to_string(),
            span: self.span(&pair),
        }
    }

    fn import(&mut self, pair: Pair<'_, Rule>) -> Import {
        let span = self.span(&pair);
        let mut inner = children(pair);
        let target_pair = inner.next().expect("grammar: import has a path");
        let target = match target_pair.as_rule() {
            Rule::string => {
                let s = self.span(&target_pair);
                ImportTarget::File {
                    path: self.string(target_pair),
                    span: s,
                }
            }
            _ => {
                let mut segs = Vec::new();
                let mut glob = false;
                for p in target_pair.into_inner() {
                    match p.as_rule() {
                        Rule::ident => segs.push(self.ident(p)),
                        _ => glob = true,
                    }
                }
                if segs.len() == 1 && segs[0].name == "std" && glob {
                    ImportTarget::Std { name: None }
                } else if segs.len() == 2 && segs[0].name == "std" && !glob {
                    ImportTarget::Std {
                        name: Some(segs.pop().expect("two segments")),
                    }
                } else {
                    ImportTarget::OtherPath { path: segs }
                }
            }
        };
        let alias = inner.next().map(|p| self.ident(p));
        Import {
            target,
            alias,
            span,
        }
    }

    fn definition(&mut self, pair: Pair<'_, Rule>) -> Def {
        let span = self.span(&pair);
        let mut kind = DefKind::Block;
        let mut name = None;
        let mut params = Vec::new();
        let mut output = None;
        let mut body = None;
        for p in children(pair) {
            match p.as_rule() {
                Rule::def_kind if p.as_str().starts_with("network") => kind = DefKind::Network,
                Rule::ident => name = Some(self.ident(p)),
                Rule::param_list => {
                    params = children(p).map(|q| self.param(q)).collect();
                }
                Rule::out_type => {
                    output = children(p).next().map(|q| self.shape(q));
                }
                Rule::def_alias => {
                    let s = self.span(&p);
                    let mut it = children(p);
                    let callee = self.path(
                        it.next()
                            .expect("grammar: alias callee")
                            .into_inner()
                            .next()
                            .expect("grammar: callee path"),
                    );
                    let args = self.call_args(it.next().expect("grammar: alias args"));
                    body = Some(DefBody::Alias {
                        callee,
                        args,
                        span: s,
                    });
                }
                Rule::body => {
                    let stmts = children(p).map(|q| self.stmt(q)).collect();
                    body = Some(DefBody::Body {
                        output: output.take(),
                        stmts,
                    });
                }
                _ => {}
            }
        }
        let name = name.expect("grammar: definition has a name");
        Def {
            kind,
            doc: doc_comment(self.text, span.start as usize),
            name,
            params,
            body: body.expect("grammar: definition has a body"),
            span,
        }
    }

    fn param(&mut self, pair: Pair<'_, Rule>) -> Param {
        let span = self.span(&pair);
        let mut it = children(pair);
        let name = self.ident(it.next().expect("grammar: param name"));
        let ty = self.type_expr(it.next().expect("grammar: param type"));
        let default = it.next().map(|p| self.expr(p));
        Param {
            name,
            ty,
            default,
            span,
        }
    }

    fn type_expr(&mut self, pair: Pair<'_, Rule>) -> TypeExpr {
        let span = self.span(&pair);
        let inner = pair.into_inner().next().expect("grammar: type");
        match inner.as_rule() {
            Rule::list_type => {
                let elem = self.type_expr(inner.into_inner().next().expect("grammar: list elem"));
                TypeExpr::List(Box::new(elem), span)
            }
            _ => TypeExpr::Name(self.ident(inner)),
        }
    }

    fn stmt(&mut self, pair: Pair<'_, Rule>) -> Stmt {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::input_stmt => {
                let mut it = children(pair);
                let name = self.ident(it.next().expect("grammar: input name"));
                let shape = self.shape(it.next().expect("grammar: input shape"));
                Stmt::Input { name, shape, span }
            }
            Rule::return_stmt => {
                let value = self.expr(children(pair).next().expect("grammar: return value"));
                Stmt::Return { value, span }
            }
            Rule::for_stmt => {
                let mut it = children(pair);
                let (var, start, end) = self.for_head(&mut it);
                let body = it.map(|p| self.stmt(p)).collect();
                Stmt::For {
                    var,
                    start,
                    end,
                    body,
                    span,
                }
            }
            _ => {
                let mut name = None;
                let mut shape = None;
                let mut value = None;
                for p in children(pair) {
                    match p.as_rule() {
                        Rule::ident => name = Some(self.ident(p)),
                        Rule::shape => shape = Some(self.shape(p)),
                        _ => value = Some(self.expr(p)),
                    }
                }
                Stmt::Let {
                    name: name.expect("grammar: let name"),
                    shape,
                    value: value.expect("grammar: let value"),
                    span,
                }
            }
        }
    }

    fn shape(&mut self, pair: Pair<'_, Rule>) -> Shape {
        let span = self.span(&pair);
        let mut dims = Vec::new();
        let mut defaults: Vec<Option<Expr>> = Vec::new();
        for p in children(pair) {
            if p.as_rule() == Rule::dim_default {
                let value = children(p).next().expect("grammar: default value");
                if let Some(last) = defaults.last_mut() {
                    *last = Some(self.expr(value));
                }
            } else {
                dims.push(self.expr(p));
                defaults.push(None);
            }
        }
        Shape {
            dims,
            defaults,
            span,
        }
    }

    fn train(&mut self, pair: Pair<'_, Rule>) -> Train {
        let span = self.span(&pair);
        let mut network = None;
        let mut entries = Vec::new();
        for p in children(pair) {
            match p.as_rule() {
                Rule::ident => network = Some(self.ident(p)),
                _ => {
                    let s = self.span(&p);
                    let mut it = children(p);
                    let key = self.ident(it.next().expect("grammar: entry key"));
                    let value = self.expr(it.next().expect("grammar: entry value"));
                    entries.push(TrainEntry {
                        key,
                        value,
                        span: s,
                    });
                }
            }
        }
        Train {
            network,
            entries,
            span,
        }
    }

    fn path(&mut self, pair: Pair<'_, Rule>) -> Path {
        let span = self.span(&pair);
        let segments = pair.into_inner().map(|p| self.ident(p)).collect();
        Path { segments, span }
    }

    fn call_args(&mut self, pair: Pair<'_, Rule>) -> Vec<Arg> {
        children(pair)
            .map(|arg| {
                let span = self.span(&arg);
                let mut name = None;
                let mut value = None;
                for p in children(arg) {
                    match p.as_rule() {
                        Rule::ident => name = Some(self.ident(p)),
                        _ => value = Some(self.expr(p)),
                    }
                }
                Arg {
                    name,
                    value: value.expect("grammar: argument value"),
                    span,
                }
            })
            .collect()
    }

    /// Any expression-level rule. Levels with a single child are skipped, so
    /// the tree only has nodes where something happens.
    fn expr(&mut self, pair: Pair<'_, Rule>) -> Expr {
        let span = self.span(&pair);
        match pair.as_rule() {
            Rule::expr => {
                let mut it = children(pair);
                let head = self.expr(it.next().expect("grammar: chain head"));
                let steps: Vec<Step> = it.map(|p| self.step(p)).collect();
                if steps.is_empty() {
                    head
                } else {
                    Expr {
                        kind: ExprKind::Chain {
                            head: Box::new(head),
                            steps,
                        },
                        span,
                    }
                }
            }
            Rule::or_expr | Rule::and_expr | Rule::sum | Rule::product | Rule::cmp_expr => {
                let mut it = children(pair);
                let first = self.expr(it.next().expect("grammar: operand"));
                let mut rest = Vec::new();
                while let Some(op) = it.next() {
                    let op_span = self.span(&op);
                    let bin = match op.as_str() {
                        "or" => BinOp::Or,
                        "and" => BinOp::And,
                        "==" => BinOp::Eq,
                        "!=" => BinOp::Ne,
                        "<" => BinOp::Lt,
                        "<=" => BinOp::Le,
                        ">" => BinOp::Gt,
                        ">=" => BinOp::Ge,
                        "+" => BinOp::Add,
                        "-" => BinOp::Sub,
                        "*" => BinOp::Mul,
                        "/" => BinOp::Div,
                        _ => BinOp::Rem,
                    };
                    let rhs = self.expr(it.next().expect("grammar: operand after operator"));
                    rest.push((bin, op_span, rhs));
                }
                if rest.is_empty() {
                    first
                } else {
                    Expr {
                        kind: ExprKind::Binary {
                            first: Box::new(first),
                            rest,
                        },
                        span,
                    }
                }
            }
            Rule::not_expr | Rule::unary => {
                let mut ops = Vec::new();
                let mut operand = None;
                for p in children(pair) {
                    match p.as_rule() {
                        Rule::op_not => ops.push((UnOp::Not, self.span(&p))),
                        Rule::op_neg => ops.push((UnOp::Neg, self.span(&p))),
                        _ => operand = Some(self.expr(p)),
                    }
                }
                let operand = operand.expect("grammar: unary operand");
                if ops.is_empty() {
                    operand
                } else {
                    // `-3` is a literal, so that `-1` in lists stays simple.
                    if let ([(UnOp::Neg, _)], ExprKind::Int(v)) = (ops.as_slice(), &operand.kind) {
                        return Expr {
                            kind: ExprKind::Int(-v),
                            span,
                        };
                    }
                    Expr {
                        kind: ExprKind::Unary {
                            ops,
                            operand: Box::new(operand),
                        },
                        span,
                    }
                }
            }
            Rule::postfix => {
                let mut it = children(pair);
                let mut base = self.expr(it.next().expect("grammar: postfix base"));
                for idx in it {
                    let end = self.span(&idx);
                    let index = self.expr(children(idx).next().expect("grammar: index"));
                    let s = base.span.to(end);
                    base = Expr {
                        kind: ExprKind::Index {
                            base: Box::new(base),
                            index: Box::new(index),
                        },
                        span: s,
                    };
                }
                base
            }
            Rule::int => {
                let digits: String = pair.as_str().chars().filter(|c| *c != '_').collect();
                match digits.parse::<i64>() {
                    Ok(v) => Expr {
                        kind: ExprKind::Int(v),
                        span,
                    },
                    Err(_) => {
                        self.diags.push(
                            Diagnostic::error(
                                codes::NUMBER_TOO_LARGE,
                                "integer literal is too large",
                            )
                            .at(span, "does not fit in 64 bits")
                            .with_help(format!("integers must be at most {}", i64::MAX)),
                        );
                        Expr {
                            kind: ExprKind::Invalid,
                            span,
                        }
                    }
                }
            }
            Rule::float => {
                let digits: String = pair.as_str().chars().filter(|c| *c != '_').collect();
                let v = digits.parse::<f64>().unwrap_or(f64::NAN);
                if v.is_finite() {
                    Expr {
                        kind: ExprKind::Float(v),
                        span,
                    }
                } else {
                    self.diags.push(
                        Diagnostic::error(codes::NUMBER_TOO_LARGE, "number is too large")
                            .at(span, "does not fit in a 64-bit float"),
                    );
                    Expr {
                        kind: ExprKind::Invalid,
                        span,
                    }
                }
            }
            Rule::boolean => Expr {
                kind: ExprKind::Bool(pair.as_str() == "true"),
                span,
            },
            Rule::string => Expr {
                kind: ExprKind::Str(self.string(pair)),
                span,
            },
            Rule::list => Expr {
                kind: ExprKind::List(children(pair).map(|p| self.expr(p)).collect()),
                span,
            },
            Rule::group => {
                let inner = self.expr(children(pair).next().expect("grammar: group"));
                Expr {
                    kind: ExprKind::Paren(Box::new(inner)),
                    span,
                }
            }
            Rule::if_value => {
                let mut it = children(pair);
                let cond = self.expr(it.next().expect("grammar: if cond"));
                let then = self.expr(it.next().expect("grammar: if then"));
                let otherwise = self.expr(it.next().expect("grammar: if else"));
                Expr {
                    kind: ExprKind::If {
                        cond: Box::new(cond),
                        then: Box::new(then),
                        otherwise: Box::new(otherwise),
                    },
                    span,
                }
            }
            Rule::call => {
                let mut it = children(pair);
                let callee_pair = it.next().expect("grammar: callee");
                let callee = self.path(
                    callee_pair
                        .into_inner()
                        .next()
                        .expect("grammar: callee path"),
                );
                let args = self.call_args(it.next().expect("grammar: call args"));
                Expr {
                    kind: ExprKind::Call { callee, args },
                    span,
                }
            }
            Rule::path => Expr {
                kind: ExprKind::Name(self.path(pair)),
                span,
            },
            other => unreachable!("grammar: unexpected expression rule {other:?}"),
        }
    }

    fn steps(&mut self, pair: Pair<'_, Rule>) -> Vec<Step> {
        children(pair).map(|p| self.step(p)).collect()
    }

    fn step(&mut self, pair: Pair<'_, Rule>) -> Step {
        let span = self.span(&pair);
        let mut it = children(pair);
        let core = it.next().expect("grammar: step core");
        let name = it.next().map(|n| self.step_name(n));
        let kind = match core.as_rule() {
            Rule::call => {
                let mut c = children(core);
                let callee = self.path(
                    c.next()
                        .expect("grammar: callee")
                        .into_inner()
                        .next()
                        .expect("grammar: path"),
                );
                let args = self.call_args(c.next().expect("grammar: args"));
                StepKind::Call {
                    callee,
                    args,
                    has_parens: true,
                }
            }
            Rule::path => StepKind::Call {
                callee: self.path(core),
                args: Vec::new(),
                has_parens: false,
            },
            Rule::scope_step => {
                let mut c = children(core).peekable();
                let name = c
                    .next_if(|p| p.as_rule() == Rule::ident)
                    .map(|p| self.ident(p));
                let steps = self.steps(c.next().expect("grammar: scope steps"));
                StepKind::Scope { name, steps }
            }
            Rule::repeat_step => {
                let mut c = children(core);
                let count = self.expr(c.next().expect("grammar: repeat count"));
                let steps = self.steps(c.next().expect("grammar: repeat steps"));
                StepKind::Repeat { count, steps }
            }
            Rule::for_step => {
                let mut c = children(core);
                let (var, start, end) = self.for_head(&mut c);
                let steps = self.steps(c.next().expect("grammar: for steps"));
                StepKind::For {
                    var,
                    start,
                    end,
                    steps,
                }
            }
            Rule::if_step => self.if_step(core),
            other => unreachable!("grammar: unexpected step rule {other:?}"),
        };
        Step { kind, name, span }
    }

    /// `i in a..b` (or `x in list`) of a `for`, of steps or of statements.
    fn for_head<'i>(
        &mut self,
        parts: &mut impl Iterator<Item = Pair<'i, Rule>>,
    ) -> (Ident, Expr, Option<Expr>) {
        let var = self.ident(parts.next().expect("grammar: for var"));
        let mut range = children(parts.next().expect("grammar: for range"));
        let start = self.expr(range.next().expect("grammar: range start"));
        let end = range.next().map(|p| self.expr(p));
        (var, start, end)
    }

    fn step_name(&mut self, pair: Pair<'_, Rule>) -> StepName {
        let inner = pair.clone().into_inner().next();
        match inner {
            Some(format) if format.as_rule() == Rule::name_format => {
                let span = self.span(&format);
                let parts = format
                    .into_inner()
                    .map(|part| match part.as_rule() {
                        Rule::name_hole => NamePart::Value(
                            self.expr(part.into_inner().next().expect("grammar: hole")),
                        ),
                        _ => NamePart::Text(part.as_str().to_string()),
                    })
                    .collect();
                StepName::Computed { parts, span }
            }
            _ => StepName::Fixed(self.ident(pair)),
        }
    }

    fn if_step(&mut self, pair: Pair<'_, Rule>) -> StepKind {
        let mut c = children(pair);
        let cond = self.expr(c.next().expect("grammar: if cond"));
        let then = self.steps(c.next().expect("grammar: if then"));
        let otherwise = match c.next() {
            None => Vec::new(),
            Some(p) if p.as_rule() == Rule::if_step => {
                let span = self.span(&p);
                vec![Step {
                    kind: self.if_step(p),
                    name: None,
                    span,
                }]
            }
            Some(p) => self.steps(p),
        };
        StepKind::If {
            cond,
            then,
            otherwise,
        }
    }

    fn string(&mut self, pair: Pair<'_, Rule>) -> String {
        let raw = pair.into_inner().next().map(|p| p.as_str()).unwrap_or("");
        let mut out = String::with_capacity(raw.len());
        let mut chars = raw.chars();
        while let Some(c) = chars.next() {
            if c != '\\' {
                out.push(c);
                continue;
            }
            match chars.next() {
                Some('n') => out.push('\n'),
                Some('t') => out.push('\t'),
                Some(other) => out.push(other),
                None => {}
            }
        }
        out
    }
}

/// Moves `end` back over whitespace and comments, but not before `start`.
fn trim_trivia_end(text: &str, start: usize, mut end: usize) -> usize {
    loop {
        let slice = &text[start..end];
        let trimmed = slice.trim_end();
        end = start + trimmed.len();
        if trimmed.ends_with("*/") {
            if let Some(open) = trimmed.rfind("/*") {
                end = start + open;
                continue;
            }
        }
        let line_start = trimmed.rfind('\n').map_or(0, |i| i + 1);
        match line_comment_start(&trimmed[line_start..]) {
            Some(pos) => end = start + line_start + pos,
            None => return end,
        }
    }
}

/// Where a `//` comment starts in one line, ignoring `//` inside strings.
fn line_comment_start(line: &str) -> Option<usize> {
    let bytes = line.as_bytes();
    let mut in_string = false;
    let mut i = 0;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if in_string => i += 1,
            b'"' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return Some(i),
            _ => {}
        }
        i += 1;
    }
    None
}

/// The `///` lines directly above byte offset `start`, without the slashes.
fn doc_comment(text: &str, start: usize) -> Option<String> {
    let before = &text[..start.min(text.len())];
    let mut lines: Vec<&str> = Vec::new();
    for line in before.lines().rev().skip_while(|l| l.trim().is_empty()) {
        let t = line.trim_start();
        match t.strip_prefix("///") {
            Some(rest) => lines.push(rest.strip_prefix(' ').unwrap_or(rest)),
            None => break,
        }
    }
    if lines.is_empty() {
        return None;
    }
    lines.reverse();
    Some(lines.join("\n"))
}

#[cfg(test)]
mod tests {
    /// `KEYWORDS` is a copy of the grammar's `keyword` rule: they agree.
    #[test]
    fn keywords_are_the_grammars() {
        let grammar = include_str!("../../grammar/nn.pest");
        let rule = grammar
            .split("keyword    = @{")
            .nth(1)
            .and_then(|r| r.split("~ !ident_char").next())
            .expect("the grammar has a keyword rule");
        let words: Vec<&str> = rule.split('"').skip(1).step_by(2).collect();
        assert_eq!(words, super::KEYWORDS);
    }
}
