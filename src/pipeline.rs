//! The checked model of one network, with its training section, and the
//! graphs lowered from it: inference, evaluation and the training step, for
//! any batch size. The commands (`driver`), the training loop and the tests
//! share it; it depends on the stages before it (check, ir, autodiff) and
//! on nothing after them.

use crate::check::model::Model;
use crate::diag::Diagnostic;
use crate::diag_codes as codes;

/// A model ready for the commands that need one.
pub struct LoadedModel {
    /// The model with every size bound (the batch to 1 unless a shape was
    /// given): what `summary` shows and what `lower` lowers.
    pub model: Model,
    /// Freeze patterns of the file's training section for this network.
    pub freeze: Vec<String>,
    /// The file's training section for this network, if it has one.
    pub train: Option<crate::check::train::TrainConfig>,
    /// The same model with its free input sizes symbolic, when it has
    /// some: graphs for any batch size are lowered from it.
    pub generic: Option<Generic>,
}

/// Values of named sizes (`N`, `H`).
type Sizes = Vec<(String, i64)>;

/// A model whose input sizes are partly symbolic, and the values the other
/// free sizes take (their defaults, `H = 224`).
pub struct Generic {
    pub model: Model,
    /// The symbol of the batch axis (`N`).
    pub batch: Option<String>,
    /// Every other free size, with its value.
    pub sizes: Sizes,
}

impl LoadedModel {
    /// Lowers the model; in training mode with the training section's loss
    /// (cross-entropy without one) and the gradients of every parameter that
    /// is not frozen.
    pub fn lower(&self, mode: crate::ir::Mode) -> Result<crate::ir::Graph, Diagnostic> {
        self.lower_graph(mode, mode == crate::ir::Mode::Train, None)
    }

    /// The training step as one graph: forward, loss, gradients, and the
    /// update of the training section's optimizer (SGD at 0.01 without
    /// one), with `Update` outputs for every parameter, buffer and
    /// optimizer state it changes.
    pub fn lower_step(&self) -> Result<crate::ir::Graph, Diagnostic> {
        self.lower_step_at(None)
    }

    /// [`LoadedModel::lower_step`] for a batch of `batch` samples (the
    /// model's own batch when `None`), from the checked model: nothing is
    /// read or checked again.
    pub fn lower_step_at(&self, batch: Option<usize>) -> Result<crate::ir::Graph, Diagnostic> {
        self.lower_step_with(&self.optimizer(), batch)
    }

    /// The training step with another optimizer (`nnc bench` uses SGD with
    /// momentum whatever the training section says).
    pub fn lower_step_with(
        &self,
        optimizer: &crate::autodiff::optimizer::Optimizer,
        batch: Option<usize>,
    ) -> Result<crate::ir::Graph, Diagnostic> {
        let mut g = self.lower_graph(crate::ir::Mode::Train, true, batch)?;
        optimizer
            .training_step(&mut g)
            .map_err(|e| Diagnostic::error(codes::LOWERING, e))?;
        Ok(g)
    }

    /// The training section's optimizer, or SGD at 0.01 (its default).
    pub fn optimizer(&self) -> crate::autodiff::optimizer::Optimizer {
        let spec = self
            .train
            .as_ref()
            .map_or_else(Default::default, |t| t.optimizer.clone());
        crate::autodiff::optimizer::Optimizer::new(spec)
    }

    /// The evaluation graph with the training section's loss: it takes
    /// `target` and outputs `loss` beside `logits`.
    pub fn lower_evaluation(&self) -> Result<crate::ir::Graph, Diagnostic> {
        self.lower_evaluation_at(None)
    }

    /// [`LoadedModel::lower_evaluation`] for a batch of `batch` samples.
    pub fn lower_evaluation_at(
        &self,
        batch: Option<usize>,
    ) -> Result<crate::ir::Graph, Diagnostic> {
        self.lower_graph(crate::ir::Mode::Infer, true, batch)
    }

    /// The model to lower for `batch`, and the values of its symbols.
    fn model_for(&self, batch: Option<usize>) -> Result<(&Model, Sizes), Diagnostic> {
        let Some(b) = batch else {
            return Ok((&self.model, Vec::new()));
        };
        let own = self.model.input_sizes().first().copied().flatten();
        if own == Some(b as i64) {
            return Ok((&self.model, Vec::new()));
        }
        match &self.generic {
            Some(Generic {
                model,
                batch: Some(symbol),
                sizes,
            }) => {
                let mut bind = sizes.clone();
                bind.push((symbol.clone(), b as i64));
                Ok((model, bind))
            }
            _ => Err(Diagnostic::error(
                codes::LOWERING,
                format!(
                    "`{}` fixes its batch size at {}; a batch of {b} does not fit",
                    self.model.name,
                    own.map_or("?".to_string(), |n| n.to_string())
                ),
            )),
        }
    }

    fn lower_graph(
        &self,
        mode: crate::ir::Mode,
        with_loss: bool,
        batch: Option<usize>,
    ) -> Result<crate::ir::Graph, Diagnostic> {
        let (model, bind) = self.model_for(batch)?;
        use crate::ir::lower::LossSpec;
        let loss = match &self.train {
            Some(t) => LossSpec::from(&t.loss),
            None => LossSpec::CrossEntropy {
                label_smoothing: 0.0,
            },
        };
        let lowering_error = |e: String| Diagnostic::error(codes::LOWERING, e);
        let freeze = &self.freeze;
        let frozen = |name: &str| freeze.iter().any(|p| crate::glob::matches(p, name));
        let sizes = |name: &str| bind.iter().find(|(n, _)| n == name).map(|(_, v)| *v);
        let mut g =
            crate::ir::lower::lower_with(model, mode, with_loss.then_some(&loss), &frozen, &sizes)
                .map_err(lowering_error)?;
        if mode == crate::ir::Mode::Train {
            let l = g
                .find_output("loss")
                .ok_or_else(|| lowering_error("the training graph has no loss".into()))?;
            crate::autodiff::differentiate(&mut g, l, &|name: &str| !frozen(name))
                .map_err(lowering_error)?;
        }
        Ok(g)
    }
}
