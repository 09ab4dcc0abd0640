//! Binding call arguments to a layer's parameters.

use crate::check::dim::Dim;
use crate::check::suggest::{did_you_mean, foreign_parameter};
use crate::check::value::Value;
use crate::diag::Diagnostic;
use crate::diag_codes as codes;
use crate::syntax::source::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ArgTy {
    Int,
    Float,
    Bool,
    /// `3` or `[3, 5]` (height, width).
    IntPair,
    /// `1`, `[1, 2]`, `"same"` or `"valid"`.
    Padding,
    /// A list of sizes, for `reshape`.
    Sizes,
}

impl ArgTy {
    fn describe(self) -> &'static str {
        match self {
            ArgTy::Int => "an int",
            ArgTy::Float => "a float",
            ArgTy::Bool => "a bool",
            ArgTy::IntPair => "an int or a pair [height, width]",
            ArgTy::Padding => "an int, a pair [height, width], \"same\" or \"valid\"",
            ArgTy::Sizes => "a list of sizes",
        }
    }

    fn accepts(self, v: &Value) -> bool {
        let is_int = |v: &Value| matches!(v, Value::Int(_));
        match self {
            ArgTy::Int => is_int(v),
            ArgTy::Float => matches!(v, Value::Float(_) | Value::Int(_)),
            ArgTy::Bool => matches!(v, Value::Bool(_)),
            ArgTy::IntPair => {
                is_int(v) || matches!(v, Value::List(l) if l.len() == 2 && l.iter().all(is_int))
            }
            ArgTy::Padding => {
                ArgTy::IntPair.accepts(v)
                    || matches!(v, Value::Str(s) if s == "same" || s == "valid")
            }
            ArgTy::Sizes => matches!(v, Value::List(l) if l.iter().all(is_int)),
        }
    }
}

#[derive(Clone, Copy, Debug)]
pub enum Default {
    Required,
    Int(i64),
    Float(f64),
    Bool(bool),
    Str(&'static str),
    /// Absent unless given (`stride` of pooling defaults to the kernel).
    Absent,
}

#[derive(Clone, Copy, Debug)]
pub struct ParamSpec {
    pub name: &'static str,
    pub ty: ArgTy,
    pub default: Default,
}

pub const fn req(name: &'static str, ty: ArgTy) -> ParamSpec {
    ParamSpec {
        name,
        ty,
        default: Default::Required,
    }
}

pub const fn opt(name: &'static str, ty: ArgTy, default: Default) -> ParamSpec {
    ParamSpec { name, ty, default }
}

#[derive(Clone, Debug)]
pub struct ArgVal {
    pub value: Value,
    pub span: Span,
}

/// One argument as written: an optional name, its value and span.
pub struct GivenArg {
    pub name: Option<(String, Span)>,
    pub value: Value,
    pub span: Span,
}

/// What the binder needs to know of a parameter; implemented by layer
/// parameters ([`ParamSpec`]) and block parameters.
pub trait Slot {
    fn name(&self) -> &str;
    fn accepts(&self, v: &Value) -> bool;
    fn type_text(&self) -> String;
    /// `None`: required. `Some(None)`: may stay empty (the caller fills it).
    fn default_value(&self) -> Option<Option<Value>>;
}

impl Slot for ParamSpec {
    fn name(&self) -> &str {
        self.name
    }

    fn accepts(&self, v: &Value) -> bool {
        self.ty.accepts(v)
    }

    fn type_text(&self) -> String {
        self.ty.describe().to_string()
    }

    fn default_value(&self) -> Option<Option<Value>> {
        match self.default {
            Default::Required => None,
            Default::Int(v) => Some(Some(Value::Int(Dim::constant(v)))),
            Default::Float(v) => Some(Some(Value::Float(v))),
            Default::Bool(v) => Some(Some(Value::Bool(v))),
            Default::Str(v) => Some(Some(Value::Str(v.to_string()))),
            Default::Absent => Some(None),
        }
    }
}

/// Matches the arguments of a layer call to the layer's parameters.
pub fn bind_args(
    what: &str,
    params: &[ParamSpec],
    given: Vec<GivenArg>,
    call_span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Option<ArgVal>>> {
    bind_generic(what, params, given, call_span, diags)
}

/// Matches given arguments to parameters. Every problem is reported; the
/// result is `None` when any argument could not be bound.
/// One argument as the binder sees it: an optional name, a value of any
/// kind (a checked `Value`, or a training-section literal) and its span.
pub type Written<T> = (Option<(String, Span)>, T, Span);

/// Matches written arguments to parameter `names`, by position (first)
/// and by name: the one binder of layer, block and training-section calls.
/// Reports a positional argument after a named one, too many arguments, an
/// unknown name (with the nearest one) and an argument given twice; what
/// matches comes back in parameter order, with its span.
pub fn match_args<T>(
    what: &str,
    names: &[&str],
    given: Vec<Written<T>>,
    diags: &mut Vec<Diagnostic>,
) -> (Vec<Option<(T, Span)>>, bool) {
    let mut slots: Vec<Option<(T, Span)>> = names.iter().map(|_| None).collect();
    let mut ok = true;
    let mut positional = 0;
    let mut seen_named = false;
    for (name, value, span) in given {
        let index = match &name {
            None => {
                if seen_named {
                    diags.push(
                        Diagnostic::error(codes::SYNTAX, "positional argument after a named one")
                            .at(span, "give this argument a name")
                            .with_help("put positional arguments first"),
                    );
                    ok = false;
                    continue;
                }
                positional += 1;
                if positional > names.len() {
                    let d = if names.is_empty() {
                        Diagnostic::error(
                            codes::TOO_MANY_ARGUMENTS,
                            format!("`{what}` takes no arguments"),
                        )
                        .at(span, "not expected")
                        .with_help(format!("write `{what}` without parentheses"))
                    } else {
                        Diagnostic::error(
                            codes::TOO_MANY_ARGUMENTS,
                            format!("`{what}` takes at most {} arguments", names.len()),
                        )
                        .at(span, "one too many")
                        .with_help(format!("its parameters are: {}", names.join(", ")))
                    };
                    diags.push(d);
                    ok = false;
                    continue;
                }
                positional - 1
            }
            Some((name, name_span)) => {
                seen_named = true;
                let ours = foreign_parameter(name).and_then(|(ours, whose)| {
                    Some((ours, whose, names.iter().position(|p| *p == ours)?))
                });
                match (names.iter().position(|p| p == name), ours) {
                    (Some(i), _) => i,
                    // Bound under our name after the error, so that the rest
                    // of the network is still checked.
                    (None, Some((ours, whose, i))) => {
                        diags.push(
                            Diagnostic::error(
                                codes::UNKNOWN_ARGUMENT,
                                format!("`{what}` has no parameter `{name}`"),
                            )
                            .at(*name_span, format!("{whose} name for `{ours}`"))
                            .with_help(format!("write `{ours}=` instead of `{name}=`")),
                        );
                        i
                    }
                    (None, None) => {
                        let mut d = Diagnostic::error(
                            codes::UNKNOWN_ARGUMENT,
                            format!("`{what}` has no parameter `{name}`"),
                        )
                        .at(*name_span, "unknown parameter");
                        d = match did_you_mean(name, names.iter().copied()) {
                            Some(s) => d.with_help(format!("did you mean `{s}`?")),
                            None if names.is_empty() => {
                                d.with_help(format!("`{what}` takes no arguments"))
                            }
                            None => {
                                d.with_help(format!("its parameters are: {}", names.join(", ")))
                            }
                        };
                        diags.push(d);
                        ok = false;
                        continue;
                    }
                }
            }
        };
        if let Some((_, prev)) = &slots[index] {
            diags.push(
                Diagnostic::error(
                    codes::DUPLICATE_ARGUMENT,
                    format!("`{}` is given twice", names[index]),
                )
                .at(span, "given again here")
                .with_label(*prev, "first given here"),
            );
            ok = false;
            continue;
        }
        slots[index] = Some((value, span));
    }
    (slots, ok)
}

pub fn bind_generic<P: Slot>(
    what: &str,
    params: &[P],
    given: Vec<GivenArg>,
    call_span: Span,
    diags: &mut Vec<Diagnostic>,
) -> Option<Vec<Option<ArgVal>>> {
    let names: Vec<&str> = params.iter().map(|p| p.name()).collect();
    let written = given
        .into_iter()
        .map(|a| (a.name, a.value, a.span))
        .collect();
    let (matched, mut ok) = match_args(what, &names, written, diags);
    let mut slots: Vec<Option<ArgVal>> = vec![None; params.len()];
    for (index, m) in matched.into_iter().enumerate() {
        let Some((value, span)) = m else { continue };
        let arg = GivenArg {
            name: None,
            value,
            span,
        };
        if arg.value.is_poison() {
            ok = false;
            continue;
        }
        let spec = &params[index];
        if !spec.accepts(&arg.value) {
            diags.push(
                Diagnostic::error(
                    codes::TYPE_MISMATCH,
                    format!(
                        "`{what}` argument `{}` must be {}, but it is {}",
                        names[index],
                        spec.type_text(),
                        arg.value.describe()
                    ),
                )
                .at(
                    arg.span,
                    format!("this is {}", article(arg.value.type_name())),
                ),
            );
            ok = false;
            continue;
        }
        slots[index] = Some(ArgVal {
            value: arg.value,
            span: arg.span,
        });
    }
    for (slot, spec) in slots.iter_mut().zip(params) {
        if slot.is_some() {
            continue;
        }
        match spec.default_value() {
            None => {
                diags.push(
                    Diagnostic::error(
                        codes::MISSING_ARGUMENT,
                        format!("`{what}` needs an argument `{}`", spec.name()),
                    )
                    .at(call_span, format!("`{}` is missing", spec.name()))
                    .with_help(format!(
                        "pass it by position or by name: `{what}(..., {}=...)`",
                        spec.name()
                    )),
                );
                ok = false;
            }
            Some(Some(value)) => {
                *slot = Some(ArgVal {
                    value,
                    span: call_span,
                })
            }
            Some(None) => {}
        }
    }
    ok.then_some(slots)
}

fn article(type_name: &str) -> String {
    match type_name.chars().next() {
        Some('a' | 'e' | 'i' | 'o' | 'u') => format!("an {type_name}"),
        _ => format!("a {type_name}"),
    }
}

/// A concrete integer, or a diagnostic saying that it must be one.
pub fn known_int(
    v: &Value,
    span: Span,
    param: &str,
    op: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<i64> {
    match v {
        Value::Int(d) => match d.as_const() {
            Some(x) => Some(x),
            None => {
                diags.push(
                    Diagnostic::error(
                        codes::SYMBOLIC_SIZE,
                        format!(
                            "`{op}` argument `{param}` must be a known number, but it is `{d}`"
                        ),
                    )
                    .at(span, "depends on a symbolic dimension"),
                );
                None
            }
        },
        _ => None,
    }
}

pub fn known_pair(
    v: &Value,
    span: Span,
    param: &str,
    op: &str,
    diags: &mut Vec<Diagnostic>,
) -> Option<[i64; 2]> {
    match v {
        Value::List(items) if items.len() == 2 => {
            let a = known_int(&items[0], span, param, op, diags)?;
            let b = known_int(&items[1], span, param, op, diags)?;
            Some([a, b])
        }
        _ => {
            let a = known_int(v, span, param, op, diags)?;
            Some([a, a])
        }
    }
}
