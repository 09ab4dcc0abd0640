//! Batching on a worker thread: while the step runs, the next batches are
//! read, augmented and stacked. The time the step spends waiting for data is
//! measured, so that "the compute never waits" is a number, not a hope.

use super::augment::Pipeline;
use super::data::Dataset;
use crate::weights::init::{name_hash, Rng};
use ndarray::{ArrayD, IxDyn};
use std::sync::mpsc::{sync_channel, Receiver};
use std::sync::Arc;

pub struct Batch {
    /// `[B, C, H, W]`.
    pub x: ArrayD<f32>,
    /// One-hot `[B, K]`.
    pub target: ArrayD<f32>,
    pub labels: Vec<u32>,
}

/// splitmix64's finalizer, to derive independent seeds.
pub fn mix(mut z: u64) -> u64 {
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// A permutation of `0..n` from a seed (Fisher-Yates).
pub fn permutation(n: usize, seed: u64) -> Vec<usize> {
    let mut rng = Rng::new(seed);
    let mut v: Vec<usize> = (0..n).collect();
    for i in (1..n).rev() {
        let j = (rng.next_u64() % (i as u64 + 1)) as usize;
        v.swap(i, j);
    }
    v
}

/// The order of the training images in `epoch`.
pub fn epoch_order(n: usize, seed: u64, epoch: u64) -> Vec<usize> {
    permutation(n, mix(seed ^ name_hash("shuffle")) ^ mix(epoch))
}

/// Starts a worker that sends the batches of `order` (training batches are
/// augmented with per-image seeds; evaluation batches are not).
pub fn start(
    data: Arc<Dataset>,
    order: Vec<usize>,
    batch_size: usize,
    pipeline: Arc<Pipeline>,
    augment_seed: Option<(u64, u64)>,
) -> Receiver<Batch> {
    let (tx, rx) = sync_channel(3);
    std::thread::Builder::new()
        .name("nnc-loader".into())
        .spawn(move || {
            let shape = pipeline.output_shape().expect("checked before training");
            let n_pixels: usize = shape.iter().product();
            let mut raw = vec![0f32; data.image_size()];
            for chunk in order.chunks(batch_size) {
                let b = chunk.len();
                let mut x = Vec::with_capacity(b * n_pixels);
                let mut target = vec![0f32; b * data.classes];
                let mut labels = Vec::with_capacity(b);
                for (row, &i) in chunk.iter().enumerate() {
                    data.image(i, &mut raw);
                    let img = match augment_seed {
                        Some((seed, epoch)) => {
                            let mut rng = Rng::new(
                                mix(seed ^ name_hash("augment")) ^ mix((epoch << 32) ^ i as u64),
                            );
                            pipeline.apply(raw.clone(), Some(&mut rng))
                        }
                        None => pipeline.apply(raw.clone(), None),
                    };
                    x.extend_from_slice(&img);
                    let label = data.labels[i];
                    target[row * data.classes + label as usize] = 1.0;
                    labels.push(label);
                }
                let batch = Batch {
                    x: ArrayD::from_shape_vec(IxDyn(&[b, shape[0], shape[1], shape[2]]), x)
                        .expect("sizes agree"),
                    target: ArrayD::from_shape_vec(IxDyn(&[b, data.classes]), target)
                        .expect("sizes agree"),
                    labels,
                };
                if tx.send(batch).is_err() {
                    return;
                }
            }
        })
        .expect("spawning the loader thread");
    rx
}
