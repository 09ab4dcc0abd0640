//! GFLOP/s of matrixmultiply, whose micro-kernels the cpu backend's
//! matrix products use, as given and transposed, on a square product and
//! on the
//! shapes ResNet-18's 3x3 convolutions give at batch 64 x 32 x 32 (the
//! forward product `W [O x 9C] * patches [9C x N P]`). Compare with
//! bench/sgemm_numpy.py (OpenBLAS) in the same session.
//!
//!     cargo bench --bench gemm

use std::time::Instant;

fn time(f: &mut dyn FnMut()) -> f64 {
    f();
    let mut best = f64::MAX;
    for _ in 0..5 {
        let t = Instant::now();
        f();
        best = best.min(t.elapsed().as_secs_f64());
    }
    best
}

fn main() {
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    let shapes: &[(&str, usize, usize, usize)] = &[
        ("square 1024", 1024, 1024, 1024),
        ("layer1 3x3 64->64 @16x16", 64, 64 * 256, 576),
        ("layer2 3x3 128->128 @8x8", 128, 64 * 64, 1152),
        ("layer3 3x3 256->256 @4x4", 256, 64 * 16, 2304),
        ("layer4 3x3 512->512 @2x2", 512, 64 * 4, 4608),
    ];
    println!("{threads} threads; best of 5; GFLOP/s");
    println!(
        "{:<28} {:>16} {:>12}",
        "m x n x k", "matrixmultiply", "transposed"
    );
    for &(name, m, n, k) in shapes {
        let a = vec![1.0f32; m * k];
        let b = vec![0.5f32; k * n];
        let mut c = vec![0.0f32; m * n];
        let flops = 2.0 * (m * n * k) as f64;
        let mm = time(&mut || unsafe {
            matrixmultiply::sgemm(
                m,
                k,
                n,
                1.0,
                a.as_ptr(),
                k as isize,
                1,
                b.as_ptr(),
                n as isize,
                1,
                0.0,
                c.as_mut_ptr(),
                n as isize,
                1,
            )
        });
        // The same product computed as its transpose, C^T = B^T A^T, with
        // the output written through strides.
        let mt = time(&mut || unsafe {
            matrixmultiply::sgemm(
                n,
                k,
                m,
                1.0,
                b.as_ptr(),
                1,
                n as isize,
                a.as_ptr(),
                1,
                k as isize,
                0.0,
                c.as_mut_ptr(),
                1,
                n as isize,
            )
        });
        println!(
            "{name:<28} {:>16.1} {:>12.1}",
            flops / mm / 1e9,
            flops / mt / 1e9
        );
    }
}
