//! The training loop: `nnc run`.
//!
//! Per batch: the training graph (forward, loss, gradients, batch-norm
//! updates) runs on the reference executor, then the optimizer's update
//! graph. Per epoch: evaluation on the validation split, metrics, the
//! schedule, early stopping and an atomic checkpoint. A run killed at any
//! moment and resumed with `--resume` ends with the same weights, bit for
//! bit: every random choice is a function of the seed and the position
//! (epoch, step, image), and checkpoints hold everything else. Ctrl-C
//! stops after the current step with a checkpoint of the partial epoch.
//!
//! The pieces live beside this file: `setup` (data and its checks),
//! `checkpoint` (save and resume), `transfer` (`init`), `metrics`.

use super::augment::Pipeline;
use super::checkpoint::{self, Identity, Meta};
use super::data::Dataset;
use super::loader;
use super::metrics::{self, metric_value, EpochRecord, Stats, Tally};
use super::schedule::Schedule;
use super::session::{NonFinite, Session};
use super::{interrupt, setup};
use crate::autodiff::optimizer::Optimizer;
use crate::check::train::{Mode as MonitorMode, TrainConfig};
use crate::diag_codes as codes;
use crate::pipeline::LoadedModel;
use crate::rng::mix;

use crate::weights::{safetensors as st, WeightSet};

use std::io::Write as _;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

pub struct RunOptions {
    pub data: Option<PathBuf>,
    pub epochs: Option<u64>,
    pub metrics: Option<PathBuf>,
    pub checkpoint_dir: PathBuf,
    pub resume: bool,
    pub seed: Option<u64>,
    /// Draw a progress bar (on a terminal) rather than plain lines.
    pub progress_bar: bool,
    /// Use only the first N training images (smoke runs, tests).
    pub limit: Option<usize>,
    /// Print nothing (tests).
    pub quiet: bool,
    /// Which backend trains (`crate::backend::by_name`).
    pub backend: String,
}

#[derive(Debug)]
pub struct Report {
    pub epochs: Vec<EpochRecord>,
    pub test: Option<Stats>,
    pub stopped_early_at: Option<u64>,
    pub seconds: f64,
    /// Parameters and buffers at the end (the best epoch's when early
    /// stopping restores it), under their `state_dict` names.
    pub parameters: WeightSet,
    pub checkpoint_dir: PathBuf,
    pub outcome: Outcome,
}

/// How a run ended.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Every epoch ran, or early stopping ended the run.
    Finished,
    /// `--resume` of a run that had already finished: nothing was trained.
    AlreadyFinished { epochs: u64 },
    /// Ctrl-C: a checkpoint was written after `epochs_done` epochs and
    /// `batches_done` of the `batches` of the next one.
    Interrupted {
        epochs_done: u64,
        batches_done: u64,
        batches: u64,
    },
}

/// A problem that stops a run: a message, the setting of the training
/// section it concerns (for a located diagnostic), and a fix.
#[derive(Debug, Clone, PartialEq)]
pub struct RunError {
    pub code: &'static str,
    pub message: String,
    pub setting: Option<&'static str>,
    pub help: Option<String>,
}

impl From<String> for RunError {
    fn from(message: String) -> RunError {
        RunError {
            code: codes::LOWERING,
            message,
            setting: None,
            help: None,
        }
    }
}

impl RunError {
    /// A bug in nnc rather than a problem with the input (exit code 2).
    pub fn is_internal(&self) -> bool {
        self.code == codes::INTERNAL
    }
}

fn load_error(e: loader::LoadError) -> RunError {
    match e {
        loader::LoadError::Data(m) => err(codes::DATA, m, Some("data"), None),
        loader::LoadError::Bug(m) => err(
            codes::INTERNAL,
            format!("the data loader failed: {m}"),
            None,
            Some("this is a bug in nnc; please report it with the command and the data".into()),
        ),
    }
}

/// A file or folder of the run that cannot be written or read.
fn io_error(message: String) -> RunError {
    err(codes::IO, message, None, None)
}

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

pub(super) fn err(
    code: &'static str,
    message: impl Into<String>,
    setting: Option<&'static str>,
    help: Option<String>,
) -> RunError {
    RunError {
        code,
        message: message.into(),
        setting,
        help,
    }
}

/// Trains as the training section says; flags in `opts` override it.
pub fn run(probe: &LoadedModel, cfg: &TrainConfig, opts: &RunOptions) -> Result<Report, RunError> {
    let started = Instant::now();
    let epochs = opts.epochs.unwrap_or(cfg.epochs as u64);
    if epochs == 0 {
        return Err(err(
            codes::INVALID_SETTING,
            "a run needs at least 1 epoch",
            opts.epochs.is_none().then_some("epochs"),
            Some("use `--epochs 1` or more".into()),
        ));
    }
    let batch_size = cfg.batch_size as usize;
    let seed = opts.seed.unwrap_or(cfg.seed as u64);
    let backend = crate::backend::by_name(&opts.backend)
        .ok_or_else(|| RunError::from(format!("no backend named `{}`", opts.backend)))?;
    // The model and the data, checked against each other.
    let splits = setup::prepare(cfg, opts, &probe.model, seed)?;
    let paths = Paths::new(opts);
    let state = match start(probe, cfg, opts, &paths, seed, epochs)? {
        Start::Fresh(state) | Start::Resumed(state) => state,
        Start::Finished(done) => {
            return Ok(Report {
                epochs: metrics::read_records(&paths.metrics, done.epoch),
                test: None,
                stopped_early_at: done.stopped_early.then_some(done.epoch),
                seconds: started.elapsed().as_secs_f64(),
                parameters: done.weights,
                checkpoint_dir: paths.dir,
                outcome: Outcome::AlreadyFinished { epochs: done.epoch },
            })
        }
    };
    let steps_per_epoch = splits.train.len().div_ceil(batch_size) as u64;
    let mut schedule = Schedule::new(
        cfg.schedule.clone(),
        state.optimizer.base_lr(),
        epochs,
        steps_per_epoch,
    );
    if let Some((lr, best, bad)) = state.meta.plateau {
        schedule.restore_plateau(lr, best, bad);
    }
    metrics::rewrite(&paths.metrics, &state.records).map_err(io_error)?;
    say(
        opts,
        format!(
            "training `{}` on {} images ({} for validation), {} epoch{} of {steps_per_epoch} steps, batch {batch_size}, {} backend",
            cfg.network,
            splits.train.len(),
            splits.val.as_ref().map_or(0, |v| v.len()),
            epochs,
            if epochs == 1 { "" } else { "s" },
            backend.name()
        ),
    );
    say(opts, format!("machine: {}", crate::host::Host::this()));
    let session = Session::new(
        backend.as_ref(),
        probe,
        state.weights,
        state.optimizer,
        state.optimizer_state,
        &state.trainable,
    )?;
    let monitor = cfg
        .early_stopping
        .as_ref()
        .map(|e| (e.monitor.clone(), e.mode))
        .unwrap_or_else(|| {
            if splits.val.is_some() {
                ("val_accuracy".into(), MonitorMode::Max)
            } else {
                ("train_loss".into(), MonitorMode::Min)
            }
        });
    let mut trainer = Trainer {
        cfg,
        opts,
        splits,
        session,
        schedule,
        meta: state.meta,
        records: state.records,
        monitor,
        paths,
        epochs,
        batch_size,
        seed,
        steps_per_epoch,
        started,
    };
    let mut outcome = Outcome::Finished;
    for epoch in trainer.meta.epoch..epochs {
        let Some(record) = trainer.train_epoch(epoch)? else {
            outcome = Outcome::Interrupted {
                epochs_done: epoch,
                batches_done: trainer.meta.batches_done,
                batches: steps_per_epoch,
            };
            break;
        };
        if trainer.end_epoch(record)? {
            break;
        }
        if interrupt::requested() && epoch + 1 < epochs {
            outcome = Outcome::Interrupted {
                epochs_done: epoch + 1,
                batches_done: 0,
                batches: steps_per_epoch,
            };
            break;
        }
    }
    trainer.finish(outcome)
}

/// Progress is best effort: a closed stderr must not stop training.
fn say(opts: &RunOptions, s: String) {
    if !opts.quiet {
        let _ = writeln!(std::io::stderr(), "{s}");
    }
}

/// Where a run writes.
struct Paths {
    dir: PathBuf,
    last: PathBuf,
    best: PathBuf,
    metrics: PathBuf,
}

impl Paths {
    fn new(opts: &RunOptions) -> Paths {
        let dir = opts.checkpoint_dir.clone();
        Paths {
            last: dir.join("last.safetensors"),
            best: dir.join("best.safetensors"),
            metrics: opts
                .metrics
                .clone()
                .unwrap_or_else(|| dir.join("metrics.jsonl")),
            dir,
        }
    }
}

/// What training starts from: parameters and buffers, the optimizer and
/// its state, where the run stands, and the epochs already recorded.
struct State {
    weights: WeightSet,
    trainable: Vec<String>,
    optimizer: Optimizer,
    optimizer_state: WeightSet,
    meta: Meta,
    records: Vec<EpochRecord>,
}

/// A resumed run that had already finished.
struct Done {
    epoch: u64,
    stopped_early: bool,
    weights: WeightSet,
}

enum Start {
    Fresh(State),
    Resumed(State),
    Finished(Done),
}

/// Fresh parameters (or `init`'s), or the checkpoint `--resume` continues,
/// checked against this run before anything in its directory is written.
fn start(
    probe: &LoadedModel,
    cfg: &TrainConfig,
    opts: &RunOptions,
    paths: &Paths,
    seed: u64,
    epochs: u64,
) -> Result<Start, RunError> {
    let frozen = |name: &str| cfg.freeze.iter().any(|p| crate::glob::matches(p, name));
    let mut weights = crate::weights::init::initialize_with(&probe.model, seed, cfg.initializer);
    let is_param = |name: &str| {
        probe
            .model
            .tensors()
            .any(|p| p.name == name && p.kind == crate::check::model::TensorKind::Parameter)
    };
    let trainable: Vec<String> = weights
        .keys()
        .filter(|k| is_param(k) && !frozen(k))
        .cloned()
        .collect();
    if trainable.is_empty() {
        return Err(err(
            codes::BAD_FREEZE,
            "every parameter is frozen: nothing would train",
            Some("freeze"),
            None,
        ));
    }
    let optimizer = Optimizer::new(cfg.optimizer.clone());
    let initial_state = |weights: &WeightSet| {
        let params: WeightSet = trainable
            .iter()
            .map(|k| (k.clone(), weights[k].clone()))
            .collect();
        optimizer.initial_state(&params)
    };
    let identity = Identity {
        network: &cfg.network,
        optimizer: cfg.optimizer.to_string(),
        batch_size: cfg.batch_size as u64,
        limit: opts.limit.map(|l| l as u64),
        seed,
    };
    if !opts.resume {
        std::fs::create_dir_all(&paths.dir)
            .map_err(|e| io_error(format!("cannot create `{}`: {e}", paths.dir.display())))?;
        if let Some(init) = &cfg.init {
            let report = super::transfer::load_init(&mut weights, init)
                .map_err(|e| err(codes::WEIGHTS, e, Some("init"), None))?;
            say(opts, report);
        }
        // Lookahead's slow weights start at the (loaded) parameters.
        let optimizer_state = initial_state(&weights);
        return Ok(Start::Fresh(State {
            weights,
            trainable,
            optimizer,
            optimizer_state,
            meta: Meta {
                network: cfg.network.clone(),
                optimizer: identity.optimizer.clone(),
                batch_size: identity.batch_size,
                limit: identity.limit,
                seed,
                epoch: 0,
                batches_done: 0,
                partial: Tally::new(want_top5(cfg)),
                partial_seconds: 0.0,
                step: 0,
                best: None,
                bad_epochs: 0,
                plateau: None,
                stopped_early: false,
            },
            records: Vec::new(),
        }));
    }
    let saved = checkpoint::load(
        &paths.last,
        &identity,
        &weights,
        &initial_state(&weights),
        want_top5(cfg),
    )
    .map_err(|m| err(codes::WEIGHTS, m.message, None, m.help))?;
    let meta = saved.meta;
    if meta.stopped_early || meta.epoch >= epochs {
        let done = meta.epoch;
        say(
            opts,
            format!(
                "the run in `{}` already finished: {}{}; nothing to resume{}",
                paths.dir.display(),
                crate::diag::count(done as i64, "epoch"),
                if meta.stopped_early {
                    " (stopped early)"
                } else {
                    ""
                },
                if meta.stopped_early {
                    String::new()
                } else {
                    format!(" (pass `--epochs {}` or more to train longer)", done + 1)
                }
            ),
        );
        return Ok(Start::Finished(Done {
            epoch: done,
            stopped_early: meta.stopped_early,
            weights: saved.weights,
        }));
    }
    say(
        opts,
        format!(
            "resuming `{}` after epoch {}{} (step {})",
            cfg.network,
            meta.epoch,
            if meta.batches_done > 0 {
                format!(
                    " and {} batches of epoch {}",
                    meta.batches_done,
                    meta.epoch + 1
                )
            } else {
                String::new()
            },
            meta.step
        ),
    );
    Ok(Start::Resumed(State {
        weights: saved.weights,
        trainable,
        optimizer,
        optimizer_state: saved.optimizer_state,
        records: metrics::read_records(&paths.metrics, meta.epoch),
        meta,
    }))
}

/// A run in progress: the data, the model on its backend, and where it
/// stands.
struct Trainer<'a> {
    cfg: &'a TrainConfig,
    opts: &'a RunOptions,
    splits: setup::Splits,
    session: Session<'a>,
    schedule: Schedule,
    meta: Meta,
    records: Vec<EpochRecord>,
    /// The monitored metric and whether larger is better.
    monitor: (String, MonitorMode),
    paths: Paths,
    epochs: u64,
    batch_size: usize,
    seed: u64,
    steps_per_epoch: u64,
    started: Instant,
}

impl Trainer<'_> {
    fn save(&self) -> Result<(), RunError> {
        checkpoint::save(
            &self.paths.last,
            &self.session.weights(),
            &self.session.optimizer_state(),
            &self.meta,
        )
        .map_err(io_error)
    }

    /// Trains epoch `epoch` (0-based), from where an interrupted run left
    /// it, and evaluates on the validation split; `None` when Ctrl-C
    /// stopped it (after a checkpoint of the partial epoch).
    fn train_epoch(&mut self, epoch: u64) -> Result<Option<EpochRecord>, RunError> {
        let t0 = Instant::now();
        // Seconds an interrupted run already spent on this epoch.
        let earlier = std::mem::take(&mut self.meta.partial_seconds);
        let (train, batch_size) = (self.splits.train.clone(), self.batch_size);
        // An interrupted epoch continues where it stopped, with its tally.
        let skip = std::mem::take(&mut self.meta.batches_done);
        let mut sums = std::mem::replace(&mut self.meta.partial, Tally::new(want_top5(self.cfg)));
        let mut order = loader::epoch_order(train.len(), self.seed, epoch);
        order.drain(..(skip as usize * batch_size).min(order.len()));
        let mut batches = loader::start(
            train.clone(),
            order,
            batch_size,
            self.splits.pipeline.clone(),
            Some((self.seed, epoch)),
        );
        let bar = progress(self.opts, epoch, self.epochs, train.len() as u64);
        if let Some(b) = &bar.bar {
            b.set_position((skip as usize * batch_size).min(train.len()) as u64);
        }
        let mut wait = 0.0;
        let mut lr = self.schedule.lr(epoch, self.meta.step);
        let mut done = skip;
        loop {
            let tw = Instant::now();
            let Some(batch) = batches.next() else { break };
            let batch = batch.map_err(load_error)?;
            wait += tw.elapsed().as_secs_f64();
            let b = batch.labels.len();
            lr = self.schedule.lr(epoch, self.meta.step);
            let labels = batch.labels.clone();
            let step = self.meta.step + 1;
            let step_seed = mix(self.seed ^ mix(step));
            let out = match self.session.train_step(batch, lr, step, step_seed)? {
                Ok(out) => out,
                Err(NonFinite(first)) => {
                    bar.finish();
                    return Err(err(
                        codes::NON_FINITE,
                        format!(
                            "the loss or a gradient became non-finite in epoch {}, step {step}: {first}",
                            epoch + 1
                        ),
                        Some("optimizer"),
                        Some(format!(
                            "try a lower learning rate (it was {}); the last good checkpoint is `{}`",
                            show_lr(lr),
                            self.paths.last.display()
                        )),
                    ));
                }
            };
            self.meta.step = step;
            sums.add(out.loss, &out.logits, &labels);
            done += 1;
            bar.step(b as u64, &sums.stats(), lr);
            if interrupt::requested() && done < self.steps_per_epoch {
                bar.finish();
                self.meta.epoch = epoch;
                self.meta.batches_done = done;
                self.meta.partial = sums;
                self.meta.partial_seconds = earlier + t0.elapsed().as_secs_f64();
                self.save()?;
                return Ok(None);
            }
        }
        let train_stats = sums.stats();
        let val_stats = match self.splits.val.clone() {
            Some(v) => Some(evaluate(
                &mut self.session,
                &v,
                batch_size,
                &self.splits.pipeline,
                self.cfg,
            )?),
            None => None,
        };
        bar.finish();
        Ok(Some(EpochRecord {
            epoch: epoch + 1,
            train: train_stats,
            val: val_stats,
            lr,
            seconds: earlier + t0.elapsed().as_secs_f64(),
            data_wait: wait,
        }))
    }

    /// Records an epoch: metrics, the schedule's and early stopping's view
    /// of the monitored metric, `best.safetensors` and the checkpoint.
    /// Returns whether early stopping ends the run.
    fn end_epoch(&mut self, record: EpochRecord) -> Result<bool, RunError> {
        let epoch = record.epoch;
        say(
            self.opts,
            epoch_line(&record, self.epochs, self.splits.train.len()),
        );
        metrics::append_record(&self.paths.metrics, &record).map_err(io_error)?;
        let value = metric_value(&record, &self.monitor.0)
            .ok_or_else(|| format!("nothing computes `{}`", self.monitor.0))?;
        if let Some(m) = self.schedule.monitor().map(str::to_string) {
            if let Some(v) = metric_value(&record, &m) {
                self.schedule.observe(v);
            }
        }
        let min_delta = self
            .cfg
            .early_stopping
            .as_ref()
            .map_or(0.0, |e| e.min_delta);
        let improved = match self.meta.best {
            None => true,
            Some((b, _)) => match self.monitor.1 {
                MonitorMode::Min => value < b - min_delta,
                MonitorMode::Max => value > b + min_delta,
            },
        };
        if improved {
            self.meta.best = Some((value, epoch));
            self.meta.bad_epochs = 0;
            st::save(&self.paths.best, &self.session.weights())
                .map_err(|e| io_error(e.to_string()))?;
        } else {
            self.meta.bad_epochs += 1;
        }
        self.records.push(record);
        let stop_early =
            self.cfg.early_stopping.as_ref().is_some_and(|es| {
                self.meta.bad_epochs >= es.patience as u64 && epoch < self.epochs
            });
        self.meta.epoch = epoch;
        self.meta.plateau = self.schedule.plateau_state();
        self.meta.stopped_early = stop_early;
        self.save()?;
        if stop_early {
            say(
                self.opts,
                format!(
                    "early stopping after epoch {epoch}: `{}` has not improved for {} (best {:.4} at epoch {})",
                    self.monitor.0,
                    crate::diag::count(self.meta.bad_epochs as i64, "epoch"),
                    self.meta.best.map_or(f64::NAN, |b| b.0),
                    self.meta.best.map_or(0, |b| b.1)
                ),
            );
        }
        Ok(stop_early)
    }

    /// After the last epoch: the best weights restored (when early
    /// stopping says so), the test split, the curves, the report.
    fn finish(mut self, outcome: Outcome) -> Result<Report, RunError> {
        let test_stats = if outcome == Outcome::Finished {
            let restore = self
                .cfg
                .early_stopping
                .as_ref()
                .is_some_and(|e| e.restore_best);
            if restore && self.paths.best.exists() {
                let best = st::read(&self.paths.best).map_err(|e| io_error(e.to_string()))?;
                self.session.set_weights(best)?;
                if let Some((v, e)) = self.meta.best {
                    say(
                        self.opts,
                        format!(
                            "restored the weights of epoch {e} (`{}` = {v:.4})",
                            self.monitor.0
                        ),
                    );
                }
            }
            match self.splits.test.clone() {
                Some(t) => {
                    let s = evaluate(
                        &mut self.session,
                        &t,
                        self.batch_size,
                        &self.splits.pipeline,
                        self.cfg,
                    )?;
                    let row = metrics::test_row(
                        self.records.last().map_or(0, |r| r.epoch),
                        &s,
                        self.records.last().map_or(0.0, |r| r.lr),
                        self.started.elapsed().as_secs_f64(),
                    );
                    metrics::append_line(&self.paths.metrics, &row).map_err(io_error)?;
                    Some(s)
                }
                None => None,
            }
        } else {
            None
        };
        if !self.records.is_empty() {
            let stem = self.paths.metrics.with_extension("");
            match super::plot::write(
                &self.records,
                test_stats.as_ref(),
                &format!("{} on {}", self.cfg.network, train_name(self.cfg)),
                &stem,
            ) {
                Ok(paths) => {
                    let names: Vec<String> =
                        paths.iter().map(|p| p.display().to_string()).collect();
                    say(self.opts, format!("curves: {}", names.join(", ")));
                }
                Err(e) => say(self.opts, format!("note: {e}")),
            }
        }
        Ok(Report {
            stopped_early_at: self.meta.stopped_early.then_some(self.meta.epoch),
            seconds: self.started.elapsed().as_secs_f64(),
            parameters: self.session.weights(),
            checkpoint_dir: self.paths.dir,
            epochs: self.records,
            test: test_stats,
            outcome,
        })
    }
}

fn train_name(cfg: &TrainConfig) -> &'static str {
    use crate::check::train::Dataset as D;
    match cfg.data.dataset {
        D::FashionMnist => "Fashion-MNIST",
        D::Mnist => "MNIST",
        D::Cifar10 => "CIFAR-10",
        D::ImageFolder => "an image folder",
        D::Npy => ".npy data",
    }
}

/// A learning rate as a person writes it, to 4 significant digits: `0.05`,
/// `1`, `0.04804`, `3e-5`.
pub fn show_lr(lr: f64) -> String {
    let trim = |m: &str| -> String {
        if m.contains('.') {
            m.trim_end_matches('0').trim_end_matches('.').to_string()
        } else {
            m.to_string()
        }
    };
    if lr == 0.0 {
        "0".to_string()
    } else if (1e-3..1e4).contains(&lr.abs()) {
        let decimals = (3 - lr.abs().log10().floor() as i64).max(0) as usize;
        trim(&format!("{lr:.decimals$}"))
    } else {
        let s = format!("{lr:.3e}");
        match s.split_once('e') {
            Some((m, e)) => format!("{}e{e}", trim(m)),
            None => s,
        }
    }
}

fn want_top5(cfg: &TrainConfig) -> bool {
    cfg.metrics.iter().any(|m| m == "top5")
}

fn evaluate(
    session: &mut Session<'_>,
    data: &Arc<Dataset>,
    batch_size: usize,
    pipeline: &Arc<Pipeline>,
    cfg: &TrainConfig,
) -> Result<Stats, RunError> {
    let batches = loader::start(
        data.clone(),
        (0..data.len()).collect(),
        batch_size,
        pipeline.clone(),
        None,
    );
    let mut sums = Tally::new(want_top5(cfg));
    for batch in batches {
        let batch = batch.map_err(load_error)?;
        let labels = batch.labels.clone();
        // The evaluation graph computes the training section's loss too.
        let out = session.evaluate(batch)?;
        sums.add(out.loss, &out.logits, &labels);
    }
    Ok(sums.stats())
}

fn epoch_line(r: &EpochRecord, epochs: u64, images: usize) -> String {
    let mut line = format!(
        "epoch {:>3}/{epochs}  train loss {:.4} acc {:.4}",
        r.epoch, r.train.loss, r.train.accuracy
    );
    if let Some(v) = &r.val {
        line.push_str(&format!("  val loss {:.4} acc {:.4}", v.loss, v.accuracy));
    }
    line.push_str(&format!(
        "  lr {}  {:.1} s  {:.0} img/s  data wait {:.1} s",
        show_lr(r.lr),
        r.seconds,
        images as f64 / r.seconds.max(1e-9),
        r.data_wait
    ));
    line
}

/// The progress bar of an epoch, or nothing when stderr is not a terminal.
/// One draw per step: the statistics are read by the bar's template from a
/// shared string, so updating them does not draw a second time.
struct Bar {
    bar: Option<indicatif::ProgressBar>,
    stats: Arc<std::sync::Mutex<String>>,
}

impl Bar {
    fn step(&self, images: u64, s: &Stats, lr: f64) {
        if let Some(bar) = &self.bar {
            if let Ok(mut text) = self.stats.lock() {
                *text = format!(
                    "loss {:.4} acc {:.4} lr {}",
                    s.loss,
                    s.accuracy,
                    show_lr(lr)
                );
            }
            bar.inc(images);
        }
    }

    fn finish(&self) {
        if let Some(b) = &self.bar {
            b.finish_and_clear();
        }
    }
}

fn progress(opts: &RunOptions, epoch: u64, epochs: u64, images: u64) -> Bar {
    let stats = Arc::new(std::sync::Mutex::new(String::new()));
    if !opts.progress_bar || opts.quiet {
        return Bar { bar: None, stats };
    }
    let bar = indicatif::ProgressBar::new(images);
    let shared = stats.clone();
    let style = indicatif::ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} {stats} {rate} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .with_key(
        "rate",
        |state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            let _ = write!(w, "{:.0} img/s", state.per_sec());
        },
    )
    .with_key(
        "stats",
        move |_: &indicatif::ProgressState, w: &mut dyn std::fmt::Write| {
            if let Ok(text) = shared.lock() {
                let _ = w.write_str(&text);
            }
        },
    )
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{}/{epochs}", epoch + 1));
    Bar {
        bar: Some(bar),
        stats,
    }
}

/// The table printed at the end of a run.
pub fn table(report: &Report) -> String {
    let mut out =
        String::from("epoch  train loss  train acc  val loss  val acc        lr   seconds\n");
    for r in &report.epochs {
        let (vl, va) = r
            .val
            .as_ref()
            .map_or(("-".to_string(), "-".to_string()), |v| {
                (format!("{:.4}", v.loss), format!("{:.4}", v.accuracy))
            });
        out.push_str(&format!(
            "{:>5}  {:>10.4}  {:>9.4}  {:>8}  {:>7}  {:>8}  {:>8.1}\n",
            r.epoch,
            r.train.loss,
            r.train.accuracy,
            vl,
            va,
            show_lr(r.lr),
            r.seconds
        ));
    }
    if let Some(t) = &report.test {
        out.push_str(&format!(
            "test loss {:.4}, test accuracy {:.4}\n",
            t.loss, t.accuracy
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_loader_bug_is_internal_and_bad_data_is_not() {
        use super::{load_error, loader::LoadError};
        let bug = load_error(LoadError::Bug("index out of bounds".into()));
        assert!(bug.is_internal() && bug.message.contains("index out of bounds"));
        let data = load_error(LoadError::Data("label 12".into()));
        assert!(!data.is_internal() && data.code == crate::diag_codes::DATA);
    }

    #[test]
    fn learning_rates_read_as_written() {
        use super::show_lr;
        assert_eq!(show_lr(1.0), "1");
        assert_eq!(show_lr(0.05), "0.05");
        assert_eq!(show_lr(0.0), "0");
        assert_eq!(show_lr(1e-5), "1e-5");
        assert_eq!(show_lr(2.5e-5), "2.5e-5");
        assert_eq!(show_lr(0.000_123_4), "1.234e-4");
        assert_eq!(show_lr(0.048_043), "0.04804");
        assert_eq!(show_lr(123.45), "123.5");
    }
}
