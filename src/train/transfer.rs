//! `init = load(path, keys=[...], strict=...)`: starting a run from saved
//! weights (transfer learning), with a report of what was loaded and what
//! kept its fresh initialization.

use crate::check::train::Init;
use crate::weights::{safetensors as st, WeightSet};
use std::path::Path;

/// Replaces the matching tensors of `weights` by those of the file; returns
/// the report to print.
pub fn load_init(weights: &mut WeightSet, init: &Init) -> Result<String, String> {
    let path = Path::new(&init.path);
    let saved = st::read(path).map_err(|e| format!("`init`: {e}"))?;
    let wanted =
        |k: &str| init.keys.is_empty() || init.keys.iter().any(|p| crate::glob::matches(p, k));
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
