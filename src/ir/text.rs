//! The text form of the IR: printed for `nnc compile --target ir` and for
//! pass tests, parsed back so that tests are written as text.
//!
//! ```text
//! graph lenet mode=infer {
//!   %0 = input name="x" role=data : f32[1, 1, 28, 28]
//!   %1 = input name="0.weight" role=param : f32[6, 1, 5, 5] @0
//!   %2 = conv2d(%0, %1) stride=[1, 1] padding=[2, 2, 2, 2] dilation=[1, 1] groups=1 : f32[1, 6, 28, 28] @0
//!   output "logits" = %2
//! }
//! ```
//!
//! Every node is one line: its id, op, arguments, attributes, result type
//! and scope. `//` starts a comment. Printing then parsing gives the same
//! graph (floats print in Rust's shortest round-trip form).

use super::ops::{Attr, Attrs, Op};
use super::{Graph, Mode, Node, NodeId, TensorType};
use std::fmt::Write as _;

pub fn print(g: &Graph) -> String {
    let mut out = String::new();
    let _ = write!(
        out,
        "graph {} mode={}",
        quote_if_needed(&g.name),
        g.mode.name()
    );
    if !g.eval_layers.is_empty() {
        let names: Vec<String> = g.eval_layers.iter().map(|l| format!("{l:?}")).collect();
        let _ = write!(out, " eval_layers=[{}]", names.join(", "));
    }
    let _ = writeln!(out, " {{");
    for (i, n) in g.nodes.iter().enumerate() {
        let _ = write!(out, "  %{i} = {}", n.op.name());
        if !n.args.is_empty() {
            let args: Vec<String> = n.args.iter().map(|a| a.to_string()).collect();
            let _ = write!(out, "({})", args.join(", "));
        }
        for (k, v) in n.op.attrs() {
            let _ = write!(out, " {k}={}", attr_text(&v));
        }
        let _ = write!(out, " : {}", n.ty);
        if !n.scope.is_empty() {
            let _ = write!(out, " @{}", scope_text(&n.scope));
        }
        out.push('\n');
    }
    for (name, id) in &g.outputs {
        let _ = writeln!(out, "  output {:?} = {id}", name.name());
    }
    out.push_str("}\n");
    out
}

/// A scope as written after `@`: bare when it is a plain layer path
/// (`layer1.0.conv1:conv2d`), quoted when it holds anything a line could
/// not carry back (spaces at its ends, quotes, control characters).
fn scope_text(s: &str) -> String {
    let plain = !s.starts_with('"')
        && s.trim() == s
        && !s.contains("//")
        && s.chars().all(|c| !c.is_control());
    if plain {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

fn quote_if_needed(s: &str) -> String {
    if !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
        s.to_string()
    } else {
        format!("{s:?}")
    }
}

fn attr_text(a: &Attr) -> String {
    match a {
        Attr::Int(v) => v.to_string(),
        Attr::Float(v) => format!("{v:?}"),
        Attr::Bool(v) => v.to_string(),
        Attr::Str(v) => format!("{v:?}"),
        Attr::Ints(v) => {
            let items: Vec<String> = v.iter().map(|x| x.to_string()).collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// A parse error with its 1-based line.
#[derive(Debug, Clone, PartialEq)]
pub struct ParseError {
    pub line: usize,
    pub message: String,
}

impl std::fmt::Display for ParseError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "line {}: {}", self.line, self.message)
    }
}

impl std::error::Error for ParseError {}

/// Parses the text form. Types are checked as nodes are added, so the
/// result is well typed; [`super::verify::verify`] checks the rest.
pub fn parse(text: &str) -> Result<Graph, ParseError> {
    let mut graph: Option<Graph> = None;
    let mut closed = false;
    for (i, raw) in text.lines().enumerate() {
        let line_no = i + 1;
        let fail = |m: String| ParseError {
            line: line_no,
            message: m,
        };
        let line = strip_comment(raw).trim();
        if line.is_empty() {
            continue;
        }
        if closed {
            return Err(fail("text after the closing `}`".into()));
        }
        let mut c = Cursor { s: line, pos: 0 };
        match graph.as_mut() {
            None => {
                c.keyword("graph").map_err(fail)?;
                let name = c.name_or_string().map_err(fail)?;
                c.keyword("mode=").map_err(fail)?;
                let mode = match c.word() {
                    "train" => Mode::Train,
                    "infer" => Mode::Infer,
                    other => return Err(fail(format!("unknown mode `{other}`"))),
                };
                let mut g = Graph::new(&name, mode);
                if c.peek() == Some('e') {
                    c.keyword("eval_layers=").map_err(fail)?;
                    c.expect('[').map_err(fail)?;
                    while c.peek() == Some('"') {
                        g.eval_layers.push(c.string().map_err(fail)?);
                        if c.peek() == Some(',') {
                            c.expect(',').map_err(fail)?;
                        }
                    }
                    c.expect(']').map_err(fail)?;
                }
                c.expect('{').map_err(fail)?;
                graph = Some(g);
            }
            Some(g) => {
                if line == "}" {
                    closed = true;
                } else if line.starts_with("output") {
                    c.keyword("output").map_err(fail)?;
                    let name = c.string().map_err(fail)?;
                    c.expect('=').map_err(fail)?;
                    let id = c.node_id(g.nodes.len()).map_err(fail)?;
                    g.output(&name, id);
                } else {
                    let node = parse_node(&mut c, g.nodes.len()).map_err(fail)?;
                    // The same checks as any construction: the op's type
                    // rule, and sizes that fit in memory.
                    let id = g
                        .try_add(node.op, &node.args, &node.scope)
                        .map_err(|e| fail(e.0))?;
                    if *g.ty(id) != node.ty {
                        return Err(fail(format!(
                            "the op gives {}, but the line says {}",
                            g.ty(id),
                            node.ty
                        )));
                    }
                }
            }
        }
    }
    match (graph, closed) {
        (Some(g), true) => Ok(g),
        (None, _) => Err(ParseError {
            line: 1,
            message: "no `graph` header".into(),
        }),
        (Some(_), false) => Err(ParseError {
            line: text.lines().count(),
            message: "missing closing `}`".into(),
        }),
    }
}

fn strip_comment(line: &str) -> &str {
    let mut in_string = false;
    let bytes = line.as_bytes();
    for i in 0..bytes.len() {
        match bytes[i] {
            b'"' if i == 0 || bytes[i - 1] != b'\\' => in_string = !in_string,
            b'/' if !in_string && bytes.get(i + 1) == Some(&b'/') => return &line[..i],
            _ => {}
        }
    }
    line
}

fn parse_node(c: &mut Cursor<'_>, index: usize) -> Result<Node, String> {
    let id = c.node_id(usize::MAX)?;
    if id.0 as usize != index {
        return Err(format!("expected %{index}, found {id}"));
    }
    c.expect('=')?;
    let op_name = c.word().to_string();
    let mut args = Vec::new();
    if c.peek() == Some('(') {
        c.expect('(')?;
        loop {
            args.push(c.node_id(index)?);
            if c.peek() == Some(',') {
                c.expect(',')?;
            } else {
                break;
            }
        }
        c.expect(')')?;
    }
    let mut attrs = Attrs::default();
    while c.peek() != Some(':') {
        let key = c.word().to_string();
        if key.is_empty() {
            return Err(format!("expected an attribute or `:` at `{}`", c.rest()));
        }
        c.expect('=')?;
        attrs.0.push((key, c.attr()?));
    }
    c.expect(':')?;
    let ty = c.tensor_type()?;
    let scope = if c.peek() == Some('@') {
        c.expect('@')?;
        if c.peek() == Some('"') {
            c.string()?
        } else {
            c.rest().trim().to_string()
        }
    } else {
        String::new()
    };
    let op = Op::from_parts(&op_name, &attrs, &ty.shape)
        .ok_or_else(|| format!("unknown op `{op_name}` or missing attributes"))?;
    Ok(Node {
        op,
        args,
        ty,
        scope,
    })
}

struct Cursor<'a> {
    s: &'a str,
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn skip_ws(&mut self) {
        while self.s[self.pos..].starts_with(' ') || self.s[self.pos..].starts_with('\t') {
            self.pos += 1;
        }
    }

    fn rest(&self) -> &'a str {
        &self.s[self.pos..]
    }

    fn peek(&mut self) -> Option<char> {
        self.skip_ws();
        self.rest().chars().next()
    }

    fn expect(&mut self, ch: char) -> Result<(), String> {
        if self.peek() == Some(ch) {
            self.pos += ch.len_utf8();
            Ok(())
        } else {
            Err(format!("expected `{ch}` at `{}`", self.rest()))
        }
    }

    fn keyword(&mut self, kw: &str) -> Result<(), String> {
        self.skip_ws();
        if self.rest().starts_with(kw) {
            self.pos += kw.len();
            Ok(())
        } else {
            Err(format!("expected `{kw}` at `{}`", self.rest()))
        }
    }

    fn word(&mut self) -> &'a str {
        self.skip_ws();
        let start = self.pos;
        while let Some(c) = self.rest().chars().next() {
            if c.is_ascii_alphanumeric() || c == '_' || c == '.' || c == '-' || c == '+' {
                self.pos += 1;
            } else {
                break;
            }
        }
        &self.s[start..self.pos]
    }

    fn string(&mut self) -> Result<String, String> {
        self.expect('"')?;
        let mut out = String::new();
        let mut chars = self.rest().char_indices();
        while let Some((i, c)) = chars.next() {
            match c {
                '"' => {
                    self.pos += i + 1;
                    return Ok(out);
                }
                // The escapes of Rust's `{:?}`, which the printer uses.
                '\\' => match chars.next() {
                    Some((_, 'n')) => out.push('\n'),
                    Some((_, 't')) => out.push('\t'),
                    Some((_, 'r')) => out.push('\r'),
                    Some((_, '0')) => out.push('\0'),
                    Some((_, 'u')) => {
                        let rest: String = chars
                            .by_ref()
                            .map(|(_, c)| c)
                            .take_while(|&c| c != '}')
                            .collect();
                        let code = rest
                            .strip_prefix('{')
                            .and_then(|h| u32::from_str_radix(h, 16).ok())
                            .and_then(char::from_u32)
                            .ok_or_else(|| format!("bad escape `\\u{rest}}}`"))?;
                        out.push(code);
                    }
                    Some((_, other)) => out.push(other),
                    None => break,
                },
                c => out.push(c),
            }
        }
        Err("unterminated string".into())
    }

    fn name_or_string(&mut self) -> Result<String, String> {
        if self.peek() == Some('"') {
            self.string()
        } else {
            let w = self.word();
            if w.is_empty() {
                Err("expected a name".into())
            } else {
                Ok(w.to_string())
            }
        }
    }

    fn node_id(&mut self, below: usize) -> Result<NodeId, String> {
        self.expect('%')?;
        let w = self.word();
        let n: usize = w.parse().map_err(|_| format!("bad node id `%{w}`"))?;
        if n >= below {
            return Err(format!("%{n} is not defined before its use"));
        }
        Ok(NodeId(n as u32))
    }

    fn attr(&mut self) -> Result<Attr, String> {
        match self.peek() {
            Some('"') => Ok(Attr::Str(self.string()?)),
            Some('[') => {
                self.expect('[')?;
                let mut v = Vec::new();
                while self.peek() != Some(']') {
                    let w = self.word();
                    v.push(w.parse::<i64>().map_err(|_| format!("bad integer `{w}`"))?);
                    if self.peek() == Some(',') {
                        self.expect(',')?;
                    }
                }
                self.expect(']')?;
                Ok(Attr::Ints(v))
            }
            _ => {
                let w = self.word();
                match w {
                    "true" => Ok(Attr::Bool(true)),
                    "false" => Ok(Attr::Bool(false)),
                    "inf" => Ok(Attr::Float(f64::INFINITY)),
                    "-inf" => Ok(Attr::Float(f64::NEG_INFINITY)),
                    "NaN" => Ok(Attr::Float(f64::NAN)),
                    _ if w.contains(['.', 'e', 'E']) => w
                        .parse()
                        .map(Attr::Float)
                        .map_err(|_| format!("bad number `{w}`")),
                    _ => w
                        .parse()
                        .map(Attr::Int)
                        .map_err(|_| format!("bad value `{w}`")),
                }
            }
        }
    }

    fn tensor_type(&mut self) -> Result<TensorType, String> {
        let dtype = self.word();
        if dtype != "f32" {
            return Err(format!("unknown element type `{dtype}`"));
        }
        match self.attr()? {
            Attr::Ints(v) => {
                let shape = v
                    .into_iter()
                    .map(usize::try_from)
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|_| "negative size")?;
                Ok(TensorType::f32(shape))
            }
            _ => Err("expected a shape".into()),
        }
    }
}
