//! The steps of a `->` chain: layer calls, block calls, loops and
//! conditionals, each appending layers to the model.

use super::*;
use crate::syntax::ast::{Ident, NamePart, StepName};

impl<'p> Checker<'p> {
    // ---- steps -------------------------------------------------------------

    pub(super) fn apply_steps(
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
            self.model.steps.push((step.span, input.id));
        }
        Some(input)
    }

    /// The text of `as NAME`; a computed name's values are evaluated here.
    fn step_name(&mut self, env: &mut Env, scope: &mut Scope, name: &StepName) -> Option<String> {
        let (parts, span) = match name {
            StepName::Fixed(id) => return Some(id.name.clone()),
            StepName::Computed { parts, span } => (parts, *span),
        };
        let mut text = String::new();
        for part in parts {
            match part {
                NamePart::Text(t) => text.push_str(t),
                NamePart::Value(e) => match self.eval(env, scope, e) {
                    Value::Int(d) if d.as_const().is_some() => {
                        text.push_str(&d.to_string());
                    }
                    Value::Str(s) => text.push_str(&s),
                    Value::Poison => return None,
                    other => {
                        self.emit(
                            Diagnostic::error(
                                codes::BAD_LAYER_NAME,
                                format!(
                                    "a layer name takes whole numbers and strings, but this is {}",
                                    other.describe()
                                ),
                            )
                            .at(e.span, format!("a {} value", other.type_name()))
                            .with_help("use a loop variable or a parameter that is a whole number"),
                        );
                        return None;
                    }
                },
            }
        }
        let valid = !text.is_empty() && text.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
        if !valid {
            self.emit(
                Diagnostic::error(
                    codes::BAD_LAYER_NAME,
                    format!("`{text}` is not a layer name"),
                )
                .at(span, "the name this builds")
                .with_help(
                    "a layer name has letters, digits and `_` only (a `.` would make a path)",
                ),
            );
            return None;
        }
        Some(text)
    }

    pub(super) fn apply_step(
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
        let name = match &step.name {
            Some(n) => Some(self.step_name(env, scope, n)?),
            None => None,
        };
        if let (Some(name), StepKind::Repeat { .. } | StepKind::For { .. } | StepKind::If { .. }) =
            (&name, &step.kind)
        {
            scope.next += 1;
            let mut inner = Scope {
                prefix: scope.child(name),
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
                let name = name.unwrap_or_else(|| scope.next.to_string());
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
            StepKind::Scope {
                name: own_name,
                steps,
            } => {
                // Its own name, else the one `as` gives, else its position.
                let name = match own_name {
                    Some(n) => n.name.clone(),
                    None => name.unwrap_or_else(|| scope.next.to_string()),
                };
                scope.next += 1;
                let mut inner = Scope {
                    prefix: scope.child(&name),
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
                let head = (var, start, end.as_ref());
                self.for_each(env, scope, head, var.span, input, |c, env, scope, x| {
                    c.apply_steps(env, scope, x, steps)
                })
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
    pub(super) fn eval_condition(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        cond: &Expr,
    ) -> Option<bool> {
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

    pub(super) fn eval_count(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        count: &Expr,
    ) -> Option<i64> {
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

    /// A `for` loop, of steps or of statements: `each` once per value of
    /// `head`'s range (`start..end`, or a list) with its variable bound to
    /// it (and the
    /// value recorded for hover), threading `acc`; stops at the first
    /// `None` or when the work bound (charged at `work`) is spent. What the
    /// variable named before the loop is restored after it.
    pub(super) fn for_each<T>(
        &mut self,
        env: &mut Env,
        scope: &mut Scope,
        head: (&Ident, &Expr, Option<&Expr>),
        work: Span,
        acc: T,
        mut each: impl FnMut(&mut Self, &mut Env, &mut Scope, T) -> Option<T>,
    ) -> Option<T> {
        let (var, start, end) = head;
        let items = self.for_items(env, scope, start, end)?;
        let saved = env.vars.remove(&var.name);
        let mut acc = Some(acc);
        for item in items {
            let Some(a) = acc.take() else { break };
            if self.aborted || !self.spend(work) {
                break;
            }
            self.model.name_values.push((var.span, item.describe()));
            env.set(&var.name, item);
            acc = each(self, env, scope, a);
        }
        env.vars.remove(&var.name);
        if let Some(b) = saved {
            env.vars.insert(var.name.clone(), b);
        }
        acc
    }

    pub(super) fn for_items(
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

    pub(super) fn known_int(&mut self, v: &Value, span: Span, what: &str) -> Option<i64> {
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

    pub(super) fn eval_args(
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
    pub(super) fn apply_op(
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

    /// A layer named as a scope that already holds layers, or inside a
    /// scope named as an existing layer (`features.0` a convolution, and
    /// `features.0.0` another): distinct parameter names, but no PyTorch
    /// module can be both a layer and the container of another.
    fn layer_inside_layer(&self, path: &str, span: Span) -> Option<Diagnostic> {
        // The new layer is either the outer one (a scope of that name holds
        // layers already) or the inner one (inside an existing layer's
        // name); the label goes on the other.
        let (outer, inner, other, other_label) =
            if let Some((inner, inner_span)) = self.scope_paths.get(path) {
                (
                    path,
                    inner.as_str(),
                    *inner_span,
                    format!("`{inner}`, inside `{path}`"),
                )
            } else {
                let outer = path
                    .match_indices('.')
                    .map(|(dot, _)| &path[..dot])
                    .find(|scope| self.layer_paths.contains_key(*scope))?;
                (
                    outer,
                    path,
                    self.layer_paths[outer],
                    format!("the layer `{outer}`"),
                )
            };
        let error = Diagnostic::error(
            codes::DUPLICATE_LAYER_NAME,
            format!("`{outer}` names a layer and also the scope that holds `{inner}`"),
        )
        .at(span, "this layer's name collides")
        .with_help(
            "PyTorch cannot load these parameters: a module is a layer or a container, \
             not both; give one of them another name with `as`",
        );
        Some(if other == span {
            error
        } else {
            error.with_label(other, other_label)
        })
    }

    pub(super) fn add_layer(
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
                let error = Diagnostic::error(
                    codes::DUPLICATE_LAYER_NAME,
                    format!("two layers are named `{path}`, so their parameters would collide"),
                );
                // One step that runs twice (a loop, `repeat`, or a block
                // called twice under one name) would get two labels on the
                // same span, "first" and "second", which explains nothing.
                let error = if prev == span {
                    error
                        .at(span, "this step runs more than once under this name")
                        .with_help(
                            "a loop, a `repeat` or a block used twice under one name runs it \
                             again: make the name differ each time, as `as \"c{i}\"` does with \
                             a loop variable",
                        )
                } else {
                    error
                        .at(span, "second layer with this name")
                        .with_label(prev, "first layer with this name")
                        .with_help("give one of them another name with `as`")
                };
                self.emit(error);
                return None;
            }
            if let Some(error) = self.layer_inside_layer(&path, span) {
                self.emit(error);
                return None;
            }
            self.layer_paths.insert(path.clone(), span);
            for (dot, _) in path.match_indices('.') {
                self.scope_paths
                    .entry(path[..dot].to_string())
                    .or_insert_with(|| (path.clone(), span));
            }
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
}
