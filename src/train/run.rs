//! The training loop: `nnc run`.
//!
//! Per batch: the training graph (forward, loss, gradients, batch-norm
//! updates) runs on the reference executor, then the optimizer's update
//! graph. Per epoch: evaluation on the validation split, metrics, the
//! schedule, early stopping and an atomic checkpoint. A run killed at any
//! moment and resumed with `--resume` ends with the same weights, bit for
//! bit: every random choice is a function of the seed and the position
//! (epoch, step, image), and checkpoints hold everything else.

use super::augment::Pipeline;
use super::data::{self, Dataset};
use super::loader::{self, mix};
use super::metrics::{self, metric_value, EpochRecord, Stats, Tally};
use super::optim::{Optimizer, Stepper};
use super::schedule::Schedule;
use crate::check::train::{pattern_matches, Mode as MonitorMode, TrainConfig};
use crate::diag_codes as codes;
use crate::driver::LoadedModel;
use crate::ir::{Graph, Mode, Role};
use crate::weights::init::name_hash;
use crate::weights::{safetensors as st, WeightSet};
use ndarray::ArrayD;
use std::collections::{BTreeMap, HashMap};
use std::io::Write as _;
use std::path::{Path, PathBuf};
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
}

/// Builds the model for a batch size (the graphs have static shapes).
pub type Builder<'a> = dyn Fn(usize) -> Result<LoadedModel, String> + 'a;

struct Graphs<'a> {
    build: &'a Builder<'a>,
    cache: HashMap<(usize, bool), Graph>,
}

impl Graphs<'_> {
    fn get(&mut self, batch: usize, train: bool) -> Result<&Graph, String> {
        if !self.cache.contains_key(&(batch, train)) {
            let loaded = (self.build)(batch)?;
            let g = if train {
                loaded.lower(Mode::Train)
            } else {
                loaded.lower_evaluation()
            };
            let g = g.map_err(|d| d.message)?;
            self.cache.insert((batch, train), g);
        }
        Ok(&self.cache[&(batch, train)])
    }
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

impl std::fmt::Display for RunError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

fn err(
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
pub fn run(build: &Builder<'_>, cfg: &TrainConfig, opts: &RunOptions) -> Result<Report, RunError> {
    let started = Instant::now();
    let say = |s: String| {
        if !opts.quiet {
            // Progress is best effort: a closed stderr must not stop training.
            let _ = writeln!(std::io::stderr(), "{s}");
        }
    };
    let epochs = opts.epochs.unwrap_or(cfg.epochs as u64);
    let batch_size = cfg.batch_size as usize;

    // Data.
    let path = opts
        .data
        .clone()
        .or_else(|| cfg.data.path.as_ref().map(PathBuf::from));
    let from_file = opts.data.is_none().then_some("data");
    let splits = data::load(&cfg.data.dataset, path.as_deref())
        .map_err(|e| err(codes::DATA, e.0, from_file, None))?;
    let mut full = splits.train;
    if let Some(n) = opts.limit {
        let n = n.min(full.len());
        full = full.subset(&(0..n).collect::<Vec<_>>(), &full.source.clone());
    }
    let seed = opts.seed.unwrap_or(cfg.seed as u64);
    let order = loader::permutation(full.len(), mix(seed ^ name_hash("split")));
    let n_val = (full.len() as f64 * cfg.data.validation).round() as usize;
    let val = (n_val > 0).then(|| Arc::new(full.subset(&order[..n_val], "validation")));
    let train = Arc::new(full.subset(&order[n_val..], "training"));
    let test = splits.test.map(Arc::new);
    if batch_size > train.len() {
        return Err(err(
            codes::INVALID_SETTING,
            format!(
                "the batch size {batch_size} is larger than the {} training images",
                train.len()
            ),
            Some("batch_size"),
            Some(format!(
                "use `batch_size = {}` or less, or more data",
                train.len()
            )),
        ));
    }

    // The model, checked against the data.
    let probe = build(batch_size)?;
    let model_in: Vec<usize> = probe
        .model
        .input_sizes()
        .into_iter()
        .flatten()
        .map(|d| d as usize)
        .collect();
    let augment_setting = if cfg.augment.is_empty() {
        "data"
    } else {
        "augment"
    };
    let pipeline = Arc::new(
        Pipeline::new(cfg.augment.clone(), train.shape)
            .map_err(|e| err(codes::INVALID_SETTING, e, Some("augment"), None))?,
    );
    let image = pipeline
        .output_shape()
        .map_err(|e| err(codes::INVALID_SETTING, e, Some("augment"), None))?;
    if model_in.len() != 4 || model_in[1..] != image {
        return Err(err(
            codes::DATA,
            format!(
                "the data gives images of {:?}{}, but `{}` takes {:?}",
                image,
                if cfg.augment.is_empty() {
                    ""
                } else {
                    " after `augment`"
                },
                cfg.network,
                model_in.get(1..).unwrap_or(&[])
            ),
            Some(augment_setting),
            Some(if model_in.len() == 4 && model_in[1] == image[0] {
                format!("add `resize({})` to `augment`", model_in[2])
            } else {
                "change the network's input, or train it on other data".to_string()
            }),
        ));
    }
    let classes = probe
        .model
        .output
        .map(|o| probe.model.shape(o).to_vec())
        .unwrap_or_default();
    if classes.len() != 2 || classes[1].as_const() != Some(train.classes as i64) {
        return Err(err(
            codes::DATA,
            format!(
                "the data has {} classes, but `{}` outputs {}",
                train.classes,
                cfg.network,
                crate::check::dim::shape_to_string(&classes)
            ),
            Some("data"),
            Some(format!(
                "give the network's last layer {} outputs",
                train.classes
            )),
        ));
    }
    let frozen = |name: &str| cfg.freeze.iter().any(|p| pattern_matches(p, name));
    let mut graphs = Graphs {
        build,
        cache: HashMap::new(),
    };

    // Parameters, buffers and optimizer state: fresh, loaded or resumed.
    let mut weights = crate::weights::init::initialize(&probe.model, seed);
    if let Some(init) = &cfg.init {
        let report = load_init(&mut weights, init)
            .map_err(|e| err(codes::WEIGHTS, e, Some("init"), None))?;
        say(report);
    }
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
    let trainable: WeightSet = trainable_names
        .iter()
        .map(|k| (k.clone(), weights[k].clone()))
        .collect();
    let mut stepper = Stepper::new(optimizer, &trainable);
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
    let mut best: Option<(f64, u64)> = None;
    let mut bad_epochs = 0u64;
    let mut start_epoch = 0u64;
    let dir = opts.checkpoint_dir.clone();
    std::fs::create_dir_all(&dir)
        .map_err(|e| RunError::from(format!("cannot create `{}`: {e}", dir.display())))?;
    let last_path = dir.join("last.safetensors");
    let best_path = dir.join("best.safetensors");
    let metrics_path = opts
        .metrics
        .clone()
        .unwrap_or_else(|| dir.join("metrics.jsonl"));
    let mut records: Vec<EpochRecord> = Vec::new();
    if opts.resume {
        let (saved, meta) =
            st::read_with_metadata(&last_path).map_err(|e| format!("cannot resume: {e}"))?;
        if meta.get("format").map(String::as_str) != Some(CHECKPOINT_FORMAT) {
            return Err(RunError::from(format!(
                "`{}` is not an nnc checkpoint",
                last_path.display()
            )));
        }
        let saved_seed: u64 = meta
            .get("seed")
            .and_then(|s| s.parse().ok())
            .unwrap_or(seed);
        if saved_seed != seed {
            return Err(RunError::from(format!(
                "the checkpoint was made with seed {saved_seed}, not {seed}; resume with `--seed {saved_seed}`"
            )));
        }
        for (k, v) in saved {
            match k.strip_prefix("optimizer/") {
                Some(s) => {
                    stepper.state.insert(s.to_string(), v);
                }
                None => {
                    weights.insert(k, v);
                }
            }
        }
        let get = |k: &str| meta.get(k).and_then(|v| v.parse::<f64>().ok());
        start_epoch = get("epoch").unwrap_or(0.0) as u64;
        stepper.step = get("step").unwrap_or(0.0) as u64;
        bad_epochs = get("bad_epochs").unwrap_or(0.0) as u64;
        best = get("best")
            .zip(get("best_epoch"))
            .map(|(b, e)| (b, e as u64));
        if let Some(lr) = get("plateau_lr") {
            schedule.restore_plateau(
                lr,
                get("plateau_best").unwrap_or(f64::NAN),
                get("plateau_bad").unwrap_or(0.0) as i64,
            );
        }
        records = metrics::read_records(&metrics_path, start_epoch);
        say(format!(
            "resuming `{}` after epoch {start_epoch} (step {})",
            cfg.network, stepper.step
        ));
    }
    metrics::rewrite(&metrics_path, &records)?;

    say(format!(
        "training `{}` on {} images ({} for validation), {} epochs of {} steps, batch {batch_size}, reference backend",
        cfg.network,
        train.len(),
        val.as_ref().map_or(0, |v| v.len()),
        epochs,
        steps_per_epoch
    ));
    let mut stopped_early_at = None;
    for epoch in start_epoch..epochs {
        let t0 = Instant::now();
        let order = loader::epoch_order(train.len(), seed, epoch);
        let mut batches = loader::start(
            train.clone(),
            order,
            batch_size,
            pipeline.clone(),
            Some((seed, epoch)),
        );
        let bar = progress(opts, epoch, epochs, train.len() as u64);
        let mut sums = Tally::new(want_top5(cfg));
        let mut wait = 0.0;
        let mut lr = schedule.lr(epoch, stepper.step);
        loop {
            let tw = Instant::now();
            let Some(batch) = batches.next() else { break };
            let batch = batch.map_err(load_error)?;
            wait += tw.elapsed().as_secs_f64();
            let b = batch.labels.len();
            lr = schedule.lr(epoch, stepper.step);
            let g = graphs.get(b, true)?;
            let mut inputs = inputs_for(g, &weights, batch.x, Some(batch.target.clone()));
            let step_seed = mix(seed ^ mix(stepper.step + 1));
            let out = crate::backend::reference::run::<f32>(g, &inputs, step_seed)
                .map_err(|e| e.to_string())?;
            let loss = out["loss"].iter().next().copied().unwrap_or(f32::NAN) as f64;
            let non_finite = !loss.is_finite()
                || out
                    .iter()
                    .any(|(k, v)| k.starts_with("grad:") && v.iter().any(|x| !x.is_finite()));
            if non_finite {
                inputs.insert("target".into(), batch.target);
                let first =
                    match crate::backend::reference::run_checked::<f32>(g, &inputs, step_seed) {
                        Err(e) => e.to_string(),
                        Ok(_) => "a gradient".to_string(),
                    };
                finish(bar);
                return Err(err(
                    codes::NON_FINITE,
                    format!(
                        "the loss or a gradient became non-finite in epoch {}, step {}: {first}",
                        epoch + 1,
                        stepper.step + 1
                    ),
                    Some("optimizer"),
                    Some(format!(
                        "try a lower learning rate (it was {lr:e}); the last good checkpoint is `{}`",
                        last_path.display()
                    )),
                ));
            }
            sums.add(loss, &out["logits"], &batch.labels);
            for (k, v) in &out {
                if let Some(name) = k.strip_prefix("update:") {
                    weights.insert(name.to_string(), v.clone());
                }
            }
            let grads: WeightSet = out
                .into_iter()
                .filter_map(|(k, v)| k.strip_prefix("grad:").map(|n| (n.to_string(), v)))
                .collect();
            let mut params: WeightSet = trainable_names
                .iter()
                .map(|k| (k.clone(), weights[k].clone()))
                .collect();
            stepper.apply(&mut params, &grads, lr)?;
            weights.extend(params);
            if let Some(bar) = &bar {
                bar.inc(b as u64);
                let s = sums.stats();
                bar.set_message(format!("loss {:.4} acc {:.4}", s.loss, s.accuracy));
            }
        }
        let train_stats = sums.stats();
        let val_stats = match &val {
            Some(v) => Some(evaluate(
                &mut graphs,
                &weights,
                v,
                batch_size,
                &pipeline,
                cfg,
            )?),
            None => None,
        };
        finish(bar);
        let record = EpochRecord {
            epoch: epoch + 1,
            train: train_stats,
            val: val_stats,
            lr,
            seconds: t0.elapsed().as_secs_f64(),
            data_wait: wait,
        };
        say(epoch_line(&record, epochs, train.len()));
        metrics::append_record(&metrics_path, &record)?;
        let value = metric_value(&record, &monitor.0)
            .ok_or_else(|| format!("nothing computes `{}`", monitor.0))?;
        if let Some(m) = schedule.monitor().map(str::to_string) {
            if let Some(v) = metric_value(&record, &m) {
                schedule.observe(v);
            }
        }
        let min_delta = cfg.early_stopping.as_ref().map_or(0.0, |e| e.min_delta);
        let improved = match best {
            None => true,
            Some((b, _)) => match monitor.1 {
                MonitorMode::Min => value < b - min_delta,
                MonitorMode::Max => value > b + min_delta,
            },
        };
        if improved {
            best = Some((value, epoch + 1));
            bad_epochs = 0;
            st::save(&best_path, &weights).map_err(|e| e.to_string())?;
        } else {
            bad_epochs += 1;
        }
        records.push(record);
        save_checkpoint(
            &last_path,
            &weights,
            &stepper,
            seed,
            epoch + 1,
            best,
            bad_epochs,
            &schedule,
            cfg,
        )?;
        if let Some(es) = &cfg.early_stopping {
            if bad_epochs >= es.patience as u64 && epoch + 1 < epochs {
                say(format!(
                    "early stopping after epoch {}: `{}` has not improved for {bad_epochs} epochs (best {:.4} at epoch {})",
                    epoch + 1,
                    monitor.0,
                    best.map_or(f64::NAN, |b| b.0),
                    best.map_or(0, |b| b.1)
                ));
                stopped_early_at = Some(epoch + 1);
                break;
            }
        }
    }
    let restore = cfg.early_stopping.as_ref().is_some_and(|e| e.restore_best);
    if restore && best_path.exists() {
        let best_weights = st::read(&best_path).map_err(|e| e.to_string())?;
        weights.extend(best_weights);
        if let Some((v, e)) = best {
            say(format!(
                "restored the weights of epoch {e} (`{}` = {v:.4})",
                monitor.0
            ));
        }
    }
    let test_stats = match &test {
        Some(t) => {
            let s = evaluate(&mut graphs, &weights, t, batch_size, &pipeline, cfg)?;
            let row = metrics::test_row(
                records.last().map_or(0, |r| r.epoch),
                &s,
                records.last().map_or(0.0, |r| r.lr),
                started.elapsed().as_secs_f64(),
            );
            metrics::append_line(&metrics_path, &row)?;
            Some(s)
        }
        None => None,
    };
    if !records.is_empty() {
        let stem = metrics_path.with_extension("");
        match super::plot::write(
            &records,
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
        stopped_early_at,
        seconds: started.elapsed().as_secs_f64(),
        parameters: weights,
        checkpoint_dir: dir,
    })
}

const CHECKPOINT_FORMAT: &str = "nnc-checkpoint-1";

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

#[allow(clippy::too_many_arguments)]
fn save_checkpoint(
    path: &Path,
    weights: &WeightSet,
    stepper: &Stepper,
    seed: u64,
    epoch: u64,
    best: Option<(f64, u64)>,
    bad_epochs: u64,
    schedule: &Schedule,
    cfg: &TrainConfig,
) -> Result<(), String> {
    let mut all = weights.clone();
    for (k, v) in &stepper.state {
        all.insert(format!("optimizer/{k}"), v.clone());
    }
    let mut meta = BTreeMap::new();
    meta.insert("format".to_string(), CHECKPOINT_FORMAT.to_string());
    meta.insert("network".to_string(), cfg.network.clone());
    meta.insert("epoch".to_string(), epoch.to_string());
    meta.insert("step".to_string(), stepper.step.to_string());
    meta.insert("seed".to_string(), seed.to_string());
    meta.insert("bad_epochs".to_string(), bad_epochs.to_string());
    if let Some((b, e)) = best {
        meta.insert("best".to_string(), format!("{b:?}"));
        meta.insert("best_epoch".to_string(), e.to_string());
    }
    if let Some((lr, b, bad)) = schedule.plateau_state() {
        meta.insert("plateau_lr".to_string(), format!("{lr:?}"));
        meta.insert("plateau_best".to_string(), format!("{b:?}"));
        meta.insert("plateau_bad".to_string(), bad.to_string());
    }
    st::save_with_metadata(path, &all, meta).map_err(|e| e.to_string())
}

/// The graph's inputs: parameters and buffers, the batch, the target.
fn inputs_for(
    g: &Graph,
    weights: &WeightSet,
    x: ArrayD<f32>,
    target: Option<ArrayD<f32>>,
) -> HashMap<String, ArrayD<f32>> {
    let mut inputs = HashMap::new();
    for role in [Role::Parameter, Role::Buffer] {
        for (_, name) in g.inputs(role) {
            if let Some(v) = weights.get(name) {
                inputs.insert(name.to_string(), v.clone());
            }
        }
    }
    if let Some((_, name)) = g.inputs(Role::Data).next() {
        inputs.insert(name.to_string(), x);
    }
    if let Some(t) = target {
        inputs.insert("target".to_string(), t);
    }
    inputs
}

fn want_top5(cfg: &TrainConfig) -> bool {
    cfg.metrics.iter().any(|m| m == "top5")
}

fn evaluate(
    graphs: &mut Graphs<'_>,
    weights: &WeightSet,
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
        let g = graphs.get(batch.labels.len(), false)?;
        // The evaluation graph computes the training section's loss too.
        let inputs = inputs_for(g, weights, batch.x, Some(batch.target));
        let out =
            crate::backend::reference::run::<f32>(g, &inputs, 0).map_err(|e| e.to_string())?;
        let loss = out["loss"].iter().next().copied().unwrap_or(f32::NAN) as f64;
        sums.add(loss, &out["logits"], &batch.labels);
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
        "  lr {:.3e}  {:.1} s  {:.0} img/s  data wait {:.1} s",
        r.lr,
        r.seconds,
        images as f64 / r.seconds.max(1e-9),
        r.data_wait
    ));
    line
}

fn load_init(weights: &mut WeightSet, init: &crate::check::train::Init) -> Result<String, String> {
    let path = Path::new(&init.path);
    let saved = st::read(path).map_err(|e| format!("`init`: {e}"))?;
    let wanted = |k: &str| init.keys.is_empty() || init.keys.iter().any(|p| pattern_matches(p, k));
    let mut loaded = Vec::new();
    let mut problems = Vec::new();
    for (k, v) in saved.iter().filter(|(k, _)| wanted(k)) {
        match weights.get(k) {
            Some(cur) if cur.shape() == v.shape() => {
                weights.insert(k.clone(), v.clone());
                loaded.push(k.clone());
            }
            Some(cur) => problems.push(format!(
                "`{k}` is {:?} in the file but {:?} in the model",
                v.shape(),
                cur.shape()
            )),
            None => problems.push(format!("`{k}` is not a parameter of the model")),
        }
    }
    let kept: Vec<&String> = weights.keys().filter(|k| !loaded.contains(k)).collect();
    if init.strict && (!problems.is_empty() || !kept.is_empty()) {
        let mut all = problems.clone();
        all.extend(
            kept.iter()
                .map(|k| format!("`{k}` is missing from the file")),
        );
        return Err(format!(
            "`init` is strict and `{}` does not fit:\n  - {}",
            init.path,
            all.join("\n  - ")
        ));
    }
    if loaded.is_empty() {
        return Err(format!(
            "`init`: nothing in `{}` matches {:?}",
            init.path, init.keys
        ));
    }
    let mut report = format!("initialized {} tensors from `{}`", loaded.len(), init.path);
    if !kept.is_empty() {
        let names: Vec<&str> = kept.iter().map(|s| s.as_str()).collect();
        report.push_str(&format!(
            "; {} keep their fresh initialization: {}",
            kept.len(),
            names.join(", ")
        ));
    }
    for p in problems {
        report.push_str(&format!("\n  skipped: {p}"));
    }
    Ok(report)
}

fn progress(
    opts: &RunOptions,
    epoch: u64,
    epochs: u64,
    images: u64,
) -> Option<indicatif::ProgressBar> {
    if !opts.progress_bar || opts.quiet {
        return None;
    }
    let bar = indicatif::ProgressBar::new(images);
    let style = indicatif::ProgressStyle::with_template(
        "epoch {prefix} [{bar:30}] {pos}/{len} {msg} {per_sec} ETA {eta}",
    )
    .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar())
    .progress_chars("=> ");
    bar.set_style(style);
    bar.set_prefix(format!("{}/{epochs}", epoch + 1));
    Some(bar)
}

fn finish(bar: Option<indicatif::ProgressBar>) {
    if let Some(b) = bar {
        b.finish_and_clear();
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
            "{:>5}  {:>10.4}  {:>9.4}  {:>8}  {:>7}  {:>8.2e}  {:>8.1}\n",
            r.epoch, r.train.loss, r.train.accuracy, vl, va, r.lr, r.seconds
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
