//! Instantiating definitions: binding arguments and the `input` pattern,
//! running a body, checking annotations.

use super::*;

impl<'p> Checker<'p> {
    // ---- definitions -------------------------------------------------------

    pub(super) fn instantiate(
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

    /// Runs a `let` (binding its name) or a statement loop (its body once
    /// per value, in the same names, so that rebinding threads a value
    /// through). `None` when a loop's range fails or work runs out.
    fn loop_or_let(&mut self, env: &mut Env, scope: &mut Scope, stmt: &Stmt) -> Option<()> {
        match stmt {
            Stmt::Let {
                name, shape, value, ..
            } => {
                let v = self.eval(env, scope, value);
                let v = match (shape, &v) {
                    (Some(s), Value::Tensor(t)) => {
                        let t = *t;
                        if self.check_annotation(env, s, t, &format!("`{}`", name.name)) {
                            v
                        } else {
                            Value::Poison
                        }
                    }
                    _ => v,
                };
                if let Value::Tensor(t) = &v {
                    self.model.names.push((name.span, t.id));
                }
                env.set(&name.name, v);
                Some(())
            }
            Stmt::For {
                var,
                start,
                end,
                body,
                span,
            } => {
                // The loop variable is the loop's; what the body binds stays.
                let head = (var, start, end.as_ref());
                self.for_each(env, scope, head, *span, (), |c, env, scope, ()| {
                    body.iter().try_for_each(|s| c.loop_or_let(env, scope, s))
                })
            }
            // The grammar keeps `input` and `return` out of loops.
            Stmt::Input { .. } | Stmt::Return { .. } => Some(()),
        }
    }

    pub(super) fn instantiate_body(
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
                            if let Some(t) = t {
                                self.model.names.push((name.span, t.id));
                            }
                            let v = t.map_or(Value::Poison, Value::Tensor);
                            env.set(&name.name, v);
                        }
                        Stmt::Let { .. } | Stmt::For { .. } => {
                            self.loop_or_let(env, &mut scope, stmt)?
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
    pub(super) fn bind_params(
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
            if !matches!(value, Value::Poison | Value::Tensor(_)) {
                self.model.name_values.push((p.name.span, value.describe()));
            }
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
    pub(super) fn default_sizes(
        &mut self,
        env: &mut Env,
        pattern: &ast::Shape,
    ) -> Option<Vec<Option<i64>>> {
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
    pub(super) fn declared_shape(
        &mut self,
        env: &mut Env,
        pattern: &ast::Shape,
        given: &[Dim],
    ) -> String {
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
    pub(super) fn bind_input(
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
                                        self.model.name_values.push((id.span, d.to_string()));
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
    pub(super) fn unify(
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
                        self.model.name_values.push((id.span, text.clone()));
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
    pub(super) fn check_annotation(
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
}
