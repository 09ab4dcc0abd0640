//! The reference executor behind the [`Backend`] interface: state in host
//! memory, each run interpreted by [`super::run`].

use super::{run, ExecError};
use crate::backend::{Backend, BackendError, Entry, Executable, FedInput, InputHandle};
use crate::ir::{Graph, Op, Output};
use crate::weights::WeightSet;
use ndarray::ArrayD;
use std::collections::HashMap;

/// The reference backend.
pub struct Reference;

impl Backend for Reference {
    fn name(&self) -> &'static str {
        "reference"
    }

    fn instantiate(&self, state: WeightSet) -> Box<dyn Executable> {
        Box::new(ReferenceExecutable {
            state,
            entries: Vec::new(),
        })
    }
}

struct Compiled {
    graph: Graph,
    fed: Vec<FedInput>,
    /// Outputs of the last run, by kind.
    last: HashMap<Output, ArrayD<f32>>,
}

pub struct ReferenceExecutable {
    state: WeightSet,
    entries: Vec<Compiled>,
}

impl ReferenceExecutable {
    fn entry(&self, e: Entry) -> Result<&Compiled, BackendError> {
        self.entries
            .get(e.0)
            .ok_or_else(|| BackendError::Feed(format!("no compiled graph {}", e.0)))
    }
}

impl Executable for ReferenceExecutable {
    fn compile(&mut self, graph: &Graph) -> Result<Entry, BackendError> {
        let entry = Entry(self.entries.len());
        let state = &self.state;
        let fed =
            crate::backend::fed_inputs_of(graph, entry, |name| state.get(name).map(|v| v.shape()))?;
        self.entries.push(Compiled {
            graph: graph.clone(),
            fed,
            last: HashMap::new(),
        });
        Ok(entry)
    }

    fn fed_inputs(&self, entry: Entry) -> &[FedInput] {
        self.entries.get(entry.0).map_or(&[], |c| c.fed.as_slice())
    }

    fn run(
        &mut self,
        entry: Entry,
        feeds: Vec<(InputHandle, ArrayD<f32>)>,
        seed: u64,
    ) -> Result<(), BackendError> {
        let compiled = self.entry(entry)?;
        let values = crate::backend::order_feeds(&compiled.fed, entry, feeds)?;
        let mut inputs: HashMap<String, ArrayD<f32>> = compiled
            .fed
            .iter()
            .map(|f| f.name.clone())
            .zip(values)
            .collect();
        for node in &compiled.graph.nodes {
            if let Op::Input { name, role, .. } = &node.op {
                if role.is_state() {
                    inputs.insert(name.clone(), self.state[name].clone());
                }
            }
        }
        let out = run::<f32>(&compiled.graph, &inputs, seed).map_err(BackendError::Exec)?;
        let last = compiled
            .graph
            .outputs
            .iter()
            .filter_map(|(o, _)| out.get(&o.name()).map(|v| (o.clone(), v.clone())))
            .collect();
        self.entries[entry.0].last = last;
        Ok(())
    }

    fn read(&self, entry: Entry, output: &Output) -> Option<ArrayD<f32>> {
        self.entries.get(entry.0)?.last.get(output).cloned()
    }

    fn commit(&mut self, entry: Entry) -> Result<(), BackendError> {
        let compiled = self.entry(entry)?;
        let mut updates = Vec::new();
        for (o, v) in &compiled.last {
            if let Output::Update(name) = o {
                if !self.state.contains_key(name) {
                    return Err(BackendError::Update(format!(
                        "the graph updates `{name}`, which is not in the state"
                    )));
                }
                updates.push((name.clone(), v.clone()));
            }
        }
        self.state.extend(updates);
        Ok(())
    }

    fn state_names(&self) -> Vec<String> {
        self.state.keys().cloned().collect()
    }

    fn read_state(&self, name: &str) -> Option<ArrayD<f32>> {
        self.state.get(name).cloned()
    }

    fn write_state(&mut self, name: &str, value: ArrayD<f32>) -> Result<(), BackendError> {
        match self.state.get_mut(name) {
            Some(v) if v.shape() == value.shape() => {
                *v = value;
                Ok(())
            }
            Some(v) => Err(BackendError::State(format!(
                "`{name}` is {:?}, not {:?}",
                v.shape(),
                value.shape()
            ))),
            None => Err(BackendError::State(format!("`{name}` is not in the state"))),
        }
    }
}

impl From<ExecError> for BackendError {
    fn from(e: ExecError) -> BackendError {
        BackendError::Exec(e)
    }
}
