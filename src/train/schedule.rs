//! Learning-rate schedules with PyTorch's semantics.
//!
//! Epoch schedules (step, multistep, exponential, cosine) change the rate
//! at epoch boundaries, as `scheduler.step()` after each epoch does;
//! `one_cycle` and the warm-up change it every batch; `reduce_on_plateau`
//! changes it when the monitored metric stops improving.

use crate::check::train::{Mode, Schedule as Spec};

#[derive(Clone, Debug)]
pub struct Schedule {
    spec: Spec,
    base_lr: f64,
    epochs: u64,
    steps_per_epoch: u64,
    /// reduce_on_plateau's state: current rate, best metric, bad epochs.
    plateau: Option<(f64, f64, i64)>,
}

impl Schedule {
    pub fn new(spec: Spec, base_lr: f64, epochs: u64, steps_per_epoch: u64) -> Schedule {
        let plateau = plateau_spec(&spec)
            .is_some()
            .then_some((base_lr, f64::NAN, 0));
        Schedule {
            spec,
            base_lr,
            epochs,
            steps_per_epoch: steps_per_epoch.max(1),
            plateau,
        }
    }

    /// The rate for batch `step` (0-based within the run) of epoch `epoch`
    /// (0-based).
    pub fn lr(&self, epoch: u64, step: u64) -> f64 {
        rate(
            &self.spec,
            self.base_lr,
            epoch,
            step,
            self.epochs,
            self.steps_per_epoch,
            self.plateau.map(|p| p.0),
        )
    }

    /// Tells reduce_on_plateau the monitored value at the end of an epoch.
    pub fn observe(&mut self, value: f64) {
        let Some(Spec::ReduceOnPlateau {
            mode,
            factor,
            patience,
            min_lr,
            ..
        }) = plateau_spec(&self.spec).cloned()
        else {
            return;
        };
        let Some((lr, best, bad)) = self.plateau.as_mut() else {
            return;
        };
        // torch's defaults: relative threshold 1e-4, no cooldown.
        let better = best.is_nan()
            || match mode {
                Mode::Min => value < *best * (1.0 - 1e-4),
                Mode::Max => value > *best * (1.0 + 1e-4),
            };
        if better {
            *best = value;
            *bad = 0;
        } else {
            *bad += 1;
        }
        if *bad > patience {
            let new = (*lr * factor).max(min_lr);
            if *lr - new > 1e-8 {
                *lr = new;
            }
            *bad = 0;
        }
    }

    /// reduce_on_plateau's state (rate, best, bad epochs), for checkpoints.
    pub fn plateau_state(&self) -> Option<(f64, f64, i64)> {
        self.plateau
    }

    pub fn restore_plateau(&mut self, lr: f64, best: f64, bad: i64) {
        if self.plateau.is_some() {
            self.plateau = Some((lr, best, bad));
        }
    }

    /// reduce_on_plateau's metric name, if the schedule is one.
    pub fn monitor(&self) -> Option<&str> {
        match plateau_spec(&self.spec) {
            Some(Spec::ReduceOnPlateau { monitor, .. }) => Some(monitor),
            _ => None,
        }
    }
}

fn plateau_spec(spec: &Spec) -> Option<&Spec> {
    match spec {
        Spec::ReduceOnPlateau { .. } => Some(spec),
        Spec::Warmup { then, .. } => plateau_spec(then),
        _ => None,
    }
}

fn rate(
    spec: &Spec,
    base: f64,
    epoch: u64,
    step: u64,
    epochs: u64,
    spe: u64,
    plateau: Option<f64>,
) -> f64 {
    let e = epoch as f64;
    match spec {
        Spec::Constant => base,
        Spec::Step { step_size, gamma } => base * gamma.powi((epoch / *step_size as u64) as i32),
        Spec::MultiStep { milestones, gamma } => {
            let passed = milestones.iter().filter(|&&m| m as u64 <= epoch).count();
            base * gamma.powi(passed as i32)
        }
        Spec::Exponential { gamma } => base * gamma.powf(e),
        Spec::Cosine { t_max, eta_min } => {
            let t = t_max.map_or(epochs, |t| t as u64) as f64;
            eta_min + (base - eta_min) * (1.0 + (std::f64::consts::PI * e / t).cos()) / 2.0
        }
        Spec::Warmup {
            epochs: w,
            start_factor,
            then,
        } => {
            let warm_steps = *w as u64 * spe;
            if step < warm_steps {
                // torch.optim.lr_scheduler.LinearLR stepped every batch.
                let f = start_factor + (1.0 - start_factor) * step as f64 / warm_steps as f64;
                base * f
            } else {
                let after = epoch.saturating_sub(*w as u64);
                rate(
                    then,
                    base,
                    after,
                    step - warm_steps,
                    epochs.saturating_sub(*w as u64),
                    spe,
                    plateau,
                )
            }
        }
        Spec::OneCycle {
            max_lr,
            pct_start,
            div_factor,
            final_div_factor,
        } => {
            // torch.optim.lr_scheduler.OneCycleLR, cosine annealing, two phases.
            let total = (epochs * spe) as f64;
            let initial = max_lr / div_factor;
            let min = initial / final_div_factor;
            let phase1_end = pct_start * total - 1.0;
            let phase2_end = total - 1.0;
            let s = step as f64;
            let anneal = |start: f64, end: f64, pct: f64| {
                end + (start - end) / 2.0 * ((std::f64::consts::PI * pct).cos() + 1.0)
            };
            if s <= phase1_end {
                anneal(initial, *max_lr, s / phase1_end)
            } else {
                anneal(*max_lr, min, (s - phase1_end) / (phase2_end - phase1_end))
            }
        }
        Spec::ReduceOnPlateau { .. } => plateau.unwrap_or(base),
    }
}
