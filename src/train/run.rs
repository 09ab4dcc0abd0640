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
use super::loader::{self, mix};
use super::metrics::{self, metric_value, EpochRecord, Stats, Tally};
use super::schedule::Schedule;
use super::session::{NonFinite, Session};
use super::{interrupt, setup};
use crate::autodiff::optimizer::Optimizer;
use crate::check::train::{Mode as MonitorMode, TrainConfig};
use crate::diag_codes as codes;
use crate::pipeline::LoadedModel;

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
    let say = |s: String| {
        if !opts.quiet {
            // Progress is best effort: a closed stderr must not stop training.
            let _ = writeln!(std::io::stderr(), "{s}");
        }
    };
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
    let setup::Splits {
        train,
        val,
        test,
        pipeline,
    } = setup::prepare(cfg, opts, &probe.model, seed)?;
    // Parameters, buffers and optimizer state: fresh, loaded or resumed.
    let frozen = |name: &str| cfg.freeze.iter().any(|p| crate::glob::matches(p, name));
    let mut weights = crate::weights::init::initialize(&probe.model, seed);
    let is_param = |name: &str| {
        probe
            .model
            .tensors()
            .any(|p| p.name == name && p.kind == crate::check::model::TensorKind::Parameter)
    };
    let trainable_names: Vec<String> = weights
        .keys()
        .filter(|k| is_param(k) && !frozen(k))
        .cloned()
        .collect();
    if trainable_names.is_empty() {
        return Err(err(
            codes::BAD_FREEZE,
            "every parameter is frozen: nothing would train",
            Some("freeze"),
            None,
        ));
    }
    let optimizer = Optimizer::new(cfg.optimizer.clone());
    let base_lr = optimizer.base_lr();
    let trainable = |weights: &WeightSet| -> WeightSet {
        trainable_names
            .iter()
            .map(|k| (k.clone(), weights[k].clone()))
            .collect()
    };
    let mut optimizer_state = optimizer.initial_state(&trainable(&weights));
    let steps_per_epoch = train.len().div_ceil(batch_size) as u64;
    let mut schedule = Schedule::new(cfg.schedule.clone(), base_lr, epochs, steps_per_epoch);
    let monitor = cfg
        .early_stopping
        .as_ref()
        .map(|e| (e.monitor.clone(), e.mode))
        .unwrap_or_else(|| {
            if val.is_some() {
                ("val_accuracy".into(), MonitorMode::Max)
            } else {
                ("train_loss".into(), MonitorMode::Min)
            }
        });
    let dir = opts.checkpoint_dir.clone();
    let last_path = dir.join("last.safetensors");
    let best_path = dir.join("best.safetensors");
    let metrics_path = opts
        .metrics
        .clone()
        .unwrap_or_else(|| dir.join("metrics.jsonl"));
    let identity = Identity {
        network: &cfg.network,
        optimizer: cfg.optimizer.to_string(),
        batch_size: batch_size as u64,
        limit: opts.limit.map(|l| l as u64),
        seed,
    };
    let mut meta = Meta {
        network: cfg.network.clone(),
        optimizer: identity.optimizer.clone(),
        batch_size: identity.batch_size,
        limit: identity.limit,
        seed,
        epoch: 0,
        batches_done: 0,
        partial: Tally::new(want_top5(cfg)),
        step: 0,
        best: None,
        bad_epochs: 0,
        plateau: None,
        stopped_early: false,
    };
    let mut records: Vec<EpochRecord> = Vec::new();
    if opts.resume {
        // Everything is checked before anything in `dir` is written.
        let saved = checkpoint::load(
            &last_path,
            &identity,
            &weights,
            &optimizer_state,
            want_top5(cfg),
        )
        .map_err(|m| err(codes::WEIGHTS, m.message, None, m.help))?;
        weights = saved.weights;
        optimizer_state = saved.optimizer_state;
        meta = saved.meta;
        if let Some((lr, best, bad)) = meta.plateau {
            schedule.restore_plateau(lr, best, bad);
        }
        if meta.stopped_early || meta.epoch >= epochs {
            let done = meta.epoch;
            say(format!(
                "the run in `{}` already finished: {done} epoch{}{}; nothing to resume{}",
                dir.display(),
                if done == 1 { "" } else { "s" },
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
            ));
            return Ok(Report {
                epochs: metrics::read_records(&metrics_path, done),
                test: None,
                stopped_early_at: meta.stopped_early.then_some(done),
                seconds: started.elapsed().as_secs_f64(),
                parameters: weights,
                checkpoint_dir: dir,
                outcome: Outcome::AlreadyFinished { epochs: done },
            });
        }
        records = metrics::read_records(&metrics_path, meta.epoch);
        say(format!(
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
        ));
    } else {
        std::fs::create_dir_all(&dir)
            .map_err(|e| io_error(format!("cannot create `{}`: {e}", dir.display())))?;
        if let Some(init) = &cfg.init {
            let report = super::transfer::load_init(&mut weights, init)
                .map_err(|e| err(codes::WEIGHTS, e, Some("init"), None))?;
            say(report);
            // Lookahead's slow weights start at the loaded parameters.
            optimizer_state = optimizer.initial_state(&trainable(&weights));
        }
    }
    metrics::rewrite(&metrics_path, &records).map_err(io_error)?;

    say(format!(
        "training `{}` on {} images ({} for validation), {} epochs of {} steps, batch {batch_size}, {} backend",
        cfg.network,
        train.len(),
        val.as_ref().map_or(0, |v| v.len()),
        epochs,
        steps_per_epoch,
        backend.name()
    ));
    let mut session = Session::new(
        backend.as_ref(),
        probe,
        weights,
        optimizer,
        optimizer_state,
        &trainable_names,
    )?;
    let save = |session: &Session<'_>, meta: &Meta| {
        checkpoint::save(
            &last_path,
            &session.weights(),
            &session.optimizer_state(),
            meta,
        )
        .map_err(io_error)
    };
    let mut outcome = Outcome::Finished;
    for epoch in meta.epoch..epochs {
        let t0 = Instant::now();
        // An interrupted epoch continues where it stopped, with its tally.
        let skip = std::mem::take(&mut meta.batches_done);
        let mut sums = std::mem::replace(&mut meta.partial, Tally::new(want_top5(cfg)));
        let mut order = loader::epoch_order(train.len(), seed, epoch);
        order.drain(..(skip as usize * batch_size).min(order.len()));
        let batches = loader::start(
            train.clone(),
            order,
            batch_size,
            pipeline.clone(),
            Some((seed, epoch)),
        );
        let bar = progress(opts, epoch, epochs, train.len() as u64);
        if let Some(b) = &bar.bar {
            b.set_position((skip as usize * batch_size).min(train.len()) as u64);
        }
        let mut wait = 0.0;
        let mut lr = schedule.lr(epoch, meta.step);
        let mut done = skip;
        let mut batches = batches;
        loop {
            let tw = Instant::now();
            let Some(batch) = batches.next() else { break };
            let batch = batch.map_err(load_error)?;
            wait += tw.elapsed().as_secs_f64();
            let b = batch.labels.len();
            lr = schedule.lr(epoch, meta.step);
            let labels = batch.labels.clone();
            let step_seed = mix(seed ^ mix(meta.step + 1));
            let out = match session.train_step(batch, lr, meta.step + 1, step_seed)? {
                Ok(out) => out,
                Err(NonFinite(first)) => {
                    bar.finish();
                    return Err(err(
                        codes::NON_FINITE,
                        format!(
                            "the loss or a gradient became non-finite in epoch {}, step {}: {first}",
                            epoch + 1,
                            meta.step + 1
                        ),
                        Some("optimizer"),
                        Some(format!(
                            "try a lower learning rate (it was {}); the last good checkpoint is `{}`",
                            show_lr(lr),
                            last_path.display()
                        )),
                    ));
                }
            };
            meta.step += 1;
            sums.add(out.loss, &out.logits, &labels);
            done += 1;
            bar.step(b as u64, &sums.stats(), lr);
            if interrupt::requested() && done < steps_per_epoch {
                bar.finish();
                meta.epoch = epoch;
                meta.batches_done = done;
                meta.partial = sums.clone();
                save(&session, &meta)?;
                outcome = Outcome::Interrupted {
                    epochs_done: epoch,
                    batches_done: done,
                    batches: steps_per_epoch,
                };
                break;
            }
        }
        if outcome != Outcome::Finished {
            break;
        }
        let train_stats = sums.stats();
        let val_stats = match &val {
            Some(v) => Some(evaluate(&mut session, v, batch_size, &pipeline, cfg)?),
            None => None,
        };
        bar.finish();
        let record = EpochRecord {
            epoch: epoch + 1,
            train: train_stats,
            val: val_stats,
            lr,
            seconds: t0.elapsed().as_secs_f64(),
            data_wait: wait,
        };
        say(epoch_line(&record, epochs, train.len()));
        metrics::append_record(&metrics_path, &record).map_err(io_error)?;
        let value = metric_value(&record, &monitor.0)
            .ok_or_else(|| format!("nothing computes `{}`", monitor.0))?;
        if let Some(m) = schedule.monitor().map(str::to_string) {
            if let Some(v) = metric_value(&record, &m) {
                schedule.observe(v);
            }
        }
        let min_delta = cfg.early_stopping.as_ref().map_or(0.0, |e| e.min_delta);
        let improved = match meta.best {
            None => true,
            Some((b, _)) => match monitor.1 {
                MonitorMode::Min => value < b - min_delta,
                MonitorMode::Max => value > b + min_delta,
            },
        };
        if improved {
            meta.best = Some((value, epoch + 1));
            meta.bad_epochs = 0;
            st::save(&best_path, &session.weights()).map_err(|e| io_error(e.to_string()))?;
        } else {
            meta.bad_epochs += 1;
        }
        records.push(record);
        let stop_early = cfg
            .early_stopping
            .as_ref()
            .is_some_and(|es| meta.bad_epochs >= es.patience as u64 && epoch + 1 < epochs);
        meta.epoch = epoch + 1;
        meta.plateau = schedule.plateau_state();
        meta.stopped_early = stop_early;
        save(&session, &meta)?;
        if stop_early {
            say(format!(
                "early stopping after epoch {}: `{}` has not improved for {} epochs (best {:.4} at epoch {})",
                epoch + 1,
                monitor.0,
                meta.bad_epochs,
                meta.best.map_or(f64::NAN, |b| b.0),
                meta.best.map_or(0, |b| b.1)
            ));
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
    let test_stats = if outcome == Outcome::Finished {
        let restore = cfg.early_stopping.as_ref().is_some_and(|e| e.restore_best);
        if restore && best_path.exists() {
            let best_weights = st::read(&best_path).map_err(|e| io_error(e.to_string()))?;
            session.set_weights(best_weights)?;
            if let Some((v, e)) = meta.best {
                say(format!(
                    "restored the weights of epoch {e} (`{}` = {v:.4})",
                    monitor.0
                ));
            }
        }
        match &test {
            Some(t) => {
                let s = evaluate(&mut session, t, batch_size, &pipeline, cfg)?;
                let row = metrics::test_row(
                    records.last().map_or(0, |r| r.epoch),
                    &s,
                    records.last().map_or(0.0, |r| r.lr),
                    started.elapsed().as_secs_f64(),
                );
                metrics::append_line(&metrics_path, &row).map_err(io_error)?;
                Some(s)
            }
            None => None,
        }
    } else {
        None
    };
    if !records.is_empty() {
        let stem = metrics_path.with_extension("");
        match super::plot::write(
            &records,
            test_stats.as_ref(),
            &format!("{} on {}", cfg.network, train_name(cfg)),
            &stem,
        ) {
            Ok(paths) => {
                let names: Vec<String> = paths.iter().map(|p| p.display().to_string()).collect();
                say(format!("curves: {}", names.join(", ")));
            }
            Err(e) => say(format!("note: {e}")),
        }
    }
    Ok(Report {
        epochs: records,
        test: test_stats,
        stopped_early_at: meta.stopped_early.then_some(meta.epoch),
        seconds: started.elapsed().as_secs_f64(),
        parameters: session.weights(),
        checkpoint_dir: dir,
        outcome,
    })
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
