//! Weights and arrays in and out: safetensors for parameters, `.npy` for
//! data, and PyTorch's default initialization.

pub mod atomic;
pub mod init;
pub mod npy;
pub mod safetensors;

use ndarray::ArrayD;
use std::collections::BTreeMap;

/// Named f32 tensors: a `state_dict`.
pub type WeightSet = BTreeMap<String, ArrayD<f32>>;

/// PyTorch keeps this counter in every batch norm; nnc does not need it
/// (the momentum is fixed), so loading accepts and ignores it.
pub fn is_ignored_key(name: &str) -> bool {
    name.ends_with(".num_batches_tracked")
}
