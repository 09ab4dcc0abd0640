//! Data sets: IDX (MNIST, Fashion-MNIST; gzipped or raw), CIFAR-10 binary
//! batches and `.npy` pairs. Every malformed file is an error that names
//! the file and says what is wrong; nothing here panics on bad input.

use crate::check::train::Dataset as Kind;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Pixels as stored: bytes (scaled to [0, 1] when batched) or floats.
#[derive(Clone, Debug)]
pub enum Pixels {
    U8(Vec<u8>),
    F32(Vec<f32>),
}

/// Images `[len, C, H, W]` with integer labels.
#[derive(Clone, Debug)]
pub struct Dataset {
    pub pixels: Pixels,
    /// `[C, H, W]` of one image.
    pub shape: [usize; 3],
    pub labels: Vec<u32>,
    pub classes: usize,
    /// Where it came from, for messages.
    pub source: String,
}

impl Dataset {
    pub fn len(&self) -> usize {
        self.labels.len()
    }

    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }

    pub fn image_size(&self) -> usize {
        self.shape.iter().product()
    }

    /// Image `i` as floats in [0, 1] (bytes) or as stored (floats).
    pub fn image(&self, i: usize, out: &mut [f32]) {
        let n = self.image_size();
        match &self.pixels {
            Pixels::U8(p) => {
                for (o, &v) in out.iter_mut().zip(&p[i * n..(i + 1) * n]) {
                    *o = f32::from(v) / 255.0;
                }
            }
            Pixels::F32(p) => out.copy_from_slice(&p[i * n..(i + 1) * n]),
        }
    }

    /// The images at `indices`, as a new data set (for splits).
    pub fn subset(&self, indices: &[usize], source: &str) -> Dataset {
        let n = self.image_size();
        let pixels = match &self.pixels {
            Pixels::U8(p) => Pixels::U8(
                indices
                    .iter()
                    .flat_map(|&i| p[i * n..(i + 1) * n].iter().copied())
                    .collect(),
            ),
            Pixels::F32(p) => Pixels::F32(
                indices
                    .iter()
                    .flat_map(|&i| p[i * n..(i + 1) * n].iter().copied())
                    .collect(),
            ),
        };
        Dataset {
            pixels,
            shape: self.shape,
            labels: indices.iter().map(|&i| self.labels[i]).collect(),
            classes: self.classes,
            source: source.to_string(),
        }
    }
}

/// A training set and a test set.
pub struct Splits {
    pub train: Dataset,
    pub test: Option<Dataset>,
}

/// A data problem: the file and what is wrong with it.
#[derive(Debug, Clone, PartialEq)]
pub struct DataError(pub String);

impl std::fmt::Display for DataError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

fn err(path: &Path, what: impl std::fmt::Display) -> DataError {
    DataError(format!("`{}`: {what}", path.display()))
}

/// Un-gzips `raw` when it starts with the gzip magic. An IDX file says in
/// its header how long it is, so no more than that is decompressed: a small
/// compressed file cannot make nnc allocate more than its header claims and
/// the stream actually holds.
fn maybe_gunzip(raw: Vec<u8>, path: &Path) -> Result<Vec<u8>, DataError> {
    if !raw.starts_with(&[0x1f, 0x8b]) {
        return Ok(raw);
    }
    let corrupt = |e: std::io::Error| err(path, format!("corrupt gzip data ({e})"));
    let mut stream = flate2::read::MultiGzDecoder::new(&raw[..]);
    // The fixed part of the header, then the sizes it announces.
    let mut out = Vec::new();
    (&mut stream)
        .take(4)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    let dims = out.get(3).copied().unwrap_or(0) as u64;
    (&mut stream)
        .take(4 * dims)
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    let count = out[4.min(out.len())..]
        .chunks_exact(4)
        .map(|c| u64::from(u32::from_be_bytes([c[0], c[1], c[2], c[3]])))
        .try_fold(1u64, |a, d| a.checked_mul(d))
        .unwrap_or(u64::MAX);
    // One byte more than announced shows whether the file is longer.
    stream
        .take(count.saturating_add(1))
        .read_to_end(&mut out)
        .map_err(corrupt)?;
    Ok(out)
}

/// An IDX file: its dimensions and its bytes.
pub fn read_idx(path: &Path, expected_dims: usize) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    let raw = std::fs::read(path).map_err(|e| err(path, format!("cannot read it ({e})")))?;
    parse_idx(maybe_gunzip(raw, path)?, expected_dims, path)
}

/// The dimensions and bytes of an IDX file's contents; `path` names it in
/// messages.
pub fn parse_idx(
    bytes: Vec<u8>,
    expected_dims: usize,
    path: &Path,
) -> Result<(Vec<usize>, Vec<u8>), DataError> {
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(err(path, "not an IDX file (bad magic)"));
    }
    if bytes[2] != 0x08 {
        return Err(err(
            path,
            format!(
                "IDX element type 0x{:02x}; nnc reads unsigned bytes (0x08)",
                bytes[2]
            ),
        ));
    }
    let dims = bytes[3] as usize;
    if dims != expected_dims {
        return Err(err(
            path,
            format!("an IDX file of {dims} dimensions where {expected_dims} were expected"),
        ));
    }
    let header = 4 + 4 * dims;
    if bytes.len() < header {
        return Err(err(path, "truncated IDX header"));
    }
    let shape: Vec<usize> = (0..dims)
        .map(|d| {
            u32::from_be_bytes([
                bytes[4 + 4 * d],
                bytes[5 + 4 * d],
                bytes[6 + 4 * d],
                bytes[7 + 4 * d],
            ]) as usize
        })
        .collect();
    let count = shape
        .iter()
        .try_fold(1usize, |a, &d| a.checked_mul(d))
        .ok_or_else(|| err(path, "IDX sizes overflow"))?;
    let data = &bytes[header..];
    if data.len() < count {
        return Err(err(
            path,
            format!(
                "truncated: the header promises {count} bytes, the file has {}",
                data.len()
            ),
        ));
    }
    let mut bytes = bytes;
    bytes.truncate(header + count);
    bytes.drain(..header);
    Ok((shape, bytes))
}

/// MNIST-style images and labels.
pub fn read_idx_pair(images: &Path, labels: &Path, classes: usize) -> Result<Dataset, DataError> {
    let (shape, pixels) = read_idx(images, 3)?;
    let (lshape, label_bytes) = read_idx(labels, 1)?;
    if shape[0] != lshape[0] {
        return Err(DataError(format!(
            "`{}` has {} images but `{}` has {} labels",
            images.display(),
            shape[0],
            labels.display(),
            lshape[0]
        )));
    }
    if let Some(bad) = label_bytes.iter().find(|&&l| l as usize >= classes) {
        return Err(err(labels, format!("label {bad} is outside 0..{classes}")));
    }
    Ok(Dataset {
        pixels: Pixels::U8(pixels),
        shape: [1, shape[1], shape[2]],
        labels: label_bytes.into_iter().map(u32::from).collect(),
        classes,
        source: images.display().to_string(),
    })
}

/// The first of `names` (with or without `.gz`) that exists in `dir`.
fn find(dir: &Path, name: &str) -> Option<PathBuf> {
    [format!("{name}.gz"), name.to_string()]
        .into_iter()
        .map(|n| dir.join(n))
        .find(|p| p.exists())
}

/// MNIST or Fashion-MNIST from a folder holding the four IDX files.
pub fn read_mnist_folder(dir: &Path) -> Result<Splits, DataError> {
    let need = |name: &str| {
        find(dir, name).ok_or_else(|| {
            DataError(format!(
                "`{}` has no `{name}` (or `{name}.gz`)",
                dir.display()
            ))
        })
    };
    let train = read_idx_pair(
        &need("train-images-idx3-ubyte")?,
        &need("train-labels-idx1-ubyte")?,
        10,
    )?;
    let test = read_idx_pair(
        &need("t10k-images-idx3-ubyte")?,
        &need("t10k-labels-idx1-ubyte")?,
        10,
    )?;
    Ok(Splits {
        train,
        test: Some(test),
    })
}

/// CIFAR-10 binary batches: records of 1 label byte and 3072 pixel bytes.
pub fn read_cifar_batch(path: &Path) -> Result<Dataset, DataError> {
    let bytes = std::fs::read(path).map_err(|e| err(path, format!("cannot read it ({e})")))?;
    parse_cifar_batch(&bytes, path)
}

/// The records of a CIFAR-10 batch's bytes; `path` names it in messages.
pub fn parse_cifar_batch(bytes: &[u8], path: &Path) -> Result<Dataset, DataError> {
    const RECORD: usize = 1 + 3 * 32 * 32;
    if bytes.is_empty() || !bytes.len().is_multiple_of(RECORD) {
        return Err(err(
            path,
            format!(
                "{} bytes is not a whole number of 3073-byte CIFAR-10 records (truncated?)",
                bytes.len()
            ),
        ));
    }
    let n = bytes.len() / RECORD;
    let mut labels = Vec::with_capacity(n);
    let mut pixels = Vec::with_capacity(n * (RECORD - 1));
    for r in bytes.chunks_exact(RECORD) {
        if r[0] >= 10 {
            return Err(err(
                path,
                format!("label {} is outside 0..10 (not a CIFAR-10 file?)", r[0]),
            ));
        }
        labels.push(u32::from(r[0]));
        pixels.extend_from_slice(&r[1..]);
    }
    Ok(Dataset {
        pixels: Pixels::U8(pixels),
        shape: [3, 32, 32],
        labels,
        classes: 10,
        source: path.display().to_string(),
    })
}

/// CIFAR-10 from a folder (`data_batch_*.bin` and `test_batch.bin`) or one
/// batch file.
pub fn read_cifar(path: &Path) -> Result<Splits, DataError> {
    if path.is_file() {
        return Ok(Splits {
            train: read_cifar_batch(path)?,
            test: None,
        });
    }
    let mut train_files: Vec<PathBuf> = std::fs::read_dir(path)
        .map_err(|e| err(path, format!("cannot list it ({e})")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("data_batch"))
        })
        .collect();
    train_files.sort();
    if train_files.is_empty() {
        return Err(err(path, "no `data_batch_*.bin` files"));
    }
    let parts: Vec<Dataset> = train_files
        .iter()
        .map(|p| read_cifar_batch(p))
        .collect::<Result<_, _>>()?;
    let mut train = parts[0].clone();
    for p in &parts[1..] {
        if let (Pixels::U8(a), Pixels::U8(b)) = (&mut train.pixels, &p.pixels) {
            a.extend_from_slice(b);
        }
        train.labels.extend_from_slice(&p.labels);
    }
    train.source = path.display().to_string();
    let test_path = path.join("test_batch.bin");
    let test = if test_path.exists() {
        Some(read_cifar_batch(&test_path)?)
    } else {
        None
    };
    Ok(Splits { train, test })
}

/// `.npy` pairs: `images.npy` (float32 `[N, C, H, W]` or `[N, H, W]`) and
/// `labels.npy` (integers or float32), with `test_images.npy` and
/// `test_labels.npy` when present.
pub fn read_npy_folder(dir: &Path) -> Result<Splits, DataError> {
    let pair = |images: &Path, labels: &Path| -> Result<Dataset, DataError> {
        let x = crate::weights::npy::read(images).map_err(DataError)?;
        let y = crate::weights::npy::read_labels(labels).map_err(DataError)?;
        let shape = match x.shape() {
            [_, c, h, w] => [*c, *h, *w],
            [_, h, w] => [1, *h, *w],
            s => {
                return Err(err(
                    images,
                    format!("shape {s:?}; expected [N, C, H, W] or [N, H, W]"),
                ))
            }
        };
        if x.shape()[0] != y.len() {
            return Err(DataError(format!(
                "`{}` has {} images but `{}` has {} labels",
                images.display(),
                x.shape()[0],
                labels.display(),
                y.len()
            )));
        }
        let classes = y.iter().max().map_or(0, |m| *m as usize + 1);
        Ok(Dataset {
            pixels: Pixels::F32(x.iter().copied().collect()),
            shape,
            labels: y,
            classes,
            source: images.display().to_string(),
        })
    };
    let train = pair(&dir.join("images.npy"), &dir.join("labels.npy"))?;
    let test_images = dir.join("test_images.npy");
    let test = if test_images.exists() {
        Some(pair(&test_images, &dir.join("test_labels.npy"))?)
    } else {
        None
    };
    Ok(Splits { train, test })
}

/// Where Debian's `dataset-fashion-mnist` puts the files.
pub const DEBIAN_FASHION_MNIST: &str = "/usr/share/datasets/fashion-mnist";

/// Loads the data set of a training section from `path` (the `--data`
/// flag, else the file's `path`, else the default location).
pub fn load(kind: &Kind, path: Option<&Path>, size: Option<[u32; 2]>) -> Result<Splits, DataError> {
    let default = match kind {
        Kind::FashionMnist => Some(PathBuf::from(DEBIAN_FASHION_MNIST)),
        _ => None,
    };
    let Some(dir) = path.map(Path::to_path_buf).or(default) else {
        return Err(DataError(format!(
            "no data path for {}: pass `--data PATH` or set `path` in `data = ...`",
            kind_name(kind)
        )));
    };
    if !dir.exists() {
        return Err(DataError(how_to_get(kind, &dir)));
    }
    match kind {
        Kind::FashionMnist | Kind::Mnist => read_mnist_folder(&dir),
        Kind::Cifar10 => read_cifar(&dir),
        Kind::Npy => read_npy_folder(&dir),
        Kind::ImageFolder => read_image_folder(&dir, size),
    }
}

fn kind_name(kind: &Kind) -> &'static str {
    match kind {
        Kind::FashionMnist => "Fashion-MNIST",
        Kind::Mnist => "MNIST",
        Kind::Cifar10 => "CIFAR-10",
        Kind::ImageFolder => "an image folder",
        Kind::Npy => ".npy pairs",
    }
}

/// What to do when the data is not where it was looked for.
fn how_to_get(kind: &Kind, dir: &Path) -> String {
    let fix = match kind {
        Kind::FashionMnist => format!(
            "install it with `apt-get install dataset-fashion-mnist` (it goes to {DEBIAN_FASHION_MNIST}), or pass `--data DIR` with the four IDX files (train-images-idx3-ubyte.gz, ...) from https://github.com/zalandoresearch/fashion-mnist"
        ),
        Kind::Mnist => "pass `--data DIR` with the four MNIST IDX files (train-images-idx3-ubyte.gz, ...)".to_string(),
        Kind::Cifar10 => "pass `--data DIR` with the CIFAR-10 binary batches (data_batch_1.bin ... test_batch.bin)".to_string(),
        _ => "pass `--data DIR`".to_string(),
    };
    format!(
        "{} not found at `{}`: {fix}",
        kind_name(kind),
        dir.display()
    )
}

/// A folder of images per class (`root/cat/*.png`, `root/dog/*.jpg`), or
/// `root/train/...` and `root/test/...`. Classes are the sorted folder
/// names. With `size` (`[height, width]`) every image is resized to it as it
/// is read, bilinearly with antialiasing as PIL's `resize` (torchvision's
/// `Resize` on images); without, every image must have the first's size,
/// since the data set is one array of bytes.
pub fn read_image_folder(root: &Path, size: Option<[u32; 2]>) -> Result<Splits, DataError> {
    let train_dir = root.join("train");
    if train_dir.is_dir() {
        let train = read_class_folders(&train_dir, None, size)?;
        let test_dir = root.join("test");
        let test = if test_dir.is_dir() {
            let names = class_names(&train_dir)?;
            Some(read_class_folders(&test_dir, Some(&names), size)?)
        } else {
            None
        };
        return Ok(Splits { train, test });
    }
    Ok(Splits {
        train: read_class_folders(root, None, size)?,
        test: None,
    })
}

fn class_names(dir: &Path) -> Result<Vec<String>, DataError> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .map_err(|e| err(dir, format!("cannot list it ({e})")))?
        .filter_map(|e| e.ok())
        .filter(|e| e.path().is_dir())
        .map(|e| e.file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    if names.is_empty() {
        return Err(err(
            dir,
            "no class folders (expected one folder of images per class)",
        ));
    }
    Ok(names)
}

fn read_class_folders(
    dir: &Path,
    classes: Option<&[String]>,
    size: Option<[u32; 2]>,
) -> Result<Dataset, DataError> {
    let names = match classes {
        Some(c) => c.to_vec(),
        None => class_names(dir)?,
    };
    let mut files: Vec<(PathBuf, u32)> = Vec::new();
    for (label, name) in names.iter().enumerate() {
        let class_dir = dir.join(name);
        let Ok(entries) = std::fs::read_dir(&class_dir) else {
            continue;
        };
        let mut paths: Vec<PathBuf> = entries
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| {
                p.extension().and_then(|e| e.to_str()).is_some_and(|e| {
                    matches!(e.to_ascii_lowercase().as_str(), "png" | "jpg" | "jpeg")
                })
            })
            .collect();
        paths.sort();
        files.extend(paths.into_iter().map(|p| (p, label as u32)));
    }
    if files.is_empty() {
        return Err(err(dir, "no PNG or JPEG images in its class folders"));
    }
    let decode = |p: &Path| {
        let img = image::open(p).map_err(|e| err(p, format!("cannot decode it ({e})")))?;
        Ok(match size {
            Some([h, w]) if (img.width(), img.height()) != (w, h) => {
                img.resize_exact(w, h, image::imageops::FilterType::Triangle)
            }
            _ => img,
        })
    };
    let first = decode(&files[0].0)?;
    let gray = !first.color().has_color();
    let (w, h) = (first.width(), first.height());
    let channels = if gray { 1 } else { 3 };
    let mut pixels = Vec::with_capacity(files.len() * (w * h) as usize * channels);
    let mut labels = Vec::with_capacity(files.len());
    for (p, label) in &files {
        let img = decode(p)?;
        if (img.width(), img.height()) != (w, h) {
            return Err(err(
                p,
                format!(
                    "is {}x{}, but `{}` is {w}x{h}; resize them as they are read with \
                     `image_folder(..., size=[{h}, {w}])`, or give every image one size",
                    img.width(),
                    img.height(),
                    files[0].0.display()
                ),
            ));
        }
        // Channel-first bytes: [C, H, W].
        if gray {
            pixels.extend_from_slice(img.to_luma8().as_raw());
        } else {
            let rgb = img.to_rgb8();
            for c in 0..3 {
                pixels.extend(rgb.as_raw().iter().skip(c).step_by(3));
            }
        }
        labels.push(*label);
    }
    Ok(Dataset {
        pixels: Pixels::U8(pixels),
        shape: [channels, h as usize, w as usize],
        labels,
        classes: names.len(),
        source: dir.display().to_string(),
    })
}
