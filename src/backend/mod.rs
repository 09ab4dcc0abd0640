//! Backends: what executes a graph. The training loop, `nnc infer` and the
//! tests speak only to the interface here; `reference` interprets the IR op
//! by op on ndarray and is the oracle every other backend is tested against.
//!
//! An [`Executable`] owns the state of a model (parameters, buffers and
//! optimizer state, by name) where the backend keeps it (host memory, a GPU
//! buffer). Graphs are compiled against it, once each: a graph's parameter
//! and buffer inputs read the state, its `Update(name)` outputs replace it
//! when the host commits a run, and the host feeds only the rest (the
//! batch, the target, the step's scalars) by typed handle. It reads back
//! only what it asks for: the loss and logits every step, the state at a
//! checkpoint.

pub mod cpu;
pub mod reference;

use crate::ir::{Graph, Output, Role};
use crate::weights::WeightSet;
use ndarray::ArrayD;
use std::fmt;

/// A graph compiled into an executable.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Entry(pub usize);

/// An input of a compiled graph that the host feeds.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct InputHandle {
    pub entry: Entry,
    /// Position among the entry's fed inputs.
    pub index: usize,
}

/// What the host must feed a compiled graph.
#[derive(Clone, Debug, PartialEq)]
pub struct FedInput {
    pub handle: InputHandle,
    pub role: Role,
    pub name: String,
    pub shape: Vec<usize>,
}

#[derive(Clone, Debug, PartialEq)]
pub enum BackendError {
    /// A state input whose tensor the executable does not hold, or holds
    /// with another shape.
    State(String),
    /// A fed input that was not given, or given with the wrong shape.
    Feed(String),
    /// An `update` of a committed run that names no state tensor.
    Update(String),
    /// A failure while running (the reference executor's errors).
    Exec(reference::ExecError),
    /// The graph uses something this backend cannot compile.
    Unsupported(String),
}

impl fmt::Display for BackendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            BackendError::State(m)
            | BackendError::Feed(m)
            | BackendError::Update(m)
            | BackendError::Unsupported(m) => f.write_str(m),
            BackendError::Exec(e) => write!(f, "{e}"),
        }
    }
}

impl std::error::Error for BackendError {}

/// A kind of backend.
pub trait Backend {
    fn name(&self) -> &'static str;

    /// An executable that owns `state` (parameters, buffers and optimizer
    /// state, by name).
    fn instantiate(&self, state: WeightSet) -> Box<dyn Executable>;
}

/// A model's state on a backend, with the graphs compiled against it.
pub trait Executable {
    /// Compiles `graph`: its parameter and buffer inputs must name state
    /// tensors of their shapes; its other inputs are fed at each run.
    fn compile(&mut self, graph: &Graph) -> Result<Entry, BackendError>;

    /// The inputs the host feeds `entry`.
    fn fed_inputs(&self, entry: Entry) -> &[FedInput];

    /// Runs `entry` on `feeds` (every fed input, by handle); `seed` picks
    /// the dropout masks. The state is unchanged until [`Executable::commit`].
    fn run(
        &mut self,
        entry: Entry,
        feeds: Vec<(InputHandle, ArrayD<f32>)>,
        seed: u64,
    ) -> Result<(), BackendError>;

    /// An output of the last run of `entry`.
    fn read(&self, entry: Entry, output: &Output) -> Option<ArrayD<f32>>;

    /// Makes the last run's `Update` outputs the state.
    fn commit(&mut self, entry: Entry) -> Result<(), BackendError>;

    /// The names of the state tensors.
    fn state_names(&self) -> Vec<String>;

    /// A state tensor, read back to the host.
    fn read_state(&self, name: &str) -> Option<ArrayD<f32>>;

    /// Replaces a state tensor (of the same shape).
    fn write_state(&mut self, name: &str, value: ArrayD<f32>) -> Result<(), BackendError>;

    /// The bytes the backend holds for running this graph besides the
    /// state (its values and scratch buffers), when it knows them.
    fn allocated_bytes(&self, _entry: Entry) -> Option<usize> {
        None
    }
}

impl dyn Executable + '_ {
    /// The handle of the fed input with this role (the first, for data).
    pub fn handle(&self, entry: Entry, role: Role) -> Option<InputHandle> {
        self.fed_inputs(entry)
            .iter()
            .find(|i| i.role == role)
            .map(|i| i.handle)
    }

    /// The handle of the fed input of this name (a scalar such as `lr`).
    pub fn handle_named(&self, entry: Entry, name: &str) -> Option<InputHandle> {
        self.fed_inputs(entry)
            .iter()
            .find(|i| i.name == name)
            .map(|i| i.handle)
    }

    /// Every state tensor, read back (for a checkpoint).
    pub fn read_all_state(&self) -> WeightSet {
        self.state_names()
            .into_iter()
            .filter_map(|n| self.read_state(&n).map(|v| (n, v)))
            .collect()
    }
}

/// The inputs of `graph` the host feeds at each run of `entry`, after
/// checking that every state input is in the state with its shape
/// (`state_shape` gives a state tensor's shape by name). Shared by the
/// backends' `compile`.
pub fn fed_inputs_of<'s>(
    graph: &Graph,
    entry: Entry,
    state_shape: impl Fn(&str) -> Option<&'s [usize]>,
) -> Result<Vec<FedInput>, BackendError> {
    let mut fed = Vec::new();
    for node in &graph.nodes {
        let crate::ir::Op::Input { name, role, shape } = &node.op else {
            continue;
        };
        if role.is_state() {
            match state_shape(name) {
                Some(s) if s == shape.as_slice() => {}
                Some(s) => {
                    return Err(BackendError::State(format!(
                        "`{name}` is {s:?} in the state, but the graph takes {shape:?}"
                    )))
                }
                None => {
                    return Err(BackendError::State(format!(
                        "the graph reads `{name}`, which is not in the state"
                    )))
                }
            }
        } else {
            fed.push(FedInput {
                handle: InputHandle {
                    entry,
                    index: fed.len(),
                },
                role: *role,
                name: name.clone(),
                shape: shape.clone(),
            });
        }
    }
    Ok(fed)
}

/// The values of a run's `feeds`, in the order of `fed` (the entry's fed
/// inputs): every input given once, of its shape. Shared by the backends'
/// `run`.
pub fn order_feeds(
    fed: &[FedInput],
    entry: Entry,
    feeds: Vec<(InputHandle, ArrayD<f32>)>,
) -> Result<Vec<ArrayD<f32>>, BackendError> {
    let mut given: Vec<Option<ArrayD<f32>>> = vec![None; fed.len()];
    for (handle, value) in feeds {
        let input = fed
            .get(handle.index)
            .filter(|_| handle.entry == entry)
            .ok_or_else(|| {
                BackendError::Feed(format!("{handle:?} is not an input of this graph"))
            })?;
        if value.shape() != input.shape.as_slice() {
            return Err(BackendError::Feed(format!(
                "`{}` has shape {:?}, but the graph takes {:?}",
                input.name,
                value.shape(),
                input.shape
            )));
        }
        given[handle.index] = Some(value);
    }
    given
        .into_iter()
        .zip(fed)
        .map(|(v, input)| {
            v.ok_or_else(|| BackendError::Feed(format!("no value was fed for `{}`", input.name)))
        })
        .collect()
}

/// The backends that exist, by the name `--backend` takes.
pub fn by_name(name: &str) -> Option<Box<dyn Backend>> {
    match name {
        "reference" => Some(Box::new(reference::Reference)),
        "cpu" => Some(Box::new(cpu::Cpu)),
        _ => None,
    }
}
