//! nnc: a compiler for neural-network definitions.
//!
//! The pipeline runs one way, one folder per stage:
//!
//! ```text
//! text ──syntax::parse──▶ AST ──check──▶ checked Model (+ training config)
//! ```
//!
//! Later stages (graph IR, autodiff, passes, backends) consume
//! [`check::model::Model`]. Every stage returns its result together with
//! its diagnostics; only the command line renders them.

pub mod check;
pub mod diag;
pub mod diag_codes;
pub mod driver;
pub mod stdlib;
pub mod summary;
pub mod syntax;
