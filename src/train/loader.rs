//! Batching on a worker thread: while the step runs, the next batches are
//! read, augmented and stacked. The time the step spends waiting for data is
//! measured, so that "the compute never waits" is a number, not a hope.

use super::augment::Pipeline;
use super::data::Dataset;
use crate::rng::mix;
use crate::rng::{name_hash, Rng};
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

/// Why the loader could not deliver a batch.
#[derive(Debug, Clone, PartialEq)]
pub enum LoadError {
    /// The data itself is wrong (a label outside the classes, an image of
    /// another size): the user's to fix.
    Data(String),
    /// The worker failed in a way it never should: a bug in nnc.
    Bug(String),
}

/// The batches of one pass over the data, in order. The stream knows how
/// many batches to expect, so a worker that stops early is an error, never
/// a short epoch that looks like the end of the data.
pub struct Batches {
    rx: Receiver<Result<Batch, LoadError>>,
    expected: usize,
    received: usize,
}

impl Iterator for Batches {
    type Item = Result<Batch, LoadError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.received == self.expected {
            return None;
        }
        let item = match self.rx.recv() {
            Ok(item) => item,
            Err(_) => Err(LoadError::Bug(format!(
                "the data loader stopped after {} of {} batches",
                self.received, self.expected
            ))),
        };
        // After an error the stream is over: the worker has stopped.
        self.received = if item.is_ok() {
            self.received + 1
        } else {
            self.expected
        };
        Some(item)
    }
}

/// Starts a worker that sends the batches of `order` (training batches are
/// augmented with per-image seeds; evaluation batches are not).
pub fn start(
    data: Arc<Dataset>,
    order: Vec<usize>,
    batch_size: usize,
    pipeline: Arc<Pipeline>,
    augment_seed: Option<(u64, u64)>,
) -> Batches {
    let batch_size = batch_size.max(1);
    let expected = order.len().div_ceil(batch_size);
    let (tx, rx) = sync_channel(3);
    let worker = move || {
        for chunk in order.chunks(batch_size) {
            let made = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                make_batch(&data, chunk, &pipeline, augment_seed)
            }))
            .unwrap_or_else(|panic| Err(LoadError::Bug(panic_message(&panic))));
            let failed = made.is_err();
            if tx.send(made).is_err() || failed {
                return;
            }
        }
    };
    // Should the thread not start, the closure and its sender are dropped
    // and the stream reports a loader that stopped after 0 batches.
    let _ = std::thread::Builder::new()
        .name("nnc-loader".into())
        .spawn(worker);
    Batches {
        rx,
        expected,
        received: 0,
    }
}

/// The message of a caught panic.
pub fn panic_message(panic: &Box<dyn std::any::Any + Send>) -> String {
    panic
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| panic.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string())
}

fn make_batch(
    data: &Dataset,
    chunk: &[usize],
    pipeline: &Pipeline,
    augment_seed: Option<(u64, u64)>,
) -> Result<Batch, LoadError> {
    let shape = pipeline.output_shape().map_err(LoadError::Bug)?;
    let n_pixels: usize = shape.iter().product();
    let mut raw = vec![0f32; data.image_size()];
    let b = chunk.len();
    let mut x = Vec::with_capacity(b * n_pixels);
    let mut target = vec![0f32; b * data.classes];
    let mut labels = Vec::with_capacity(b);
    for (row, &i) in chunk.iter().enumerate() {
        data.image(i, &mut raw);
        let img = match augment_seed {
            Some((seed, epoch)) => {
                let mut rng =
                    Rng::new(mix(seed ^ name_hash("augment")) ^ mix((epoch << 32) ^ i as u64));
                pipeline.apply(raw.clone(), Some(&mut rng))
            }
            None => pipeline.apply(raw.clone(), None),
        };
        if img.len() != n_pixels {
            return Err(LoadError::Data(format!(
                "image {i} of {} has {} values after augmentation, not {n_pixels}",
                data.source,
                img.len()
            )));
        }
        x.extend_from_slice(&img);
        let label = data.labels[i];
        if label as usize >= data.classes {
            return Err(LoadError::Data(format!(
                "image {i} of {} has label {label}, outside 0..{}",
                data.source, data.classes
            )));
        }
        target[row * data.classes + label as usize] = 1.0;
        labels.push(label);
    }
    let bug = |e: ndarray::ShapeError| LoadError::Bug(format!("stacking a batch: {e}"));
    Ok(Batch {
        x: ArrayD::from_shape_vec(IxDyn(&[b, shape[0], shape[1], shape[2]]), x).map_err(bug)?,
        target: ArrayD::from_shape_vec(IxDyn(&[b, data.classes]), target).map_err(bug)?,
        labels,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::train::data::Pixels;

    fn dataset(pixels: usize, labels: Vec<u32>) -> Arc<Dataset> {
        Arc::new(Dataset {
            pixels: Pixels::U8(vec![0; pixels]),
            shape: [1, 2, 2],
            labels,
            classes: 3,
            source: "test data".into(),
        })
    }

    fn batches(data: Arc<Dataset>, batch: usize) -> Vec<Result<Batch, LoadError>> {
        let pipeline = Arc::new(Pipeline::new(Vec::new(), [1, 2, 2]).unwrap());
        start(
            data.clone(),
            (0..data.len()).collect(),
            batch,
            pipeline,
            None,
        )
        .collect()
    }

    #[test]
    fn every_batch_arrives() {
        let got = batches(dataset(5 * 4, vec![0, 1, 2, 0, 1]), 2);
        assert_eq!(got.len(), 3);
        assert!(got.iter().all(Result::is_ok));
        assert_eq!(got[2].as_ref().unwrap().labels, vec![1]);
    }

    #[test]
    fn a_label_outside_the_classes_is_a_data_error() {
        let got = batches(dataset(4 * 4, vec![0, 1, 7, 0]), 2);
        assert_eq!(got.len(), 2, "the stream ends at the error");
        assert!(got[0].is_ok());
        match &got[1] {
            Err(LoadError::Data(m)) => assert!(m.contains("label 7"), "{m}"),
            other => panic!("expected a data error, got {:?}", other.as_ref().err()),
        }
    }

    #[test]
    fn a_panicking_worker_is_an_error_not_a_short_epoch() {
        // Pixels for two images, labels for four: reading image 2 panics.
        let got = batches(dataset(2 * 4, vec![0, 1, 2, 0]), 2);
        assert_eq!(got.len(), 2);
        assert!(got[0].is_ok());
        assert!(
            matches!(&got[1], Err(LoadError::Bug(_))),
            "{:?}",
            got[1].as_ref().err()
        );
    }
}
