//! `nnc bench`: steady-state throughput of a model on a backend. The graph
//! is lowered, optimized and compiled once (timed: `compile_ms`), run a few
//! times to warm up, then timed step by step on one fixed random batch; the
//! median step gives images per second. A training step is forward, loss,
//! backward and the update of SGD with momentum 0.9, as one graph; its
//! state (parameters, buffers, momentum) stays on the backend between
//! steps. The memory plan of the graph gives the peak bytes.

use crate::autodiff::optimizer::Optimizer;
use crate::backend::Backend;
use crate::ir::{Graph, Mode, Output, Role};
use crate::passes;
use crate::pipeline::LoadedModel;
use crate::rng::Rng;
use ndarray::ArrayD;
use std::time::Instant;

pub struct Options {
    pub mode: Mode,
    pub warmup: usize,
    pub steps: usize,
    pub seed: u64,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Report {
    pub network: String,
    pub backend: String,
    pub mode: Mode,
    pub input_shape: Vec<usize>,
    pub images_per_second: f64,
    /// Median, fastest and slowest timed step.
    pub step_ms: f64,
    pub step_ms_min: f64,
    pub step_ms_max: f64,
    pub steps: usize,
    /// Lowering, passes and the backend's compilation.
    pub compile_ms: f64,
    /// The memory plan of the graph (values, not parameters or state).
    pub peak_bytes: usize,
    pub live_bytes: usize,
    pub total_bytes: usize,
    /// What the backend holds for the graph besides the state (its values
    /// as it allocates them, outputs and scratch), when it says.
    pub allocated_bytes: Option<usize>,
    /// The machine it ran on (figures from different CPUs differ by up
    /// to twice: `host`).
    pub machine: crate::host::Host,
}

/// The benchmark's optimizer: SGD with momentum, as in the figures
/// and torchvision's recipes.
fn sgd() -> Optimizer {
    Optimizer::new(crate::check::train::Optimizer::Sgd {
        lr: 0.01,
        momentum: 0.9,
        dampening: 0.0,
        nesterov: false,
        weight_decay: 0.0,
    })
}

/// The graph a benchmark runs, after the default passes.
pub fn graph(loaded: &LoadedModel, mode: Mode) -> Result<Graph, String> {
    let mut g = match mode {
        Mode::Infer => loaded.lower(Mode::Infer),
        Mode::Train => loaded.lower_step_with(&sgd(), None),
    }
    .map_err(|d| d.message)?;
    for pass in passes::DEFAULT {
        pass.run(&mut g);
    }
    Ok(g)
}

fn uniform(shape: &[usize], rng: &mut Rng) -> ArrayD<f32> {
    let n: usize = shape.iter().product();
    let v: Vec<f32> = (0..n).map(|_| rng.uniform() as f32).collect();
    ArrayD::from_shape_vec(shape.to_vec(), v).unwrap_or_else(|_| ArrayD::zeros(shape.to_vec()))
}

pub fn run(loaded: &LoadedModel, backend: &dyn Backend, opts: &Options) -> Result<Report, String> {
    let t0 = Instant::now();
    let g = graph(loaded, opts.mode)?;
    let mut state = crate::weights::init::initialize(&loaded.model, opts.seed);
    let optimizer = sgd();
    if opts.mode == Mode::Train {
        let params: crate::weights::WeightSet = g
            .inputs(Role::Parameter)
            .filter_map(|(_, n)| state.get(n).map(|v| (n.to_string(), v.clone())))
            .collect();
        state.extend(optimizer.initial_state(&params));
    }
    let mut exe = backend.instantiate(state);
    let entry = exe.compile(&g).map_err(|e| e.to_string())?;
    let compile_ms = t0.elapsed().as_secs_f64() * 1e3;

    // One fixed batch: random images, one-hot targets of random classes.
    let mut rng = Rng::new(opts.seed ^ crate::rng::name_hash("bench"));
    let mut feeds = Vec::new();
    let mut batch = 1;
    for input in exe.fed_inputs(entry).to_vec() {
        let value = match input.role {
            Role::Target => {
                let (n, k) = (input.shape[0], input.shape[1]);
                let mut t = ArrayD::zeros(input.shape.clone());
                for i in 0..n {
                    t[[i, (rng.next_u64() % k as u64) as usize]] = 1.0;
                }
                t
            }
            Role::Scalar => {
                let scalars = optimizer.scalars(2, 0.01);
                let v = scalars.get(input.name.as_str()).copied().unwrap_or(0.0);
                ndarray::arr0(v as f32).into_dyn()
            }
            _ => {
                batch = input.shape.first().copied().unwrap_or(1);
                uniform(&input.shape, &mut rng)
            }
        };
        feeds.push((input.handle, value));
    }
    let mut times = Vec::with_capacity(opts.steps);
    for step in 0..opts.warmup + opts.steps {
        let t = Instant::now();
        exe.run(entry, feeds.clone(), step as u64)
            .map_err(|e| e.to_string())?;
        if opts.mode == Mode::Train {
            exe.commit(entry).map_err(|e| e.to_string())?;
        }
        // The host reads what a training loop reads each step.
        let wanted = if opts.mode == Mode::Train {
            Output::Loss
        } else {
            Output::Logits
        };
        let _ = exe.read(entry, &wanted);
        if step >= opts.warmup {
            times.push(t.elapsed().as_secs_f64() * 1e3);
        }
    }
    times.sort_by(f64::total_cmp);
    let median = times.get(times.len() / 2).copied().unwrap_or(f64::NAN);
    let plan = passes::memory::plan(&g);
    let allocated_bytes = exe.allocated_bytes(entry);
    Ok(Report {
        network: loaded.model.name.clone(),
        backend: backend.name().to_string(),
        mode: opts.mode,
        input_shape: loaded
            .model
            .input_sizes()
            .into_iter()
            .map(|d| d.unwrap_or(0) as usize)
            .collect(),
        images_per_second: batch as f64 / (median / 1e3),
        step_ms: median,
        step_ms_min: times.first().copied().unwrap_or(f64::NAN),
        step_ms_max: times.last().copied().unwrap_or(f64::NAN),
        steps: times.len(),
        compile_ms,
        peak_bytes: plan.peak_bytes,
        live_bytes: plan.live_bytes,
        total_bytes: plan.total_bytes,
        allocated_bytes,
        machine: crate::host::Host::this(),
    })
}

/// The memory plans of an inference and of a training step (with the
/// default passes), for `nnc summary`.
pub fn memory(loaded: &LoadedModel) -> Result<[passes::memory::MemoryPlan; 2], String> {
    Ok([
        passes::memory::plan(&graph(loaded, Mode::Infer)?),
        passes::memory::plan(&graph(loaded, Mode::Train)?),
    ])
}

/// Bytes as a person reads them.
pub fn show_bytes(b: usize) -> String {
    let b = b as f64;
    if b >= 1024.0 * 1024.0 * 1024.0 {
        format!("{:.2} GiB", b / (1024.0 * 1024.0 * 1024.0))
    } else if b >= 1024.0 * 1024.0 {
        format!("{:.2} MiB", b / (1024.0 * 1024.0))
    } else if b >= 1024.0 {
        format!("{:.2} KiB", b / 1024.0)
    } else {
        format!("{b} B")
    }
}

impl Report {
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::json!({
            "network": self.network,
            "backend": self.backend,
            "mode": self.mode.name(),
            "input_shape": self.input_shape,
            "images_per_second": self.images_per_second,
            "step_ms": self.step_ms,
            "step_ms_min": self.step_ms_min,
            "step_ms_max": self.step_ms_max,
            "steps": self.steps,
            "compile_ms": self.compile_ms,
            "peak_bytes": self.peak_bytes,
            "live_bytes": self.live_bytes,
            "total_bytes": self.total_bytes,
            "allocated_bytes": self.allocated_bytes,
            "machine": self.machine.to_string(),
        })
    }

    pub fn to_text(&self) -> String {
        let allocated = self.allocated_bytes.map_or(String::new(), |b| {
            format!(
                "the {} backend allocates {} for it besides the state (values, sharing where their lives do not overlap, outputs, and scratch)\n",
                self.backend,
                show_bytes(b)
            )
        });
        let text = format!(
            "{} {} {:?} on the {} backend: {:.0} images/s (median step {:.2} ms of {}, {:.2}..{:.2}); compile {:.1} ms\n\
             machine: {}\n\
             memory of the values: {} planned (at most {} alive at once), {} without reuse\n",
            self.network,
            self.mode.name(),
            self.input_shape,
            self.backend,
            self.images_per_second,
            self.step_ms,
            self.steps,
            self.step_ms_min,
            self.step_ms_max,
            self.compile_ms,
            self.machine,
            show_bytes(self.peak_bytes),
            show_bytes(self.live_bytes),
            show_bytes(self.total_bytes)
        );
        text + &allocated
    }
}
