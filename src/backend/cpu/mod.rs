//! The cpu backend: a graph is planned into fusion groups, lowered to the
//! kernel IR, verified, and compiled to native code by Cranelift; a run
//! calls the kernels in order over buffers allocated once, at compile
//! time. Parallel kernels split their outermost loop over the machine's
//! cores.

mod cache;
mod codegen;
mod gemm;
mod threads;
mod vectorize;

use crate::backend::{Backend, BackendError, Entry, Executable, FedInput, InputHandle};
use crate::ir::{Graph, Output};
use crate::kernel::{BufferKind, Program, Stmt};
use crate::weights::WeightSet;
use ndarray::{ArrayD, IxDyn};
use std::collections::{BTreeMap, HashMap};

/// The cpu backend.
pub struct Cpu;

/// What the kernels are scheduled for on this machine.
pub fn host_target() -> crate::kernel::Target {
    crate::kernel::Target {
        patches_in_place: gemm::patches_in_place(),
        panel_columns: gemm::PANEL,
    }
}

impl Backend for Cpu {
    fn name(&self) -> &'static str {
        "cpu"
    }

    fn instantiate(&self, state: WeightSet) -> Box<dyn Executable> {
        let state = state
            .into_iter()
            .map(|(name, value)| {
                let shape = value.shape().to_vec();
                let data = value.iter().copied().collect();
                (name, (shape, data))
            })
            .collect();
        Box::new(CpuExecutable {
            state,
            entries: Vec::new(),
            state_version: 0,
            pool: threads::Pool::new(crate::host::threads()),
        })
    }
}

/// Where a buffer of a compiled program lives.
enum Slot {
    /// A state tensor, by name.
    State(String),
    /// A fed input, by position among the entry's fed inputs.
    Fed(usize),
    /// A value the kernels write, owned by the entry.
    Owned(Vec<f32>),
    /// A value that lives between two kernels only, in one of the entry's
    /// shared allocations (see `share_buffers`).
    Pooled(usize),
}

struct Compiled {
    program: Program,
    code: codegen::Compiled,
    /// Per kernel: the iterations of its outermost loop, when it may be
    /// split over threads, and a rough count of its innermost work.
    splits: Vec<Option<(i64, u64)>>,
    slots: Vec<Slot>,
    fed: Vec<FedInput>,
    fed_data: Vec<Vec<f32>>,
    outputs: HashMap<Output, usize>,
    /// The allocations values without overlapping lives share.
    pools: Vec<Vec<f32>>,
    ran: bool,
    /// Whether the last run's updates are in the state (see `commit`).
    committed: bool,
    /// Per kernel: whether its results depend on the state alone
    /// (`cache::state_only`), so that a run on the state the last run saw
    /// skips it.
    state_only: Vec<bool>,
    /// The state's version (`CpuExecutable::state_version`) at the last
    /// run, whose state-only results are in place.
    state_seen: Option<u64>,
}

pub struct CpuExecutable {
    /// Each state tensor's shape and elements.
    state: BTreeMap<String, (Vec<usize>, Vec<f32>)>,
    entries: Vec<Compiled>,
    pool: threads::Pool,
    /// Counts the changes of the state (commits and writes).
    state_version: u64,
}

/// Below this many innermost iterations a kernel runs on one thread: the
/// cost of waking another would exceed the work.
const PARALLEL_WORK: u64 = 1 << 15;

fn work(stmts: &[Stmt]) -> u64 {
    stmts
        .iter()
        .map(|s| match s {
            Stmt::For {
                start, end, body, ..
            } => {
                let trips = match (start, end) {
                    (crate::kernel::IExpr::Const(a), crate::kernel::IExpr::Const(b)) => {
                        (b - a).max(0) as u64
                    }
                    // A window: count it as a few taps.
                    _ => 4,
                };
                trips.saturating_mul(work(body).max(1))
            }
            Stmt::If { then, .. } => work(then).max(1),
            Stmt::Gemm(g) => (g.m * g.n * g.k) as u64,
            _ => 1,
        })
        .fold(0u64, u64::saturating_add)
}

impl CpuExecutable {
    fn entry(&self, e: Entry) -> Result<&Compiled, BackendError> {
        self.entries
            .get(e.0)
            .ok_or_else(|| BackendError::Feed(format!("no compiled graph {}", e.0)))
    }
}

impl Executable for CpuExecutable {
    fn compile(&mut self, graph: &Graph) -> Result<Entry, BackendError> {
        let entry = Entry(self.entries.len());
        let state = &self.state;
        let fed = crate::backend::fed_inputs_of(graph, entry, |name| {
            state.get(name).map(|(s, _)| s.as_slice())
        })?;
        let fed_index: HashMap<String, usize> = fed
            .iter()
            .map(|f| (f.name.clone(), f.handle.index))
            .collect();
        let lowered = crate::kernel::program_of(graph, host_target())
            .map_err(|e| BackendError::Unsupported(format!("internal: {e}")))?;
        if let Some(path) = std::env::var_os("NNC_DUMP_KERNELS") {
            // A tool for reading what was compiled (with NNC_PROFILE's
            // kernel numbers): the program's text, appended per graph.
            use std::io::Write;
            let dump = std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(path);
            if let Ok(mut f) = dump {
                let _ = write!(f, "{}", lowered.program);
            }
        }
        let code = codegen::compile(&lowered.program).map_err(BackendError::Unsupported)?;
        let is_state = |b: crate::kernel::BufId| match &lowered.program.buffers[b.0 as usize].kind {
            BufferKind::Input(name) => !fed_index.contains_key(name),
            _ => false,
        };
        let state_only = cache::state_only(&lowered.program, &is_state);
        let (pool_of, pools) = share_buffers(&lowered, &state_only);
        let slots = lowered
            .program
            .buffers
            .iter()
            .enumerate()
            .map(|(i, b)| match (&b.kind, pool_of[i]) {
                (BufferKind::Input(name), _) => match fed_index.get(name) {
                    Some(&i) => Slot::Fed(i),
                    None => Slot::State(name.clone()),
                },
                (_, Some(p)) => Slot::Pooled(p),
                (BufferKind::Value(_) | BufferKind::Scratch(_), None) => {
                    Slot::Owned(vec![0.0; b.len])
                }
            })
            .collect();
        let splits = lowered
            .program
            .kernels
            .iter()
            .map(|k| match k.body.as_slice() {
                [Stmt::For {
                    end: crate::kernel::IExpr::Const(n),
                    ..
                }] if k.parallel => Some((*n, work(&k.body))),
                _ => None,
            })
            .collect();
        let outputs = lowered
            .outputs
            .iter()
            .map(|(o, b)| (o.clone(), b.0 as usize))
            .collect();
        let fed_data = fed
            .iter()
            .map(|f| vec![0.0; f.shape.iter().product()])
            .collect();
        self.entries.push(Compiled {
            program: lowered.program,
            code,
            splits,
            slots,
            fed,
            fed_data,
            outputs,
            pools,
            ran: false,
            committed: false,
            state_only,
            state_seen: None,
        });
        Ok(entry)
    }

    fn fed_inputs(&self, entry: Entry) -> &[FedInput] {
        self.entries.get(entry.0).map_or(&[], |c| c.fed.as_slice())
    }

    fn run(
        &mut self,
        entry: Entry,
        feeds: Vec<(InputHandle, ArrayD<f32>)>,
        seed: u64,
    ) -> Result<(), BackendError> {
        self.entry(entry)?;
        let c = &mut self.entries[entry.0];
        let values = crate::backend::order_feeds(&c.fed, entry, feeds)?;
        for (dst, value) in c.fed_data.iter_mut().zip(&values) {
            // A batch in standard layout is one copy; ndarray's iterator
            // over a dynamic-rank array costs 0.4 ms for LeNet's 200,000
            // inputs a step (5 % of it).
            match value.as_slice() {
                Some(s) => dst.copy_from_slice(s),
                None => {
                    for (d, s) in dst.iter_mut().zip(value.iter()) {
                        *d = *s;
                    }
                }
            }
        }
        // The base address of every buffer. The kernels write only owned
        // buffers; state and fed inputs are read.
        let mut table: Vec<*mut f32> = Vec::with_capacity(c.slots.len());
        let pools: Vec<*mut f32> = c.pools.iter_mut().map(|p| p.as_mut_ptr()).collect();
        for slot in &mut c.slots {
            table.push(match slot {
                Slot::State(name) => self
                    .state
                    .get_mut(name.as_str())
                    .expect("compile checked the state")
                    .1
                    .as_mut_ptr(),
                Slot::Fed(i) => c.fed_data[*i].as_mut_ptr(),
                Slot::Owned(v) => v.as_mut_ptr(),
                Slot::Pooled(p) => pools[*p],
            });
        }
        let profile = profiling();
        let unchanged = c.state_seen == Some(self.state_version);
        for (k, f) in c.code.functions.iter().enumerate() {
            if unchanged && c.state_only[k] {
                continue;
            }
            let start = profile.then(std::time::Instant::now);
            run_kernel(*f, &table, c.splits[k], &self.pool, seed);
            if let Some(start) = start {
                eprintln!(
                    "kernel {k:>4} {:<28} {:>9.3} ms",
                    c.program.kernels[k].name,
                    start.elapsed().as_secs_f64() * 1e3
                );
            }
        }
        c.ran = true;
        c.committed = false;
        c.state_seen = Some(self.state_version);
        Ok(())
    }

    fn read(&self, entry: Entry, output: &Output) -> Option<ArrayD<f32>> {
        let c = self.entries.get(entry.0)?;
        if !c.ran {
            return None;
        }
        let b = *c.outputs.get(output)?;
        // A committed update may have changed places with the state.
        if let (true, Output::Update(name)) = (c.committed, output) {
            return self.read_state(name);
        }
        let shape = c.program.buffers[b].shape.clone();
        let data = match &c.slots[b] {
            Slot::State(name) => self.state.get(name)?.1.clone(),
            Slot::Fed(i) => c.fed_data[*i].clone(),
            Slot::Owned(v) => v.clone(),
            // Outputs have buffers of their own.
            Slot::Pooled(_) => return None,
        };
        ArrayD::from_shape_vec(IxDyn(&shape), data).ok()
    }

    fn commit(&mut self, entry: Entry) -> Result<(), BackendError> {
        self.entry(entry)?;
        let c = &mut self.entries[entry.0];
        if c.committed {
            return Ok(());
        }
        self.state_version += 1;
        for (o, &b) in &c.outputs {
            let Output::Update(name) = o else { continue };
            let Some((shape, dst)) = self.state.get_mut(name) else {
                return Err(BackendError::Update(format!(
                    "the graph updates `{name}`, which is not in the state"
                )));
            };
            // An update in a buffer of its own changes places with the
            // state tensor instead of being copied into it (ResNet-18's
            // parameters and momentum are 90 MiB a step); the old values
            // left behind are overwritten by the next run.
            let alone = c.outputs.values().filter(|&&other| other == b).count() == 1;
            match &mut c.slots[b] {
                Slot::Owned(v)
                    if alone && v.len() == dst.len() && c.program.buffers[b].shape == *shape =>
                {
                    std::mem::swap(v, dst)
                }
                Slot::Owned(v) => dst.copy_from_slice(v),
                Slot::Pooled(_) => unreachable!("outputs have buffers of their own"),
                Slot::Fed(i) => dst.copy_from_slice(&c.fed_data[*i]),
                // An update that is the state itself (or another state
                // tensor: copied through a temporary).
                Slot::State(src) if src == name => {}
                Slot::State(_) => {
                    return Err(BackendError::Update(format!(
                        "`{name}` is updated to another state tensor, which is not supported"
                    )))
                }
            }
        }
        c.committed = true;
        Ok(())
    }

    fn allocated_bytes(&self, entry: Entry) -> Option<usize> {
        let c = self.entries.get(entry.0)?;
        let owned: usize = c
            .slots
            .iter()
            .map(|s| match s {
                Slot::Owned(v) => v.len(),
                Slot::State(_) | Slot::Fed(_) | Slot::Pooled(_) => 0,
            })
            .sum::<usize>()
            + c.pools.iter().map(Vec::len).sum::<usize>();
        let fed: usize = c.fed_data.iter().map(Vec::len).sum();
        Some((owned + fed) * std::mem::size_of::<f32>())
    }

    fn state_names(&self) -> Vec<String> {
        self.state.keys().cloned().collect()
    }

    fn read_state(&self, name: &str) -> Option<ArrayD<f32>> {
        let (shape, data) = self.state.get(name)?;
        ArrayD::from_shape_vec(IxDyn(shape), data.clone()).ok()
    }

    fn write_state(&mut self, name: &str, value: ArrayD<f32>) -> Result<(), BackendError> {
        match self.state.get_mut(name) {
            Some((shape, data)) if shape.as_slice() == value.shape() => {
                self.state_version += 1;
                for (d, s) in data.iter_mut().zip(value.iter()) {
                    *d = *s;
                }
                Ok(())
            }
            Some((shape, _)) => Err(BackendError::State(format!(
                "`{name}` is {shape:?}, not {:?}",
                value.shape()
            ))),
            None => Err(BackendError::State(format!("`{name}` is not in the state"))),
        }
    }
}

/// Which values share allocations: a value that is not an output lives
/// from the first kernel that touches it to the last, and values whose
/// lives do not overlap take turns in one allocation (in order of first
/// use, each into the free allocation closest to its size, grown when
/// none is large enough). Outputs keep buffers of their own (they are read
/// after the run, and a commit exchanges updates with the state), and so
/// do state-only results (kept from run to run, `cache`) and scratch,
/// which several contractions share by design. Returns each
/// buffer's allocation and the allocations.
fn share_buffers(
    lowered: &crate::kernel::lower::Lowered,
    state_only: &[bool],
) -> (Vec<Option<usize>>, Vec<Vec<f32>>) {
    let p = &lowered.program;
    let n = p.buffers.len();
    // State-only results stay from run to run.
    let mut kept = vec![false; n];
    for (kernel, _) in p.kernels.iter().zip(state_only).filter(|(_, &only)| only) {
        let mut touched = Vec::new();
        for s in &kernel.body {
            codegen::buffers_of(s, &mut touched);
        }
        for b in touched {
            kept[b.0 as usize] = true;
        }
    }
    let (mut first, mut last) = (vec![usize::MAX; n], vec![0usize; n]);
    for (k, kernel) in p.kernels.iter().enumerate() {
        let mut touched = Vec::new();
        for s in &kernel.body {
            codegen::buffers_of(s, &mut touched);
        }
        for b in touched {
            let i = b.0 as usize;
            first[i] = first[i].min(k);
            last[i] = last[i].max(k);
        }
    }
    let mut output = vec![false; n];
    for (_, b) in &lowered.outputs {
        output[b.0 as usize] = true;
    }
    let mut candidates: Vec<usize> = (0..n)
        .filter(|&i| {
            matches!(p.buffers[i].kind, BufferKind::Value(_))
                && !output[i]
                && !kept[i]
                && first[i] != usize::MAX
        })
        .collect();
    candidates.sort_by_key(|&i| first[i]);
    let mut pool_of = vec![None; n];
    // Per allocation: its size and the last kernel of its current value.
    let mut pools: Vec<(usize, usize)> = Vec::new();
    for i in candidates {
        let len = p.buffers[i].len;
        let free = |&(_, busy): &(usize, usize)| busy < first[i];
        let fits = pools
            .iter()
            .enumerate()
            .filter(|(_, q)| free(q) && q.0 >= len)
            .min_by_key(|(_, q)| q.0)
            .map(|(j, _)| j);
        let grown = || {
            pools
                .iter()
                .enumerate()
                .filter(|(_, q)| free(q))
                .max_by_key(|(_, q)| q.0)
                .map(|(j, _)| j)
        };
        let j = match fits.or_else(grown) {
            Some(j) => j,
            None => {
                pools.push((0, 0));
                pools.len() - 1
            }
        };
        pools[j] = (pools[j].0.max(len), last[i]);
        pool_of[i] = Some(j);
    }
    let pools = pools.into_iter().map(|(len, _)| vec![0.0; len]).collect();
    (pool_of, pools)
}

/// Whether `NNC_PROFILE` asks for each kernel's time on stderr (a tool
/// for finding the slow kernels, read once).
fn profiling() -> bool {
    static ON: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *ON.get_or_init(|| std::env::var_os("NNC_PROFILE").is_some_and(|v| v != "0"))
}

fn run_kernel(
    f: codegen::KernelFn,
    table: &[*mut f32],
    split: Option<(i64, u64)>,
    pool: &threads::Pool,
    seed: u64,
) {
    let seed = seed as i64;
    match split {
        Some((n, work)) if pool.threads() > 1 && work >= PARALLEL_WORK && n > 1 => {
            let parts = (pool.threads() as i64).min(n);
            pool.run(f, table.as_ptr(), n, (n + parts - 1) / parts, seed);
        }
        // SAFETY: the kernel was verified against these buffers' lengths,
        // and the table holds the address of each.
        Some((n, _)) => unsafe { f(table.as_ptr(), 0, n, seed) },
        None => unsafe { f(table.as_ptr(), 0, 0, seed) },
    }
}
