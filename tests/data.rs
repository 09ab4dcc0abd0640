//! Data readers on real files (when ../shared/data is present) and on
//! small files written here; malformed files name themselves.

use nnc::train::data;
use std::path::{Path, PathBuf};

fn temp(name: &str) -> PathBuf {
    let p = std::env::temp_dir().join(format!("nnc-data-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&p);
    std::fs::create_dir_all(&p).unwrap();
    p
}

#[test]
fn real_fashion_mnist_when_present() {
    let places = ["../shared/data/fashion-mnist", data::DEBIAN_FASHION_MNIST];
    let Some(dir) = places.iter().map(Path::new).find(|d| d.exists()) else {
        println!("skipped: no Fashion-MNIST in {}", places.join(" or "));
        return;
    };
    let splits = data::read_mnist_folder(dir).unwrap();
    assert_eq!(
        (splits.train.len(), splits.train.shape),
        (60_000, [1, 28, 28])
    );
    let test = splits.test.unwrap();
    assert_eq!(test.len(), 10_000);
    // Fashion-MNIST is balanced: 6,000 training images per class.
    let mut counts = [0usize; 10];
    for &l in &splits.train.labels {
        counts[l as usize] += 1;
    }
    assert!(counts.iter().all(|&c| c == 6_000), "{counts:?}");
}

#[test]
fn cifar10_batches_and_truncation() {
    let file = Path::new("../shared/data/cifar10-foolbox-samples/test_batch_first20.bin");
    let bytes = if file.exists() {
        std::fs::read(file).unwrap()
    } else {
        // Two records of our own when the shared samples are absent.
        let mut b = vec![3u8];
        b.extend(vec![7u8; 3072]);
        b.push(9);
        b.extend(vec![1u8; 3072]);
        b
    };
    let dir = temp("cifar");
    let path = dir.join("data_batch_1.bin");
    std::fs::write(&path, &bytes).unwrap();
    let splits = data::read_cifar(&dir).unwrap();
    assert_eq!(splits.train.shape, [3, 32, 32]);
    assert_eq!(splits.train.len(), bytes.len() / 3073);
    assert!(splits.train.labels.iter().all(|&l| l < 10));
    std::fs::write(&path, &bytes[..bytes.len() - 5]).unwrap();
    let e = data::read_cifar(&dir).err().unwrap().0;
    assert!(
        e.contains("data_batch_1.bin") && e.contains("3073-byte"),
        "{e}"
    );
}

#[test]
fn npy_pairs() {
    let dir = temp("npy");
    let x = ndarray::ArrayD::from_shape_fn(ndarray::IxDyn(&[6, 1, 4, 4]), |i| i[0] as f32);
    nnc::weights::npy::write(&dir.join("images.npy"), &x).unwrap();
    // int64 labels, as NumPy saves them by default.
    let mut labels = nnc::weights::npy::to_bytes(&ndarray::ArrayD::zeros(ndarray::IxDyn(&[6])));
    let header_end = labels.len() - 6 * 4;
    labels.truncate(header_end);
    let text = String::from_utf8(labels[10..].to_vec())
        .unwrap()
        .replace("<f4", "<i8");
    let mut bytes = labels[..10].to_vec();
    bytes.extend_from_slice(text.as_bytes());
    for l in [0i64, 1, 2, 0, 1, 2] {
        bytes.extend_from_slice(&l.to_le_bytes());
    }
    std::fs::write(dir.join("labels.npy"), &bytes).unwrap();
    let splits = data::read_npy_folder(&dir).unwrap();
    assert_eq!(splits.train.len(), 6);
    assert_eq!(splits.train.classes, 3);
    assert_eq!(splits.train.labels, vec![0, 1, 2, 0, 1, 2]);
    // Five images and six labels.
    let x5 = ndarray::ArrayD::<f32>::zeros(ndarray::IxDyn(&[5, 1, 4, 4]));
    nnc::weights::npy::write(&dir.join("images.npy"), &x5).unwrap();
    let e = data::read_npy_folder(&dir).err().unwrap().0;
    assert!(e.contains("5 images") && e.contains("6 labels"), "{e}");
}

#[test]
fn image_folders() {
    let dir = temp("images");
    for (class, value) in [("cat", 10u8), ("dog", 200u8)] {
        std::fs::create_dir_all(dir.join(class)).unwrap();
        for i in 0..3 {
            let img = image::RgbImage::from_pixel(5, 4, image::Rgb([value, i, 0]));
            img.save(dir.join(class).join(format!("{i}.png"))).unwrap();
        }
    }
    let splits = data::read_image_folder(&dir, None).unwrap();
    let t = &splits.train;
    assert_eq!((t.len(), t.classes, t.shape), (6, 2, [3, 4, 5]));
    assert_eq!(t.labels, vec![0, 0, 0, 1, 1, 1]);
    let mut first = vec![0f32; t.image_size()];
    t.image(4, &mut first);
    // Channel-first: the red plane of a dog is 200/255.
    assert!((first[0] - 200.0 / 255.0).abs() < 1e-6);
    // An image of another size is an error naming it.
    image::RgbImage::new(3, 3)
        .save(dir.join("dog").join("odd.png"))
        .unwrap();
    let e = data::read_image_folder(&dir, None).err().unwrap().0;
    assert!(e.contains("odd.png") && e.contains("3x3"), "{e}");
    assert!(e.contains("size=[4, 5]"), "{e}");
    // With `size`, every image is resized as it is read: a uniform image
    // stays uniform, and the odd one is read too.
    let splits = data::read_image_folder(&dir, Some([2, 3])).unwrap();
    let t = &splits.train;
    assert_eq!((t.len(), t.shape), (7, [3, 2, 3]));
    let mut dog = vec![0f32; t.image_size()];
    t.image(4, &mut dog);
    assert!(
        dog[..6].iter().all(|&v| (v - 200.0 / 255.0).abs() < 1e-6),
        "{dog:?}"
    );
}

/// `size` resizes as PIL's bilinear `resize` does (torchvision's `Resize`
/// on images), to within one grey level: down (where PIL widens the filter
/// to antialias), across and up.
#[test]
fn image_folder_resize_is_pils_bilinear() {
    #[rustfmt::skip]
    let source: [u8; 32] = [
        0, 255, 0, 255, 10, 20, 30, 40,
        5, 5, 5, 5, 200, 100, 0, 50,
        9, 80, 7, 6, 5, 4, 3, 2,
        1, 2, 3, 4, 5, 6, 7, 8,
    ];
    // `Image.fromarray(source).resize((w, h), Image.BILINEAR)`, Pillow 11.
    #[rustfmt::skip]
    let cases: [([u32; 2], &[u8]); 2] = [
        ([3, 3], &[86, 89, 36, 21, 44, 29, 12, 6, 6]),
        ([6, 11], &[
            0, 151, 174, 12, 197, 133, 12, 20, 27, 34, 40,
            3, 78, 90, 9, 101, 118, 95, 63, 30, 27, 45,
            6, 13, 14, 5, 5, 87, 148, 88, 27, 17, 42,
            8, 43, 48, 7, 6, 22, 34, 21, 8, 6, 10,
            5, 27, 30, 5, 5, 6, 5, 5, 5, 5, 5,
            1, 2, 2, 3, 4, 5, 5, 6, 7, 7, 8,
        ]),
    ];
    let dir = temp("images-resize");
    std::fs::create_dir_all(dir.join("a")).unwrap();
    image::GrayImage::from_raw(8, 4, source.to_vec())
        .unwrap()
        .save(dir.join("a").join("x.png"))
        .unwrap();
    for (size, pil) in cases {
        let t = data::read_image_folder(&dir, Some(size)).unwrap().train;
        assert_eq!(t.shape, [1, size[0] as usize, size[1] as usize]);
        let mut x = vec![0f32; t.image_size()];
        t.image(0, &mut x);
        let ours: Vec<u8> = x.iter().map(|v| (v * 255.0).round() as u8).collect();
        let off = ours.iter().zip(pil).map(|(a, b)| a.abs_diff(*b)).max();
        assert!(off <= Some(1), "{size:?}: ours {ours:?}, PIL {pil:?}");
    }
}

/// A header that claims more elements than fit in memory is an error before
/// anything is allocated.
#[test]
fn npy_headers_that_overflow_are_errors() {
    let dir = temp("npy-overflow");
    for shape in ["(4611686018427387904, 4)", "(4611686018427387904,)"] {
        let header = format!("{{'descr': '<i8', 'fortran_order': False, 'shape': {shape}, }}");
        let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
        let pad = 64 - (10 + header.len() + 1) % 64;
        let full = format!("{header}{}\n", " ".repeat(pad));
        bytes.extend_from_slice(&(full.len() as u16).to_le_bytes());
        bytes.extend_from_slice(full.as_bytes());
        let p = dir.join("labels.npy");
        std::fs::write(&p, &bytes).unwrap();
        let e = nnc::weights::npy::read_labels(&p).unwrap_err();
        assert!(e.contains("overflows") || e.contains("truncated"), "{e}");
    }
}
