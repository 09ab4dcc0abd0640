//! Training: the runtime around the compiled training step. Data loading
//! and augmentation on worker threads, optimizers as IR update rules,
//! learning-rate schedules, the loop with metrics, early stopping and
//! checkpoints.

pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod interrupt;
pub mod loader;
pub mod metrics;
pub mod optim;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod setup;
pub mod transfer;
