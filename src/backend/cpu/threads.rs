//! The threads a parallel kernel runs on: started once per executable and
//! woken for each kernel, because a training step runs hundreds of
//! kernels and starting a thread for each costs more than many of them.
//!
//! A call hands every worker the same job: the kernel, the buffer table
//! and a range split into parts; part 0 runs on the calling thread, part
//! `w` on worker `w`. The call returns when every part is done, so the
//! table and buffers outlive every use of them.
//!
//! Kernels come back to back, so a worker that finished one spins briefly
//! for the next before it sleeps (waking a sleeping thread costs tens of
//! microseconds, as much as a small kernel); the caller spins for the
//! workers' parts the same way.

use super::codegen::KernelFn;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;

/// How long a thread spins before it sleeps: about 50 microseconds.
const SPINS: u32 = 1 << 14;

#[derive(Clone, Copy)]
struct Job {
    f: KernelFn,
    table: usize,
    n: i64,
    chunk: i64,
    seed: i64,
}

struct Shared {
    job: Mutex<Option<Job>>,
    /// Increases with each job (and once more to stop), so a worker runs
    /// each job once.
    generation: AtomicU64,
    /// Workers whose part of the current job is not finished.
    pending: AtomicUsize,
    stop: AtomicU64,
    /// Sleeping workers wait here for a new generation; the caller for
    /// the last part.
    lock: Mutex<()>,
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
            job: Mutex::new(None),
            generation: AtomicU64::new(0),
            pending: AtomicUsize::new(0),
            stop: AtomicU64::new(0),
            lock: Mutex::new(()),
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
        let s = &self.shared;
        *lock(&s.job) = Some(job);
        s.pending.store(self.workers.len(), Ordering::Release);
        {
            let _g = lock(&s.lock);
            s.generation.fetch_add(1, Ordering::AcqRel);
            s.start.notify_all();
        }
        run_part(&job, 0);
        let mut spins = 0;
        while s.pending.load(Ordering::Acquire) > 0 {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let g = lock(&s.lock);
            if s.pending.load(Ordering::Acquire) > 0 {
                let _g = s.done.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
    }
}

impl Drop for Pool {
    fn drop(&mut self) {
        let s = &self.shared;
        s.stop.store(1, Ordering::Release);
        {
            let _g = lock(&s.lock);
            s.generation.fetch_add(1, Ordering::AcqRel);
            s.start.notify_all();
        }
        for w in self.workers.drain(..) {
            let _ = w.join();
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A kernel never panics while holding a lock; a poisoned lock still
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

fn worker(s: &Shared, index: usize) {
    let mut seen = 0u64;
    loop {
        // Spin for the next job, then sleep.
        let mut spins = 0;
        while s.generation.load(Ordering::Acquire) == seen {
            if spins < SPINS {
                spins += 1;
                std::hint::spin_loop();
                continue;
            }
            let g = lock(&s.lock);
            if s.generation.load(Ordering::Acquire) == seen {
                let _g = s.start.wait(g).unwrap_or_else(|e| e.into_inner());
            }
        }
        seen = s.generation.load(Ordering::Acquire);
        if s.stop.load(Ordering::Acquire) != 0 {
            return;
        }
        let job = *lock(&s.job);
        if let Some(job) = job {
            run_part(&job, index);
        }
        if s.pending.fetch_sub(1, Ordering::AcqRel) == 1 {
            let _g = lock(&s.lock);
            s.done.notify_all();
        }
    }
}
