//! Backends: what executes a graph. `reference` interprets the IR op by op
//! on ndarray and is the oracle every other backend is tested against.

pub mod reference;
