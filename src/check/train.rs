//! The training section: parsed into a typed [`TrainConfig`] and checked for
//! names, types, ranges and consistency. Running it is a later stage's job;
//! everything that can be wrong in the text is reported here, before any
//! data is read.

use super::model::{Model, TensorKind};
use super::program::Program;
use super::suggest::did_you_mean;
use crate::diag::Diagnostic;
use crate::diag_codes as codes;
use crate::syntax::ast::{self, Expr, ExprKind, UnOp};
use crate::syntax::source::{FileId, Span};

#[derive(Clone, Debug, PartialEq)]
pub enum Dataset {
    FashionMnist,
    Mnist,
    Cifar10,
    ImageFolder,
    Npy,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Data {
    pub dataset: Dataset,
    pub path: Option<String>,
    /// Fraction of the training set held out for validation.
    pub validation: f64,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Loss {
    CrossEntropy { label_smoothing: f64 },
    Mse,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Optimizer {
    Sgd {
        lr: f64,
        momentum: f64,
        dampening: f64,
        nesterov: bool,
        weight_decay: f64,
    },
    Adam {
        lr: f64,
        betas: [f64; 2],
        eps: f64,
        weight_decay: f64,
    },
    AdamW {
        lr: f64,
        betas: [f64; 2],
        eps: f64,
        weight_decay: f64,
    },
    RAdam {
        lr: f64,
        betas: [f64; 2],
        eps: f64,
        weight_decay: f64,
    },
    Lookahead {
        inner: Box<Optimizer>,
        k: i64,
        alpha: f64,
    },
}

/// As it would be written in the training section, every setting spelled
/// out (checkpoints record it, and messages quote it).
impl std::fmt::Display for Optimizer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Optimizer::Sgd {
                lr,
                momentum,
                dampening,
                nesterov,
                weight_decay,
            } => write!(
                f,
                "sgd(lr={lr:?}, momentum={momentum:?}, dampening={dampening:?}, nesterov={nesterov}, weight_decay={weight_decay:?})"
            ),
            Optimizer::Adam {
                lr,
                betas,
                eps,
                weight_decay,
            }
            | Optimizer::AdamW {
                lr,
                betas,
                eps,
                weight_decay,
            }
            | Optimizer::RAdam {
                lr,
                betas,
                eps,
                weight_decay,
            } => {
                let name = match self {
                    Optimizer::Adam { .. } => "adam",
                    Optimizer::AdamW { .. } => "adamw",
                    _ => "radam",
                };
                write!(
                    f,
                    "{name}(lr={lr:?}, betas=[{:?}, {:?}], eps={eps:?}, weight_decay={weight_decay:?})",
                    betas[0], betas[1]
                )
            }
            Optimizer::Lookahead { inner, k, alpha } => {
                write!(f, "lookahead({inner}, k={k}, alpha={alpha:?})")
            }
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Schedule {
    Constant,
    Step {
        step_size: i64,
        gamma: f64,
    },
    MultiStep {
        milestones: Vec<i64>,
        gamma: f64,
    },
    Exponential {
        gamma: f64,
    },
    Cosine {
        t_max: Option<i64>,
        eta_min: f64,
    },
    /// Linear warm-up over `epochs`, then `then`.
    Warmup {
        epochs: i64,
        start_factor: f64,
        then: Box<Schedule>,
    },
    OneCycle {
        max_lr: f64,
        pct_start: f64,
        div_factor: f64,
        final_div_factor: f64,
    },
    ReduceOnPlateau {
        monitor: String,
        mode: Mode,
        factor: f64,
        patience: i64,
        min_lr: f64,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    Min,
    Max,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Augment {
    Resize { size: [i64; 2] },
    RandomCrop { size: [i64; 2], padding: i64 },
    HorizontalFlip { p: f64 },
    Normalize { mean: Vec<f64>, std: Vec<f64> },
}

#[derive(Clone, Debug, PartialEq)]
pub struct EarlyStopping {
    pub monitor: String,
    pub mode: Mode,
    pub patience: i64,
    pub min_delta: f64,
    pub restore_best: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Init {
    pub path: String,
    /// Only keys matching these patterns are loaded; empty means all.
    pub keys: Vec<String>,
    /// Missing or unexpected keys are errors when strict.
    pub strict: bool,
}

#[derive(Clone, Debug, PartialEq)]
pub struct TrainConfig {
    pub network: String,
    pub data: Data,
    pub batch_size: i64,
    pub epochs: i64,
    pub seed: i64,
    pub loss: Loss,
    pub metrics: Vec<String>,
    pub optimizer: Optimizer,
    pub schedule: Schedule,
    pub augment: Vec<Augment>,
    pub early_stopping: Option<EarlyStopping>,
    pub init: Option<Init>,
    pub freeze: Vec<String>,
    /// The span of each setting as written, for problems found when the
    /// training runs (a batch larger than the data set).
    pub spans: Vec<(String, Span)>,
    /// The `train` keyword.
    pub span: Span,
}

impl TrainConfig {
    /// Where a setting is written, or the section when it is defaulted.
    pub fn span_of(&self, setting: &str) -> Span {
        self.spans
            .iter()
            .find(|(k, _)| k == setting)
            .map_or(self.span, |(_, s)| *s)
    }
}

const SETTINGS: &[&str] = &[
    "data",
    "batch_size",
    "epochs",
    "seed",
    "loss",
    "metrics",
    "optimizer",
    "schedule",
    "augment",
    "early_stopping",
    "init",
    "freeze",
];

/// A call as written: its name, the span of the name, and its arguments.
type Call = (String, Span, Vec<(Option<String>, V, Span)>);

/// A setting's value as written: the training section has no variables, so
/// this is a small literal language.
#[derive(Clone, Debug)]
enum V {
    /// Integers stay integers: a seed above 2^53 must not be rounded.
    Int(i64),
    Float(f64),
    Str(String),
    Bool(bool),
    Word(String),
    List(Vec<(V, Span)>),
    Call(String, Span, Vec<(Option<String>, V, Span)>),
}

impl V {
    /// The value as a number, where a number is wanted (an int will do).
    fn number(&self) -> Option<f64> {
        match self {
            V::Int(v) => Some(*v as f64),
            V::Float(v) => Some(*v),
            _ => None,
        }
    }

    fn describe(&self) -> &'static str {
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

struct Ctx<'a> {
    diags: Vec<Diagnostic>,
    prog: &'a Program,
}

impl Ctx<'_> {
    fn err(
        &mut self,
        code: &'static str,
        msg: impl Into<String>,
        span: Span,
        label: impl Into<String>,
    ) {
        self.diags
            .push(Diagnostic::error(code, msg).at(span, label));
    }

    fn lower(&mut self, e: &Expr) -> Option<V> {
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
                        a.name.as_ref().map(|n| n.name.clone()),
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
struct Args {
    what: String,
    span: Span,
    items: Vec<(String, V, Span)>,
}

impl Args {
    /// `positional` names the parameters that may be given by position.
    fn new(
        ctx: &mut Ctx<'_>,
        what: &str,
        span: Span,
        given: Vec<(Option<String>, V, Span)>,
        params: &[&str],
    ) -> Option<Args> {
        let mut items: Vec<(String, V, Span)> = Vec::new();
        let mut ok = true;
        for (i, (name, v, s)) in given.into_iter().enumerate() {
            let name = match name {
                Some(n) => n,
                None => match params.get(i) {
                    Some(p) => p.to_string(),
                    None => {
                        ctx.err(
                            codes::TOO_MANY_ARGUMENTS,
                            format!("`{what}` takes at most {} arguments", params.len()),
                            s,
                            "one too many",
                        );
                        ok = false;
                        continue;
                    }
                },
            };
            if !params.contains(&name.as_str()) {
                let mut d = Diagnostic::error(
                    codes::UNKNOWN_ARGUMENT,
                    format!("`{what}` has no parameter `{name}`"),
                )
                .at(s, "unknown parameter");
                d = match did_you_mean(&name, params.iter().copied()) {
                    Some(sug) => d.with_help(format!("did you mean `{sug}`?")),
                    None => d.with_help(format!("its parameters are: {}", params.join(", "))),
                };
                ctx.diags.push(d);
                ok = false;
                continue;
            }
            if items.iter().any(|(n, _, _)| *n == name) {
                ctx.err(
                    codes::DUPLICATE_ARGUMENT,
                    format!("`{name}` is given twice"),
                    s,
                    "given again",
                );
                ok = false;
                continue;
            }
            items.push((name, v, s));
        }
        ok.then(|| Args {
            what: what.to_string(),
            span,
            items,
        })
    }

    fn get(&self, name: &str) -> Option<(&V, Span)> {
        self.items
            .iter()
            .find(|(n, _, _)| n == name)
            .map(|(_, v, s)| (v, *s))
    }

    fn span_of(&self, name: &str) -> Span {
        self.get(name).map_or(self.span, |(_, s)| s)
    }

    fn float(&self, ctx: &mut Ctx<'_>, name: &str, default: f64, lo: f64, hi: f64) -> Option<f64> {
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

    fn required_float(&self, ctx: &mut Ctx<'_>, name: &str, lo: f64, hi: f64) -> Option<f64> {
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

    fn int(&self, ctx: &mut Ctx<'_>, name: &str, default: Option<i64>, min: i64) -> Option<i64> {
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

    fn bool(&self, ctx: &mut Ctx<'_>, name: &str, default: bool) -> Option<bool> {
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

    fn word(
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

    fn floats(&self, ctx: &mut Ctx<'_>, name: &str, default: &[f64]) -> Option<Vec<f64>> {
        match self.get(name) {
            None => Some(default.to_vec()),
            Some((v, s)) => list_of(ctx, v, s, name, "numbers", V::number),
        }
    }

    fn pair(&self, ctx: &mut Ctx<'_>, name: &str) -> Option<[i64; 2]> {
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
        if r.is_none() {
            ctx.err(
                codes::INVALID_SETTING,
                format!(
                    "`{}` {name} must be a positive int or [height, width]",
                    self.what
                ),
                s,
                "not a size",
            );
        }
        r
    }
}

/// Checks one training section against the networks of its file.
pub fn check_train(
    prog: &Program,
    file: FileId,
    t: &ast::Train,
    models: &[Model],
) -> (Option<TrainConfig>, Vec<Diagnostic>) {
    let mut ctx = Ctx {
        diags: Vec::new(),
        prog,
    };
    let cfg = check_inner(&mut ctx, file, t, models);
    (cfg, ctx.diags)
}

fn check_inner(
    ctx: &mut Ctx<'_>,
    file: FileId,
    t: &ast::Train,
    models: &[Model],
) -> Option<TrainConfig> {
    // Which network: the one named, or the file's only one.
    let networks: Vec<&str> = {
        let f = ctx.prog.file(file);
        let mut v: Vec<(&String, &super::program::DefId)> = f
            .defs
            .iter()
            .filter(|(_, id)| ctx.prog.def(**id).kind == ast::DefKind::Network)
            .collect();
        v.sort_by_key(|(_, id)| **id);
        v.into_iter().map(|(n, _)| n.as_str()).collect()
    };
    let network = match (&t.network, networks.as_slice()) {
        (Some(n), _) if networks.contains(&n.name.as_str()) => n.name.clone(),
        (Some(n), _) => {
            let mut d = Diagnostic::error(
                codes::NETWORK_NOT_FOUND,
                format!("this file has no network `{}` to train", n.name),
            )
            .at(n.span, "unknown network");
            d = match did_you_mean(&n.name, networks.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None if networks.is_empty() => d.with_help(format!(
                    "define it in this file, for example `network model = std::{}(classes=10)`",
                    n.name
                )),
                None => d.with_help(format!(
                    "the networks of this file are: {}",
                    networks.join(", ")
                )),
            };
            ctx.diags.push(d);
            return None;
        }
        (None, [one]) => one.to_string(),
        (None, []) => {
            ctx.diags.push(
                Diagnostic::error(
                    codes::NETWORK_NOT_FOUND,
                    "a training section needs a network in the same file",
                )
                .at(keyword_span(t.span), "nothing to train")
                .with_help(
                    "define a `network`, or import one and wrap it: `network model { ... }`",
                ),
            );
            return None;
        }
        (None, _) => {
            ctx.diags.push(
                Diagnostic::error(
                    codes::NETWORK_NOT_FOUND,
                    "this file has several networks; say which one to train",
                )
                .at(keyword_span(t.span), "which network?")
                .with_help(format!(
                    "write `train NAME {{ ... }}` with one of: {}",
                    networks.join(", ")
                )),
            );
            return None;
        }
    };
    let model = models.iter().find(|m| m.name == network);

    // Settings: known names, each once.
    let mut entries: Vec<(&str, V, Span, Span)> = Vec::new();
    let mut ok = true;
    for e in &t.entries {
        let key = e.key.name.as_str();
        if !SETTINGS.contains(&key) {
            let mut d = Diagnostic::error(
                codes::UNKNOWN_SETTING,
                format!("unknown training setting `{key}`"),
            )
            .at(e.key.span, "not a setting");
            d = match did_you_mean(key, SETTINGS.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean `{s}`?")),
                None => d.with_help(format!("the settings are: {}", SETTINGS.join(", "))),
            };
            ctx.diags.push(d);
            ok = false;
            continue;
        }
        if let Some((_, _, _, prev)) = entries.iter().find(|(k, ..)| *k == key) {
            let prev = *prev;
            ctx.diags.push(
                Diagnostic::error(codes::DUPLICATE_SETTING, format!("`{key}` is set twice"))
                    .at(e.key.span, "set again here")
                    .with_label(prev, "first set here"),
            );
            ok = false;
            continue;
        }
        match ctx.lower(&e.value) {
            Some(v) => entries.push((key, v, e.value.span, e.key.span)),
            None => ok = false,
        }
    }
    let get = |k: &str| {
        entries
            .iter()
            .find(|(key, ..)| *key == k)
            .map(|(_, v, s, ks)| (v.clone(), *s, *ks))
    };

    let data = match get("data") {
        Some((v, s, _)) => read_data(ctx, v, s),
        None => {
            ctx.diags.push(
                Diagnostic::error(codes::MISSING_SETTING, "the training section needs `data`")
                    .at(keyword_span(t.span), "no `data` setting")
                    .with_help("for example `data = fashion_mnist(validation=0.1)`"),
            );
            None
        }
    };
    let whole = |ctx: &mut Ctx<'_>, key: &str, default: i64, min: i64| -> Option<i64> {
        match get(key) {
            None => Some(default),
            Some((V::Int(v), s, _)) => {
                if v < min {
                    ctx.err(
                        codes::INVALID_SETTING,
                        format!("`{key}` is {v}, but it must be at least {min}"),
                        s,
                        format!("must be at least {min}"),
                    );
                    None
                } else {
                    Some(v)
                }
            }
            Some((v, s, _)) => {
                ctx.err(
                    codes::INVALID_SETTING,
                    format!("`{key}` must be an int, not {}", v.describe()),
                    s,
                    "not an int",
                );
                None
            }
        }
    };
    let batch_size = whole(ctx, "batch_size", 64, 1);
    let epochs = whole(ctx, "epochs", 10, 1);
    let seed = whole(ctx, "seed", 0, 0);
    let loss = match get("loss") {
        None => Some(Loss::CrossEntropy {
            label_smoothing: 0.0,
        }),
        Some((v, s, _)) => read_loss(ctx, v, s),
    };
    if let (Some(Loss::CrossEntropy { .. }), Some(model)) = (&loss, model) {
        let loss_span = get("loss").map(|(_, s, _)| s);
        softmax_before_cross_entropy(ctx, model, loss_span, t.span);
    }
    let metrics = match get("metrics") {
        None => Some(vec!["accuracy".to_string()]),
        Some((v, s, _)) => read_metrics(ctx, v, s),
    };
    let optimizer = match get("optimizer") {
        None => Some(Optimizer::Sgd {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }),
        Some((v, s, _)) => read_optimizer(ctx, v, s, true),
    };
    let computed = |m: &str| -> bool {
        m == "loss" || metrics.as_ref().is_some_and(|ms| ms.iter().any(|x| x == m))
    };
    let validation = data.as_ref().map_or(0.0, |d: &Data| d.validation);
    let schedule = match get("schedule") {
        None => Some(Schedule::Constant),
        Some((v, s, _)) => read_schedule(ctx, v, s, &computed, validation),
    };
    let augment = match get("augment") {
        None => Some(Vec::new()),
        Some((v, s, _)) => read_augment(ctx, v, s),
    };
    let early_stopping = match get("early_stopping") {
        None => Some(None),
        Some((v, s, _)) => read_early_stopping(ctx, v, s, &computed, validation).map(Some),
    };
    let init = match get("init") {
        None => Some(None),
        Some((v, s, _)) => read_init(ctx, v, s).map(Some),
    };
    let freeze = match get("freeze") {
        None => Some(Vec::new()),
        Some((v, s, _)) => read_freeze(ctx, v, s, model),
    };

    // Consistency between settings.
    if let (Some(epochs), Some(schedule)) = (epochs, &schedule) {
        let epochs_span = get("epochs").map(|(_, s, _)| s);
        check_schedule_fits(
            ctx,
            schedule,
            epochs,
            epochs_span,
            get("schedule").map(|(_, s, _)| s).unwrap_or(t.span),
        );
    }

    Some(TrainConfig {
        network,
        data: data?,
        batch_size: batch_size?,
        epochs: epochs?,
        seed: seed?,
        loss: loss?,
        metrics: metrics?,
        optimizer: optimizer?,
        schedule: schedule?,
        augment: augment?,
        early_stopping: early_stopping?,
        init: init?,
        freeze: freeze?,
        spans: entries
            .iter()
            .map(|(k, _, s, _)| (k.to_string(), *s))
            .collect(),
        span: keyword_span(t.span),
    })
    .filter(|_| ok)
}

/// The `train` keyword of a section, for messages about the whole section.
fn keyword_span(section: Span) -> Span {
    Span {
        end: section.start + 5,
        ..section
    }
}

/// `a loss`, `an optimizer`.
fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

/// A setting written as a call of one of `choices`; `what` names the kind
/// of setting, without an article (`optimizer`).
fn expect_call(ctx: &mut Ctx<'_>, v: V, span: Span, what: &str, choices: &[&str]) -> Option<Call> {
    let (name, name_span, args) = match v {
        V::Call(n, ns, a) => (n, ns, a),
        V::Word(n) => (n, span, Vec::new()),
        other => {
            ctx.diags.push(
                Diagnostic::error(
                    codes::INVALID_SETTING,
                    format!(
                        "{} must be one of {}, not {}",
                        with_article(what),
                        choices.join(", "),
                        other.describe()
                    ),
                )
                .at(span, format!("not {}", with_article(what))),
            );
            return None;
        }
    };
    if !choices.contains(&name.as_str()) {
        let mut d = Diagnostic::error(codes::INVALID_SETTING, format!("unknown {what} `{name}`"))
            .at(name_span, format!("not {}", with_article(what)));
        d = match did_you_mean(&name, choices.iter().copied()) {
            Some(s) => d.with_help(format!("did you mean `{s}`?")),
            None => d.with_help(format!("choose one of: {}", choices.join(", "))),
        };
        ctx.diags.push(d);
        return None;
    }
    Some((name, name_span, args))
}

fn read_data(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Data> {
    let (name, ns, given) = expect_call(
        ctx,
        v,
        span,
        "data set",
        &["fashion_mnist", "mnist", "cifar10", "image_folder", "npy"],
    )?;
    let a = Args::new(ctx, &name, ns, given, &["path", "validation"])?;
    let dataset = match name.as_str() {
        "fashion_mnist" => Dataset::FashionMnist,
        "mnist" => Dataset::Mnist,
        "cifar10" => Dataset::Cifar10,
        "image_folder" => Dataset::ImageFolder,
        _ => Dataset::Npy,
    };
    let path = match a.get("path") {
        None => None,
        Some((V::Str(s), _)) => Some(s.clone()),
        Some((v, s)) => {
            ctx.err(
                codes::INVALID_SETTING,
                format!("a data path must be a string, not {}", v.describe()),
                s,
                "not a string",
            );
            return None;
        }
    };
    // A missing path is not an error here: `nnc run --data PATH` gives it,
    // and the run says so when neither does.
    let validation = a.float(ctx, "validation", 0.0, 0.0, 0.9)?;
    Some(Data {
        dataset,
        path,
        validation,
    })
}

fn read_loss(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Loss> {
    let (name, ns, given) = expect_call(ctx, v, span, "loss", &["cross_entropy", "mse"])?;
    match name.as_str() {
        "cross_entropy" => {
            let a = Args::new(ctx, &name, ns, given, &["label_smoothing"])?;
            Some(Loss::CrossEntropy {
                label_smoothing: a.float(ctx, "label_smoothing", 0.0, 0.0, 1.0)?,
            })
        }
        _ => {
            Args::new(ctx, &name, ns, given, &[])?;
            Some(Loss::Mse)
        }
    }
}

const METRICS: &[&str] = &["accuracy", "top5", "loss"];

fn read_metrics(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Vec<String>> {
    let words = list_of(
        ctx,
        &v,
        span,
        "metrics",
        "metric names such as accuracy",
        |v| match v {
            V::Word(w) => Some(w.clone()),
            _ => None,
        },
    )?;
    let spans: Vec<Span> = match &v {
        V::List(items) => items.iter().map(|(_, s)| *s).collect(),
        _ => vec![span],
    };
    for (w, s) in words.iter().zip(spans) {
        if !METRICS.contains(&w.as_str()) {
            let d = Diagnostic::error(codes::INVALID_SETTING, format!("unknown metric `{w}`"))
                .at(s, "not a metric");
            ctx.diags
                .push(match did_you_mean(w, METRICS.iter().copied()) {
                    Some(x) => d.with_help(format!("did you mean `{x}`?")),
                    None => d.with_help(format!("the metrics are: {}", METRICS.join(", "))),
                });
            return None;
        }
    }
    Some(words)
}

fn read_optimizer(ctx: &mut Ctx<'_>, v: V, span: Span, allow_lookahead: bool) -> Option<Optimizer> {
    let choices: &[&str] = if allow_lookahead {
        &["sgd", "adam", "adamw", "radam", "lookahead"]
    } else {
        &["sgd", "adam", "adamw", "radam"]
    };
    let (name, ns, given) = expect_call(ctx, v, span, "optimizer", choices)?;
    let inf = f64::INFINITY;
    match name.as_str() {
        "sgd" => {
            let a = Args::new(
                ctx,
                &name,
                ns,
                given,
                &["lr", "momentum", "dampening", "nesterov", "weight_decay"],
            )?;
            let lr = a.required_float(ctx, "lr", 0.0, inf)?;
            let momentum = a.float(ctx, "momentum", 0.0, 0.0, 1.0)?;
            let dampening = a.float(ctx, "dampening", 0.0, 0.0, 1.0)?;
            let nesterov = a.bool(ctx, "nesterov", false)?;
            let weight_decay = a.float(ctx, "weight_decay", 0.0, 0.0, inf)?;
            if nesterov && (momentum <= 0.0 || dampening != 0.0) {
                ctx.diags.push(
                    Diagnostic::error(
                        codes::INVALID_SETTING,
                        "Nesterov momentum needs a momentum above 0 and zero dampening",
                    )
                    .at(a.span_of("nesterov"), "nesterov=true")
                    .with_help("set `momentum=0.9`, or remove `nesterov`"),
                );
                return None;
            }
            Some(Optimizer::Sgd {
                lr,
                momentum,
                dampening,
                nesterov,
                weight_decay,
            })
        }
        "adam" | "adamw" | "radam" => {
            let a = Args::new(
                ctx,
                &name,
                ns,
                given,
                &["lr", "betas", "eps", "weight_decay"],
            )?;
            let lr = a.float(ctx, "lr", 1e-3, 0.0, inf)?;
            let betas = a.floats(ctx, "betas", &[0.9, 0.999])?;
            if betas.len() != 2 || betas.iter().any(|b| !(0.0..1.0).contains(b)) {
                ctx.err(
                    codes::INVALID_SETTING,
                    format!("`{name}` betas must be two numbers in [0, 1)"),
                    a.span_of("betas"),
                    "two numbers in [0, 1)",
                );
                return None;
            }
            let eps = a.float(ctx, "eps", 1e-8, 0.0, inf)?;
            let wd_default = if name == "adamw" { 0.01 } else { 0.0 };
            let weight_decay = a.float(ctx, "weight_decay", wd_default, 0.0, inf)?;
            let betas = [betas[0], betas[1]];
            Some(match name.as_str() {
                "adam" => Optimizer::Adam {
                    lr,
                    betas,
                    eps,
                    weight_decay,
                },
                "adamw" => Optimizer::AdamW {
                    lr,
                    betas,
                    eps,
                    weight_decay,
                },
                _ => Optimizer::RAdam {
                    lr,
                    betas,
                    eps,
                    weight_decay,
                },
            })
        }
        _ => {
            let a = Args::new(ctx, &name, ns, given, &["inner", "k", "alpha"])?;
            let Some((inner_v, inner_span)) = a.get("inner") else {
                ctx.diags.push(
                    Diagnostic::error(
                        codes::MISSING_SETTING,
                        "`lookahead` wraps another optimizer",
                    )
                    .at(ns, "no inner optimizer")
                    .with_help("write `lookahead(sgd(lr=0.1, momentum=0.9), k=5, alpha=0.5)`"),
                );
                return None;
            };
            let inner = read_optimizer(ctx, inner_v.clone(), inner_span, false)?;
            let k = a.int(ctx, "k", Some(5), 1)?;
            let alpha = a.float(ctx, "alpha", 0.5, 0.0, 1.0)?;
            Some(Optimizer::Lookahead {
                inner: Box::new(inner),
                k,
                alpha,
            })
        }
    }
}

/// `softmax` as the last layer of a network trained with `cross_entropy`:
/// the loss applies log-softmax to the logits itself, so the network's
/// probabilities are squashed a second time and training stalls.
fn softmax_before_cross_entropy(
    ctx: &mut Ctx<'_>,
    model: &Model,
    loss_span: Option<Span>,
    section: Span,
) {
    let Some(layer) = model
        .output
        .and_then(|o| model.values.get(o.0 as usize))
        .and_then(|v| v.producer)
        .and_then(|p| model.layers.get(p))
    else {
        return;
    };
    let name = match layer.op {
        crate::check::ops::Op::Softmax { .. } => "softmax",
        crate::check::ops::Op::LogSoftmax { .. } => "log_softmax",
        _ => return,
    };
    let d = Diagnostic::warning(
        codes::SOFTMAX_BEFORE_LOSS,
        format!(
            "`{}` ends with `{name}`, but `cross_entropy` applies log-softmax to its input itself",
            model.name
        ),
    )
    .at(layer.span, format!("`{name}` here"))
    .with_help(format!(
        "remove `{name}` from the network: `cross_entropy` takes logits, as `nn.CrossEntropyLoss` does"
    ));
    ctx.diags.push(match loss_span {
        Some(s) => d.with_label(s, "this loss applies log-softmax"),
        None => d.with_label(keyword_span(section), "the default loss is `cross_entropy`"),
    });
}

/// Whether a monitored metric is computed: `val_accuracy` needs a
/// validation split and the metric `accuracy`.
fn check_monitor(
    ctx: &mut Ctx<'_>,
    monitor: &str,
    span: Span,
    computed: &dyn Fn(&str) -> bool,
    validation: f64,
) -> bool {
    let (split, metric) = monitor.split_once('_').unwrap_or(("", monitor));
    let fail = |ctx: &mut Ctx<'_>, why: String, help: String| {
        ctx.diags.push(
            Diagnostic::error(
                codes::UNKNOWN_METRIC,
                format!("nothing computes `{monitor}`: {why}"),
            )
            .at(span, "not computed")
            .with_help(help),
        );
        false
    };
    match split {
        "train" | "val" => {}
        "test" => {
            return fail(
                ctx,
                "the test set is only evaluated at the end".into(),
                format!("monitor `val_{metric}` and set `validation` in `data`"),
            )
        }
        _ => {
            return fail(
                ctx,
                "a monitored metric is `train_NAME` or `val_NAME`".into(),
                format!("write `val_{monitor}`"),
            )
        }
    }
    if !METRICS.contains(&metric) {
        let close = METRICS
            .iter()
            .copied()
            .find(|m| !metric.is_empty() && m.starts_with(metric))
            .or_else(|| did_you_mean(metric, METRICS.iter().copied()));
        let help = match close {
            Some(m) => format!("did you mean `{split}_{m}`?"),
            None => format!(
                "monitor one of: {}",
                METRICS
                    .iter()
                    .map(|m| format!("`{split}_{m}`"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        };
        return fail(ctx, format!("`{metric}` is not a metric"), help);
    }
    if !computed(metric) {
        return fail(
            ctx,
            format!("`{metric}` is not in `metrics`"),
            format!("add it: `metrics = [{metric}]`"),
        );
    }
    if split == "val" && validation <= 0.0 {
        return fail(
            ctx,
            "there is no validation split".into(),
            "hold out part of the training set: `data = fashion_mnist(validation=0.1)`".into(),
        );
    }
    true
}

fn read_schedule(
    ctx: &mut Ctx<'_>,
    v: V,
    span: Span,
    computed: &dyn Fn(&str) -> bool,
    validation: f64,
) -> Option<Schedule> {
    let (name, ns, given) = expect_call(
        ctx,
        v,
        span,
        "learning-rate schedule",
        &[
            "constant",
            "step",
            "multistep",
            "exponential",
            "cosine",
            "warmup",
            "one_cycle",
            "reduce_on_plateau",
        ],
    )?;
    let inf = f64::INFINITY;
    Some(match name.as_str() {
        "constant" => {
            Args::new(ctx, &name, ns, given, &[])?;
            Schedule::Constant
        }
        "step" => {
            let a = Args::new(ctx, &name, ns, given, &["step_size", "gamma"])?;
            Schedule::Step {
                step_size: a.int(ctx, "step_size", None, 1)?,
                gamma: a.float(ctx, "gamma", 0.1, 0.0, 1.0)?,
            }
        }
        "multistep" => {
            let a = Args::new(ctx, &name, ns, given, &["milestones", "gamma"])?;
            let gamma = a.float(ctx, "gamma", 0.1, 0.0, 1.0)?;
            let Some((V::List(items), _)) = a.get("milestones") else {
                ctx.diags.push(
                    Diagnostic::error(
                        codes::MISSING_SETTING,
                        "`multistep` needs `milestones`, a list of epochs",
                    )
                    .at(a.span_of("milestones"), "no milestones")
                    .with_help("for example `multistep(milestones=[30, 60], gamma=0.1)`"),
                );
                return None;
            };
            let mut milestones = Vec::new();
            for (v, s) in items {
                match v {
                    V::Int(x) if *x >= 1 => {
                        if milestones.last().is_some_and(|&l: &i64| l >= *x) {
                            ctx.err(
                                codes::INVALID_SETTING,
                                "milestones must increase",
                                *s,
                                "not after the previous one",
                            );
                            return None;
                        }
                        milestones.push(*x);
                    }
                    _ => {
                        ctx.err(
                            codes::INVALID_SETTING,
                            "a milestone is an epoch number, at least 1",
                            *s,
                            "not an epoch",
                        );
                        return None;
                    }
                }
            }
            Schedule::MultiStep { milestones, gamma }
        }
        "exponential" => {
            let a = Args::new(ctx, &name, ns, given, &["gamma"])?;
            Schedule::Exponential {
                gamma: a.required_float(ctx, "gamma", 0.0, 1.0)?,
            }
        }
        "cosine" => {
            let a = Args::new(ctx, &name, ns, given, &["t_max", "eta_min"])?;
            let t_max = match a.get("t_max") {
                None => None,
                Some(_) => Some(a.int(ctx, "t_max", None, 1)?),
            };
            Schedule::Cosine {
                t_max,
                eta_min: a.float(ctx, "eta_min", 0.0, 0.0, inf)?,
            }
        }
        "warmup" => {
            let a = Args::new(ctx, &name, ns, given, &["epochs", "then", "start_factor"])?;
            let epochs = a.int(ctx, "epochs", None, 1)?;
            let start_factor = a.float(ctx, "start_factor", 0.1, 0.0, 1.0)?;
            let then = match a.get("then") {
                None => Schedule::Constant,
                Some((v, s)) => {
                    if matches!(v, V::Call(n, ..) | V::Word(n) if n == "warmup") {
                        ctx.err(
                            codes::INVALID_SETTING,
                            "a warm-up cannot wrap another warm-up",
                            s,
                            "nested warm-up",
                        );
                        return None;
                    }
                    read_schedule(ctx, v.clone(), s, computed, validation)?
                }
            };
            Schedule::Warmup {
                epochs,
                start_factor,
                then: Box::new(then),
            }
        }
        "one_cycle" => {
            let a = Args::new(
                ctx,
                &name,
                ns,
                given,
                &["max_lr", "pct_start", "div_factor", "final_div_factor"],
            )?;
            Schedule::OneCycle {
                max_lr: a.required_float(ctx, "max_lr", 0.0, inf)?,
                pct_start: a.float(ctx, "pct_start", 0.3, 0.0, 1.0)?,
                div_factor: a.float(ctx, "div_factor", 25.0, 1.0, inf)?,
                final_div_factor: a.float(ctx, "final_div_factor", 1e4, 1.0, inf)?,
            }
        }
        _ => {
            let a = Args::new(
                ctx,
                &name,
                ns,
                given,
                &["monitor", "mode", "factor", "patience", "min_lr"],
            )?;
            let monitor = a.word(ctx, "monitor", Some("val_loss"), None)?;
            if !check_monitor(ctx, &monitor, a.span_of("monitor"), computed, validation) {
                return None;
            }
            let mode = mode(&a.word(
                ctx,
                "mode",
                Some(default_mode(&monitor)),
                Some(&["min", "max"]),
            )?);
            Schedule::ReduceOnPlateau {
                monitor,
                mode,
                factor: a.float(ctx, "factor", 0.1, 0.0, 1.0)?,
                patience: a.int(ctx, "patience", Some(10), 0)?,
                min_lr: a.float(ctx, "min_lr", 0.0, 0.0, inf)?,
            }
        }
    })
}

fn default_mode(monitor: &str) -> &'static str {
    if monitor.ends_with("loss") {
        "min"
    } else {
        "max"
    }
}

fn mode(s: &str) -> Mode {
    if s == "max" {
        Mode::Max
    } else {
        Mode::Min
    }
}

/// A milestone after the last epoch or a warm-up longer than the run is
/// almost certainly a mistake in the recipe.
fn check_schedule_fits(
    ctx: &mut Ctx<'_>,
    schedule: &Schedule,
    epochs: i64,
    epochs_span: Option<Span>,
    span: Span,
) {
    let with_epochs = |d: Diagnostic| match epochs_span {
        Some(s) => d.with_label(
            s,
            format!("the run has {}", crate::diag::count(epochs, "epoch")),
        ),
        None => d.with_note(format!("`epochs` defaults to {epochs}")),
    };
    match schedule {
        Schedule::MultiStep { milestones, .. } => {
            if let Some(&m) = milestones.iter().find(|&&m| m >= epochs) {
                let d = Diagnostic::error(
                    codes::MILESTONE_AFTER_END,
                    format!("milestone {m} is not before the last epoch, so it never takes effect"),
                )
                .at(span, format!("milestone {m}"))
                .with_help(format!(
                    "use milestones below {epochs}, or train for more epochs"
                ));
                ctx.diags.push(with_epochs(d));
            }
        }
        Schedule::Warmup {
            epochs: w, then, ..
        } => {
            if *w >= epochs {
                let d = Diagnostic::error(
                    codes::WARMUP_TOO_LONG,
                    format!(
                        "the warm-up lasts {}, but the run has only {epochs}",
                        crate::diag::count(*w, "epoch")
                    ),
                )
                .at(
                    span,
                    format!("{} of warm-up", crate::diag::count(*w, "epoch")),
                )
                .with_help(format!(
                    "warm up for fewer than {epochs} epochs (5–10 % of the run is usual)"
                ));
                ctx.diags.push(with_epochs(d));
            }
            check_schedule_fits(ctx, then, epochs, epochs_span, span);
        }
        Schedule::Step { step_size, .. } if *step_size >= epochs => {
            let d = Diagnostic::warning(
                codes::NO_EFFECT,
                format!("the step schedule first decays at epoch {step_size}, after the run ends"),
            )
            .at(span, "never decays");
            ctx.diags.push(with_epochs(d));
        }
        _ => {}
    }
}

fn read_augment(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Vec<Augment>> {
    let items = match v {
        V::List(items) => items,
        other => {
            ctx.err(
                codes::INVALID_SETTING,
                format!(
                    "`augment` is a list such as [random_crop(28, padding=4)], not {}",
                    other.describe()
                ),
                span,
                "not a list",
            );
            return None;
        }
    };
    let mut out = Vec::new();
    for (v, s) in items {
        let (name, ns, given) = expect_call(
            ctx,
            v,
            s,
            "augmentation",
            &["resize", "random_crop", "horizontal_flip", "normalize"],
        )?;
        out.push(match name.as_str() {
            "resize" => {
                let a = Args::new(ctx, &name, ns, given, &["size"])?;
                let Some(size) = a.pair(ctx, "size") else {
                    if a.get("size").is_none() {
                        ctx.err(codes::MISSING_SETTING, "`resize` needs a size", ns, "no size");
                    }
                    return None;
                };
                Augment::Resize { size }
            }
            "random_crop" => {
                let a = Args::new(ctx, &name, ns, given, &["size", "padding"])?;
                let Some(size) = a.pair(ctx, "size") else {
                    if a.get("size").is_none() {
                        ctx.err(codes::MISSING_SETTING, "`random_crop` needs a size", ns, "no size");
                    }
                    return None;
                };
                Augment::RandomCrop { size, padding: a.int(ctx, "padding", Some(0), 0)? }
            }
            "horizontal_flip" => {
                let a = Args::new(ctx, &name, ns, given, &["p"])?;
                Augment::HorizontalFlip { p: a.float(ctx, "p", 0.5, 0.0, 1.0)? }
            }
            _ => {
                let a = Args::new(ctx, &name, ns, given, &["mean", "std"])?;
                let mean = a.floats(ctx, "mean", &[])?;
                let std = a.floats(ctx, "std", &[])?;
                if mean.is_empty() || mean.len() != std.len() || std.iter().any(|x| *x <= 0.0) {
                    ctx.err(
                        codes::INVALID_SETTING,
                        "`normalize` needs `mean` and `std` of the same length, with every std above 0",
                        ns,
                        "one mean and one std per channel",
                    );
                    return None;
                }
                Augment::Normalize { mean, std }
            }
        });
    }
    Some(out)
}

fn read_early_stopping(
    ctx: &mut Ctx<'_>,
    v: V,
    span: Span,
    computed: &dyn Fn(&str) -> bool,
    validation: f64,
) -> Option<EarlyStopping> {
    let (name, ns, given) = expect_call(ctx, v, span, "early-stopping rule", &["early_stopping"])?;
    let a = Args::new(
        ctx,
        &name,
        ns,
        given,
        &["monitor", "mode", "patience", "min_delta", "restore_best"],
    )?;
    let monitor = a.word(ctx, "monitor", Some("val_loss"), None)?;
    if !check_monitor(ctx, &monitor, a.span_of("monitor"), computed, validation) {
        return None;
    }
    let m = a.word(
        ctx,
        "mode",
        Some(default_mode(&monitor)),
        Some(&["min", "max"]),
    )?;
    Some(EarlyStopping {
        monitor,
        mode: mode(&m),
        patience: a.int(ctx, "patience", Some(5), 0)?,
        min_delta: a.float(ctx, "min_delta", 0.0, 0.0, f64::INFINITY)?,
        restore_best: a.bool(ctx, "restore_best", true)?,
    })
}

fn read_init(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Init> {
    match v {
        V::Str(path) => Some(Init {
            path,
            keys: Vec::new(),
            strict: true,
        }),
        other => {
            let (name, ns, given) = expect_call(ctx, other, span, "initialization", &["load"])?;
            let a = Args::new(ctx, &name, ns, given, &["path", "keys", "strict"])?;
            let path = match a.get("path") {
                Some((V::Str(p), _)) => p.clone(),
                _ => {
                    ctx.err(
                        codes::MISSING_SETTING,
                        "`load` needs the path of a safetensors file",
                        ns,
                        "no path",
                    );
                    return None;
                }
            };
            let keys = match a.get("keys") {
                None => Vec::new(),
                Some((v, s)) => strings(ctx, v, s, "keys")?,
            };
            Some(Init {
                path,
                keys,
                strict: a.bool(ctx, "strict", false)?,
            })
        }
    }
}

fn strings(ctx: &mut Ctx<'_>, v: &V, span: Span, what: &str) -> Option<Vec<String>> {
    list_of(
        ctx,
        v,
        span,
        what,
        "strings such as \"features.*\"",
        |v| match v {
            V::Str(x) => Some(x.clone()),
            _ => None,
        },
    )
}

/// The items of a list setting, each converted by `item`; a single value
/// counts as a list of one. The first item that does not convert is
/// reported.
fn list_of<T>(
    ctx: &mut Ctx<'_>,
    v: &V,
    span: Span,
    what: &str,
    expected: &str,
    item: impl Fn(&V) -> Option<T>,
) -> Option<Vec<T>> {
    let items: Vec<(&V, Span)> = match v {
        V::List(items) => items.iter().map(|(v, s)| (v, *s)).collect(),
        other => vec![(other, span)],
    };
    let mut out = Vec::with_capacity(items.len());
    for (v, s) in items {
        match item(v) {
            Some(x) => out.push(x),
            None => {
                ctx.err(
                    codes::INVALID_SETTING,
                    format!("`{what}` lists {expected}, not {}", v.describe()),
                    s,
                    "not one of them",
                );
                return None;
            }
        }
    }
    Some(out)
}

fn read_freeze(ctx: &mut Ctx<'_>, v: V, span: Span, model: Option<&Model>) -> Option<Vec<String>> {
    let patterns = strings(ctx, &v, span, "freeze")?;
    let Some(model) = model else {
        return Some(patterns);
    };
    let params: Vec<&str> = model
        .tensors()
        .filter(|p| p.kind == TensorKind::Parameter)
        .map(|p| p.name.as_str())
        .collect();
    if params.is_empty() {
        return Some(patterns);
    }
    for p in &patterns {
        if !params.iter().any(|n| crate::glob::matches(p, n)) {
            let prefixes: Vec<&str> = {
                let mut v: Vec<&str> = params
                    .iter()
                    .map(|n| n.split('.').next().unwrap_or(n))
                    .collect();
                v.dedup();
                v
            };
            let mut d = Diagnostic::error(
                codes::BAD_FREEZE,
                format!("`{p}` matches no parameter of `{}`", model.name),
            )
            .at(span, "matches nothing");
            d = match did_you_mean(p.trim_end_matches(".*"), prefixes.iter().copied()) {
                Some(s) => d.with_help(format!("did you mean \"{s}.*\"?")),
                None => d.with_help(format!("the top-level layers are: {}", prefixes.join(", "))),
            };
            ctx.diags.push(d);
            return None;
        }
    }
    if params
        .iter()
        .all(|n| patterns.iter().any(|p| crate::glob::matches(p, n)))
    {
        ctx.diags.push(
            Diagnostic::error(
                codes::BAD_FREEZE,
                "every parameter is frozen, so training would change nothing",
            )
            .at(span, "freezes everything")
            .with_help(
                "leave at least the new head trainable, for example freeze [\"features.*\"] only",
            ),
        );
        return None;
    }
    Some(patterns)
}
