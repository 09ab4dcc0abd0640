//! The abstract syntax tree. Every node carries the [`Span`] of its text.
//!
//! Invariant: the tree is shallow. Operators of one precedence level are flat
//! lists ([`ExprKind::Binary`]), and the parser bounds bracket nesting, so
//! walking or dropping a tree never needs deep recursion.

use super::source::Span;

#[derive(Clone, Debug, PartialEq)]
pub struct Ident {
    pub name: String,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct File {
    pub items: Vec<Item>,
}

#[derive(Clone, Debug)]
pub enum Item {
    Import(Import),
    Def(Def),
    Train(Train),
}

#[derive(Clone, Debug)]
pub struct Import {
    pub target: ImportTarget,
    pub alias: Option<Ident>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum ImportTarget {
    /// `import std::resnet18` or `import std::*` (`name` is `None` for `*`).
    Std { name: Option<Ident> },
    /// Any other `a::b` path: always an error, kept for the diagnostic.
    OtherPath { path: Vec<Ident> },
    /// `import "layers.nn"`.
    File { path: String, span: Span },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DefKind {
    Network,
    Block,
}

impl DefKind {
    pub fn keyword(self) -> &'static str {
        match self {
            DefKind::Network => "network",
            DefKind::Block => "block",
        }
    }
}

/// A `network` or `block` definition.
#[derive(Clone, Debug)]
pub struct Def {
    pub kind: DefKind,
    pub name: Ident,
    pub params: Vec<Param>,
    pub body: DefBody,
    /// The text of the `///` comments just above the definition.
    pub doc: Option<String>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum DefBody {
    /// `{ input x: [...]  ...  return ... }`, with an optional `-> [shape]`.
    Body {
        output: Option<Shape>,
        stmts: Vec<Stmt>,
    },
    /// `= resnet(...)`: the network is that block, its layers at the root.
    Alias {
        callee: Path,
        args: Vec<Arg>,
        span: Span,
    },
}

#[derive(Clone, Debug)]
pub struct Param {
    pub name: Ident,
    pub ty: TypeExpr,
    pub default: Option<Expr>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum TypeExpr {
    Name(Ident),
    List(Box<TypeExpr>, Span),
}

impl TypeExpr {
    pub fn span(&self) -> Span {
        match self {
            TypeExpr::Name(i) => i.span,
            TypeExpr::List(_, s) => *s,
        }
    }
}

#[derive(Clone, Debug)]
pub enum Stmt {
    Input {
        name: Ident,
        shape: Shape,
        span: Span,
    },
    Let {
        name: Ident,
        shape: Option<Shape>,
        value: Expr,
        span: Span,
    },
    Return {
        value: Expr,
        span: Span,
    },
    /// `for i in 0..n { ... }` over statements (`let`s and loops): once per
    /// value, in the definition's names, so that a name rebound inside
    /// carries its value into the next iteration and after the loop.
    For {
        var: Ident,
        start: Expr,
        end: Option<Expr>,
        body: Vec<Stmt>,
        span: Span,
    },
}

/// Every statement of `stmts` and of the loops among them, in source
/// order (a loop before the statements of its body).
pub fn all_stmts(stmts: &[Stmt]) -> Vec<&Stmt> {
    let mut out = Vec::new();
    for s in stmts {
        out.push(s);
        if let Stmt::For { body, .. } = s {
            out.extend(all_stmts(body));
        }
    }
    out
}

impl Stmt {
    pub fn span(&self) -> Span {
        match self {
            Stmt::Input { span, .. }
            | Stmt::Let { span, .. }
            | Stmt::Return { span, .. }
            | Stmt::For { span, .. } => *span,
        }
    }
}

#[derive(Clone, Debug)]
pub struct Shape {
    pub dims: Vec<Expr>,
    /// `H = 224` in an input pattern: the size used when no input shape
    /// is given (`nnc summary` without `--input-shape`). One per dim.
    pub defaults: Vec<Option<Expr>>,
    pub span: Span,
}

impl Shape {
    /// Every expression of the shape, sizes and defaults.
    pub fn exprs(&self) -> impl Iterator<Item = &Expr> {
        self.dims.iter().chain(self.defaults.iter().flatten())
    }
}

#[derive(Clone, Debug)]
pub struct Train {
    pub network: Option<Ident>,
    pub entries: Vec<TrainEntry>,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub struct TrainEntry {
    pub key: Ident,
    pub value: Expr,
    pub span: Span,
}

/// `name` or `std::name`.
#[derive(Clone, Debug)]
pub struct Path {
    pub segments: Vec<Ident>,
    pub span: Span,
}

impl Path {
    pub fn last(&self) -> &Ident {
        self.segments
            .last()
            .expect("a path has at least one segment")
    }

    pub fn text(&self) -> String {
        let names: Vec<&str> = self.segments.iter().map(|s| s.name.as_str()).collect();
        names.join("::")
    }
}

#[derive(Clone, Debug)]
pub struct Arg {
    pub name: Option<Ident>,
    pub value: Expr,
    pub span: Span,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BinOp {
    Or,
    And,
    Eq,
    Ne,
    Lt,
    Le,
    Gt,
    Ge,
    Add,
    Sub,
    Mul,
    Div,
    Rem,
}

impl BinOp {
    pub fn symbol(self) -> &'static str {
        match self {
            BinOp::Or => "or",
            BinOp::And => "and",
            BinOp::Eq => "==",
            BinOp::Ne => "!=",
            BinOp::Lt => "<",
            BinOp::Le => "<=",
            BinOp::Gt => ">",
            BinOp::Ge => ">=",
            BinOp::Add => "+",
            BinOp::Sub => "-",
            BinOp::Mul => "*",
            BinOp::Div => "/",
            BinOp::Rem => "%",
        }
    }
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum UnOp {
    Neg,
    Not,
}

#[derive(Clone, Debug)]
pub struct Expr {
    pub kind: ExprKind,
    pub span: Span,
}

#[derive(Clone, Debug)]
pub enum ExprKind {
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(String),
    Name(Path),
    List(Vec<Expr>),
    /// `f(args)`: a function of values (`concat(a, b)`, `min(x, y)`).
    Call {
        callee: Path,
        args: Vec<Arg>,
    },
    /// `first op rest[0].1 op rest[1].1 ...`, all operators of one precedence
    /// level, evaluated left to right.
    Binary {
        first: Box<Expr>,
        rest: Vec<(BinOp, Span, Expr)>,
    },
    /// Prefix operators, outermost first.
    Unary {
        ops: Vec<(UnOp, Span)>,
        operand: Box<Expr>,
    },
    Index {
        base: Box<Expr>,
        index: Box<Expr>,
    },
    If {
        cond: Box<Expr>,
        then: Box<Expr>,
        otherwise: Box<Expr>,
    },
    /// `head -> step -> step ...`
    Chain {
        head: Box<Expr>,
        steps: Vec<Step>,
    },
    /// A parenthesised expression, kept so that spans and messages can say so.
    Paren(Box<Expr>),
    /// A literal that could not be read (already reported by the parser).
    Invalid,
}

/// One element on the right of `->`.
#[derive(Clone, Debug)]
pub struct Step {
    pub kind: StepKind,
    /// `as name`: the name of the layer in parameter paths.
    pub name: Option<StepName>,
    pub span: Span,
}

/// What follows `as`.
#[derive(Clone, Debug)]
pub enum StepName {
    /// `as conv1`, `as 0`.
    Fixed(Ident),
    /// `as "denselayer{j + 1}"`: text and values, joined when the step is
    /// built (D2L's `add_module(f'b{i+2}', ...)`).
    Computed { parts: Vec<NamePart>, span: Span },
}

#[derive(Clone, Debug)]
pub enum NamePart {
    Text(String),
    /// `{expr}`: a whole number or a string.
    Value(Expr),
}

#[derive(Clone, Debug)]
pub enum StepKind {
    /// `conv2d(64, 3)`, `relu`, `basic_block(128, stride=2)`.
    Call {
        callee: Path,
        args: Vec<Arg>,
        has_parens: bool,
    },
    /// `features { conv2d(64, 3) -> relu }`: an `nn.Sequential` named
    /// `features`; without a name (`{ conv2d(64, 3) -> relu }`), numbered
    /// by its position like a layer.
    Scope {
        name: Option<Ident>,
        steps: Vec<Step>,
    },
    /// `repeat n { ... }`
    Repeat { count: Expr, steps: Vec<Step> },
    /// `for i in 0..n { ... }` or `for c in list { ... }`
    For {
        var: Ident,
        start: Expr,
        end: Option<Expr>,
        steps: Vec<Step>,
    },
    /// `if cond { ... } else { ... }`; a missing branch is the identity.
    If {
        cond: Expr,
        then: Vec<Step>,
        otherwise: Vec<Step>,
    },
}
