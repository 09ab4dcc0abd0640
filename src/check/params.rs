//! The tensors a layer owns, as PyTorch's `state_dict` names them. The
//! layer declarations (`ops`) produce them and the model (`model`) holds
//! them; both depend on this file, not on each other.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TensorKind {
    /// Trained by the optimizer.
    Parameter,
    /// State that is saved but not trained (batch-norm running statistics).
    Buffer,
    /// A `state_dict` entry nothing computes with: batch norm's
    /// `num_batches_tracked` (nnc's momentum is fixed). Counted and named,
    /// so keys match PyTorch's; accepted when loading, never lowered.
    Counter,
}

#[derive(Clone, Debug)]
pub struct ParamInfo {
    /// The full `state_dict` key.
    pub name: String,
    pub shape: Vec<i64>,
    pub kind: TensorKind,
}

impl ParamInfo {
    pub fn numel(&self) -> u128 {
        self.shape.iter().map(|&d| d.max(0) as u128).product()
    }
}
