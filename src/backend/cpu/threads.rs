//! The threads a parallel kernel runs on: started once per executable and
//! woken for each kernel, because a training step runs hundreds of
//! kernels and starting a thread for each costs more than many of them.
//!
//! A call hands every worker the same job: the kernel, the buffer table
//! and a range split into parts; part 0 runs on the calling thread, part
//! `w` on worker `w`. The call returns when every part is done, so the
//! table and buffers outlive every use of them.

use super::codegen::KernelFn;
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

#[derive(Clone, Copy)]
struct Job {
    f: KernelFn,
    table: usize,
    n: i64,
    chunk: i64,
    seed: i64,
}

struct State {
    job: Option<Job>,
    /// Increases with each job, so a worker runs each job once.
    generation: u64,
    /// Parts not finished yet.
    pending: usize,
    stop: bool,
}

struct Shared {
    state: Mutex<State>,
    start: Condvar,
    done: Condvar,
}

pub struct Pool {
    shared: Arc<Shared>,
    workers: Vec<JoinHandle<()>>,
}

impl Pool {
    /// A pool that runs kernels on `threads` threads in all (the caller's
    /// included).
    pub fn new(threads: usize) -> Pool {
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                job: None,
                generation: 0,
                pending: 0,
                stop: false,
            }),
            start: Condvar::new(),
            done: Condvar::new(),
        });
        let workers = (1..threads.max(1))
            .map(|w| {
                let shared = Arc::clone(&shared);
                std::thread::Builder::new()
                    .name(format!("nnc-cpu-{w}"))
                    .spawn(move || worker(&shared, w))
                    .expect("a worker thread starts")
            })
            .collect();
        Pool { shared, workers }
    }

    pub fn threads(&self) -> usize {
        self.workers.len() + 1
    }

    /// Runs `f` over `0..n` in parts of `chunk`, one per thread.
    pub fn run(&self, f: KernelFn, table: *const *mut f32, n: i64, chunk: i64, seed: i64) {
        let job = Job {
            f,
            table: table as usize,
            n,
            chunk,
            seed,
        };
        {
            let mut s = lock(&self.shared.state);
            s.job = Some(job);
            s.generation += 1;
            // Workers without a part still acknowledge the job.
            s.pending = self.workers.len();
            self.shared.start.notify_all();
        }
        run_part(&job, 0);
        let mut s = lock(&self.shared.state);
        while s.pending > 0 {
            s = self.shared.done.wait(s).unwrap_or_else(|e| e.into_inner());
        }
        s.job = None;
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        lock(&self.shared.state).stop = true;
        self.shared.start.notify_all();
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn lock(m: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    // A kernel never panics while holding the lock; a poisoned lock still
    // holds a consistent state.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

fn run_part(job: &Job, part: usize) {
    let lo = part as i64 * job.chunk;
    let hi = (lo + job.chunk).min(job.n);
    if lo < hi {
        // SAFETY: the kernel was verified against the buffers of `table`,
        // parts write disjoint elements (the kernel IR's `parallel`
        // invariant), and `Pool::run` waits for every part before the
        // table can go away.
        unsafe { (job.f)(job.table as *const *mut f32, lo, hi, job.seed) }
    }
}

fn worker(shared: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        let job = {
            let mut s = lock(&shared.state);
            while !s.stop && s.generation == seen {
                s = shared.start.wait(s).unwrap_or_else(|e| e.into_inner());
            }
            if s.stop {
                return;
            }
            seen = s.generation;
            s.job
        };
        if let Some(job) = job {
            run_part(&job, index);
        }
        let mut s = lock(&shared.state);
        s.pending -= 1;
        if s.pending == 0 {
            shared.done.notify_one();
        }
    }
}
