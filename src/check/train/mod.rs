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

mod literal;
mod settings;

use literal::*;
use settings::*;

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
    /// `image_folder`'s `size`: every image is resized to `[height, width]`
    /// as it is read.
    pub size: Option<[u32; 2]>,
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

/// Without an `optimizer` setting: SGD at 0.01, no momentum (torch.optim's
/// SGD with D2L's usual rate).
impl Default for Optimizer {
    fn default() -> Optimizer {
        Optimizer::Sgd {
            lr: 0.01,
            momentum: 0.0,
            dampening: 0.0,
            nesterov: false,
            weight_decay: 0.0,
        }
    }
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

/// How fresh convolution and linear weights are drawn (`initializer`).
/// Biases, batch norms and everything else keep PyTorch's defaults, as
/// after D2L's `init_cnn` or torchvision's loops over `modules()`.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Initializer {
    /// PyTorch's per-layer default: uniform in `±1/sqrt(fan_in)`.
    Default,
    /// `torch.nn.init.xavier_uniform_`: uniform in
    /// `±gain·sqrt(6/(fan_in + fan_out))`.
    XavierUniform { gain: f64 },
    /// `torch.nn.init.xavier_normal_`: std `gain·sqrt(2/(fan_in + fan_out))`.
    XavierNormal { gain: f64 },
    /// `torch.nn.init.kaiming_uniform_` for ReLU: uniform in
    /// `±sqrt(6/fan)`.
    KaimingUniform { fan: Fan },
    /// `torch.nn.init.kaiming_normal_` for ReLU: std `sqrt(2/fan)`.
    KaimingNormal { fan: Fan },
}

/// Which fan a Kaiming initializer preserves (PyTorch's `mode`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fan {
    In,
    Out,
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
    pub initializer: Initializer,
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

/// The settings of a training section, each with what it means and its
/// default (docs/language.md has the full table; editors show these).
pub const SETTINGS_DOC: &[(&str, &str)] = &[
    ("data", "The data set: `fashion_mnist(path, validation=0)`, `mnist(...)`, `cifar10(...)`, `image_folder(path, size=[H, W], ...)`, `npy(path, ...)`; `validation` is the held-out fraction of the training set; `size` resizes each image of a folder as it is read. Required."),
    ("batch_size", "Images per step, an int ≥ 1. Default 64."),
    ("epochs", "Passes over the training set, an int ≥ 1. Default 10."),
    ("seed", "The seed of initialization, shuffling, augmentation and dropout, an int ≥ 0. Default 0."),
    ("loss", "`cross_entropy(label_smoothing=0)` or `mse`. Default `cross_entropy()`."),
    ("metrics", "A list of `accuracy`, `top5`; the loss is always computed. Default `[accuracy]`."),
    ("optimizer", "`sgd(lr, momentum=0, dampening=0, nesterov=false, weight_decay=0)`, `adam(lr=1e-3, ...)`, `adamw(...)`, `radam(...)`, `lookahead(inner, k=5, alpha=0.5)`. Default `sgd(lr=0.01)`."),
    ("schedule", "The learning rate per epoch: `constant`, `step(step_size, gamma=0.1)`, `multistep(milestones, gamma=0.1)`, `exponential(gamma)`, `cosine(t_max=epochs, eta_min=0)`, `warmup(epochs, then=constant)`, `one_cycle(max_lr, ...)`, `reduce_on_plateau(...)`. Default `constant`."),
    ("augment", "A list of `resize(size)`, `random_crop(size, padding=0)`, `horizontal_flip(p=0.5)`, `normalize(mean, std)`. Default none."),
    ("early_stopping", "`early_stopping(monitor=val_loss, mode, patience=5, min_delta=0, restore_best=true)`. Default off."),
    ("initializer", "How fresh convolution and linear weights are drawn: `xavier_uniform(gain=1)`, `xavier_normal(gain=1)`, `kaiming_uniform(mode=fan_in)`, `kaiming_normal(mode=fan_in)` (PyTorch's functions; Kaiming's for ReLU). Biases and batch norms keep PyTorch's defaults. Default: PyTorch's per-layer defaults."),
    ("init", "Initial weights: `\"weights.safetensors\"` or `load(path, keys=[\"backbone.*\"], strict=false)`. Default none."),
    ("freeze", "Parameter-name patterns not to train, `*` matching anything: `[\"features.*\"]`. Default none."),
];

const SETTINGS: [&str; SETTINGS_DOC.len()] = {
    let mut names = [""; SETTINGS_DOC.len()];
    let mut i = 0;
    while i < names.len() {
        names[i] = SETTINGS_DOC[i].0;
        i += 1;
    }
    names
};

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
        None => Some(Optimizer::default()),
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
    let initializer = match get("initializer") {
        None => Some(Initializer::Default),
        Some((v, s, _)) => read_initializer(ctx, v, s),
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
        initializer: initializer?,
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
