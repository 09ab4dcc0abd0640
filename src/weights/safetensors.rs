//! safetensors load and save, checked against what a graph expects.
//!
//! Loading reports every problem at once (missing keys, unexpected keys,
//! shape mismatches with both shapes, wrong element types); a corrupt or
//! truncated file is an error that names it. Saving is atomic: a temporary
//! file in the same folder, fsync, rename.

use super::{is_ignored_key, WeightSet};
use crate::ir::{Graph, Role};
use ndarray::{ArrayD, IxDyn};
use safetensors::tensor::{Dtype, SafeTensors, TensorView};
use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

#[derive(Debug, Clone, PartialEq)]
pub struct WeightsError {
    pub file: String,
    pub problems: Vec<String>,
}

impl fmt::Display for WeightsError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "`{}`: {}", self.file, self.problems.join("; "))
    }
}

impl std::error::Error for WeightsError {}

fn error(file: &Path, problem: impl Into<String>) -> WeightsError {
    WeightsError {
        file: file.display().to_string(),
        problems: vec![problem.into()],
    }
}

/// Reads every tensor of a safetensors file as f32.
pub fn read(path: &Path) -> Result<WeightSet, WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| error(path, format!("cannot read it: {e}")))?;
    parse(&bytes).map_err(|problems| WeightsError {
        file: path.display().to_string(),
        problems,
    })
}

/// Parses safetensors bytes; f32 only (other element types are listed as
/// problems, all of them).
pub fn parse(bytes: &[u8]) -> Result<WeightSet, Vec<String>> {
    let st = SafeTensors::deserialize(bytes)
        .map_err(|e| vec![format!("not a valid safetensors file ({e})")])?;
    let mut out = BTreeMap::new();
    let mut problems = Vec::new();
    let mut names = st.names();
    names.sort();
    for name in names {
        let view = st
            .tensor(name)
            .map_err(|e| vec![format!("`{name}`: {e}")])?;
        if is_ignored_key(name) {
            continue;
        }
        if view.dtype() != Dtype::F32 {
            problems.push(format!(
                "`{name}` is {:?}, but nnc reads f32 (convert it with `tensor.float()` before saving)",
                view.dtype()
            ));
            continue;
        }
        let data: Vec<f32> = view
            .data()
            .chunks_exact(4)
            .map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]))
            .collect();
        match ArrayD::from_shape_vec(IxDyn(view.shape()), data) {
            Ok(a) => {
                out.insert(name.to_string(), a);
            }
            Err(e) => problems.push(format!("`{name}`: {e}")),
        }
    }
    if problems.is_empty() {
        Ok(out)
    } else {
        Err(problems)
    }
}

/// Checks weights against the parameters and buffers a graph takes: every
/// missing key, unexpected key and shape mismatch, in one list.
pub fn check_against(weights: &WeightSet, g: &Graph) -> Vec<String> {
    let mut problems = Vec::new();
    let mut expected: BTreeMap<&str, &[usize]> = BTreeMap::new();
    for role in [Role::Parameter, Role::Buffer] {
        for (id, name) in g.inputs(role) {
            expected.insert(name, g.shape(id));
        }
    }
    for (name, shape) in &expected {
        match weights.get(*name) {
            None => problems.push(format!("missing `{name}` {shape:?}")),
            Some(a) if a.shape() != *shape => problems.push(format!(
                "`{name}` has shape {:?}, but the model needs {shape:?}",
                a.shape()
            )),
            Some(_) => {}
        }
    }
    for name in weights.keys() {
        if !expected.contains_key(name.as_str()) && !is_ignored_key(name) {
            problems.push(format!(
                "unexpected `{name}` (the model has no such parameter)"
            ));
        }
    }
    problems
}

/// Reads weights and checks them against a graph, reporting all problems.
pub fn load_for(path: &Path, g: &Graph) -> Result<WeightSet, WeightsError> {
    let w = read(path)?;
    let problems = check_against(&w, g);
    if problems.is_empty() {
        Ok(w)
    } else {
        Err(WeightsError {
            file: path.display().to_string(),
            problems,
        })
    }
}

/// Serializes tensors (sorted by name) with optional string metadata.
pub fn to_bytes(
    weights: &WeightSet,
    metadata: Option<BTreeMap<String, String>>,
) -> Result<Vec<u8>, String> {
    let raw: Vec<(String, Vec<u8>, Vec<usize>)> = weights
        .iter()
        .map(|(k, a)| {
            let bytes: Vec<u8> = a.iter().flat_map(|v| v.to_le_bytes()).collect();
            (k.clone(), bytes, a.shape().to_vec())
        })
        .collect();
    let views: Vec<(String, TensorView<'_>)> = raw
        .iter()
        .map(|(k, b, s)| TensorView::new(Dtype::F32, s.clone(), b).map(|v| (k.clone(), v)))
        .collect::<Result<_, _>>()
        .map_err(|e| e.to_string())?;
    let meta = metadata.map(|m| m.into_iter().collect());
    safetensors::tensor::serialize(views, meta).map_err(|e| e.to_string())
}

pub fn save(path: &Path, weights: &WeightSet) -> Result<(), WeightsError> {
    let bytes = to_bytes(weights, None).map_err(|e| error(path, e))?;
    super::atomic::write(path, &bytes).map_err(|e| error(path, format!("cannot write it: {e}")))
}

/// Reads tensors and the file's string metadata (checkpoints keep the
/// epoch, step and seed there).
pub fn read_with_metadata(
    path: &Path,
) -> Result<(WeightSet, BTreeMap<String, String>), WeightsError> {
    let bytes = std::fs::read(path).map_err(|e| error(path, format!("cannot read it: {e}")))?;
    parse_with_metadata(&bytes).map_err(|problems| WeightsError {
        file: path.display().to_string(),
        problems,
    })
}

/// Parses safetensors bytes with their string metadata.
pub fn parse_with_metadata(
    bytes: &[u8],
) -> Result<(WeightSet, BTreeMap<String, String>), Vec<String>> {
    let weights = parse(bytes)?;
    let (_, meta) = SafeTensors::read_metadata(bytes)
        .map_err(|e| vec![format!("not a valid safetensors file ({e})")])?;
    let meta = meta
        .metadata()
        .clone()
        .unwrap_or_default()
        .into_iter()
        .collect();
    Ok((weights, meta))
}

/// Writes tensors with metadata, atomically.
pub fn save_with_metadata(
    path: &Path,
    weights: &WeightSet,
    metadata: BTreeMap<String, String>,
) -> Result<(), WeightsError> {
    let bytes = to_bytes(weights, Some(metadata)).map_err(|e| error(path, e))?;
    super::atomic::write(path, &bytes).map_err(|e| error(path, format!("cannot write it: {e}")))
}
