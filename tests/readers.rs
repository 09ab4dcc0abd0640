//! Robustness of every reader of untrusted bytes other than the `.nn`
//! checker (which `robustness.rs` covers): IR text, safetensors, `.npy`,
//! IDX (raw and gzipped), CIFAR-10 batches, image folders and checkpoints.
//! Thousands of seeded mutations of valid files; each must end in a value
//! or an error, never in a panic, and no single allocation may be much
//! larger than the input (a header that claims 10^12 elements is an error
//! before anything is allocated). The cargo-fuzz targets in `fuzz/` run the
//! same entry points for as long as one likes.

mod common;

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::Path;

/// The system allocator, recording the largest single allocation made by
/// the current thread since the last `reset_largest`.
struct Recording;

thread_local! {
    static LARGEST: Cell<usize> = const { Cell::new(0) };
}

unsafe impl GlobalAlloc for Recording {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(layout.size())));
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        let _ = LARGEST.try_with(|l| l.set(l.get().max(new_size)));
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Recording = Recording;

use common::Rng;

/// One random edit of `bytes`: flipped bits, a byte set to an edge value, a
/// 4- or 8-byte field set to a huge number (header sizes), a truncation, a
/// duplicated or deleted chunk, or inserted junk.
fn mutate(bytes: &[u8], rng: &mut Rng) -> Vec<u8> {
    let mut b = bytes.to_vec();
    let edits = 1 + rng.below(3);
    for _ in 0..edits {
        let len = b.len().max(1);
        let at = rng.below(len);
        match rng.below(8) {
            0 => {
                if let Some(v) = b.get_mut(at) {
                    *v ^= 1 << rng.below(8);
                }
            }
            1 => {
                let edge = [0u8, 1, 0x7f, 0x80, 0xff, b'9', b'(', b','];
                if let Some(v) = b.get_mut(at) {
                    *v = edge[rng.below(edge.len())];
                }
            }
            2 => {
                let huge: [u8; 8] = [0xff, 0xff, 0xff, 0x7f, 0xff, 0xff, 0xff, 0x0f];
                let w = if rng.below(2) == 0 { 4 } else { 8 };
                for (k, h) in huge.iter().take(w).enumerate() {
                    if let Some(v) = b.get_mut(at + k) {
                        *v = *h;
                    }
                }
            }
            3 => b.truncate(at),
            4 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                let chunk = b[at.min(end)..end].to_vec();
                b.splice(at..at, chunk);
            }
            5 => {
                let end = (at + 1 + rng.below(64)).min(b.len());
                b.drain(at.min(end)..end);
            }
            6 => {
                let junk: Vec<u8> = (0..1 + rng.below(16)).map(|_| rng.next() as u8).collect();
                b.splice(at..at, junk);
            }
            _ => {
                // A decimal field made large (text headers: .npy, IR text).
                let digits = b"99999999999999999999";
                let end = (at + 1).min(b.len());
                b.splice(at..end, digits.iter().copied());
            }
        }
    }
    b
}

/// Runs `read` on `cases` mutations of each seed; returns how many ended
/// in a value (the rest in errors). Fails on a panic, naming the case, and
/// on an allocation over `slack` times the input size (plus 1 MiB).
fn hammer(
    name: &str,
    seeds: &[Vec<u8>],
    cases: usize,
    slack: usize,
    read: &dyn Fn(&[u8]) -> bool,
) -> usize {
    let mut rng = Rng(0x9e37_79b9_7f4a_7c15 ^ common::fnv1a(name));
    let mut ok = 0;
    for (s, seed) in seeds.iter().enumerate() {
        assert!(read(seed), "{name}: seed {s} does not read");
        for case in 0..cases {
            let input = mutate(seed, &mut rng);
            LARGEST.with(|l| l.set(0));
            let result = catch_unwind(AssertUnwindSafe(|| read(&input)));
            let largest = LARGEST.with(Cell::get);
            match result {
                Ok(true) => ok += 1,
                Ok(false) => {}
                Err(_) => panic!(
                    "{name}: seed {s}, case {case} panicked; input ({} bytes): {:?}",
                    input.len(),
                    &input[..input.len().min(256)]
                ),
            }
            let limit = slack * input.len() + (1 << 20);
            assert!(
                largest <= limit,
                "{name}: seed {s}, case {case} allocated {largest} bytes for {} bytes of input",
                input.len()
            );
        }
    }
    ok
}

fn temp(name: &str) -> std::path::PathBuf {
    let p = std::env::temp_dir().join(format!("nnc-readers-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

fn small_weights() -> nnc::weights::WeightSet {
    let mut w = nnc::weights::WeightSet::new();
    w.insert(
        "conv.weight".into(),
        common::fixture_tensor("a", &[2, 1, 3, 3]),
    );
    w.insert("fc.bias".into(), common::fixture_tensor("b", &[5]));
    w
}

#[test]
fn ir_text() {
    let mut seeds = Vec::new();
    for (model, input) in [
        ("examples/lenet.nn", vec![2, 1, 28, 28]),
        ("tests/fixtures/tiny_train.nn", vec![3, 1, 28, 28]),
    ] {
        let loaded = common::load(model, None, &input);
        for mode in [nnc::ir::Mode::Infer, nnc::ir::Mode::Train] {
            let g = loaded.lower(mode).unwrap();
            seeds.push(nnc::ir::text::print(&g).into_bytes());
        }
    }
    let ok = hammer("ir text", &seeds, 400, 64, &|b| {
        let Ok(text) = std::str::from_utf8(b) else {
            return false;
        };
        match nnc::ir::text::parse(text) {
            Ok(g) => {
                let _ = nnc::ir::verify::verify(&g);
                let _ = nnc::ir::text::print(&g);
                true
            }
            Err(_) => false,
        }
    });
    println!("ir text: {ok} of {} mutations parsed", seeds.len() * 400);
}

#[test]
fn safetensors_and_checkpoints() {
    let w = small_weights();
    let plain = nnc::weights::safetensors::to_bytes(&w, None).unwrap();
    let ok = hammer("safetensors", &[plain], 1500, 16, &|b| {
        nnc::weights::safetensors::parse(b).is_ok()
    });
    println!("safetensors: {ok} of 1500 mutations read");

    // A real checkpoint, resumed against the run that wrote it.
    use nnc::train::checkpoint::{self, Identity, Meta};
    use nnc::train::metrics::Tally;
    let meta = Meta {
        network: "tiny".into(),
        optimizer: "sgd(lr=0.1)".into(),
        batch_size: 16,
        limit: None,
        seed: 7,
        epoch: 2,
        batches_done: 3,
        partial: Tally::from_parts(1.5, 10, 12, 48, true),
        partial_seconds: 12.25,
        step: 30,
        best: Some((0.5, 1)),
        bad_epochs: 1,
        plateau: Some((0.1, 0.4, 2)),
        stopped_early: false,
    };
    let mut state = nnc::weights::WeightSet::new();
    state.insert(
        "momentum_buffer:fc.bias".into(),
        common::fixture_tensor("m", &[5]),
    );
    let dir = temp("checkpoint");
    let path = dir.join("last.safetensors");
    checkpoint::save(&path, &w, &state, &meta).unwrap();
    let bytes = std::fs::read(&path).unwrap();
    let want = Identity {
        network: "tiny",
        optimizer: "sgd(lr=0.1)".into(),
        batch_size: 16,
        limit: None,
        seed: 7,
    };
    let back = checkpoint::parse(&bytes, &path, &want, &w, &state, true)
        .unwrap_or_else(|m| panic!("{}", m.message));
    assert_eq!(
        back.meta, meta,
        "a checkpoint's metadata reads back as written"
    );
    let ok = hammer("checkpoint", &[bytes], 1500, 16, &|b| {
        checkpoint::parse(b, &path, &want, &w, &state, true).is_ok()
    });
    println!("checkpoint: {ok} of 1500 mutations resumed");
}

#[test]
fn npy_arrays_and_labels() {
    let a = common::fixture_tensor("x", &[3, 4, 5]);
    let arrays = nnc::weights::npy::to_bytes(&a);
    let labels = nnc::weights::npy::to_bytes(
        &ndarray::ArrayD::from_shape_vec(vec![6], vec![0.0, 1.0, 2.0, 9.0, 3.0, 1.0]).unwrap(),
    );
    let ok = hammer("npy", &[arrays], 2000, 16, &|b| {
        nnc::weights::npy::parse(b).is_ok()
    });
    println!("npy: {ok} of 2000 mutations read");
    let ok = hammer("npy labels", &[labels], 2000, 16, &|b| {
        nnc::weights::npy::parse_labels(b).is_ok()
    });
    println!("npy labels: {ok} of 2000 mutations read");
}

fn idx_bytes(dims: &[u32], fill: u8) -> Vec<u8> {
    let mut b = vec![0u8, 0, 8, dims.len() as u8];
    for d in dims {
        b.extend_from_slice(&d.to_be_bytes());
    }
    let n: u32 = dims.iter().product();
    b.extend((0..n).map(|i| (i as u8).wrapping_mul(fill)));
    b
}

#[test]
fn idx_raw_and_gzipped() {
    use std::io::Write as _;
    let images = idx_bytes(&[3, 28, 28], 7);
    let labels = idx_bytes(&[3], 3);
    let at = Path::new("mutated.idx");
    for (name, seed, dims) in [("idx images", images, 3), ("idx labels", labels, 1)] {
        let ok = hammer(name, &[seed], 2000, 4, &|b| {
            nnc::train::data::parse_idx(b.to_vec(), dims, at).is_ok()
        });
        println!("{name}: {ok} of 2000 mutations read");
    }
    // Gzipped files go through a file: the decompressor stops at the size
    // the header announces, so allocations stay within it.
    let dir = temp("idx-gz");
    let file = dir.join("t10k-images-idx3-ubyte.gz");
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&idx_bytes(&[2, 28, 28], 5)).unwrap();
    let gz = e.finish().unwrap();
    let ok = hammer("idx gzip", &[gz], 300, 64, &|b| {
        std::fs::write(&file, b).unwrap();
        nnc::train::data::read_idx(&file, 3).is_ok()
    });
    println!("idx gzip: {ok} of 300 mutations read");
    // A gzip bomb: 10 MB of zeros behind a header that claims 2 images.
    let mut bomb = idx_bytes(&[2, 28, 28], 0);
    bomb.extend(std::iter::repeat_n(0u8, 10 << 20));
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(&bomb).unwrap();
    std::fs::write(&file, e.finish().unwrap()).unwrap();
    LARGEST.with(|l| l.set(0));
    let (shape, data) = nnc::train::data::read_idx(&file, 3).unwrap();
    assert_eq!((shape, data.len()), (vec![2, 28, 28], 2 * 784));
    let largest = LARGEST.with(Cell::get);
    assert!(
        largest < 1 << 20,
        "the bomb made nnc allocate {largest} bytes"
    );
}

#[test]
fn cifar_batches() {
    let mut batch = Vec::new();
    for r in 0..3u8 {
        batch.push(r);
        batch.extend((0..3072).map(|i| (i % 251) as u8 ^ r));
    }
    let at = Path::new("data_batch_1.bin");
    let ok = hammer("cifar", &[batch], 1000, 4, &|b| {
        nnc::train::data::parse_cifar_batch(b, at).is_ok()
    });
    println!("cifar: {ok} of 1000 mutations read");
}

#[test]
fn image_folders() {
    // A 4x4 grey PNG and a 3x2 colour one, mutated on disk.
    let encode = |img: image::DynamicImage| {
        let mut out = std::io::Cursor::new(Vec::new());
        img.write_to(&mut out, image::ImageFormat::Png).unwrap();
        out.into_inner()
    };
    let grey = encode(image::DynamicImage::ImageLuma8(image::GrayImage::from_fn(
        4,
        4,
        |x, y| image::Luma([(x * 40 + y * 9) as u8]),
    )));
    let colour = encode(image::DynamicImage::ImageRgb8(image::RgbImage::from_fn(
        3,
        2,
        |x, y| image::Rgb([x as u8 * 80, y as u8 * 100, 7]),
    )));
    let dir = temp("images");
    std::fs::create_dir_all(dir.join("a")).unwrap();
    std::fs::create_dir_all(dir.join("b")).unwrap();
    let ok = hammer("image folder", &[grey, colour], 150, 256, &|b| {
        std::fs::write(dir.join("a/1.png"), b).unwrap();
        std::fs::write(dir.join("b/1.png"), b).unwrap();
        nnc::train::data::read_image_folder(&dir, None).is_ok()
    });
    println!("image folder: {ok} of 300 mutations read");
}

/// Hand-written IR text at the edges: sizes whose products overflow, a
/// reshape to a different count, kernels larger than their input.
#[test]
fn ir_text_edge_cases() {
    let big = "9223372036854775807";
    let cases = [
        format!("graph g mode=infer {{\n  %0 = input name=\"x\" role=\"data\" : f32[{big}, {big}]\n  %1 = reshape(%0) shape=[1] : f32[1]\n}}\n"),
        "graph g mode=infer {\n  %0 = input name=\"x\" role=\"data\" : f32[4294967296, 4294967296, 4]\n  %1 = reduce_sum(%0) axes=[0] : f32[1, 4294967296, 4]\n}\n".to_string(),
        "graph g mode=infer {\n  %0 = input name=\"x\" role=\"data\" : f32[1, 1, 2, 2]\n  %1 = input name=\"w\" role=\"param\" : f32[1, 1, 9, 9]\n  %2 = conv2d(%0, %1) stride=[1, 1] padding=[0, 0, 0, 0] dilation=[1, 1] groups=1 : f32[1, 1, 1, 1]\n}\n".to_string(),
        format!("graph g mode=infer {{\n  %0 = input name=\"x\" role=\"data\" : f32[1, 1, 4, 4]\n  %1 = max_pool2d(%0) kernel=[2, 2] stride=[1, 1] padding=[{big}, 0] dilation=[1, 1] ceil_mode=false : f32[1, 1, 1, 1]\n}}\n"),
        format!("graph g mode=infer {{\n  %0 = input name=\"x\" role=\"data\" : f32[2, 3]\n  %1 = slice(%0) axis=1 start={big} end=2 : f32[2, 1]\n}}\n"),
        format!("graph g mode=infer {{\n  %0 = input name=\"x\" role=\"data\" : f32[2, 3]\n  %1 = pad_axis(%0) axis=1 before={big} after=1 : f32[2, 1]\n}}\n"),
    ];
    for text in &cases {
        let r = catch_unwind(AssertUnwindSafe(|| nnc::ir::text::parse(text)));
        match r {
            Ok(parsed) => assert!(parsed.is_err(), "accepted:\n{text}"),
            Err(_) => panic!("panicked on:\n{text}"),
        }
    }
}
