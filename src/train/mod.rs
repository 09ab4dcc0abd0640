//! Training: the runtime around the compiled training step. Data loading
//! and augmentation on worker threads, learning-rate schedules, the loop
//! with metrics, early stopping and checkpoints. The step itself (forward,
//! loss, backward and the optimizer's update as IR) comes from `autodiff`
//! and runs on a backend through `session`.

pub mod augment;
pub mod checkpoint;
pub mod data;
pub mod interrupt;
pub mod loader;
pub mod metrics;
pub mod plot;
pub mod run;
pub mod schedule;
pub mod session;
pub mod setup;
pub mod transfer;
