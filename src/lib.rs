//! nnc: a compiler for neural-network definitions.
//!
//! The pipeline runs one way, one folder per stage:
//!
//! ```text
//! text ──syntax::parse──▶ AST ──check──▶ checked Model (+ training config)
//!      ──ir::lower::lower──▶ ir::Graph ──autodiff::differentiate──▶ training graph
//!      ──backend::reference::run──▶ tensors
//! ```
//!
//! `weights` reads and writes safetensors and `.npy` and initializes
//! parameters as PyTorch does. Every stage returns its result together with
//! its diagnostics or errors; only the command line renders them.

// Diagnostics travel in `Err`; they are built only on the error path, so
// their size does not matter and boxing them would only add noise.
#![allow(clippy::result_large_err)]

pub mod autodiff;
pub mod backend;
pub mod bench;
pub mod check;
pub mod diag;
pub mod diag_codes;
pub mod driver;
pub mod format;
pub mod glob;
pub mod host;
pub mod ir;
pub mod kernel;
pub mod lsp;
pub mod passes;
pub mod pipeline;
pub mod rng;
pub mod stdlib;
pub mod summary;
pub mod syntax;
pub mod train;
pub mod weights;

/// Runs `f` on a thread with a large stack. Checking recurses over the
/// program (expressions, nested blocks); its depth is bounded, but the
/// bound is set for this stack, not for the 2 MiB of a test thread.
pub fn with_big_stack<T: Send>(f: impl FnOnce() -> T + Send) -> T {
    const STACK: usize = 256 << 20;
    std::thread::scope(|scope| {
        let handle = std::thread::Builder::new()
            .name("nnc-check".into())
            .stack_size(STACK)
            .spawn_scoped(scope, f)
            .expect("spawning the checker thread");
        match handle.join() {
            Ok(v) => v,
            Err(panic) => std::panic::resume_unwind(panic),
        }
    })
}
