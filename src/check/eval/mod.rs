//! Instantiation and shape checking.
//!
//! A network is checked by running it symbolically: every block call is
//! expanded with its arguments, every layer computes its output shape from
//! its input shape, and each layer is appended to the [`Model`]. Dimensions
//! that are not known (the batch `N`) stay symbolic. Errors poison the value
//! they concern and checking goes on, so independent errors are all found.

use super::dim::{shape_to_string, Dim};
use super::model::{Layer, Model, ModelInput, TensorKind, ValueId};
use super::ops::{self, args::GivenArg, bind_args, Built, Op, OpCtx, OpDecl};
use super::program::{Callee, DefId, Program};
use super::suggest::did_you_mean;
use super::value::{Tensor, Value};
use crate::diag::Diagnostic;
use crate::diag_codes as codes;
use crate::syntax::ast::{self, BinOp, DefBody, Expr, ExprKind, Step, StepKind, Stmt, UnOp};
use crate::syntax::source::{FileId, Span};
use std::collections::{HashMap, HashSet};

mod definitions;
mod expressions;
mod steps;

/// Networks larger than this are rejected rather than expanded forever.
pub const MAX_LAYERS: usize = 100_000;
/// Blocks may call blocks this deep.
pub const MAX_CALL_DEPTH: usize = 48;
/// `repeat` and `for` may run this many times.
pub const MAX_REPEAT: i64 = 100_000;
/// Loop iterations and steps in all, so that nested loops with empty
/// bodies cannot run for hours.
pub const MAX_WORK: usize = 1_000_000;

/// How a definition gets its input tensors.
#[derive(Clone)]
pub enum InputSource {
    /// The value on the left of `->`.
    Tensor(Tensor),
    /// The definition is the model: its `input`s become model inputs, with an
    /// optional concrete shape for the first one.
    Entry(Option<Vec<i64>>),
}

struct Binding {
    value: Value,
}

#[derive(Default)]
struct Env {
    vars: HashMap<String, Binding>,
    file: FileId,
}

impl Env {
    fn get(&self, name: &str) -> Option<&Value> {
        self.vars.get(name).map(|b| &b.value)
    }

    fn set(&mut self, name: &str, value: Value) -> Option<Value> {
        self.vars
            .insert(name.to_string(), Binding { value })
            .map(|b| b.value)
    }
}

/// Where layers get their names: a dotted prefix and the index of the next
/// unnamed layer, as in `nn.Sequential`.
struct Scope {
    prefix: String,
    next: usize,
}

impl Scope {
    fn child(&self, name: &str) -> String {
        if self.prefix.is_empty() {
            name.to_string()
        } else {
            format!("{}.{name}", self.prefix)
        }
    }
}

/// One level of block instantiation, for recursion checks and the context
/// note of diagnostics.
struct Frame {
    def: DefId,
    /// The model itself, not a block inside it: no context note needed.
    is_entry: bool,
    call_span: Span,
    /// "`basic_block(planes=128, stride=2)` at `layer2.0`"
    what: String,
    bindings: Vec<(String, String)>,
    /// The value of the block's `input`, once bound.
    input: Option<ValueId>,
}

pub struct Checker<'p> {
    prog: &'p Program,
    pub diags: Vec<Diagnostic>,
    seen: HashSet<(&'static str, Option<Span>, String)>,
    pub model: Model,
    frames: Vec<Frame>,
    /// Parameter-holding layer paths, for duplicate names.
    layer_paths: HashMap<String, Span>,
    /// Every scope above a parameter-holding layer (`layer1`, `layer1.0`
    /// for `layer1.0.conv1`), with that first layer's path and span: a
    /// layer may not take a scope's name, as PyTorch's module tree cannot
    /// hold both.
    scope_paths: HashMap<String, (String, Span)>,
    /// Definitions expanded at least once.
    pub instantiated: HashSet<DefId>,
    /// Set when checking a block on its own with symbolic arguments: what
    /// cannot be decided for symbols then poisons silently.
    lenient: bool,
    /// Set after a fatal limit (too many layers): everything stops.
    aborted: bool,
    /// Steps and loop iterations so far, against [`MAX_WORK`].
    work: usize,
}

impl<'p> Checker<'p> {
    pub fn new(prog: &'p Program) -> Checker<'p> {
        Checker {
            prog,
            diags: Vec::new(),
            seen: HashSet::new(),
            model: Model::default(),
            frames: Vec::new(),
            layer_paths: HashMap::new(),
            scope_paths: HashMap::new(),
            instantiated: HashSet::new(),
            lenient: false,
            aborted: false,
            work: 0,
        }
    }

    /// Counts one unit of expansion work; false (with one error) past the
    /// budget.
    fn spend(&mut self, span: Span) -> bool {
        self.work += 1;
        if self.work <= MAX_WORK {
            return true;
        }
        if !self.aborted {
            self.emit(
                Diagnostic::error(
                    codes::TOO_LARGE,
                    format!("the network takes more than {MAX_WORK} expansion steps"),
                )
                .at(span, "while expanding this")
                .with_help("check the counts of `repeat` and `for`"),
            );
            self.aborted = true;
        }
        false
    }

    /// Checks `def` as a whole model. `args` override its parameters.
    pub fn check_entry(
        &mut self,
        def: DefId,
        args: Vec<GivenArg>,
        input: Option<Vec<i64>>,
    ) -> Option<ValueId> {
        let d = self.prog.def(def);
        self.model = Model {
            name: d.name.name.clone(),
            doc: d.doc.clone(),
            ..Model::default()
        };
        self.layer_paths.clear();
        self.scope_paths.clear();
        let span = d.name.span;
        let out = self.instantiate(def, args, InputSource::Entry(input), String::new(), span);
        self.model.output = out.map(|t| t.id);
        self.model.output
    }

    /// Checks a block that no network uses, with symbolic sizes and default
    /// arguments, so that its mistakes are still found.
    pub fn check_alone(&mut self, def: DefId) {
        let d = self.prog.def(def);
        let mut args = Vec::new();
        for p in &d.params {
            if p.default.is_some() {
                continue;
            }
            match &p.ty {
                ast::TypeExpr::Name(t) if t.name == "int" => args.push(GivenArg {
                    name: Some((p.name.name.clone(), p.span)),
                    value: Value::Int(Dim::symbol(&p.name.name)),
                    span: p.span,
                }),
                // Without a value for a float, bool or list there is nothing
                // to run; names were still checked by the lints.
                _ => return,
            }
        }
        self.lenient = true;
        self.model = Model::default();
        self.layer_paths.clear();
        self.scope_paths.clear();
        let span = d.name.span;
        self.instantiate(def, args, InputSource::Entry(None), String::new(), span);
        self.lenient = false;
        self.aborted = false;
    }

    // ---- diagnostics -------------------------------------------------------

    fn emit(&mut self, mut d: Diagnostic) {
        // A block checked on its own has symbolic sizes by construction;
        // that a size is not known there is no mistake of the user's.
        let symbolic = d.code == codes::SYMBOLIC_SIZE || d.code == codes::UNDECIDABLE;
        if self.lenient && (self.aborted || symbolic) {
            return;
        }
        let key = (
            d.code,
            d.primary.as_ref().map(|l| l.span),
            d.message.clone(),
        );
        if !self.seen.insert(key) {
            return;
        }
        if let Some(frame) = self.frames.last() {
            // The model itself needs no "in `net`" unless something is bound.
            if !frame.is_entry || !frame.bindings.is_empty() {
                let mut note = format!("in {}", frame.what);
                if !frame.bindings.is_empty() {
                    let b: Vec<String> = frame
                        .bindings
                        .iter()
                        .map(|(k, v)| format!("{k} = {v}"))
                        .collect();
                    note.push_str(&format!(", with {}", b.join(", ")));
                }
                d.notes.push(note);
            }
            let primary_span = d.primary.as_ref().map(|l| l.span);
            if !frame.is_entry && primary_span != Some(frame.call_span) {
                d.secondary.push(crate::diag::Label {
                    span: frame.call_span,
                    message: "instantiated here".to_string(),
                });
            }
        }
        self.diags.push(d);
    }

    fn emit_all(&mut self, diags: Vec<Diagnostic>) {
        for d in diags {
            self.emit(d);
        }
    }

    /// A condition that depends on a symbol (silent in lenient mode, see
    /// `emit`).
    fn undecidable(&mut self, span: Span, what: &str) -> Value {
        self.emit(
            Diagnostic::error(
                codes::UNDECIDABLE,
                format!("cannot decide {what}: it depends on a symbolic size"),
            )
            .at(span, "this depends on a size that is not known")
            .with_help("give the input concrete sizes in its `input` declaration"),
        );
        Value::Poison
    }
}

/// The declared type of a block parameter.
#[derive(Clone, Debug, PartialEq)]
pub enum ParamType {
    Int,
    Float,
    Bool,
    Str,
    List(Box<ParamType>),
}

impl ParamType {
    pub fn accepts(&self, v: &Value) -> bool {
        match (self, v) {
            (_, Value::Poison) => true,
            (ParamType::Int, Value::Int(_)) => true,
            (ParamType::Float, Value::Float(_) | Value::Int(_)) => true,
            (ParamType::Bool, Value::Bool(_)) => true,
            (ParamType::Str, Value::Str(_)) => true,
            (ParamType::List(t), Value::List(items)) => items.iter().all(|i| t.accepts(i)),
            _ => false,
        }
    }

    pub fn describe(&self) -> String {
        match self {
            ParamType::Int => "an int".into(),
            ParamType::Float => "a float".into(),
            ParamType::Bool => "a bool".into(),
            ParamType::Str => "a string".into(),
            ParamType::List(t) => format!(
                "a list of {}",
                t.describe()
                    .trim_start_matches("a ")
                    .trim_start_matches("an ")
            ),
        }
    }
}

/// `None` for an unknown type name (reported by the lints).
pub fn param_type(t: &ast::TypeExpr) -> Option<ParamType> {
    match t {
        ast::TypeExpr::Name(n) => match n.name.as_str() {
            "int" => Some(ParamType::Int),
            "float" => Some(ParamType::Float),
            "bool" => Some(ParamType::Bool),
            "string" => Some(ParamType::Str),
            _ => None,
        },
        ast::TypeExpr::List(inner, _) => param_type(inner).map(|t| ParamType::List(Box::new(t))),
    }
}

pub struct BlockParam {
    pub name: String,
    pub ty: Option<ParamType>,
    pub has_default: bool,
}

/// Block parameters bind through the same code as layer parameters.
impl ops::args::Slot for BlockParam {
    fn name(&self) -> &str {
        &self.name
    }

    fn accepts(&self, v: &Value) -> bool {
        self.ty.as_ref().is_none_or(|t| t.accepts(v))
    }

    fn type_text(&self) -> String {
        self.ty
            .as_ref()
            .map_or("a value".to_string(), |t| t.describe())
    }

    fn default_value(&self) -> Option<Option<Value>> {
        self.has_default.then_some(None)
    }
}
