//! The checked model: the output of the front end and the input of lowering.
//!
//! Invariants: every value has a shape; layers are in execution order (every
//! layer's inputs are produced by earlier layers or are model inputs); every
//! parameter and buffer name is unique and follows PyTorch's `state_dict`
//! naming (`layer1.0.conv1.weight`).

use super::dim::Dim;
use super::ops::Op;
pub use super::params::{ParamInfo, TensorKind};
use crate::syntax::source::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ValueId(pub u32);

#[derive(Clone, Debug)]
pub struct ValueInfo {
    pub shape: Vec<Dim>,
    /// The layer that computes it; `None` for model inputs.
    pub producer: Option<usize>,
}

#[derive(Clone, Debug)]
pub struct ModelInput {
    pub name: String,
    pub value: ValueId,
    pub span: Span,
    /// Per axis, the default of a free size (`H = 224`), used when no
    /// input shape is given.
    pub default_sizes: Vec<Option<i64>>,
}

#[derive(Clone, Debug)]
pub struct Layer {
    /// Dotted module path (`layer1.0.conv1`), as in PyTorch.
    pub path: String,
    pub op: Op,
    pub inputs: Vec<ValueId>,
    pub output: ValueId,
    pub params: Vec<ParamInfo>,
    pub span: Span,
}

#[derive(Clone, Debug, Default)]
pub struct Model {
    pub name: String,
    pub doc: Option<String>,
    pub inputs: Vec<ModelInput>,
    pub layers: Vec<Layer>,
    pub values: Vec<ValueInfo>,
    pub output: Option<ValueId>,
    /// Where a name stands for a tensor: inputs, `let`s and their uses
    /// (what an editor shows on hover).
    pub names: Vec<(Span, ValueId)>,
    /// The tensor each step of a chain gives (a layer's or a block's
    /// call), by the step's span.
    pub steps: Vec<(Span, ValueId)>,
    /// Where a name stands for a value that is not a tensor (a parameter,
    /// a size an input pattern binds, a loop variable, and their uses),
    /// with that value as text: once per instantiation.
    pub name_values: Vec<(Span, String)>,
}

impl Model {
    pub fn shape(&self, v: ValueId) -> &[Dim] {
        &self.values[v.0 as usize].shape
    }

    /// The sizes of the first input, `None` where symbolic.
    pub fn input_sizes(&self) -> Vec<Option<i64>> {
        self.inputs
            .first()
            .map(|i| self.shape(i.value).iter().map(|d| d.as_const()).collect())
            .unwrap_or_default()
    }

    pub fn add_value(&mut self, shape: Vec<Dim>, producer: Option<usize>) -> ValueId {
        self.values.push(ValueInfo { shape, producer });
        ValueId(self.values.len() as u32 - 1)
    }

    /// All parameters and buffers, in layer order.
    pub fn tensors(&self) -> impl Iterator<Item = &ParamInfo> {
        self.layers.iter().flat_map(|l| l.params.iter())
    }

    pub fn parameter_count(&self) -> u128 {
        self.tensors()
            .filter(|p| p.kind == TensorKind::Parameter)
            .map(ParamInfo::numel)
            .sum()
    }
}
