//! One reader per setting (`data`, `loss`, `optimizer`, `schedule`,
//! `augment`, `early_stopping`, `initializer`, `init`, `freeze`), and the checks between
//! settings and against the network.

use super::*;

/// `a loss`, `an optimizer`.
pub(super) fn with_article(noun: &str) -> String {
    let article = if noun.starts_with(['a', 'e', 'i', 'o', 'u']) {
        "an"
    } else {
        "a"
    };
    format!("{article} {noun}")
}

/// A setting written as a call of one of `choices`; `what` names the kind
/// of setting, without an article (`optimizer`).
pub(super) fn expect_call(
    ctx: &mut Ctx<'_>,
    v: V,
    span: Span,
    what: &str,
    choices: &[&str],
) -> Option<Call> {
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

pub(super) fn read_data(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Data> {
    let (name, ns, given) = expect_call(
        ctx,
        v,
        span,
        "data set",
        &["fashion_mnist", "mnist", "cifar10", "image_folder", "npy"],
    )?;
    let names: &[&str] = if name == "image_folder" {
        &["path", "validation", "size"]
    } else {
        // The other sets' images have one size already: a `size` here means
        // resizing, which `augment` does.
        let size = given.iter().find_map(|(n, v, _)| match n {
            Some((n, s)) if n == "size" => Some((v, *s)),
            _ => None,
        });
        if let Some((v, s)) = size {
            let to = match v {
                V::Int(n) => n.to_string(),
                _ => "SIZE".to_string(),
            };
            ctx.diags.push(
                Diagnostic::error(
                    codes::UNKNOWN_ARGUMENT,
                    format!("`{name}` has no parameter `size`"),
                )
                .at(s, "only `image_folder` takes a size")
                .with_help(format!(
                    "resize the images in the training section: `augment = [resize({to})]`"
                )),
            );
            return None;
        }
        &["path", "validation"]
    };
    let a = Args::new(ctx, &name, ns, given, names)?;
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
    let size = match a.get("size") {
        None => None,
        Some(_) => {
            let [h, w] = a.pair(ctx, "size")?;
            Some([h.min(u32::MAX as i64) as u32, w.min(u32::MAX as i64) as u32])
        }
    };
    Some(Data {
        dataset,
        path,
        validation,
        size,
    })
}

pub(super) fn read_loss(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Loss> {
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

pub(super) const METRICS: &[&str] = &["accuracy", "top5", "loss"];

pub(super) fn read_metrics(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Vec<String>> {
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

pub(super) fn read_optimizer(
    ctx: &mut Ctx<'_>,
    v: V,
    span: Span,
    allow_lookahead: bool,
) -> Option<Optimizer> {
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
pub(super) fn softmax_before_cross_entropy(
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
pub(super) fn check_monitor(
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

pub(super) fn read_schedule(
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

pub(super) fn default_mode(monitor: &str) -> &'static str {
    if monitor.ends_with("loss") {
        "min"
    } else {
        "max"
    }
}

pub(super) fn mode(s: &str) -> Mode {
    if s == "max" {
        Mode::Max
    } else {
        Mode::Min
    }
}

/// A milestone after the last epoch or a warm-up longer than the run is
/// almost certainly a mistake in the recipe.
pub(super) fn check_schedule_fits(
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

pub(super) fn read_augment(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Vec<Augment>> {
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
    // Every item is read, so that each bad one is reported in one check.
    let mut out = Vec::new();
    let mut all_read = true;
    for (v, s) in items {
        match read_augmentation(ctx, v, s) {
            Some(a) => out.push(a),
            None => all_read = false,
        }
    }
    all_read.then_some(out)
}

/// The `size` that `resize` and `random_crop` cannot do without: a wrong
/// one is reported by `Args::pair`, a missing one here.
fn required_size(ctx: &mut Ctx<'_>, a: &Args, what: &str, at: Span) -> Option<[i64; 2]> {
    let size = a.pair(ctx, "size");
    if size.is_none() && a.get("size").is_none() {
        ctx.err(
            codes::MISSING_SETTING,
            format!("`{what}` needs a size"),
            at,
            "no size",
        );
    }
    size
}

fn read_augmentation(ctx: &mut Ctx<'_>, v: V, s: Span) -> Option<Augment> {
    let (name, ns, given) = expect_call(
        ctx,
        v,
        s,
        "augmentation",
        &["resize", "random_crop", "horizontal_flip", "normalize"],
    )?;
    Some(match name.as_str() {
        "resize" => {
            let a = Args::new(ctx, &name, ns, given, &["size"])?;
            let size = required_size(ctx, &a, "resize", ns)?;
            Augment::Resize { size }
        }
        "random_crop" => {
            let a = Args::new(ctx, &name, ns, given, &["size", "padding"])?;
            let size = required_size(ctx, &a, "random_crop", ns)?;
            let padding = a.int(ctx, "padding", Some(0), 0)?;
            if padding > MAX_IMAGE_SIDE {
                ctx.err(
                    codes::INVALID_SETTING,
                    format!(
                        "`random_crop` padding is {padding}, larger than the {MAX_IMAGE_SIDE} pixels a side nnc allows"
                    ),
                    a.span_of("padding"),
                    format!("at most {MAX_IMAGE_SIDE}"),
                );
                return None;
            }
            Augment::RandomCrop { size, padding }
        }
        "horizontal_flip" => {
            let a = Args::new(ctx, &name, ns, given, &["p"])?;
            Augment::HorizontalFlip {
                p: a.float(ctx, "p", 0.5, 0.0, 1.0)?,
            }
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
    })
}

pub(super) fn read_early_stopping(
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

pub(super) fn read_init(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Init> {
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

pub(super) fn read_initializer(ctx: &mut Ctx<'_>, v: V, span: Span) -> Option<Initializer> {
    let (name, ns, given) = expect_call(
        ctx,
        v,
        span,
        "initializer",
        &[
            "xavier_uniform",
            "xavier_normal",
            "kaiming_uniform",
            "kaiming_normal",
        ],
    )?;
    if name.starts_with("xavier") {
        let a = Args::new(ctx, &name, ns, given, &["gain"])?;
        let gain = a.float(ctx, "gain", 1.0, 0.0, f64::INFINITY)?;
        return Some(if name == "xavier_uniform" {
            Initializer::XavierUniform { gain }
        } else {
            Initializer::XavierNormal { gain }
        });
    }
    let a = Args::new(ctx, &name, ns, given, &["mode"])?;
    let fan = match a
        .word(ctx, "mode", Some("fan_in"), Some(&["fan_in", "fan_out"]))?
        .as_str()
    {
        "fan_in" => Fan::In,
        _ => Fan::Out,
    };
    Some(if name == "kaiming_uniform" {
        Initializer::KaimingUniform { fan }
    } else {
        Initializer::KaimingNormal { fan }
    })
}

pub(super) fn strings(ctx: &mut Ctx<'_>, v: &V, span: Span, what: &str) -> Option<Vec<String>> {
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
pub(super) fn list_of<T>(
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

pub(super) fn read_freeze(
    ctx: &mut Ctx<'_>,
    v: V,
    span: Span,
    model: Option<&Model>,
) -> Option<Vec<String>> {
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
