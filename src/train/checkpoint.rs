//! `last.safetensors`: parameters, buffers, optimizer state and the run's
//! position, so that `--resume` continues bit for bit. One `Meta` struct is
//! both what is written and what is read back: the encoding exists once.
//!
//! A checkpoint is checked against the run that wants to continue it before
//! anything in the checkpoint directory is touched: another network, another
//! optimizer, batch size, `--limit` or seed is an error that names the first
//! mismatch, and so is a tensor whose name or shape differs.

use super::metrics::Tally;
use crate::weights::{safetensors as st, WeightSet};
use std::collections::BTreeMap;
use std::path::Path;

const FORMAT: &str = "nnc-checkpoint-2";
/// Tensors of the optimizer's state are stored under this prefix.
const OPTIMIZER_PREFIX: &str = "optimizer/";

/// Where a run stands, and what it was started with.
#[derive(Clone, Debug, PartialEq)]
pub struct Meta {
    pub network: String,
    /// The optimizer as written in the training section, spelled out.
    pub optimizer: String,
    pub batch_size: u64,
    /// `--limit`, if the run used one.
    pub limit: Option<u64>,
    pub seed: u64,
    /// Epochs completed.
    pub epoch: u64,
    /// Batches of the next epoch already trained (an interrupted epoch).
    pub batches_done: u64,
    /// The training tally of those batches.
    pub partial: Tally,
    /// Wall-clock seconds spent on those batches, so that a resumed epoch
    /// reports its whole time.
    pub partial_seconds: f64,
    /// Optimizer steps taken.
    pub step: u64,
    pub best: Option<(f64, u64)>,
    pub bad_epochs: u64,
    pub plateau: Option<(f64, f64, i64)>,
    /// Early stopping ended the run.
    pub stopped_early: bool,
}

/// The settings a resumed run must share with the run it continues.
pub struct Identity<'a> {
    pub network: &'a str,
    pub optimizer: String,
    pub batch_size: u64,
    pub limit: Option<u64>,
    pub seed: u64,
}

pub struct Checkpoint {
    /// Parameters and buffers.
    pub weights: WeightSet,
    pub optimizer_state: WeightSet,
    pub meta: Meta,
}

/// Floats are written with `{:?}`, which reads back to the same bits.
fn float(v: f64) -> String {
    format!("{v:?}")
}

impl Meta {
    fn to_map(&self) -> BTreeMap<String, String> {
        let mut m = BTreeMap::new();
        let mut put = |k: &str, v: String| {
            m.insert(k.to_string(), v);
        };
        put("format", FORMAT.into());
        put("network", self.network.clone());
        put("optimizer", self.optimizer.clone());
        put("batch_size", self.batch_size.to_string());
        put("limit", self.limit.map_or("none".into(), |l| l.to_string()));
        put("seed", self.seed.to_string());
        put("epoch", self.epoch.to_string());
        put("batches_done", self.batches_done.to_string());
        let (loss, correct, top5, count) = self.partial.parts();
        put(
            "partial",
            format!("{} {correct} {top5} {count}", float(loss)),
        );
        put("partial_seconds", float(self.partial_seconds));
        put("step", self.step.to_string());
        if let Some((b, e)) = self.best {
            put("best", float(b));
            put("best_epoch", e.to_string());
        }
        put("bad_epochs", self.bad_epochs.to_string());
        if let Some((lr, b, bad)) = self.plateau {
            put("plateau", format!("{} {} {bad}", float(lr), float(b)));
        }
        put("stopped_early", self.stopped_early.to_string());
        m
    }

    fn from_map(m: &BTreeMap<String, String>, want_top5: bool) -> Result<Meta, String> {
        let get = |k: &str| {
            m.get(k)
                .map(String::as_str)
                .ok_or_else(|| format!("its metadata has no `{k}`"))
        };
        fn parse<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, String> {
            v.parse()
                .map_err(|_| format!("its metadata has an unreadable `{k}`: `{v}`"))
        }
        let num = |k: &str| -> Result<u64, String> { parse(k, get(k)?) };
        let words = |k: &str, n: usize| -> Result<Vec<&str>, String> {
            let v = get(k)?;
            let w: Vec<&str> = v.split(' ').collect();
            if w.len() == n {
                Ok(w)
            } else {
                Err(format!("its metadata has an unreadable `{k}`: `{v}`"))
            }
        };
        let p = words("partial", 4)?;
        let partial = Tally::from_parts(
            parse("partial", p[0])?,
            parse("partial", p[1])?,
            parse("partial", p[2])?,
            parse("partial", p[3])?,
            want_top5,
        );
        let best = match m.get("best") {
            Some(b) => Some((parse("best", b)?, num("best_epoch")?)),
            None => None,
        };
        let plateau = match m.get("plateau") {
            Some(_) => {
                let w = words("plateau", 3)?;
                Some((
                    parse("plateau", w[0])?,
                    parse("plateau", w[1])?,
                    parse("plateau", w[2])?,
                ))
            }
            None => None,
        };
        Ok(Meta {
            network: get("network")?.to_string(),
            optimizer: get("optimizer")?.to_string(),
            batch_size: num("batch_size")?,
            limit: match get("limit")? {
                "none" => None,
                v => Some(parse("limit", v)?),
            },
            seed: num("seed")?,
            epoch: num("epoch")?,
            batches_done: num("batches_done")?,
            partial,
            // Absent from checkpoints written before it was recorded.
            partial_seconds: match m.get("partial_seconds") {
                Some(v) => parse("partial_seconds", v)?,
                None => 0.0,
            },
            step: num("step")?,
            best,
            bad_epochs: num("bad_epochs")?,
            plateau,
            stopped_early: parse("stopped_early", get("stopped_early")?)?,
        })
    }

    /// The first setting in which this run differs from `want`, as a
    /// message with the flag or setting that would make them agree.
    fn mismatch(&self, want: &Identity<'_>) -> Option<(String, String)> {
        let show_limit =
            |l: Option<u64>| l.map_or("no `--limit`".to_string(), |l| format!("`--limit {l}`"));
        if self.network != want.network {
            return Some((
                format!(
                    "the checkpoint is of network `{}`, not `{}`",
                    self.network, want.network
                ),
                format!(
                    "resume it with `--network {}`, or give this run its own `--checkpoint-dir`",
                    self.network
                ),
            ));
        }
        if self.optimizer != want.optimizer {
            return Some((
                format!(
                    "the checkpoint was trained with `{}`, but the training section now says `{}`",
                    self.optimizer, want.optimizer
                ),
                "restore the optimizer setting to resume, or start a new run that loads these weights with `init = load(...)`".into(),
            ));
        }
        if self.batch_size != want.batch_size {
            return Some((
                format!(
                    "the checkpoint was trained with batch size {}, not {}",
                    self.batch_size, want.batch_size
                ),
                format!("set `batch_size = {}` to resume", self.batch_size),
            ));
        }
        if self.limit != want.limit {
            return Some((
                format!(
                    "the checkpoint was trained with {}, not {}",
                    show_limit(self.limit),
                    show_limit(want.limit)
                ),
                match self.limit {
                    Some(l) => format!("resume with `--limit {l}`"),
                    None => "resume without `--limit`".into(),
                },
            ));
        }
        if self.seed != want.seed {
            return Some((
                format!(
                    "the checkpoint was made with seed {}, not {}",
                    self.seed, want.seed
                ),
                format!("resume with `--seed {}`", self.seed),
            ));
        }
        None
    }
}

/// Writes a checkpoint atomically.
pub fn save(
    path: &Path,
    weights: &WeightSet,
    optimizer_state: &WeightSet,
    meta: &Meta,
) -> Result<(), String> {
    let mut all = weights.clone();
    for (k, v) in optimizer_state {
        all.insert(format!("{OPTIMIZER_PREFIX}{k}"), v.clone());
    }
    st::save_with_metadata(path, &all, meta.to_map()).map_err(|e| e.to_string())
}

/// A checkpoint that does not fit the run that wants to continue it: what
/// differs, and how to make them agree.
#[derive(Debug, Clone, PartialEq)]
pub struct Mismatch {
    pub message: String,
    pub help: Option<String>,
}

fn mismatch(path: &Path, message: impl std::fmt::Display, help: Option<String>) -> Mismatch {
    Mismatch {
        message: format!("cannot resume from `{}`: {message}", path.display()),
        help,
    }
}

/// Reads `path` and checks it against the run that wants to continue it:
/// its settings (`want`), and the names and shapes of the fresh
/// parameters, buffers and optimizer state it will replace.
pub fn load(
    path: &Path,
    want: &Identity<'_>,
    fresh_weights: &WeightSet,
    fresh_state: &WeightSet,
    want_top5: bool,
) -> Result<Checkpoint, Mismatch> {
    if !path.exists() {
        return Err(mismatch(
            path,
            "there is no checkpoint there",
            Some("run without `--resume` to start, or point `--checkpoint-dir` at the run to continue".into()),
        ));
    }
    let bytes =
        std::fs::read(path).map_err(|e| mismatch(path, format!("cannot read it: {e}"), None))?;
    parse(&bytes, path, want, fresh_weights, fresh_state, want_top5)
}

/// `load` on the bytes of a checkpoint; `path` names it in messages.
pub fn parse(
    bytes: &[u8],
    path: &Path,
    want: &Identity<'_>,
    fresh_weights: &WeightSet,
    fresh_state: &WeightSet,
    want_top5: bool,
) -> Result<Checkpoint, Mismatch> {
    let (tensors, map) =
        st::parse_with_metadata(bytes).map_err(|e| mismatch(path, e.join("; "), None))?;
    if map.get("format").map(String::as_str) != Some(FORMAT) {
        return Err(mismatch(
            path,
            format!(
                "it is not an nnc checkpoint of this version (format {})",
                map.get("format")
                    .map_or("missing".into(), |f| format!("`{f}`"))
            ),
            None,
        ));
    }
    let meta = Meta::from_map(&map, want_top5).map_err(|e| mismatch(path, e, None))?;
    if let Some((message, help)) = meta.mismatch(want) {
        return Err(mismatch(path, message, Some(help)));
    }
    let mut weights = WeightSet::new();
    let mut optimizer_state = WeightSet::new();
    for (k, v) in tensors {
        match k.strip_prefix(OPTIMIZER_PREFIX) {
            Some(s) => optimizer_state.insert(s.to_string(), v),
            None => weights.insert(k, v),
        };
    }
    for (what, got, fresh) in [
        ("tensor", &weights, fresh_weights),
        ("optimizer state", &optimizer_state, fresh_state),
    ] {
        if let Some(problem) = first_difference(got, fresh) {
            return Err(mismatch(path, format!("{what} {problem}"), None));
        }
    }
    Ok(Checkpoint {
        weights,
        optimizer_state,
        meta,
    })
}

/// The first name or shape in which `got` differs from `want`.
fn first_difference(got: &WeightSet, want: &WeightSet) -> Option<String> {
    for (k, w) in want {
        match got.get(k) {
            None => return Some(format!("`{k}` is missing from the checkpoint")),
            Some(g) if g.shape() != w.shape() => {
                return Some(format!(
                    "`{k}` is {:?} in the checkpoint but {:?} in the model",
                    g.shape(),
                    w.shape()
                ))
            }
            Some(_) => {}
        }
    }
    got.keys()
        .find(|k| !want.contains_key(*k))
        .map(|k| format!("`{k}` is in the checkpoint but not in the model"))
}
