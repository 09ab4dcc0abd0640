//! Expressions: names, arithmetic on sizes, calls, `cat`, and the
//! elementwise `+` and `*` on tensors with their residual fix-it.

use super::*;

impl<'p> Checker<'p> {
    // ---- expressions -------------------------------------------------------

    pub(super) fn eval_dim(&mut self, env: &mut Env, e: &Expr) -> Option<Dim> {
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

    pub(super) fn eval(&mut self, env: &mut Env, scope: &mut Scope, e: &Expr) -> Value {
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

    pub(super) fn overflow(&mut self, span: Span) -> Value {
        self.emit(
            Diagnostic::error(codes::OVERFLOW, "the result overflows 64 bits")
                .at(span, "too large"),
        );
        Value::Poison
    }

    pub(super) fn eval_name(&mut self, env: &mut Env, path: &ast::Path) -> Value {
        if let [id] = path.segments.as_slice() {
            if let Some(v) = env.get(&id.name) {
                match v {
                    Value::Tensor(t) => self.model.names.push((path.span, t.id)),
                    Value::Poison => {}
                    other => self.model.name_values.push((path.span, other.describe())),
                }
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

    pub(super) fn eval_call(
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
            let operands: Vec<&str> = args
                .iter()
                .map(|a| self.prog.sources.text(a.span))
                .collect();
            let help = match (name.as_str(), operands.as_slice()) {
                ("add" | "sum" | "plus", [_, _, ..]) => {
                    format!("tensors are added with `+`: `{}`", operands.join(" + "))
                }
                ("mul" | "multiply", [_, _, ..]) => format!(
                    "tensors are multiplied elementwise with `*`: `{}`",
                    operands.join(" * ")
                ),
                ("cat" | "concatenate", [_, ..]) => format!(
                    "tensors are concatenated along the channels with `concat`: `concat({})`",
                    operands.join(", ")
                ),
                _ => "the functions are `concat`, `min`, `max` and `len`; layers follow `->`"
                    .to_string(),
            };
            d = Diagnostic::error(codes::UNKNOWN_NAME, format!("unknown function `{name}`"))
                .at(callee.span, "not defined")
                .with_help(help);
        }
        self.emit(d);
        Value::Poison
    }

    pub(super) fn eval_scalar_fn(
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

    pub(super) fn bad_call(&mut self, name: &str, span: Span) -> Value {
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

    pub(super) fn eval_concat(
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
    pub(super) fn binary(
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
    pub(super) fn elementwise(
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
