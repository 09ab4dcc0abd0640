//! The values the checker computes with: numbers, lists and tensors.

use super::dim::Dim;
use super::model::ValueId;
use crate::syntax::source::Span;

/// A tensor value: which model value it is, and where it was produced (for
/// the "this is [N, 64, 56, 56]" labels of diagnostics).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Tensor {
    pub id: ValueId,
    pub origin: Span,
}

#[derive(Clone, Debug, PartialEq)]
pub enum Value {
    /// An integer; symbolic when it depends on a dimension such as `N`.
    Int(Dim),
    Float(f64),
    Bool(bool),
    Str(String),
    List(Vec<Value>),
    Tensor(Tensor),
    /// The result of an expression that already failed with a diagnostic.
    /// Everything computed from it is silently poisoned too, so one mistake
    /// gives one error.
    Poison,
}

impl Value {
    pub fn int(v: i64) -> Value {
        Value::Int(Dim::constant(v))
    }

    pub fn type_name(&self) -> &'static str {
        match self {
            Value::Int(_) => "int",
            Value::Float(_) => "float",
            Value::Bool(_) => "bool",
            Value::Str(_) => "string",
            Value::List(_) => "list",
            Value::Tensor(_) => "tensor",
            Value::Poison => "error",
        }
    }

    pub fn is_poison(&self) -> bool {
        matches!(self, Value::Poison)
    }

    /// A short rendering for messages (`3`, `0.5`, `[1, 2]`, `"same"`).
    pub fn describe(&self) -> String {
        match self {
            Value::Int(d) => d.to_string(),
            Value::Float(f) => format_float(*f),
            Value::Bool(b) => b.to_string(),
            Value::Str(s) => format!("{s:?}"),
            Value::List(items) => {
                let parts: Vec<String> = items.iter().map(Value::describe).collect();
                format!("[{}]", parts.join(", "))
            }
            Value::Tensor(_) => "a tensor".to_string(),
            Value::Poison => "<error>".to_string(),
        }
    }
}

/// Floats as a user wrote them: `0.5`, `1e-05`, `3.0`.
pub fn format_float(f: f64) -> String {
    if f != 0.0 && (f.abs() < 1e-3 || f.abs() >= 1e7) {
        format!("{f:e}")
    } else if f.fract() == 0.0 {
        format!("{f:.1}")
    } else {
        format!("{f}")
    }
}
