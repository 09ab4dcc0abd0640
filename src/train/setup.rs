//! What a run checks before its first step: the data set is read, split and
//! checked against the network (image shape after augmentation, class
//! count), the test split against the training split, and the batch size
//! against the data. Every problem is a located diagnostic on the training
//! section, found in seconds, not after the last epoch.

use super::augment::Pipeline;
use super::data::{self, Dataset};
use super::loader;
use super::run::{err, RunError, RunOptions};
use crate::check::model::Model;
use crate::check::train::TrainConfig;
use crate::diag_codes as codes;
use crate::rng::{mix, name_hash};

use std::path::PathBuf;
use std::sync::Arc;

/// The splits of a run and the pipeline that turns stored images into the
/// network's input.
pub struct Splits {
    pub train: Arc<Dataset>,
    pub val: Option<Arc<Dataset>>,
    pub test: Option<Arc<Dataset>>,
    pub pipeline: Arc<Pipeline>,
}

/// Reads the data set and checks it against `model` (built for the batch
/// size); `seed` draws the validation split.
pub fn prepare(
    cfg: &TrainConfig,
    opts: &RunOptions,
    model: &Model,
    seed: u64,
) -> Result<Splits, RunError> {
    let path = opts
        .data
        .clone()
        .or_else(|| cfg.data.path.as_ref().map(PathBuf::from));
    let from_file = opts.data.is_none().then_some("data");
    let splits = data::load(&cfg.data.dataset, path.as_deref(), cfg.data.size)
        .map_err(|e| err(codes::DATA, e.0, from_file, None))?;
    let mut full = splits.train;
    if let Some(n) = opts.limit {
        let n = n.min(full.len());
        full = full.subset(&(0..n).collect::<Vec<_>>(), &full.source.clone());
    }
    let order = loader::permutation(full.len(), mix(seed ^ name_hash("split")));
    let n_val = (full.len() as f64 * cfg.data.validation).round() as usize;
    let val = (n_val > 0).then(|| Arc::new(full.subset(&order[..n_val], "validation")));
    let train = full.subset(&order[n_val..], "training");
    check_batch_size(cfg, opts, train.len())?;

    let pipeline = Pipeline::new(cfg.augment.clone(), train.shape)
        .map_err(|e| err(codes::INVALID_SETTING, e, Some("augment"), None))?;
    check_input(cfg, model, &pipeline)?;
    check_classes(cfg, model, &train)?;
    let test = match splits.test {
        Some(mut t) => {
            check_test_split(&train, &mut t)?;
            Some(Arc::new(t))
        }
        None => None,
    };
    Ok(Splits {
        train: Arc::new(train),
        val,
        test,
        pipeline: Arc::new(pipeline),
    })
}

fn check_batch_size(cfg: &TrainConfig, opts: &RunOptions, images: usize) -> Result<(), RunError> {
    let batch_size = cfg.batch_size as usize;
    if batch_size <= images {
        return Ok(());
    }
    let message =
        format!("the batch size {batch_size} is larger than the {images} training images");
    Err(match opts.limit {
        // The flag, not the file, made the data too small.
        Some(limit) => err(
            codes::INVALID_SETTING,
            format!(
                "{message} that `--limit {limit}` leaves{}",
                if cfg.data.validation > 0.0 {
                    " after the validation split"
                } else {
                    ""
                }
            ),
            None,
            Some(format!(
                "use a `--limit` of at least {}",
                min_limit(batch_size, cfg.data.validation)
            )),
        ),
        None => err(
            codes::INVALID_SETTING,
            message,
            Some("batch_size"),
            Some(format!("use `batch_size = {images}` or less, or more data")),
        ),
    })
}

/// The smallest `--limit` that leaves `batch` training images once the
/// validation fraction is taken out (the split rounds to nearest).
fn min_limit(batch: usize, validation: f64) -> usize {
    (batch..)
        .find(|&n| n - (n as f64 * validation).round() as usize >= batch)
        .unwrap_or(batch)
}

/// The network's input `[N, C, H, W]` must be what the pipeline makes.
fn check_input(cfg: &TrainConfig, model: &Model, pipeline: &Pipeline) -> Result<(), RunError> {
    let model_in: Vec<usize> = model
        .input_sizes()
        .into_iter()
        .flatten()
        .map(|d| d as usize)
        .collect();
    let image = pipeline
        .output_shape()
        .map_err(|e| err(codes::INVALID_SETTING, e, Some("augment"), None))?;
    if model_in.len() == 4 && model_in[1..] == image {
        return Ok(());
    }
    Err(err(
        codes::DATA,
        format!(
            "the data gives images of {:?}{}, but `{}` takes {:?}",
            image,
            if cfg.augment.is_empty() {
                ""
            } else {
                " after `augment`"
            },
            cfg.network,
            model_in.get(1..).unwrap_or(&[])
        ),
        Some(if cfg.augment.is_empty() {
            "data"
        } else {
            "augment"
        }),
        Some(if model_in.len() == 4 && model_in[1] == image[0] {
            format!("add `resize({})` to `augment`", model_in[2])
        } else {
            "change the network's input, or train it on other data".to_string()
        }),
    ))
}

/// The network's output `[N, K]` must have one logit per class.
fn check_classes(cfg: &TrainConfig, model: &Model, train: &Dataset) -> Result<(), RunError> {
    let out = model
        .output
        .map(|o| model.shape(o).to_vec())
        .unwrap_or_default();
    if out.len() == 2 && out[1].as_const() == Some(train.classes as i64) {
        return Ok(());
    }
    Err(err(
        codes::DATA,
        format!(
            "the data has {} classes, but `{}` outputs {}",
            train.classes,
            cfg.network,
            crate::check::dim::shape_to_string(&out)
        ),
        Some("data"),
        Some(format!(
            "give the network's last layer {} outputs",
            train.classes
        )),
    ))
}

/// The test split must hold images of the training split's shape and labels
/// among its classes; it then counts the training split's classes (a test
/// set of `.npy` files may not show every class).
fn check_test_split(train: &Dataset, test: &mut Dataset) -> Result<(), RunError> {
    if test.shape != train.shape {
        return Err(err(
            codes::DATA,
            format!(
                "the test images ({}) are {:?}, but the training images are {:?}",
                test.source, test.shape, train.shape
            ),
            Some("data"),
            Some("give both splits images of one shape".into()),
        ));
    }
    if let Some(bad) = test.labels.iter().find(|&&l| l as usize >= train.classes) {
        return Err(err(
            codes::DATA,
            format!(
                "the test labels ({}) include {bad}, but the training split has classes 0..{}",
                test.source, train.classes
            ),
            Some("data"),
            Some("the test set can only hold classes the network is trained on".into()),
        ));
    }
    test.classes = train.classes;
    Ok(())
}

#[cfg(test)]
mod tests {
    #[test]
    fn min_limit_leaves_a_batch_after_the_split() {
        assert_eq!(super::min_limit(16, 0.0), 16);
        // 22 - round(5.5) = 16; 21 - round(5.25) = 16 too.
        assert_eq!(super::min_limit(16, 0.25), 21);
    }
}
