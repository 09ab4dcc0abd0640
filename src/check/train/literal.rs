//! The training section's values as written (a small literal language:
//! numbers, strings, names, lists, calls) and the binder that matches a
//! call's arguments to the names it takes.

use super::*;

/// A call as written: its name, the span of the name, and its arguments.
/// One argument of a call in a training setting: its name and the name's
/// span when it has one, the value, and the value's span.
pub(super) type CallArg = (Option<(String, Span)>, V, Span);
pub(super) type Call = (String, Span, Vec<CallArg>);

/// A setting's value as written: the training section has no variables, so
/// this is a small literal language.
#[derive(Clone, Debug)]
pub(super) enum V {
    /// Integers stay integers: a seed above 2^53 must not be rounded.
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Word(String),
    List(Vec<(V, Span)>),
    Call(String, Span, Vec<CallArg>),
}

impl V {
    /// The value as a number, where a number is wanted (an int will do).
    pub(super) fn number(&self) -> Option<f64> {
        match self {
            V::Int(v) => Some(*v as f64),
            V::Float(v) => Some(*v),
            _ => None,
        }
    }

    pub(super) fn describe(&self) -> &'static str {
        match self {
            V::Int(_) => "an int",
            V::Float(_) => "a number",
            V::Str(_) => "a string",
            V::Bool(_) => "a bool",
            V::Word(_) => "a name",
            V::List(_) => "a list",
            V::Call(..) => "a call",
        }
    }
}

pub(super) struct Ctx<'a> {
    pub(super) diags: Vec<Diagnostic>,
    pub(super) prog: &'a Program,
}

impl Ctx<'_> {
    pub(super) fn err(
        &mut self,
        code: &'static str,
        msg: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(code, msg).at(span, label));
    }

    pub(super) fn lower(&mut self, e: &Expr) -> Option<V> {
        Some(match &e.kind {
            ExprKind::Int(v) => V::Int(*v),
            ExprKind::Float(v) => V::Float(*v),
            ExprKind::Bool(b) => V::Bool(*b),
            ExprKind::Str(s) => V::Str(s.clone()),
            ExprKind::Paren(inner) => self.lower(inner)?,
            ExprKind::Invalid => return None,
            ExprKind::Unary { ops, operand } if ops.iter().all(|(o, _)| *o == UnOp::Neg) => {
                let odd = ops.len() % 2 == 1;
                match self.lower(operand)? {
                    V::Int(v) if !odd => V::Int(v),
                    V::Int(v) => match v.checked_neg() {
                        Some(n) => V::Int(n),
                        None => {
                            self.err(
                                codes::OVERFLOW,
                                format!("-({v}) does not fit in 64 bits"),
                                e.span,
                                "overflows",
                            );
                            return None;
                        }
                    },
                    V::Float(v) => V::Float(if odd { -v } else { v }),
                    _ => {
                        self.err(
                            codes::INVALID_SETTING,
                            "only numbers can be negated",
                            e.span,
                            "not a number",
                        );
                        return None;
                    }
                }
            }
            ExprKind::Name(p) if p.segments.len() == 1 => V::Word(p.segments[0].name.clone()),
            ExprKind::List(items) => {
                let mut out = Vec::new();
                for i in items {
                    out.push((self.lower(i)?, i.span));
                }
                V::List(out)
            }
            ExprKind::Call { callee, args } => {
                let mut out = Vec::new();
                for a in args {
                    out.push((
                        a.name.as_ref().map(|n| (n.name.clone(), n.span)),
                        self.lower(&a.value)?,
                        a.value.span,
                    ));
                }
                V::Call(callee.text(), callee.span, out)
            }
            _ => {
                self.err(
                    codes::INVALID_SETTING,
                    "training settings are literals, names, lists and calls",
                    e.span,
                    "not allowed here",
                );
                return None;
            }
        })
    }
}

/// Named arguments of a call, checked against the allowed names.
pub(super) struct Args {
    pub(super) what: String,
    pub(super) span: Span,
    pub(super) items: Vec<(String, V, Span)>,
}

impl Args {
    /// `positional` names the parameters that may be given by position.
    pub(super) fn new(
        ctx: &mut Ctx<'_>,
        what: &str,
        span: Span,
        given: Vec<CallArg>,
        params: &[&str],
    ) -> Option<Args> {
        // The binder of layer and block calls; the values stay literals,
        // typed later by the getters below.
        let (matched, ok) =
            crate::check::ops::args::match_args(what, params, given, &mut ctx.diags);
        let items: Vec<(String, V, Span)> = matched
            .into_iter()
            .zip(params)
            .filter_map(|(m, name)| m.map(|(v, s)| (name.to_string(), v, s)))
            .collect();
        ok.then(|| Args {
            what: what.to_string(),
            span,
            items,
        })
    }

    pub(super) fn get(&self, name: &str) -> Option<(&V, Span)> {
        self.items
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, s)| (v, *s))
    }

    pub(super) fn span_of(&self, name: &str) -> Span {
        self.get(name).map_or(self.span, |(_, s)| s)
    }

    pub(super) fn float(
        &self,
        ctx: &mut Ctx<'_>,
        name: &str,
        default: f64,
        lo: f64,
        hi: f64,
    ) -> Option<f64> {
        match self.get(name) {
            None => Some(default),
            Some((n @ (V::Int(_) | V::Float(_)), s)) => {
                let v = n.number().unwrap_or(f64::NAN);
                if !(lo..=hi).contains(&v) {
                    let range = if hi.is_infinite() {
                        format!("at least {lo}")
                    } else {
                        format!("in [{lo}, {hi}]")
                    };
                    ctx.err(
                        codes::INVALID_SETTING,
                        format!("`{}` {name} is {v}, but it must be {range}", self.what),
                        s,
                        format!("must be {range}"),
                    );
                    return None;
                }
                Some(v)
            }
            Some((v, s)) => {
                ctx.err(
                    codes::INVALID_SETTING,
                    format!(
                        "`{}` {name} must be a number, not {}",
                        self.what,
                        v.describe()
                    ),
                    s,
                    "not a number",
                );
                None
            }
        }
    }

    pub(super) fn required_float(
        &self,
        ctx: &mut Ctx<'_>,
        name: &str,
        lo: f64,
        hi: f64,
    ) -> Option<f64> {
        if self.get(name).is_none() {
            ctx.diags.push(
                Diagnostic::error(
                    codes::MISSING_SETTING,
                    format!("`{}` needs `{name}`", self.what),
                )
                .at(self.span, format!("`{name}` is missing"))
                .with_help(format!("write `{}({name}=...)`", self.what)),
            );
            return None;
        }
        self.float(ctx, name, 0.0, lo, hi)
    }

    pub(super) fn int(
        &self,
        ctx: &mut Ctx<'_>,
        name: &str,
        default: Option<i64>,
        min: i64,
    ) -> Option<i64> {
        match self.get(name) {
            None => match default {
                Some(d) => Some(d),
                None => {
                    ctx.diags.push(
                        Diagnostic::error(
                            codes::MISSING_SETTING,
                            format!("`{}` needs `{name}`", self.what),
                        )
                        .at(self.span, format!("`{name}` is missing")),
                    );
                    None
                }
            },
            Some((V::Int(v), s)) => {
                let v = *v;
                if v < min {
                    ctx.err(
                        codes::INVALID_SETTING,
                        format!(
                            "`{}` {name} is {v}, but it must be at least {min}",
                            self.what
                        ),
                        s,
                        format!("must be at least {min}"),
                    );
                    return None;
                }
                Some(v)
            }
            Some((v, s)) => {
                ctx.err(
                    codes::INVALID_SETTING,
                    format!(
                        "`{}` {name} must be an int, not {}",
                        self.what,
                        v.describe()
                    ),
                    s,
                    "not an int",
                );
                None
            }
        }
    }

    pub(super) fn bool(&self, ctx: &mut Ctx<'_>, name: &str, default: bool) -> Option<bool> {
        match self.get(name) {
            None => Some(default),
            Some((V::Bool(b), _)) => Some(*b),
            Some((v, s)) => {
                ctx.err(
                    codes::INVALID_SETTING,
                    format!(
                        "`{}` {name} must be true or false, not {}",
                        self.what,
                        v.describe()
                    ),
                    s,
                    "not a bool",
                );
                None
            }
        }
    }

    pub(super) fn word(
        &self,
        ctx: &mut Ctx<'_>,
        name: &str,
        default: Option<&str>,
        choices: Option<&[&str]>,
    ) -> Option<String> {
        let (v, s) = match self.get(name) {
            None => {
                return match default {
                    Some(d) => Some(d.to_string()),
                    None => {
                        ctx.diags.push(
                            Diagnostic::error(
                                codes::MISSING_SETTING,
                                format!("`{}` needs `{name}`", self.what),
                            )
                            .at(self.span, format!("`{name}` is missing")),
                        );
                        None
                    }
                }
            }
            Some(x) => x,
        };
        let w = match v {
            V::Word(w) | V::Str(w) => w.clone(),
            other => {
                ctx.err(
                    codes::INVALID_SETTING,
                    format!(
                        "`{}` {name} must be a name, not {}",
                        self.what,
                        other.describe()
                    ),
                    s,
                    "not a name",
                );
                return None;
            }
        };
        if let Some(choices) = choices {
            if !choices.contains(&w.as_str()) {
                let mut d = Diagnostic::error(
                    codes::INVALID_SETTING,
                    format!("`{}` {name} cannot be `{w}`", self.what),
                )
                .at(s, "not one of the choices");
                d = match did_you_mean(&w, choices.iter().copied()) {
                    Some(sug) => d.with_help(format!("did you mean `{sug}`?")),
                    None => d.with_help(format!("choose one of: {}", choices.join(", "))),
                };
                ctx.diags.push(d);
                return None;
            }
        }
        Some(w)
    }

    pub(super) fn floats(
        &self,
        ctx: &mut Ctx<'_>,
        name: &str,
        default: &[f64],
    ) -> Option<Vec<f64>> {
        match self.get(name) {
            None => Some(default.to_vec()),
            Some((v, s)) => list_of(ctx, v, s, name, "numbers", V::number),
        }
    }

    pub(super) fn pair(&self, ctx: &mut Ctx<'_>, name: &str) -> Option<[i64; 2]> {
        let (v, s) = self.get(name)?;
        let as_int = |v: &V| match v {
            V::Int(x) if *x >= 1 => Some(*x),
            _ => None,
        };
        let r = match v {
            V::List(items) if items.len() == 2 => as_int(&items[0].0)
                .zip(as_int(&items[1].0))
                .map(|(a, b)| [a, b]),
            other => as_int(other).map(|a| [a, a]),
        };
        match r {
            None => ctx.err(
                codes::INVALID_SETTING,
                format!(
                    "`{}` {name} must be a positive int or [height, width]",
                    self.what
                ),
                s,
                "not a size",
            ),
            // Every image of the set is held at this size in f32, so an
            // unbounded side would be an allocation failure at run time,
            // after the data has been read; refuse it before anything runs.
            Some([h, w]) if h.max(w) > MAX_IMAGE_SIDE => {
                ctx.diags.push(
                    Diagnostic::error(
                        codes::INVALID_SETTING,
                        format!(
                            "`{}` {name} is {h}×{w}, larger than the {MAX_IMAGE_SIDE} pixels a side nnc allows",
                            self.what
                        ),
                    )
                    .at(s, format!("at most {MAX_IMAGE_SIDE} per side"))
                    .with_help(format!(
                        "one {h}×{w} RGB image alone would take {} of memory; torchvision's classifiers take 224×224",
                        crate::summary::bytes(h as f64 * w as f64 * 3.0 * 4.0)
                    )),
                );
                return None;
            }
            Some(_) => {}
        }
        r
    }
}

/// The largest side an image size may have (`image_folder`'s `size`,
/// `resize`, `random_crop`): 4096² RGB pixels in f32 are 192 MiB per image.
pub(super) const MAX_IMAGE_SIDE: i64 = 4096;
