//! What a run measures: per-split statistics, the epoch records, and the
//! metrics file (one JSON object per line, the command-line contract's
//! format). The plot and the final table read the same records.

use std::collections::BTreeMap;
use std::io::Write as _;
use std::path::Path;

#[derive(Clone, Debug, PartialEq)]
pub struct Stats {
    pub loss: f64,
    pub accuracy: f64,
    pub top5: Option<f64>,
}

#[derive(Clone, Debug, PartialEq)]
pub struct EpochRecord {
    /// 1-based.
    pub epoch: u64,
    pub train: Stats,
    pub val: Option<Stats>,
    pub lr: f64,
    pub seconds: f64,
    /// Seconds the step waited for the loader.
    pub data_wait: f64,
}

/// Running sums of loss and correct predictions over the batches of a split.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Tally {
    loss: f64,
    correct: usize,
    top5: usize,
    count: usize,
    want_top5: bool,
}

/// Where `label` ranks among `row`, counted from 0, with PyTorch's rule for
/// ties: an equal logit at a lower index ranks first (`argmax` returns the
/// first maximum). `None` when the row has a NaN: such a prediction is never
/// correct, whatever the label.
pub fn rank_of(row: &[f32], label: usize) -> Option<usize> {
    if row.iter().any(|v| v.is_nan()) {
        return None;
    }
    let target = *row.get(label)?;
    let above = row
        .iter()
        .enumerate()
        .filter(|&(i, &v)| v > target || (v == target && i < label))
        .count();
    Some(above)
}

impl Tally {
    pub fn new(want_top5: bool) -> Tally {
        Tally {
            want_top5,
            ..Tally::default()
        }
    }

    /// The sums, for a checkpoint of an interrupted epoch: the loss sum,
    /// correct and top-5 counts, and the number of samples.
    pub fn parts(&self) -> (f64, usize, usize, usize) {
        (self.loss, self.correct, self.top5, self.count)
    }

    pub fn from_parts(
        loss: f64,
        correct: usize,
        top5: usize,
        count: usize,
        want_top5: bool,
    ) -> Tally {
        Tally {
            loss,
            correct,
            top5,
            count,
            want_top5,
        }
    }

    /// Adds a batch: `loss` is the batch mean, `logits` is `[B, K]`.
    pub fn add(&mut self, loss: f64, logits: &ndarray::ArrayD<f32>, labels: &[u32]) {
        let b = labels.len();
        self.loss += loss * b as f64;
        self.count += b;
        let k = logits.shape().get(1).copied().unwrap_or(1).max(1);
        let logits = logits.as_standard_layout();
        for (row, &label) in logits.as_slice().unwrap_or(&[]).chunks(k).zip(labels) {
            match rank_of(row, label as usize) {
                Some(0) => {
                    self.correct += 1;
                    self.top5 += 1;
                }
                Some(r) if r < 5 => self.top5 += 1,
                _ => {}
            }
        }
    }

    pub fn stats(&self) -> Stats {
        let n = self.count.max(1) as f64;
        Stats {
            loss: self.loss / n,
            accuracy: self.correct as f64 / n,
            top5: self.want_top5.then(|| self.top5 as f64 / n),
        }
    }
}

/// The value of a monitored metric (`val_accuracy`, `train_loss`, ...).
pub fn metric_value(r: &EpochRecord, name: &str) -> Option<f64> {
    let (split, metric) = name.split_once('_')?;
    let s = match split {
        "train" => &r.train,
        "val" => r.val.as_ref()?,
        _ => return None,
    };
    match metric {
        "loss" => Some(s.loss),
        "accuracy" => Some(s.accuracy),
        "top5" => s.top5,
        _ => None,
    }
}

fn row(epoch: u64, split: &str, s: &Stats, lr: f64, seconds: f64) -> serde_json::Value {
    let mut v = serde_json::json!({"epoch": epoch, "split": split, "loss": s.loss, "accuracy": s.accuracy, "lr": lr, "seconds": seconds});
    if let Some(t5) = s.top5 {
        v["top5"] = serde_json::json!(t5);
    }
    v
}

fn rows_of(r: &EpochRecord) -> Vec<serde_json::Value> {
    let mut rows = vec![row(r.epoch, "train", &r.train, r.lr, r.seconds)];
    if let Some(v) = &r.val {
        rows.push(row(r.epoch, "val", v, r.lr, r.seconds));
    }
    rows
}

/// The row of the test split, after the last epoch.
pub fn test_row(epoch: u64, s: &Stats, lr: f64, seconds: f64) -> serde_json::Value {
    row(epoch, "test", s, lr, seconds)
}

fn cannot_write(path: &Path, e: std::io::Error) -> String {
    format!("cannot write `{}`: {e}", path.display())
}

pub fn append_line(path: &Path, row: &serde_json::Value) -> Result<(), String> {
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)
        .map_err(|e| cannot_write(path, e))?;
    writeln!(f, "{row}").map_err(|e| cannot_write(path, e))
}

pub fn append_record(path: &Path, r: &EpochRecord) -> Result<(), String> {
    for row in rows_of(r) {
        append_line(path, &row)?;
    }
    Ok(())
}

/// Writes the file anew with `records` (a resumed run keeps the epochs it
/// continues from and drops what a killed run wrote after its checkpoint).
pub fn rewrite(path: &Path, records: &[EpochRecord]) -> Result<(), String> {
    let mut text = String::new();
    for r in records {
        for row in rows_of(r) {
            text.push_str(&row.to_string());
            text.push('\n');
        }
    }
    std::fs::write(path, text).map_err(|e| cannot_write(path, e))
}

/// The records of the epochs up to `upto` from a metrics file, for resume.
pub fn read_records(path: &Path, upto: u64) -> Vec<EpochRecord> {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut records: BTreeMap<u64, EpochRecord> = BTreeMap::new();
    for line in text.lines() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            continue;
        };
        let epoch = v["epoch"].as_u64().unwrap_or(0);
        if epoch == 0 || epoch > upto {
            continue;
        }
        let stats = Stats {
            loss: v["loss"].as_f64().unwrap_or(f64::NAN),
            accuracy: v["accuracy"].as_f64().unwrap_or(f64::NAN),
            top5: v["top5"].as_f64(),
        };
        let r = records.entry(epoch).or_insert_with(|| EpochRecord {
            epoch,
            train: stats.clone(),
            val: None,
            lr: v["lr"].as_f64().unwrap_or(0.0),
            seconds: v["seconds"].as_f64().unwrap_or(0.0),
            data_wait: 0.0,
        });
        match v["split"].as_str() {
            Some("train") => r.train = stats,
            Some("val") => r.val = Some(stats),
            _ => {}
        }
    }
    records.into_values().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tally(rows: &[[f32; 3]], labels: &[u32]) -> Stats {
        let flat: Vec<f32> = rows.iter().flatten().copied().collect();
        let logits = ndarray::ArrayD::from_shape_vec(vec![rows.len(), 3], flat).unwrap();
        let mut t = Tally::new(true);
        t.add(0.0, &logits, labels);
        t.stats()
    }

    #[test]
    fn ties_go_to_the_first_index_as_in_argmax() {
        // All-equal logits predict class 0: right for label 0 only.
        let s = tally(&[[1.0; 3], [1.0; 3], [1.0; 3]], &[0, 1, 2]);
        assert_eq!(s.accuracy, 1.0 / 3.0);
        let s = tally(&[[0.0, 2.0, 2.0]], &[2]);
        assert_eq!(s.accuracy, 0.0);
        let s = tally(&[[0.0, 2.0, 2.0]], &[1]);
        assert_eq!(s.accuracy, 1.0);
    }

    #[test]
    fn nan_is_never_correct() {
        let nan = f32::NAN;
        let s = tally(&[[nan, 0.0, 0.0], [0.0, nan, 0.0], [nan; 3]], &[0, 0, 2]);
        assert_eq!(s.accuracy, 0.0);
        assert_eq!(s.top5, Some(0.0));
    }

    #[test]
    fn top5_counts_rank_below_five() {
        assert_eq!(rank_of(&[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], 4), Some(4));
        assert_eq!(rank_of(&[3.0, 2.0, 1.0, 0.0, -1.0, -2.0], 5), Some(5));
        assert_eq!(rank_of(&[1.0, 1.0, 1.0, 1.0, 1.0, 1.0], 5), Some(5));
        assert_eq!(rank_of(&[1.0, 0.0], 7), None);
    }
}
