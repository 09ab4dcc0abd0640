//! The graph IR: tensor operations on values of concrete shape.
//!
//! A [`Graph`] is an arena of [`Node`]s addressed by [`NodeId`] handles. Each
//! node computes one value from the values of earlier nodes (so the arena
//! order is a topological order: SSA, no cycles by construction). Inputs,
//! parameters and buffers are nodes too ([`Op::Input`]), named by their
//! `state_dict` keys. Shapes are concrete: the batch size is bound when a
//! model is lowered for a given input shape.
//!
//! Invariants, checked by [`verify::verify`] after lowering and after every
//! transformation in debug builds: every argument refers to an earlier node;
//! every node's type is what its op infers from its arguments; input names
//! are unique; outputs refer to existing nodes.

pub mod catalogue;
pub mod dot;
pub mod lower;
pub mod ops;
pub mod text;
pub mod verify;

pub use ops::{BinaryFn, Op, Role, UnaryFn};

use std::fmt;

/// A handle to a node (and to the value it computes).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct NodeId(pub u32);

impl fmt::Display for NodeId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "%{}", self.0)
    }
}

/// Element types. Only f32 is computed today; the IR carries the type so
/// that f16 and integer tensors can be added without changing its shape.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum DType {
    F32,
}

impl DType {
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "f32",
        }
    }

    pub fn size_bytes(self) -> usize {
        match self {
            DType::F32 => 4,
        }
    }
}

#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct TensorType {
    pub dtype: DType,
    pub shape: Vec<usize>,
}

impl TensorType {
    pub fn f32(shape: Vec<usize>) -> TensorType {
        TensorType {
            dtype: DType::F32,
            shape,
        }
    }

    /// The number of elements; it fits in memory by the graph's invariant
    /// (`Graph::try_add` refuses a type whose size does not).
    pub fn numel(&self) -> usize {
        self.shape.iter().product()
    }
}

/// The number of elements of `shape`, or `None` when it overflows.
pub fn checked_numel(shape: &[usize]) -> Option<usize> {
    shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d))
}

impl fmt::Display for TensorType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let dims: Vec<String> = self.shape.iter().map(|d| d.to_string()).collect();
        write!(f, "{}[{}]", self.dtype.name(), dims.join(", "))
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Node {
    pub op: Op,
    pub args: Vec<NodeId>,
    pub ty: TensorType,
    /// The layer this node belongs to and its kind
    /// (`layer1.0.conv1:conv2d`), for dot clusters and messages; `loss` for
    /// the loss, empty for graph-level nodes.
    pub scope: String,
}

/// Whether batch norm and dropout behave as in training or in evaluation.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// Batch statistics, running-statistics updates, active dropout.
    Train,
    /// Running statistics, no dropout.
    Infer,
}

impl Mode {
    pub fn name(self) -> &'static str {
        match self {
            Mode::Train => "train",
            Mode::Infer => "infer",
        }
    }
}

/// What a graph's result is: the graph's signature on the output side.
/// The text form writes each as a name (`logits`, `grad:conv1.weight`).
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Output {
    /// The network's output.
    Logits,
    /// The mean loss of the batch.
    Loss,
    /// The gradient of the loss with respect to a parameter.
    Grad(String),
    /// The new value of a state tensor (a parameter, a buffer such as a
    /// running mean, or an optimizer state) after the step: a backend that
    /// owns the state replaces the tensor of this name with it.
    Update(String),
    /// 0 when every gradient of a training step is finite, NaN otherwise.
    GradCheck,
    /// Anything else (single-op graphs in tests).
    Named(String),
}

impl Output {
    /// The output's name in the text form and in result maps.
    pub fn name(&self) -> String {
        match self {
            Output::Logits => "logits".into(),
            Output::Loss => "loss".into(),
            Output::Grad(p) => format!("grad:{p}"),
            Output::Update(s) => format!("update:{s}"),
            Output::GradCheck => "grad_check".into(),
            Output::Named(n) => n.clone(),
        }
    }

    /// The inverse of [`Output::name`].
    pub fn from_name(name: &str) -> Output {
        match name {
            "logits" => Output::Logits,
            "loss" => Output::Loss,
            "grad_check" => Output::GradCheck,
            _ => match (name.strip_prefix("grad:"), name.strip_prefix("update:")) {
                (Some(p), _) => Output::Grad(p.to_string()),
                (_, Some(s)) => Output::Update(s.to_string()),
                _ => Output::Named(name.to_string()),
            },
        }
    }
}

impl fmt::Display for Output {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.name())
    }
}

#[derive(Clone, Debug, PartialEq)]
pub struct Graph {
    pub name: String,
    pub mode: Mode,
    pub nodes: Vec<Node>,
    /// The results, each with what it is.
    pub outputs: Vec<(Output, NodeId)>,
    /// Layers lowered in evaluation mode although the graph trains: those
    /// whose parameters are all frozen (their batch norms use and keep
    /// their running statistics). Empty in an inference graph.
    pub eval_layers: Vec<String>,
}

/// An op applied to arguments whose types do not fit it.
#[derive(Clone, Debug, PartialEq)]
pub struct TypeError(pub String);

impl fmt::Display for TypeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for TypeError {}

impl Node {
    /// The layer path of the scope (`layer1.0.conv1`).
    pub fn layer_path(&self) -> &str {
        self.scope.split_once(':').map_or(&self.scope, |(p, _)| p)
    }

    /// The layer kind of the scope (`conv2d`), if lowering recorded one.
    pub fn layer_kind(&self) -> Option<&str> {
        self.scope.split_once(':').map(|(_, k)| k)
    }
}

impl Graph {
    pub fn new(name: &str, mode: Mode) -> Graph {
        Graph {
            name: name.to_string(),
            mode,
            nodes: Vec::new(),
            outputs: Vec::new(),
            eval_layers: Vec::new(),
        }
    }

    pub fn node(&self, id: NodeId) -> &Node {
        &self.nodes[id.0 as usize]
    }

    pub fn ty(&self, id: NodeId) -> &TensorType {
        &self.node(id).ty
    }

    pub fn shape(&self, id: NodeId) -> &[usize] {
        &self.node(id).ty.shape
    }

    /// Appends a node, inferring its type. Lowering and autodiff only build
    /// well-typed graphs, so a type error here is a bug in them.
    pub fn add(&mut self, op: Op, args: &[NodeId], scope: &str) -> NodeId {
        match self.try_add(op, args, scope) {
            Ok(id) => id,
            Err(e) => panic!("ill-typed IR construction: {e}"),
        }
    }

    pub fn try_add(&mut self, op: Op, args: &[NodeId], scope: &str) -> Result<NodeId, TypeError> {
        let arg_types: Vec<&TensorType> = args.iter().map(|a| self.ty(*a)).collect();
        let ty = op.infer(&arg_types)?;
        // Every tensor of a graph fits in memory, so that sizes derived from
        // shapes (element counts, byte offsets) never overflow downstream.
        if checked_numel(&ty.shape).is_none_or(|n| n > isize::MAX as usize / 8) {
            return Err(TypeError(format!(
                "`{}` would have shape {:?}: more elements than fit in memory",
                op.name(),
                ty.shape
            )));
        }
        self.nodes.push(Node {
            op,
            args: args.to_vec(),
            ty,
            scope: scope.to_string(),
        });
        Ok(NodeId(self.nodes.len() as u32 - 1))
    }

    pub fn input(&mut self, name: &str, role: Role, shape: Vec<usize>, scope: &str) -> NodeId {
        self.add(
            Op::Input {
                name: name.to_string(),
                role,
                shape,
            },
            &[],
            scope,
        )
    }

    /// A scalar constant (shape `[]`), broadcast by binary ops.
    pub fn scalar(&mut self, value: f64) -> NodeId {
        self.add(
            Op::Const {
                value,
                shape: Vec::new(),
            },
            &[],
            "",
        )
    }

    pub fn set_output(&mut self, output: Output, id: NodeId) {
        self.outputs.push((output, id));
    }

    /// An output by its text name (`"loss"`, `"grad:fc.weight"`).
    pub fn output(&mut self, name: &str, id: NodeId) {
        self.set_output(Output::from_name(name), id);
    }

    pub fn find(&self, output: &Output) -> Option<NodeId> {
        self.outputs
            .iter()
            .find(|(o, _)| o == output)
            .map(|(_, id)| *id)
    }

    /// [`Graph::find`] by text name.
    pub fn find_output(&self, name: &str) -> Option<NodeId> {
        self.find(&Output::from_name(name))
    }

    /// The input nodes with a role, in graph order.
    pub fn inputs(&self, role: Role) -> impl Iterator<Item = (NodeId, &str)> {
        self.nodes
            .iter()
            .enumerate()
            .filter_map(move |(i, n)| match &n.op {
                Op::Input { name, role: r, .. } if *r == role => {
                    Some((NodeId(i as u32), name.as_str()))
                }
                _ => None,
            })
    }

    pub fn find_input(&self, name: &str) -> Option<NodeId> {
        self.nodes
            .iter()
            .position(|n| matches!(&n.op, Op::Input { name: m, .. } if m == name))
            .map(|i| NodeId(i as u32))
    }
}
