//! The syntax layer: source files, the AST and the pest parser.
//! Nothing here knows about shapes or layers.

pub mod ast;
mod parser;
pub mod source;
pub mod tokens;
pub mod visit;

pub use parser::{parse, MAX_NESTING};
