//! Memory planning: which buffer holds each value of a graph, so that
//! values whose lifetimes do not overlap share memory. A value lives from
//! the node that computes it to its last use (outputs to the end); graph
//! inputs (the batch, parameters, state) are not planned: a backend keeps
//! them where they are.
//!
//! The plan is greedy in execution order: a value takes the smallest free
//! buffer that holds it, else grows the largest free one, else gets a new
//! buffer. `peak_bytes` is what the plan allocates; `live_bytes` the most
//! bytes alive at once (no plan can do better); `total_bytes` what one
//! buffer per value would take.

use crate::ir::{Graph, Op};

/// Where each value of a graph lives.
#[derive(Clone, Debug, PartialEq)]
pub struct MemoryPlan {
    /// Per node: its buffer, or `None` for graph inputs.
    pub buffer_of: Vec<Option<usize>>,
    /// Size of each buffer, in bytes.
    pub buffers: Vec<usize>,
    /// The sum of the buffers: what the plan allocates.
    pub peak_bytes: usize,
    /// The most bytes of values alive at one time.
    pub live_bytes: usize,
    /// One buffer per value, no reuse.
    pub total_bytes: usize,
}

/// The last node that reads each value (`usize::MAX` for outputs).
fn last_uses(g: &Graph) -> Vec<usize> {
    let mut last: Vec<usize> = (0..g.nodes.len()).collect();
    for (i, n) in g.nodes.iter().enumerate() {
        for a in &n.args {
            last[a.0 as usize] = last[a.0 as usize].max(i);
        }
    }
    for (_, o) in &g.outputs {
        last[o.0 as usize] = usize::MAX;
    }
    last
}

pub fn plan(g: &Graph) -> MemoryPlan {
    let last = last_uses(g);
    let mut buffer_of = vec![None; g.nodes.len()];
    let mut buffers: Vec<usize> = Vec::new();
    let mut free: Vec<usize> = Vec::new();
    let mut live = 0usize;
    let mut live_bytes = 0usize;
    let mut total_bytes = 0usize;
    // Values whose last use is node i, freed after node i runs.
    let mut dies_at: Vec<Vec<usize>> = vec![Vec::new(); g.nodes.len()];
    for (v, &l) in last.iter().enumerate() {
        if l != usize::MAX && l > v {
            dies_at[l].push(v);
        }
    }
    for (i, n) in g.nodes.iter().enumerate() {
        if matches!(n.op, Op::Input { .. }) {
            continue;
        }
        let bytes = n.ty.numel() * n.ty.dtype.size_bytes();
        total_bytes += bytes;
        let fits = free
            .iter()
            .enumerate()
            .filter(|(_, &b)| buffers[b] >= bytes)
            .min_by_key(|(_, &b)| buffers[b])
            .map(|(k, _)| k);
        let b = match fits.or_else(|| {
            // Nothing fits: grow the largest free buffer.
            free.iter()
                .enumerate()
                .max_by_key(|(_, &b)| buffers[b])
                .map(|(k, _)| k)
        }) {
            Some(k) => {
                let b = free.swap_remove(k);
                buffers[b] = buffers[b].max(bytes);
                b
            }
            None => {
                buffers.push(bytes);
                buffers.len() - 1
            }
        };
        buffer_of[i] = Some(b);
        live += bytes;
        live_bytes = live_bytes.max(live);
        // A value nothing reads dies at once; the others after their last use.
        if last[i] == i {
            free.push(b);
            live -= bytes;
        }
        for &v in &dies_at[i] {
            if let Some(vb) = buffer_of[v] {
                free.push(vb);
                live -= g.nodes[v].ty.numel() * g.nodes[v].ty.dtype.size_bytes();
            }
        }
    }
    MemoryPlan {
        peak_bytes: buffers.iter().sum(),
        buffer_of,
        buffers,
        live_bytes,
        total_bytes,
    }
}

/// Checks a plan: every value fits its buffer, and no two values that are
/// alive at the same time share one. Returns the first conflict.
pub fn check(g: &Graph, p: &MemoryPlan) -> Result<(), String> {
    let last = last_uses(g);
    let mut holder: Vec<Option<usize>> = vec![None; p.buffers.len()];
    for (i, n) in g.nodes.iter().enumerate() {
        let Some(b) = p.buffer_of[i] else { continue };
        let bytes = n.ty.numel() * n.ty.dtype.size_bytes();
        if p.buffers[b] < bytes {
            return Err(format!(
                "%{i} needs {bytes} bytes, buffer {b} has {}",
                p.buffers[b]
            ));
        }
        if let Some(prev) = holder[b] {
            // The previous value must be dead by the time this one is written:
            // its last use is an earlier node (or this one, which reads it
            // before writing only when they are different buffers).
            if last[prev] >= i {
                return Err(format!(
                    "%{i} and %{prev} share buffer {b} while %{prev} is still read at {}",
                    last[prev]
                ));
            }
        }
        holder[b] = Some(i);
    }
    Ok(())
}
