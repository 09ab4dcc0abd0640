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

    // ---- definitions -------------------------------------------------------

    fn instantiate(
        &mut self,
        def_id: DefId,
        given: Vec<GivenArg>,
        input: InputSource,
        prefix: String,
        call_span: Span,
    ) -> Option<Tensor> {
        if self.aborted {
            return None;
        }
        let def = self.prog.def(def_id);
        if let Some(pos) = self.frames.iter().position(|f| f.def == def_id) {
            let chain: Vec<String> = self.frames[pos..]
                .iter()
                .map(|f| format!("`{}`", self.prog.def(f.def).name.name))
                .collect();
            self.emit(
                Diagnostic::error(
                    codes::RECURSIVE_BLOCK,
                    format!(
                        "`{}` uses itself: {} → `{}`",
                        def.name.name,
                        chain.join(" → "),
                        def.name.name
                    ),
                )
                .at(call_span, "recursive use")
                .with_label(def.name.span, "defined here")
                .with_help("a network is a finite graph; use `repeat` or `for` to stack layers"),
            );
            return None;
        }
        if self.frames.len() >= MAX_CALL_DEPTH {
            self.emit(
                Diagnostic::error(
                    codes::TOO_LARGE,
                    format!("blocks nest more than {MAX_CALL_DEPTH} levels deep"),
                )
                .at(call_span, "one level too deep"),
            );
            return None;
        }
        self.instantiated.insert(def_id);
        let file = self.prog.def_file(def_id);
        let mut env = Env {
            vars: HashMap::new(),
            file,
        };
        let what = if prefix.is_empty() {
            format!("`{}`", def.name.name)
        } else {
            format!("`{}` at `{prefix}`", def.name.name)
        };
        self.frames.push(Frame {
            def: def_id,
            is_entry: self.frames.is_empty() && matches!(input, InputSource::Entry(_)),
            call_span,
            what,
            bindings: Vec::new(),
            input: None,
        });
        let result = self.instantiate_body(def_id, given, input, prefix, call_span, &mut env);
        self.frames.pop();
        result
    }

    fn instantiate_body(
        &mut self,
        def_id: DefId,
        given: Vec<GivenArg>,
        input: InputSource,
        prefix: String,
        call_span: Span,
        env: &mut Env,
    ) -> Option<Tensor> {
        let def = self.prog.def(def_id);
        self.bind_params(def, given, call_span, env)?;
        let mut scope = Scope { prefix, next: 0 };
        match &def.body {
            DefBody::Alias { callee, args, span } => {
                // An unknown name is reported once by `lints::unknown_layers`.
                let target = self.prog.resolve_def(env.file, callee)?;
                let given = self.eval_args(env, &mut scope, args)?;
                let prefix = scope.prefix.clone();
                self.instantiate(target, given, input, prefix, *span)
            }
            DefBody::Body { output, stmts } => {
                let mut result: Option<Option<Tensor>> = None;
                let mut inputs_seen = 0;
                for stmt in stmts {
                    if self.aborted {
                        return None;
                    }
                    if result.is_some() {
                        break;
                    }
                    match stmt {
                        Stmt::Input { name, shape, span } => {
                            inputs_seen += 1;
                            let t =
                                self.bind_input(env, name, shape, *span, &input, inputs_seen, def);
                            if let (Some(t), Some(frame)) = (t, self.frames.last_mut()) {
                                frame.input.get_or_insert(t.id);
                            }
                            let v = t.map_or(Value::Poison, Value::Tensor);
                            env.set(&name.name, v);
                        }
                        Stmt::Let {
                            name, shape, value, ..
                        } => {
                            let v = self.eval(env, &mut scope, value);
                            let v = match (shape, &v) {
                                (Some(s), Value::Tensor(t)) => {
                                    let t = *t;
                                    if self.check_annotation(env, s, t, &format!("`{}`", name.name))
                                    {
                                        v
                                    } else {
                                        Value::Poison
                                    }
                                }
                                _ => v,
                            };
                            env.set(&name.name, v);
                        }
                        Stmt::Return { value, .. } => {
                            let v = self.eval(env, &mut scope, value);
                            result = Some(match v {
                                Value::Tensor(t) => {
                                    let ok = output.as_ref().is_none_or(|s| {
                                        self.check_annotation(env, s, t, "the output")
                                    });
                                    ok.then_some(t)
                                }
                                Value::Poison => None,
                                other => {
                                    self.emit(
                                        Diagnostic::error(
                                            codes::EXPECTED_TENSOR,
                                            format!(
                                                "`{}` must return a tensor, but this is {}",
                                                def.name.name,
                                                other.describe()
                                            ),
                                        )
                                        .at(value.span, "not a tensor"),
                                    );
                                    None
                                }
                            });
                        }
                    }
                }
                if inputs_seen == 0 {
                    self.emit(
                        Diagnostic::error(
                            codes::MALFORMED_DEFINITION,
                            format!(
                                "{} `{}` declares no input",
                                def.kind.keyword(),
                                def.name.name
                            ),
                        )
                        .at(def.name.span, "no `input` in this definition")
                        .with_help("declare one, for example `input x: [N, 3, 224, 224]`"),
                    );
                    return None;
                }
                match result {
                    Some(r) => r,
                    None => {
                        self.emit(
                            Diagnostic::error(
                                codes::MALFORMED_DEFINITION,
                                format!(
                                    "{} `{}` has no `return`",
                                    def.kind.keyword(),
                                    def.name.name
                                ),
                            )
                            .at(def.name.span, "nothing is returned")
                            .with_help("end the body with `return VALUE`"),
                        );
                        None
                    }
                }
            }
        }
    }

    /// Binds arguments to the definition's parameters, evaluating defaults
    /// in order (a default may use earlier parameters).
    fn bind_params(
        &mut self,
        def: &ast::Def,
        given: Vec<GivenArg>,
        call_span: Span,
        env: &mut Env,
    ) -> Option<()> {
        let specs: Vec<BlockParam> = def
            .params
            .iter()
            .map(|p| BlockParam {
                name: p.name.name.clone(),
                ty: param_type(&p.ty),
                has_default: p.default.is_some(),
            })
            .collect();
        let mut diags = Vec::new();
        let slots = ops::args::bind_generic(&def.name.name, &specs, given, call_span, &mut diags);
        self.emit_all(diags);
        let slots = slots?;
        let mut scope = Scope {
            prefix: String::new(),
            next: 0,
        };
        let mut bindings = Vec::new();
        for ((p, spec), slot) in def.params.iter().zip(&specs).zip(slots) {
            let value = match slot {
                Some(a) => a.value,
                None => {
                    let default = p
                        .default
                        .as_ref()
                        .expect("binder leaves only defaulted params empty");
                    let v = self.eval(env, &mut scope, default);
                    if !v.is_poison() && !spec.ty.as_ref().is_none_or(|t| t.accepts(&v)) {
                        self.emit(
                            Diagnostic::error(
                                codes::TYPE_MISMATCH,
                                format!(
                                    "the default of `{}` must be {}, but it is {}",
                                    p.name.name,
                                    spec.ty.as_ref().map_or("?".into(), |t| t.describe()),
                                    v.describe()
                                ),
                            )
                            .at(default.span, "wrong type"),
                        );
                        return None;
                    }
                    v
                }
            };
            let value = match (&spec.ty, value) {
                (Some(ParamType::Float), Value::Int(d)) => match d.as_const() {
                    Some(i) => Value::Float(i as f64),
                    None => Value::Int(d),
                },
                (_, v) => v,
            };
            bindings.push((p.name.name.clone(), value.describe()));
            env.set(&p.name.name, value);
        }
        if let Some(f) = self.frames.last_mut() {
            f.bindings = bindings;
        }
        Some(())
    }

    /// Connects an `input` declaration to its tensor and binds the names in
    /// its shape pattern (`[N, C, H, W]`).
    /// The defaults of an input pattern's free sizes (`H = 224`): positive
    /// constants, on names only.
    fn default_sizes(&mut self, env: &mut Env, pattern: &ast::Shape) -> Option<Vec<Option<i64>>> {
        let mut out = Vec::new();
        for (p, default) in pattern.dims.iter().zip(&pattern.defaults) {
            let Some(default) = default else {
                out.push(None);
                continue;
            };
            if !matches!(&p.kind, ExprKind::Name(path) if path.segments.len() == 1) {
                self.emit(
                    Diagnostic::error(
                        codes::MALFORMED_DEFINITION,
                        "only a named size can have a default",
                    )
                    .at(default.span, "a default for a fixed size")
                    .with_help("name the size, as in `[N, 3, H = 224, W = 224]`"),
                );
                return None;
            }
            match self.eval_dim(env, default)?.as_const() {
                Some(v) if v >= 1 => out.push(Some(v)),
                _ => {
                    self.emit(
                        Diagnostic::error(
                            codes::OUT_OF_RANGE,
                            "a default size must be a whole number of at least 1",
                        )
                        .at(default.span, "not a size"),
                    );
                    return None;
                }
            }
        }
        Some(out)
    }

    /// The shape an input pattern asks for, with its free sizes taken from
    /// `given` (for a help line).
    fn declared_shape(&mut self, env: &mut Env, pattern: &ast::Shape, given: &[Dim]) -> String {
        let mut out = Vec::new();
        for (p, d) in pattern.dims.iter().zip(given) {
            let free = matches!(&p.kind, ExprKind::Name(path)
                if path.segments.len() == 1 && env.get(&path.segments[0].name).is_none());
            let v = if free { None } else { self.eval_dim(env, p) };
            out.push(v.unwrap_or_else(|| d.clone()).to_string());
        }
        out.join(", ")
    }

    #[allow(clippy::too_many_arguments)]
    fn bind_input(
        &mut self,
        env: &mut Env,
        name: &ast::Ident,
        pattern: &ast::Shape,
        span: Span,
        source: &InputSource,
        nth: usize,
        def: &ast::Def,
    ) -> Option<Tensor> {
        match source {
            InputSource::Tensor(t) if nth == 1 => {
                let t = *t;
                let actual = self.model.shape(t.id).to_vec();
                if self.unify(
                    env,
                    pattern,
                    &actual,
                    t.origin,
                    &format!("`{}`", def.name.name),
                ) {
                    // Inside the block, the value comes from its `input`.
                    Some(Tensor {
                        id: t.id,
                        origin: span,
                    })
                } else {
                    None
                }
            }
            InputSource::Tensor(_) => {
                self.emit(
                    Diagnostic::error(
                        codes::MALFORMED_DEFINITION,
                        format!(
                            "`{}` declares a second input, but a layer step passes only one",
                            def.name.name
                        ),
                    )
                    .at(span, "second input")
                    .with_help(
                        "combine the tensors before the call, or pass them as one with `concat`",
                    ),
                );
                None
            }
            InputSource::Entry(given) => {
                let shape = match given.as_ref().filter(|_| nth == 1) {
                    Some(dims) => {
                        if dims.len() != pattern.dims.len() {
                            self.emit(
                                Diagnostic::error(
                                    codes::INPUT_MISMATCH,
                                    format!(
                                        "the input shape has {} axes, but `{}` declares {}",
                                        dims.len(),
                                        name.name,
                                        pattern.dims.len()
                                    ),
                                )
                                .at(pattern.span, format!("{} axes", pattern.dims.len())),
                            );
                            return None;
                        }
                        let actual: Vec<Dim> = dims.iter().map(|&d| Dim::constant(d)).collect();
                        // Free names (`N`, `H`) take the given sizes; every
                        // other size the pattern fixes must be what is given.
                        for (axis, (p, d)) in pattern.dims.iter().zip(&actual).enumerate() {
                            if let ExprKind::Name(path) = &p.kind {
                                if let [id] = path.segments.as_slice() {
                                    if env.get(&id.name).is_none() {
                                        env.set(&id.name, Value::Int(d.clone()));
                                        if let Some(f) = self.frames.last_mut() {
                                            f.bindings.push((id.name.clone(), d.to_string()));
                                        }
                                        continue;
                                    }
                                }
                            }
                            let declared = self.eval_dim(env, p)?;
                            if declared != *d {
                                let wanted = self.declared_shape(env, pattern, &actual);
                                self.emit(
                                    Diagnostic::error(
                                        codes::INPUT_MISMATCH,
                                        format!(
                                            "the input is {} on axis {axis}, but `{}` declares {declared} there",
                                            d,
                                            name.name
                                        ),
                                    )
                                    .at(p.span, format!("fixed at {declared}"))
                                    .with_help(format!(
                                        "give an input of shape [{}], or leave this size free in the network (a name such as `H` instead of `{declared}`)",
                                        wanted
                                    )),
                                );
                                return None;
                            }
                        }
                        actual
                    }
                    None => {
                        let mut shape = Vec::new();
                        for p in &pattern.dims {
                            let d = match &p.kind {
                                ExprKind::Name(path)
                                    if path.segments.len() == 1
                                        && env.get(&path.segments[0].name).is_none() =>
                                {
                                    let d = Dim::symbol(&path.segments[0].name);
                                    env.set(&path.segments[0].name, Value::Int(d.clone()));
                                    d
                                }
                                _ => self.eval_dim(env, p)?,
                            };
                            if d.as_const().is_some_and(|v| v < 0) {
                                self.emit(
                                    Diagnostic::error(
                                        codes::OUT_OF_RANGE,
                                        "an input size must not be negative",
                                    )
                                    .at(p.span, "negative size"),
                                );
                                return None;
                            }
                            shape.push(d);
                        }
                        shape
                    }
                };
                let default_sizes = self.default_sizes(env, pattern)?;
                let id = self.model.add_value(shape, None);
                self.model.inputs.push(ModelInput {
                    name: name.name.clone(),
                    value: id,
                    span,
                    default_sizes,
                });
                Some(Tensor { id, origin: span })
            }
        }
    }

    /// Matches a shape pattern against a shape, binding unbound names.
    fn unify(
        &mut self,
        env: &mut Env,
        pattern: &ast::Shape,
        actual: &[Dim],
        origin: Span,
        what: &str,
    ) -> bool {
        let actual_text = shape_to_string(actual);
        if pattern.dims.len() != actual.len() {
            self.emit(
                Diagnostic::error(
                    codes::INPUT_MISMATCH,
                    format!(
                        "{what} expects a {}-d input, but gets {actual_text}",
                        pattern.dims.len()
                    ),
                )
                .at(origin, format!("this is {actual_text}"))
                .with_label(
                    pattern.span,
                    format!("declared with {} axes here", pattern.dims.len()),
                ),
            );
            return false;
        }
        let mut ok = true;
        for (p, d) in pattern.dims.iter().zip(actual) {
            if let ExprKind::Name(path) = &p.kind {
                if let [id] = path.segments.as_slice() {
                    if env.get(&id.name).is_none() {
                        env.set(&id.name, Value::Int(d.clone()));
                        let text = d.to_string();
                        if let Some(f) = self.frames.last_mut().filter(|_| text != id.name) {
                            f.bindings.push((id.name.clone(), text));
                        }
                        continue;
                    }
                }
            }
            let Some(expected) = self.eval_dim(env, p) else {
                ok = false;
                continue;
            };
            if expected != *d {
                self.emit(
                    Diagnostic::error(
                        codes::INPUT_MISMATCH,
                        format!("{what} expects {} here, but the input has {d}", expected),
                    )
                    .at(origin, format!("this is {actual_text}"))
                    .with_label(p.span, format!("expects {expected}")),
                );
                ok = false;
            }
        }
        ok
    }

    /// Checks a value against `name: [shape]` or a declared output.
    fn check_annotation(
        &mut self,
        env: &mut Env,
        pattern: &ast::Shape,
        t: Tensor,
        what: &str,
    ) -> bool {
        if let Some(default) = pattern.defaults.iter().flatten().next() {
            self.emit(
                Diagnostic::error(
                    codes::MALFORMED_DEFINITION,
                    "a default size belongs in an `input` pattern",
                )
                .at(default.span, "a default in an annotation")
                .with_help("an annotation states the shape a value has; remove `= ...`"),
            );
            return false;
        }
        let actual = self.model.shape(t.id).to_vec();
        let text = shape_to_string(&actual);
        if pattern.dims.len() != actual.len() {
            self.emit(
                Diagnostic::error(
                    codes::ANNOTATION_MISMATCH,
                    format!(
                        "{what} is declared with {} axes, but it is {text}",
                        pattern.dims.len()
                    ),
                )
                .at(pattern.span, "declared here")
                .with_label(t.origin, format!("this is {text}")),
            );
            return false;
        }
        // Report the first axis that differs, with the whole shapes.
        for (p, d) in pattern.dims.iter().zip(&actual) {
            if let ExprKind::Name(path) = &p.kind {
                if let [id] = path.segments.as_slice() {
                    if env.get(&id.name).is_none() {
                        env.set(&id.name, Value::Int(d.clone()));
                        continue;
                    }
                }
            }
            let Some(expected) = self.eval_dim(env, p) else {
                return false;
            };
            if expected != *d {
                self.emit(
                    Diagnostic::error(
                        codes::ANNOTATION_MISMATCH,
                        format!(
                            "{what} is declared as {}, but it is {text}",
                            self.prog.sources.text(pattern.span)
                        ),
                    )
                    .at(p.span, format!("declared {expected}, but it is {d}"))
                    .with_label(t.origin, format!("this is {text}"))
                    .with_help("change the declaration to match, or check the layers before it"),
                );
                return false;
            }
        }
        true
    }

    // ---- steps -------------------------------------------------------------

    fn apply_steps(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        mut input: Tensor,
        steps: &[Step],
    ) -> Option<Tensor> {
        for step in steps {
            if self.aborted {
                return None;
            }
            input = self.apply_step(env, scope, input, step)?;
        }
        Some(input)
    }

    fn apply_step(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        input: Tensor,
        step: &Step,
    ) -> Option<Tensor> {
        if !self.spend(step.span) {
            return None;
        }
        // `as name` on a loop or conditional makes it a named sub-scope.
        if let (Some(name), StepKind::Repeat { .. } | StepKind::For { .. } | StepKind::If { .. }) =
            (&step.name, &step.kind)
        {
            scope.next += 1;
            let mut inner = Scope {
                prefix: scope.child(&name.name),
                next: 0,
            };
            let unnamed = Step {
                kind: step.kind.clone(),
                name: None,
                span: step.span,
            };
            return self.apply_step(env, &mut inner, input, &unnamed);
        }
        match &step.kind {
            StepKind::Call { callee, args, .. } => {
                let name = match &step.name {
                    Some(n) => n.name.clone(),
                    None => scope.next.to_string(),
                };
                scope.next += 1;
                let path = scope.child(&name);
                match self.prog.resolve_callee(env.file, callee) {
                    Some(Callee::Op(decl)) => {
                        self.apply_op(env, scope, decl, args, input, path, step.span)
                    }
                    Some(Callee::Def(def)) => {
                        let given = self.eval_args(env, scope, args)?;
                        let out = self.instantiate(
                            def,
                            given,
                            InputSource::Tensor(input),
                            path,
                            step.span,
                        )?;
                        // To the caller, the value comes from the call.
                        Some(Tensor {
                            id: out.id,
                            origin: step.span,
                        })
                    }
                    // Reported once by `lints::unknown_layers`.
                    None => None,
                }
            }
            StepKind::Scope { name, steps } => {
                scope.next += 1;
                let mut inner = Scope {
                    prefix: scope.child(&name.name),
                    next: 0,
                };
                self.apply_steps(env, &mut inner, input, steps)
            }
            StepKind::Repeat { count, steps } => {
                let n = self.eval_count(env, scope, count)?;
                let mut x = input;
                for _ in 0..n {
                    if !self.spend(count.span) {
                        return None;
                    }
                    x = self.apply_steps(env, scope, x, steps)?;
                }
                Some(x)
            }
            StepKind::For {
                var,
                start,
                end,
                steps,
            } => {
                let items = self.for_items(env, scope, start, end.as_ref())?;
                let saved = env.vars.remove(&var.name);
                let mut x = Some(input);
                for item in items {
                    if !self.spend(var.span) {
                        x = None;
                        break;
                    }
                    env.set(&var.name, item);
                    x = self.apply_steps(env, scope, x?, steps);
                    if x.is_none() {
                        break;
                    }
                }
                env.vars.remove(&var.name);
                if let Some(b) = saved {
                    env.vars.insert(var.name.clone(), b);
                }
                x
            }
            StepKind::If {
                cond,
                then,
                otherwise,
            } => {
                let branch = if self.eval_condition(env, scope, cond)? {
                    then
                } else {
                    otherwise
                };
                self.apply_steps(env, scope, input, branch)
            }
        }
    }

    /// The value of an `if` condition; `None` after a diagnostic.
    fn eval_condition(&mut self, env: &mut Env, scope: &mut Scope, cond: &Expr) -> Option<bool> {
        match self.eval(env, scope, cond) {
            Value::Bool(b) => Some(b),
            Value::Poison => None,
            other => {
                self.emit(
                    Diagnostic::error(
                        codes::TYPE_MISMATCH,
                        format!(
                            "an `if` condition must be a bool, but this is {}",
                            other.describe()
                        ),
                    )
                    .at(cond.span, "not a bool"),
                );
                None
            }
        }
    }

    fn eval_count(&mut self, env: &mut Env, scope: &mut Scope, count: &Expr) -> Option<i64> {
        let v = self.eval(env, scope, count);
        let n = self.known_int(&v, count.span, "a repeat count")?;
        if !(0..=MAX_REPEAT).contains(&n) {
            self.emit(
                Diagnostic::error(
                    codes::OUT_OF_RANGE,
                    format!("a repeat count must be in 0..={MAX_REPEAT}, but it is {n}"),
                )
                .at(count.span, "out of range"),
            );
            return None;
        }
        Some(n)
    }

    fn for_items(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        start: &Expr,
        end: Option<&Expr>,
    ) -> Option<Vec<Value>> {
        match end {
            Some(end) => {
                let a = self.eval(env, scope, start);
                let a = self.known_int(&a, start.span, "a range start")?;
                let b = self.eval(env, scope, end);
                let b = self.known_int(&b, end.span, "a range end")?;
                if b.saturating_sub(a) > MAX_REPEAT {
                    self.emit(
                        Diagnostic::error(
                            codes::OUT_OF_RANGE,
                            format!("a `for` range may run at most {MAX_REPEAT} times"),
                        )
                        .at(start.span.to(end.span), "too long"),
                    );
                    return None;
                }
                Some((a..b).map(Value::int).collect())
            }
            None => match self.eval(env, scope, start) {
                Value::List(items) => Some(items),
                Value::Poison => None,
                other => {
                    self.emit(
                        Diagnostic::error(
                            codes::TYPE_MISMATCH,
                            format!(
                                "`for` runs over a range `a..b` or a list, but this is {}",
                                other.describe()
                            ),
                        )
                        .at(start.span, "not a list")
                        .with_help("write `for i in 0..n { ... }`"),
                    );
                    None
                }
            },
        }
    }

    fn known_int(&mut self, v: &Value, span: Span, what: &str) -> Option<i64> {
        match v {
            Value::Int(d) => match d.as_const() {
                Some(n) => Some(n),
                None => {
                    self.undecidable(span, what);
                    None
                }
            },
            Value::Poison => None,
            other => {
                self.emit(
                    Diagnostic::error(
                        codes::TYPE_MISMATCH,
                        format!("{what} must be an int, but this is {}", other.describe()),
                    )
                    .at(span, "not an int"),
                );
                None
            }
        }
    }

    fn eval_args(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        args: &[ast::Arg],
    ) -> Option<Vec<GivenArg>> {
        let mut out = Vec::with_capacity(args.len());
        let mut ok = true;
        for a in args {
            let value = self.eval(env, scope, &a.value);
            if value.is_poison() {
                ok = false;
            }
            if let Value::Tensor(_) = value {
                self.emit(
                    Diagnostic::error(
                        codes::EXPECTED_TENSOR,
                        "a layer argument cannot be a tensor",
                    )
                    .at(a.value.span, "this is a tensor")
                    .with_help("tensors flow into layers with `->`: `x -> layer(...)`"),
                );
                ok = false;
            }
            out.push(GivenArg {
                name: a.name.as_ref().map(|n| (n.name.clone(), n.span)),
                value,
                span: a.value.span,
            });
        }
        ok.then_some(out)
    }

    #[allow(clippy::too_many_arguments)]
    fn apply_op(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        decl: &'static OpDecl,
        args: &[ast::Arg],
        input: Tensor,
        path: String,
        span: Span,
    ) -> Option<Tensor> {
        let given = self.eval_args(env, scope, args)?;
        let mut diags = Vec::new();
        let bound = bind_args(decl.name, decl.params, given, span, &mut diags);
        let built = bound.and_then(|slots| {
            let shape = self.model.shape(input.id).to_vec();
            let producer = self.model.values[input.id.0 as usize]
                .producer
                .map(|l| &self.model.layers[l])
                .map(|l| {
                    (
                        l.op.name(),
                        l.inputs
                            .first()
                            .map(|v| self.model.shape(*v))
                            .unwrap_or(&[]),
                    )
                });
            let mut ctx = OpCtx {
                decl,
                args: slots,
                input: &shape,
                input_origin: input.origin,
                producer,
                step_span: span,
                diags: &mut diags,
            };
            (decl.build)(&mut ctx)
        });
        self.emit_all(diags);
        let Built { op, shape } = built?;
        self.add_layer(path, op, vec![input.id], shape, span)
    }

    fn add_layer(
        &mut self,
        path: String,
        op: Op,
        inputs: Vec<ValueId>,
        shape: Vec<Dim>,
        span: Span,
    ) -> Option<Tensor> {
        if self.model.layers.len() >= MAX_LAYERS {
            self.emit(
                Diagnostic::error(
                    codes::TOO_LARGE,
                    format!("the network expands to more than {MAX_LAYERS} layers"),
                )
                .at(span, "while adding this layer")
                .with_help("check the counts of `repeat` and `for`"),
            );
            self.aborted = true;
            return None;
        }
        let params = op.params(&path);
        if !params.is_empty() {
            if let Some(&prev) = self.layer_paths.get(&path) {
                self.emit(
                    Diagnostic::error(
                        codes::DUPLICATE_LAYER_NAME,
                        format!("two layers are named `{path}`, so their parameters would collide"),
                    )
                    .at(span, "second layer with this name")
                    .with_label(prev, "first layer with this name")
                    .with_help("give one of them another name with `as`"),
                );
                return None;
            }
            self.layer_paths.insert(path.clone(), span);
        }
        if params
            .iter()
            .any(|p| p.kind == TensorKind::Parameter && p.numel() > (1u128 << 40))
        {
            self.emit(
                Diagnostic::error(
                    codes::OVERFLOW,
                    format!("`{path}` would have more than 2^40 parameters"),
                )
                .at(span, "far too large"),
            );
            return None;
        }
        let layer_index = self.model.layers.len();
        let output = self.model.add_value(shape, Some(layer_index));
        self.model.layers.push(Layer {
            path,
            op,
            inputs,
            output,
            params,
            span,
        });
        Some(Tensor {
            id: output,
            origin: span,
        })
    }

    // ---- expressions -------------------------------------------------------

    fn eval_dim(&mut self, env: &mut Env, e: &Expr) -> Option<Dim> {
        let mut scope = Scope {
            prefix: String::new(),
            next: 0,
        };
        match self.eval(env, &mut scope, e) {
            Value::Int(d) => Some(d),
            Value::Poison => None,
            other => {
                self.emit(
                    Diagnostic::error(
                        codes::TYPE_MISMATCH,
                        format!("a size must be an int, but this is {}", other.describe()),
                    )
                    .at(e.span, "not an int"),
                );
                None
            }
        }
    }

    fn eval(&mut self, env: &mut Env, scope: &mut Scope, e: &Expr) -> Value {
        if self.aborted {
            return Value::Poison;
        }
        match &e.kind {
            ExprKind::Int(v) => Value::int(*v),
            ExprKind::Float(v) => Value::Float(*v),
            ExprKind::Bool(v) => Value::Bool(*v),
            ExprKind::Str(s) => Value::Str(s.clone()),
            ExprKind::Paren(inner) => self.eval(env, scope, inner),
            ExprKind::Invalid => Value::Poison,
            ExprKind::List(items) => {
                let mut out = Vec::with_capacity(items.len());
                for i in items {
                    let v = self.eval(env, scope, i);
                    if v.is_poison() {
                        return Value::Poison;
                    }
                    out.push(v);
                }
                Value::List(out)
            }
            ExprKind::Name(path) => self.eval_name(env, path),
            ExprKind::Call { callee, args } => self.eval_call(env, scope, callee, args, e.span),
            ExprKind::Unary { ops, operand } => {
                let mut v = self.eval(env, scope, operand);
                for (op, span) in ops.iter().rev() {
                    v = match (op, v) {
                        (_, Value::Poison) => return Value::Poison,
                        (UnOp::Neg, Value::Int(d)) => match d.checked_neg() {
                            Some(n) => Value::Int(n),
                            None => return self.overflow(e.span),
                        },
                        (UnOp::Neg, Value::Float(f)) => Value::Float(-f),
                        (UnOp::Not, Value::Bool(b)) => Value::Bool(!b),
                        (op, other) => {
                            let (sym, want) = match op {
                                UnOp::Neg => ("-", "a number"),
                                UnOp::Not => ("not", "a bool"),
                            };
                            self.emit(
                                Diagnostic::error(
                                    codes::TYPE_MISMATCH,
                                    format!(
                                        "`{sym}` needs {want}, but this is {}",
                                        other.describe()
                                    ),
                                )
                                .at(*span, format!("`{sym}` here"))
                                .with_label(operand.span, format!("this is {}", other.type_name())),
                            );
                            return Value::Poison;
                        }
                    };
                }
                v
            }
            ExprKind::Binary { first, rest } => {
                let mut acc = self.eval(env, scope, first);
                let mut acc_span = first.span;
                for (op, op_span, rhs) in rest {
                    // `and` and `or` short-circuit, so `i > 0 and list[i - 1]` is safe.
                    match (op, &acc) {
                        (BinOp::And, Value::Bool(false)) | (BinOp::Or, Value::Bool(true)) => {
                            acc_span = acc_span.to(rhs.span);
                            continue;
                        }
                        _ => {}
                    }
                    let r = self.eval(env, scope, rhs);
                    acc = self.binary(scope, *op, *op_span, acc, acc_span, r, rhs.span, first, rhs);
                    acc_span = acc_span.to(rhs.span);
                }
                acc
            }
            ExprKind::Index { base, index } => {
                let b = self.eval(env, scope, base);
                let i = self.eval(env, scope, index);
                match (b, i) {
                    (Value::Poison, _) | (_, Value::Poison) => Value::Poison,
                    (Value::List(items), Value::Int(d)) => {
                        let Some(k) = d.as_const() else {
                            return self.undecidable(index.span, "a list index");
                        };
                        let len = items.len() as i64;
                        let j = if k < 0 { k + len } else { k };
                        if j < 0 || j >= len {
                            self.emit(
                                Diagnostic::error(
                                    codes::INDEX_OUT_OF_RANGE,
                                    format!("index {k} is out of range for a list of {len}"),
                                )
                                .at(index.span, "out of range")
                                .with_label(base.span, format!("this list has {len} items")),
                            );
                            return Value::Poison;
                        }
                        items[j as usize].clone()
                    }
                    (b, i) => {
                        self.emit(
                            Diagnostic::error(
                                codes::TYPE_MISMATCH,
                                format!("cannot index {} with {}", b.describe(), i.describe()),
                            )
                            .at(e.span, "lists are indexed with ints"),
                        );
                        Value::Poison
                    }
                }
            }
            ExprKind::If {
                cond,
                then,
                otherwise,
            } => match self.eval_condition(env, scope, cond) {
                Some(true) => self.eval(env, scope, then),
                Some(false) => self.eval(env, scope, otherwise),
                None => Value::Poison,
            },
            ExprKind::Chain { head, steps } => match self.eval(env, scope, head) {
                Value::Tensor(t) => self
                    .apply_steps(env, scope, t, steps)
                    .map_or(Value::Poison, Value::Tensor),
                Value::Poison => Value::Poison,
                other => {
                    self.emit(
                        Diagnostic::error(
                            codes::EXPECTED_TENSOR,
                            format!(
                                "`->` passes a tensor into layers, but this is {}",
                                other.describe()
                            ),
                        )
                        .at(head.span, format!("this is {}", other.type_name())),
                    );
                    Value::Poison
                }
            },
        }
    }

    fn overflow(&mut self, span: Span) -> Value {
        self.emit(
            Diagnostic::error(codes::OVERFLOW, "the result overflows 64 bits")
                .at(span, "too large"),
        );
        Value::Poison
    }

    fn eval_name(&mut self, env: &mut Env, path: &ast::Path) -> Value {
        if let [id] = path.segments.as_slice() {
            if let Some(v) = env.get(&id.name) {
                return v.clone();
            }
        }
        let name = path.text();
        let mut d = Diagnostic::error(codes::UNKNOWN_NAME, format!("unknown name `{name}`"))
            .at(path.span, "not defined");
        if self.prog.resolve_callee(env.file, path).is_some() {
            d = d.with_help(format!(
                "`{name}` is a layer; apply it to a tensor with `x -> {name}`"
            ));
        } else {
            let names: Vec<&str> = env.vars.keys().map(|s| s.as_str()).collect();
            if let Some(s) = did_you_mean(&name, names) {
                d = d.with_help(format!("did you mean `{s}`?"));
            }
        }
        self.emit(d);
        Value::Poison
    }

    fn eval_call(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        callee: &ast::Path,
        args: &[ast::Arg],
        span: Span,
    ) -> Value {
        let name = callee.text();
        match name.as_str() {
            "concat" => return self.eval_concat(env, scope, args, span),
            "min" | "max" | "len" => return self.eval_scalar_fn(env, scope, &name, args, span),
            _ => {}
        }
        let mut d = Diagnostic::error(
            codes::EXPECTED_TENSOR,
            format!("`{name}` is called without an input tensor"),
        )
        .at(callee.span, "needs an input");
        if self.prog.resolve_callee(env.file, callee).is_some() {
            let input = args
                .first()
                .map_or("x", |a| self.prog.sources.text(a.value.span));
            let rest: Vec<&str> = args
                .iter()
                .skip(1)
                .map(|a| self.prog.sources.text(a.span))
                .collect();
            let call = if rest.is_empty() {
                name.clone()
            } else {
                format!("{name}({})", rest.join(", "))
            };
            d = d.with_help(format!(
                "layers take their input from `->`: write `{input} -> {call}`"
            ));
        } else {
            d = Diagnostic::error(codes::UNKNOWN_NAME, format!("unknown function `{name}`"))
                .at(callee.span, "not defined")
                .with_help(
                    "the functions are `concat`, `min`, `max` and `len`; layers follow `->`",
                );
        }
        self.emit(d);
        Value::Poison
    }

    fn eval_scalar_fn(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        name: &str,
        args: &[ast::Arg],
        span: Span,
    ) -> Value {
        let values: Vec<Value> = args
            .iter()
            .map(|a| self.eval(env, scope, &a.value))
            .collect();
        if values.iter().any(Value::is_poison) {
            return Value::Poison;
        }
        match (name, values.as_slice()) {
            ("len", [Value::List(l)]) => Value::int(l.len() as i64),
            ("min" | "max", [Value::Int(a), Value::Int(b)]) => match (a.as_const(), b.as_const()) {
                (Some(x), Some(y)) => Value::int(if name == "min" { x.min(y) } else { x.max(y) }),
                _ => self.undecidable(span, &format!("`{name}`")),
            },
            ("min" | "max", [a, b]) => match (as_f64(a), as_f64(b)) {
                (Some(x), Some(y)) => Value::Float(if name == "min" { x.min(y) } else { x.max(y) }),
                _ => self.bad_call(name, span),
            },
            _ => self.bad_call(name, span),
        }
    }

    fn bad_call(&mut self, name: &str, span: Span) -> Value {
        let usage = match name {
            "len" => "len(list)",
            _ => "min(a, b) / max(a, b) on two numbers",
        };
        self.emit(
            Diagnostic::error(
                codes::TYPE_MISMATCH,
                format!("wrong arguments for `{name}`"),
            )
            .at(span, format!("expects {usage}")),
        );
        Value::Poison
    }

    fn eval_concat(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        args: &[ast::Arg],
        span: Span,
    ) -> Value {
        let mut tensors: Vec<Tensor> = Vec::new();
        let mut axis: i64 = 1;
        let mut axis_span = span;
        let mut poisoned = false;
        for a in args {
            let v = self.eval(env, scope, &a.value);
            match (&a.name, v) {
                (_, Value::Poison) => poisoned = true,
                (Some(n), v) if n.name == "axis" => match v {
                    Value::Int(d) if d.is_const() => {
                        axis = d.as_const().unwrap_or(1);
                        axis_span = a.value.span;
                    }
                    other => {
                        self.emit(
                            Diagnostic::error(
                                codes::TYPE_MISMATCH,
                                format!(
                                    "`concat` axis must be an int, but it is {}",
                                    other.describe()
                                ),
                            )
                            .at(a.value.span, "not an int"),
                        );
                        poisoned = true;
                    }
                },
                (Some(n), _) => {
                    self.emit(
                        Diagnostic::error(
                            codes::UNKNOWN_ARGUMENT,
                            format!("`concat` has no parameter `{}`", n.name),
                        )
                        .at(n.span, "unknown parameter")
                        .with_help("`concat(a, b, ..., axis=1)`"),
                    );
                    poisoned = true;
                }
                (None, Value::Tensor(t)) => tensors.push(t),
                (None, other) => {
                    self.emit(
                        Diagnostic::error(
                            codes::EXPECTED_TENSOR,
                            format!("`concat` joins tensors, but this is {}", other.describe()),
                        )
                        .at(a.value.span, "not a tensor"),
                    );
                    poisoned = true;
                }
            }
        }
        if poisoned {
            return Value::Poison;
        }
        if tensors.len() < 2 {
            self.emit(
                Diagnostic::error(
                    codes::MISSING_ARGUMENT,
                    "`concat` needs at least two tensors",
                )
                .at(span, "give two or more tensors"),
            );
            return Value::Poison;
        }
        let shapes: Vec<Vec<Dim>> = tensors
            .iter()
            .map(|t| self.model.shape(t.id).to_vec())
            .collect();
        let rank = shapes[0].len() as i64;
        let ax = if axis < 0 { axis + rank } else { axis };
        if ax < 0 || ax >= rank {
            self.emit(ops::out_of_range(
                "concat",
                "axis",
                &axis.to_string(),
                &format!("in {}..{}", -rank, rank - 1),
                axis_span,
            ));
            return Value::Poison;
        }
        let ax = ax as usize;
        let mut out = shapes[0].clone();
        for (t, s) in tensors.iter().zip(&shapes).skip(1) {
            let same_rank = s.len() == shapes[0].len();
            let bad_axis =
                (0..s.len().min(shapes[0].len())).find(|&i| i != ax && s[i] != shapes[0][i]);
            if !same_rank || bad_axis.is_some() {
                let what = match bad_axis {
                    Some(i) if same_rank => format!("axis {i}: {} against {}", shapes[0][i], s[i]),
                    _ => format!("rank: {} against {}", shapes[0].len(), s.len()),
                };
                let mut d = Diagnostic::error(
                    codes::CONCAT_MISMATCH,
                    format!("`concat` along axis {ax} needs every other axis equal, but they differ on {what}"),
                )
                .at(span, "these cannot be concatenated")
                .with_label(tensors[0].origin, format!("this is {}", shape_to_string(&shapes[0])))
                .with_label(t.origin, format!("this is {}", shape_to_string(s)));
                if same_rank && matches!(bad_axis, Some(2 | 3)) && ax == 1 {
                    d = d.with_help("the spatial sizes differ: give both branches the same strides and paddings (\"same\" padding keeps sizes)");
                }
                self.emit(d);
                return Value::Poison;
            }
            out[ax] = match out[ax].checked_add(&s[ax]) {
                Some(d) => d,
                None => return self.overflow(span),
            };
        }
        let path = scope.child("concat");
        let ids = tensors.iter().map(|t| t.id).collect();
        self.add_layer(path, Op::Concat { axis: ax }, ids, out, span)
            .map_or(Value::Poison, Value::Tensor)
    }

    #[allow(clippy::too_many_arguments)]
    fn binary(
        &mut self,
        scope: &mut Scope,
        op: BinOp,
        op_span: Span,
        l: Value,
        l_span: Span,
        r: Value,
        r_span: Span,
        l_expr: &Expr,
        r_expr: &Expr,
    ) -> Value {
        use Value::*;
        let cmp = |o: std::cmp::Ordering| {
            Bool(match op {
                BinOp::Lt => o.is_lt(),
                BinOp::Le => o.is_le(),
                BinOp::Gt => o.is_gt(),
                BinOp::Ge => o.is_ge(),
                BinOp::Eq => o.is_eq(),
                _ => o.is_ne(),
            })
        };
        match (op, l, r) {
            (_, Poison, _) | (_, _, Poison) => Poison,
            (BinOp::Add | BinOp::Mul, Tensor(a), Tensor(b)) => {
                self.elementwise(scope, op, op_span, a, b, l_expr, r_expr)
            }
            (BinOp::And, Bool(a), Bool(b)) => Bool(a && b),
            (BinOp::Or, Bool(a), Bool(b)) => Bool(a || b),
            (BinOp::Eq, Bool(a), Bool(b)) => Bool(a == b),
            (BinOp::Ne, Bool(a), Bool(b)) => Bool(a != b),
            (BinOp::Eq, Str(a), Str(b)) => Bool(a == b),
            (BinOp::Ne, Str(a), Str(b)) => Bool(a != b),
            (
                BinOp::Eq | BinOp::Ne | BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge,
                Int(a),
                Int(b),
            ) => match a.checked_sub(&b).and_then(|d| d.as_const()) {
                Some(diff) => cmp(diff.cmp(&0)),
                None if a == b => cmp(std::cmp::Ordering::Equal),
                None => self.undecidable(l_span.to(r_span), "this comparison"),
            },
            (BinOp::Add, Int(a), Int(b)) => a
                .checked_add(&b)
                .map_or_else(|| self.overflow(op_span), Int),
            (BinOp::Sub, Int(a), Int(b)) => a
                .checked_sub(&b)
                .map_or_else(|| self.overflow(op_span), Int),
            (BinOp::Mul, Int(a), Int(b)) => a
                .checked_mul(&b)
                .map_or_else(|| self.overflow(op_span), Int),
            (BinOp::Div | BinOp::Rem, Int(a), Int(b)) => {
                let Some(k) = b.as_const() else {
                    return self.undecidable(r_span, "a division by a symbolic size");
                };
                if k == 0 {
                    self.emit(
                        Diagnostic::error(codes::DIVISION_BY_ZERO, "division by zero")
                            .at(r_span, "this is zero"),
                    );
                    return Poison;
                }
                let result = if k < 0 {
                    match (a.as_const(), op) {
                        (Some(x), BinOp::Div) => x.checked_div_euclid(k).map(Dim::constant),
                        (Some(x), _) => x.checked_rem_euclid(k).map(Dim::constant),
                        (None, _) => {
                            return self.undecidable(r_span, "a division by a negative number")
                        }
                    }
                } else if op == BinOp::Div {
                    a.floor_div(k)
                } else {
                    a.rem(k)
                };
                result.map_or_else(|| self.overflow(op_span), Int)
            }
            (op, a, b)
                if as_f64(&a).is_some()
                    && as_f64(&b).is_some()
                    && !matches!(op, BinOp::And | BinOp::Or) =>
            {
                let (x, y) = (as_f64(&a).unwrap_or(0.0), as_f64(&b).unwrap_or(0.0));
                match op {
                    BinOp::Add => Float(x + y),
                    BinOp::Sub => Float(x - y),
                    BinOp::Mul => Float(x * y),
                    BinOp::Div | BinOp::Rem if y == 0.0 => {
                        self.emit(
                            Diagnostic::error(codes::DIVISION_BY_ZERO, "division by zero")
                                .at(r_span, "this is zero"),
                        );
                        Poison
                    }
                    BinOp::Div => Float(x / y),
                    BinOp::Rem => Float(x.rem_euclid(y)),
                    _ => match x.partial_cmp(&y) {
                        Some(o) => cmp(o),
                        None => Bool(false),
                    },
                }
            }
            (op, a, b) => {
                let mut d = Diagnostic::error(
                    codes::TYPE_MISMATCH,
                    format!(
                        "`{}` cannot combine {} and {}",
                        op.symbol(),
                        a.type_name(),
                        b.type_name()
                    ),
                )
                .at(op_span, "here")
                .with_label(l_span, format!("this is {}", a.type_name()))
                .with_label(r_span, format!("this is {}", b.type_name()));
                if matches!(a, Tensor(_)) && matches!(b, Tensor(_)) {
                    d = d.with_help("tensors combine with `+` (residual add), `*` (elementwise product) or `concat(a, b)`");
                }
                self.emit(d);
                Poison
            }
        }
    }

    /// `a + b` and `a * b` on tensors, with NumPy broadcasting.
    #[allow(clippy::too_many_arguments)]
    fn elementwise(
        &mut self,
        scope: &mut Scope,
        op: BinOp,
        op_span: Span,
        a: Tensor,
        b: Tensor,
        a_expr: &Expr,
        b_expr: &Expr,
    ) -> Value {
        let sa = self.model.shape(a.id).to_vec();
        let sb = self.model.shape(b.id).to_vec();
        let rank = sa.len().max(sb.len());
        let one = Dim::constant(1);
        let mut out = Vec::with_capacity(rank);
        let mut bad_axis = None;
        for i in 0..rank {
            let da = (i + sa.len()).checked_sub(rank).map_or(&one, |j| &sa[j]);
            let db = (i + sb.len()).checked_sub(rank).map_or(&one, |j| &sb[j]);
            if da == db || *db == one {
                out.push(da.clone());
            } else if *da == one {
                out.push(db.clone());
            } else {
                bad_axis.get_or_insert(i);
                out.push(da.clone());
            }
        }
        let (name, op_enum) = match op {
            BinOp::Add => ("add", Op::Add),
            _ => ("mul", Op::Mul),
        };
        if let Some(axis) = bad_axis {
            let ta = shape_to_string(&sa);
            let tb = shape_to_string(&sb);
            let mut d = Diagnostic::error(
                codes::SHAPE_MISMATCH,
                format!("cannot {name} {ta} and {tb}: they differ on axis {axis}"),
            )
            .at(
                op_span,
                format!("`{}` needs equal (or broadcastable) shapes", op.symbol()),
            )
            .with_label(a.origin, format!("this is {ta}"))
            .with_label(b.origin, format!("this is {tb}"));
            let distance = |v: ValueId| {
                let input = self.frames.last().and_then(|f| f.input)?;
                layers_between(&self.model, input, v)
            };
            let from_input = [distance(a.id), distance(b.id)];
            if let Some(help) = shortcut_help(&sa, &sb, a_expr, b_expr, from_input, self.prog) {
                d = d.with_help(help);
            }
            self.emit(d);
            return Value::Poison;
        }
        let path = scope.child(name);
        self.add_layer(path, op_enum, vec![a.id, b.id], out, op_span)
            .map_or(Value::Poison, Value::Tensor)
    }
}

fn as_f64(v: &Value) -> Option<f64> {
    match v {
        Value::Float(f) => Some(*f),
        Value::Int(d) => d.as_const().map(|i| i as f64),
        _ => None,
    }
}

/// How many layers lie between `from` and `to` on the shortest path that
/// produces `to` from `from` (0 when they are the same value), or `None`
/// when `to` does not derive from `from`.
fn layers_between(model: &Model, from: ValueId, to: ValueId) -> Option<usize> {
    let mut frontier = vec![to];
    let mut seen = std::collections::HashSet::new();
    for depth in 0..=model.layers.len() {
        if frontier.contains(&from) {
            return Some(depth);
        }
        let mut next = Vec::new();
        for v in frontier {
            if !seen.insert(v) {
                continue;
            }
            if let Some(p) = model.values.get(v.0 as usize).and_then(|i| i.producer) {
                next.extend(model.layers[p].inputs.iter().copied());
            }
        }
        if next.is_empty() {
            return None;
        }
        frontier = next;
    }
    None
}

/// For a residual add of mismatched [N, C, H, W] tensors: the projection
/// that makes the shortcut fit. `from_input` is how many layers separate
/// each operand from the block's input.
fn shortcut_help(
    sa: &[Dim],
    sb: &[Dim],
    a_expr: &Expr,
    b_expr: &Expr,
    from_input: [Option<usize>; 2],
    prog: &Program,
) -> Option<String> {
    if sa.len() != 4 || sb.len() != 4 || sa[0] != sb[0] {
        return None;
    }
    let dims = |s: &[Dim]| -> Option<[i64; 3]> {
        Some([s[1].as_const()?, s[2].as_const()?, s[3].as_const()?])
    };
    let (da, db) = (dims(sa)?, dims(sb)?);
    // The shortcut is the operand that is (or is closer to) the block's
    // input, whichever side of `+` it is on. Without that (an add outside a
    // block), the operand with the larger feature map; with equal sizes,
    // the one that is a plain name.
    let a_is_name = matches!(a_expr.kind, ExprKind::Name(_));
    let a_is_shortcut = match from_input {
        [Some(da_in), Some(db_in)] if da_in != db_in => da_in < db_in,
        [Some(_), None] => true,
        [None, Some(_)] => false,
        _ if da[1] != db[1] => da[1] > db[1],
        _ => a_is_name || !matches!(b_expr.kind, ExprKind::Name(_)),
    };
    let (from, to, expr, target) = if a_is_shortcut {
        (da, db, a_expr, sb)
    } else {
        (db, da, b_expr, sa)
    };
    let stride = (1..=from[1].max(1))
        .find(|s| (from[1] + s - 1) / s == to[1] && (from[2] + s - 1) / s == to[2])?;
    let name = prog.sources.text(expr.span);
    let name = if name.len() <= 20 {
        format!(" `{name}`")
    } else {
        String::new()
    };
    let stride_text = if stride > 1 {
        format!(" with stride {stride}")
    } else {
        String::new()
    };
    let stride_arg = if stride > 1 {
        format!(", stride={stride}")
    } else {
        String::new()
    };
    Some(format!(
        "the shortcut{name} needs a 1x1 conv2d{stride_text} to reach {}: `{} -> conv2d({}, 1{stride_arg}, bias=false) -> batch_norm`",
        shape_to_string(target),
        if name.is_empty() { "x".to_string() } else { name.trim().trim_matches('`').to_string() },
        to[0]
    ))
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
