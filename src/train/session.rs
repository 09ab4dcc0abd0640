//! The model of a run on a backend: the executable that owns its state
//! (parameters, buffers, optimizer state), and its graphs compiled once per
//! batch size: the training step (forward, loss, backward and the
//! optimizer's update, one graph), the evaluation graph, and Lookahead's
//! sync. The loop gives it batches and reads back the loss and the logits;
//! the state comes back to the host only for a checkpoint.

use super::loader::Batch;
use super::run::RunError;
use crate::autodiff::optimizer::Optimizer;
use crate::backend::{Backend, BackendError, Entry, Executable};
use crate::ir::{Graph, Output, Role};
use crate::pipeline::LoadedModel;
use crate::weights::WeightSet;
use ndarray::ArrayD;
use std::collections::{BTreeSet, HashMap};

/// What a training step or an evaluation batch gives back to the host.
pub struct Outcome {
    /// The batch's mean loss.
    pub loss: f64,
    pub logits: ArrayD<f32>,
}

/// A training step whose loss or gradients were not finite: nothing was
/// committed; the message names the first node whose value was not.
pub struct NonFinite(pub String);

pub struct Session<'a> {
    model: &'a LoadedModel,
    exe: Box<dyn Executable>,
    /// By (batch size, training?): the entry and the graph (kept to find
    /// the first non-finite node when a step diverges).
    entries: HashMap<(usize, bool), (Entry, Graph)>,
    optimizer: Optimizer,
    sync: Option<(Entry, i64)>,
    optimizer_state: BTreeSet<String>,
}

fn backend_error(e: BackendError) -> RunError {
    RunError::from(e.to_string())
}

impl<'a> Session<'a> {
    /// `weights` are the parameters and buffers; `optimizer_state` the
    /// optimizer's tensors (`momentum_buffer:NAME`, ...) for `trainable`.
    pub fn new(
        backend: &dyn Backend,
        model: &'a LoadedModel,
        weights: WeightSet,
        optimizer: Optimizer,
        optimizer_state: WeightSet,
        trainable: &[String],
    ) -> Result<Session<'a>, RunError> {
        let names: BTreeSet<String> = optimizer_state.keys().cloned().collect();
        let mut state = weights;
        state.extend(optimizer_state);
        let shapes: Vec<(String, Vec<usize>)> = trainable
            .iter()
            .map(|n| (n.clone(), state[n].shape().to_vec()))
            .collect();
        let mut exe = backend.instantiate(state);
        let sync = match optimizer.lookahead() {
            Some((k, alpha)) => Some((
                exe.compile(&optimizer.lookahead_graph(&shapes, alpha))
                    .map_err(backend_error)?,
                k,
            )),
            None => None,
        };
        Ok(Session {
            model,
            exe,
            entries: HashMap::new(),
            optimizer,
            sync,
            optimizer_state: names,
        })
    }

    fn entry(&mut self, batch: usize, train: bool) -> Result<Entry, RunError> {
        if let Some((e, _)) = self.entries.get(&(batch, train)) {
            return Ok(*e);
        }
        // Lowered from the checked model for this batch size: the file is
        // not read again.
        let g = if train {
            self.model.lower_step_at(Some(batch))
        } else {
            self.model.lower_evaluation_at(Some(batch))
        }
        .map_err(|d| d.message)?;
        let e = self.exe.compile(&g).map_err(backend_error)?;
        self.entries.insert((batch, train), (e, g));
        Ok(e)
    }

    fn feed(
        &self,
        e: Entry,
        batch: Batch,
        scalars: &[(&str, f64)],
    ) -> Result<Vec<(crate::backend::InputHandle, ArrayD<f32>)>, RunError> {
        let exe = self.exe.as_ref();
        let missing = |what: &str| RunError::from(format!("the graph has no {what} input"));
        let mut feeds = vec![
            (
                exe.handle(e, Role::Data).ok_or_else(|| missing("data"))?,
                batch.x,
            ),
            (
                exe.handle(e, Role::Target)
                    .ok_or_else(|| missing("target"))?,
                batch.target,
            ),
        ];
        for (name, value) in scalars {
            let h = exe
                .handle_named(e, name)
                .ok_or_else(|| missing(&format!("`{name}`")))?;
            feeds.push((h, ndarray::arr0(*value as f32).into_dyn()));
        }
        Ok(feeds)
    }

    fn outcome(&self, e: Entry) -> Result<Outcome, RunError> {
        let loss = self
            .exe
            .read(e, &Output::Loss)
            .and_then(|l| l.iter().next().copied())
            .ok_or_else(|| RunError::from("the graph computed no loss".to_string()))?;
        let logits = self
            .exe
            .read(e, &Output::Logits)
            .ok_or_else(|| RunError::from("the graph computed no logits".to_string()))?;
        Ok(Outcome {
            loss: f64::from(loss),
            logits,
        })
    }

    /// One training step: optimizer step `step` (1-based) at learning rate
    /// `lr`, dropout drawn from `seed`. The state changes only when the loss
    /// and every gradient are finite.
    pub fn train_step(
        &mut self,
        batch: Batch,
        lr: f64,
        step: u64,
        seed: u64,
    ) -> Result<Result<Outcome, NonFinite>, RunError> {
        let e = self.entry(batch.labels.len(), true)?;
        let scalars: Vec<(&str, f64)> = self.optimizer.scalars(step, lr).into_iter().collect();
        let feeds = self.feed(e, batch, &scalars)?;
        let kept = feeds.clone();
        self.exe.run(e, feeds, seed).map_err(backend_error)?;
        let out = self.outcome(e)?;
        let check = self
            .exe
            .read(e, &Output::GradCheck)
            .and_then(|c| c.iter().next().copied())
            .unwrap_or(0.0);
        if !out.loss.is_finite() || !check.is_finite() {
            return Ok(Err(NonFinite(self.first_non_finite(e, kept, seed))));
        }
        self.exe.commit(e).map_err(backend_error)?;
        if let Some((sync, k)) = self.sync {
            if step.is_multiple_of(k as u64) {
                self.exe.run(sync, Vec::new(), 0).map_err(backend_error)?;
                self.exe.commit(sync).map_err(backend_error)?;
            }
        }
        Ok(Ok(out))
    }

    /// Runs the diverged step again on the reference executor, checking
    /// every value, and names the first that is not finite.
    fn first_non_finite(
        &self,
        e: Entry,
        feeds: Vec<(crate::backend::InputHandle, ArrayD<f32>)>,
        seed: u64,
    ) -> String {
        let Some((_, g)) = self.entries.values().find(|(entry, _)| *entry == e) else {
            return "a gradient".into();
        };
        let mut inputs: HashMap<String, ArrayD<f32>> = HashMap::new();
        for (handle, value) in feeds {
            if let Some(i) = self.exe.fed_inputs(e).get(handle.index) {
                inputs.insert(i.name.clone(), value);
            }
        }
        for role in [Role::Parameter, Role::Buffer] {
            for (_, name) in g.inputs(role) {
                if let Some(v) = self.exe.read_state(name) {
                    inputs.insert(name.to_string(), v);
                }
            }
        }
        match crate::backend::reference::run_checked::<f32>(g, &inputs, seed) {
            Err(e) => e.to_string(),
            Ok(_) => "a gradient".to_string(),
        }
    }

    /// The evaluation graph on one batch (running statistics, no dropout).
    pub fn evaluate(&mut self, batch: Batch) -> Result<Outcome, RunError> {
        let e = self.entry(batch.labels.len(), false)?;
        let feeds = self.feed(e, batch, &[])?;
        self.exe.run(e, feeds, 0).map_err(backend_error)?;
        self.outcome(e)
    }

    /// Parameters and buffers, read back from the backend.
    pub fn weights(&self) -> WeightSet {
        self.exe
            .read_all_state()
            .into_iter()
            .filter(|(k, _)| !self.optimizer_state.contains(k))
            .collect()
    }

    /// The optimizer's state, read back from the backend.
    pub fn optimizer_state(&self) -> WeightSet {
        self.optimizer_state
            .iter()
            .filter_map(|k| self.exe.read_state(k).map(|v| (k.clone(), v)))
            .collect()
    }

    /// Replaces parameters and buffers (the best epoch's, restored).
    pub fn set_weights(&mut self, weights: WeightSet) -> Result<(), RunError> {
        for (k, v) in weights {
            self.exe.write_state(&k, v).map_err(backend_error)?;
        }
        Ok(())
    }
}
