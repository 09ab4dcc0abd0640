//! The dot-product form of a product over views (`ViewGemm::dots`), for
//! AVX-512: `C[i, j] = sum over p of A[i, p] B[p, j]` where `A` has few
//! rows and the inner size `p` is long, as a thin convolution's weight
//! gradient is (LeNet's second layer: 16 x 150 over 1,024 output
//! positions a slice of images).
//!
//! Per block of `KB` inner positions, both operands are packed as rows
//! along `p` (`A`'s rows, `B`'s columns: for the weight gradient, `dy`'s
//! channels and the input's taps, which is im2col for one block, in L2,
//! copying runs of consecutive positions); then a register tile of `TM`
//! rows by `TN` columns keeps `TM * TN` vectors of sixteen partial sums,
//! each step loading `TM + TN` vectors for `TM * TN` FMAs. The partial
//! sums live in a per-thread array between blocks and are added
//! horizontally once at the end.

use super::ViewGemm;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Floats in a vector register.
const LANES: usize = 16;
/// Inner positions per packed block: `B`'s 150 taps of LeNet's second
/// layer take 300 KiB, which stays in L2 with the partial sums.
const KB: usize = 512;
/// The register tile: 24 sums, 4 vectors of `A` and one of `B` in the 32
/// vector registers.
const TM: usize = 4;
const TN: usize = 6;

/// Packed rows of `A` and `B` and the partial sums, per thread.
#[derive(Default)]
struct Buffers {
    a: Vec<f32>,
    b: Vec<f32>,
    sums: Vec<f32>,
}

thread_local! {
    static BUFFERS: RefCell<Buffers> = RefCell::new(Buffers::default());
}

/// A row of a table of tiles: `$kernel` for `$r` rows and 1 to `TN`
/// columns.
macro_rules! tile_row {
    ($kernel:ident, $r:literal) => {
        [
            $kernel::<$r, 1>,
            $kernel::<$r, 2>,
            $kernel::<$r, 3>,
            $kernel::<$r, 4>,
            $kernel::<$r, 5>,
            $kernel::<$r, 6>,
        ]
    };
}

/// Inner positions per block for an inner size of `k`: `KB`, or all of
/// a shorter one rounded up to whole vectors.
pub fn block_size(k: usize) -> usize {
    k.clamp(1, KB).next_multiple_of(LANES)
}

/// Inner positions in a chunk of the in-place form: one 256-bit vector.
pub const CHUNK: usize = 8;

/// Chunks per block of the in-place form (512 positions, as `KB`).
const CHUNKS_PER_BLOCK: usize = KB / CHUNK;

/// # Safety
/// As `nnc_sgemm_view`, and the CPU has AVX-512F.
pub unsafe fn dots(d: &ViewGemm, a: *const f32, b: *const f32, c: *mut f32) {
    if let Some(chunks) = d
        .dot_chunks
        .as_ref()
        .filter(|_| is_x86_feature_detected!("avx512vl"))
    {
        // SAFETY: the caller's contract.
        return unsafe { in_place(d, (a, b, c), chunks) };
    }
    BUFFERS.with(|buffers| {
        let mut buffers = buffers.borrow_mut();
        let Buffers { a: pa, b: pb, sums } = &mut *buffers;
        let kb = block_size(d.k);
        pa.resize(d.m * (kb + LANES), 0.0);
        pb.resize(d.n * (kb + LANES), 0.0);
        sums.clear();
        sums.resize(d.m * d.n * LANES, 0.0);
        // SAFETY: the caller's contract; the buffers hold a block.
        unsafe {
            blocks(
                d,
                (a, b, c),
                (pa.as_mut_ptr(), pb.as_mut_ptr(), sums.as_mut_ptr()),
                kb,
            )
        }
    })
}

#[target_feature(enable = "avx512f")]
unsafe fn blocks(
    d: &ViewGemm,
    (a, b, c): (*const f32, *const f32, *mut f32),
    (pa, pb, sums): (*mut f32, *mut f32, *mut f32),
    kb: usize,
) {
    let (m, n, k) = (d.m, d.n, d.k);
    // Rows of a tile: as even a split of `m` as tiles of at most `TM`
    // allow (6 rows as 3 + 3, not 4 + 2).
    let tm = m.div_ceil(m.div_ceil(TM)).max(1);
    for (pc, [a_runs, b_runs]) in (0..k).step_by(kb).zip(&d.dot_runs) {
        let kc = (k - pc).min(kb);
        let steps = kc.div_ceil(LANES);
        // One vector more than the row needs: rows 2 KiB apart alias in
        // the 4 KiB the CPU compares a load's address with earlier
        // stores', which stalled packing (docs/perf.md).
        let stride = (steps + 1) * LANES;
        // SAFETY (all calls below): the caller's contract; the tables'
        // ranges are inside the product, the packed rows hold `stride`
        // floats each.
        unsafe {
            pack(a, &d.a.0, a_runs, kc, pa, stride);
            pack(b, &d.b.1, b_runs, kc, pb, stride);
            for i in (0..m).step_by(tm) {
                let rows = (m - i).min(tm);
                for j in (0..n).step_by(TN) {
                    let cols = (n - j).min(TN);
                    KERNELS[rows - 1][cols - 1](
                        steps,
                        stride,
                        pa.add(i * stride),
                        pb.add(j * stride),
                        sums.add((i * n + j) * LANES),
                        n * LANES,
                    );
                }
            }
        }
    }
    for (i, &row) in d.c.0.iter().enumerate() {
        for (j, &col) in d.c.1.iter().enumerate() {
            // SAFETY: the sums hold `m * n` vectors; `C` by the caller's
            // contract.
            unsafe {
                let s = _mm512_reduce_add_ps(_mm512_loadu_ps(sums.add((i * n + j) * LANES)));
                let at = c.offset(row + col);
                *at = if d.accumulate { *at + s } else { s };
            }
        }
    }
}

/// The dot-product form without packing, where the inner size falls into
/// chunks of eight positions consecutive in both operands (an output row
/// of 8 or 24 positions, in LeNet): the kernel reads each chunk of `A`'s
/// rows and `B`'s columns where it is, as a 256-bit vector (Zen 4's FMA
/// units take two of those a cycle, as many lanes as one 512-bit FMA).
/// Packing had stored every tap's copy of the input (LeNet's first layer:
/// 25 copies, 20 MB a step) for a few multiply-adds each.
///
/// # Safety
/// As `nnc_sgemm_view`, and the CPU has AVX-512F and AVX-512VL.
unsafe fn in_place(
    d: &ViewGemm,
    (a, b, c): (*const f32, *const f32, *mut f32),
    chunks: &[(isize, isize)],
) {
    BUFFERS.with(|buffers| {
        let sums = &mut buffers.borrow_mut().sums;
        sums.clear();
        sums.resize(d.m * d.n * CHUNK, 0.0);
        // SAFETY: the caller's contract; `sums` holds a vector per sum.
        unsafe { chunk_blocks(d, (a, b, c), chunks, sums.as_mut_ptr()) }
    })
}

#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn chunk_blocks(
    d: &ViewGemm,
    (a, b, c): (*const f32, *const f32, *mut f32),
    chunks: &[(isize, isize)],
    sums: *mut f32,
) {
    let (m, n) = (d.m, d.n);
    let tm = m.div_ceil(m.div_ceil(TM)).max(1);
    for block in chunks.chunks(CHUNKS_PER_BLOCK) {
        for i in (0..m).step_by(tm) {
            let rows = &d.a.0[i..(i + tm).min(m)];
            for j in (0..n).step_by(TN) {
                let cols = &d.b.1[j..(j + TN).min(n)];
                // SAFETY: the caller's contract; the sums hold a tile.
                unsafe {
                    CHUNK_KERNELS[rows.len() - 1][cols.len() - 1](
                        block,
                        (a, rows),
                        (b, cols),
                        sums.add((i * n + j) * CHUNK),
                        n * CHUNK,
                    )
                };
            }
        }
    }
    for (i, &row) in d.c.0.iter().enumerate() {
        for (j, &col) in d.c.1.iter().enumerate() {
            // SAFETY: the sums hold `m * n` vectors; `C` by the caller's
            // contract.
            unsafe {
                let v = _mm256_loadu_ps(sums.add((i * n + j) * CHUNK));
                let half = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps(v, 1));
                let pair = _mm_add_ps(half, _mm_movehl_ps(half, half));
                let s = _mm_cvtss_f32(_mm_add_ss(pair, _mm_shuffle_ps(pair, pair, 1)));
                let at = c.offset(row + col);
                *at = if d.accumulate { *at + s } else { s };
            }
        }
    }
}

type ChunkKernel =
    unsafe fn(&[(isize, isize)], (*const f32, &[isize]), (*const f32, &[isize]), *mut f32, usize);

const CHUNK_KERNELS: [[ChunkKernel; TN]; TM] = [
    tile_row!(chunk_kernel, 1),
    tile_row!(chunk_kernel, 2),
    tile_row!(chunk_kernel, 3),
    tile_row!(chunk_kernel, 4),
];

/// `R` rows of `A` (offsets `rows`) by `C` columns of `B` (offsets
/// `cols`) over `chunks`: `R x C` vectors of eight partial sums, loaded
/// from and stored back to `sums` (a row of the tile every `sums_row`
/// floats).
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn chunk_kernel<const R: usize, const C: usize>(
    chunks: &[(isize, isize)],
    (a, rows): (*const f32, &[isize]),
    (b, cols): (*const f32, &[isize]),
    sums: *mut f32,
    sums_row: usize,
) {
    // SAFETY: the caller's contract: every chunk of every row and column
    // is inside its buffer; the sums hold a tile.
    unsafe {
        let ap: [*const f32; R] = std::array::from_fn(|i| a.offset(rows[i]));
        let bp: [*const f32; C] = std::array::from_fn(|j| b.offset(cols[j]));
        let mut acc = [[_mm256_setzero_ps(); C]; R];
        for (i, row) in acc.iter_mut().enumerate() {
            for (j, sum) in row.iter_mut().enumerate() {
                *sum = _mm256_loadu_ps(sums.add(i * sums_row + j * CHUNK));
            }
        }
        for &(ao, bo) in chunks {
            let av: [__m256; R] = std::array::from_fn(|i| _mm256_loadu_ps(ap[i].offset(ao)));
            for j in 0..C {
                let bv = _mm256_loadu_ps(bp[j].offset(bo));
                for (row, x) in acc.iter_mut().zip(&av) {
                    row[j] = _mm256_fmadd_ps(*x, bv, row[j]);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, sum) in row.iter().enumerate() {
                _mm256_storeu_ps(sums.add(i * sums_row + j * CHUNK), *sum);
            }
        }
    }
}

/// `out[l * stride + p] = src[lines[l] + along[p]]` for `p < len`, zeros
/// from `len` to `stride`: each line's elements along the inner size,
/// copied a run of consecutive offsets of `along` (`runs`) at a time.
#[target_feature(enable = "avx512f")]
unsafe fn pack(
    src: *const f32,
    lines: &[isize],
    runs: &[super::Run],
    len: usize,
    out: *mut f32,
    stride: usize,
) {
    for (l, &line) in lines.iter().enumerate() {
        // SAFETY: the caller's contract; a packed row holds `stride`
        // floats.
        unsafe {
            let from = src.offset(line);
            let to = out.add(l * stride);
            for &(s, run, off) in runs {
                super::avx512::copy_run(from.offset(off), to.add(s), run);
            }
            for q in len..stride {
                *to.add(q) = 0.0;
            }
        }
    }
}

type Kernel = unsafe fn(usize, usize, *const f32, *const f32, *mut f32, usize);

const KERNELS: [[Kernel; TN]; TM] = [
    tile_row!(kernel, 1),
    tile_row!(kernel, 2),
    tile_row!(kernel, 3),
    tile_row!(kernel, 4),
];

/// `R` rows of `A` by `C` columns of `B` over `steps` vectors of the
/// block: `R x C` vectors of partial sums, loaded from and stored back to
/// `sums` (a row of the tile every `sums_row` floats).
#[target_feature(enable = "avx512f")]
unsafe fn kernel<const R: usize, const C: usize>(
    steps: usize,
    stride: usize,
    pa: *const f32,
    pb: *const f32,
    sums: *mut f32,
    sums_row: usize,
) {
    // SAFETY: the packed rows hold `steps` vectors; the sums a tile.
    unsafe {
        let mut acc = [[_mm512_setzero_ps(); C]; R];
        for (i, row) in acc.iter_mut().enumerate() {
            for (j, sum) in row.iter_mut().enumerate() {
                *sum = _mm512_loadu_ps(sums.add(i * sums_row + j * LANES));
            }
        }
        for s in 0..steps {
            let mut av = [_mm512_setzero_ps(); R];
            for (i, v) in av.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(pa.add(i * stride + s * LANES));
            }
            for j in 0..C {
                let bv = _mm512_loadu_ps(pb.add(j * stride + s * LANES));
                for (row, a) in acc.iter_mut().zip(&av) {
                    row[j] = _mm512_fmadd_ps(*a, bv, row[j]);
                }
            }
        }
        for (i, row) in acc.iter().enumerate() {
            for (j, sum) in row.iter().enumerate() {
                _mm512_storeu_ps(sums.add(i * sums_row + j * LANES), *sum);
            }
        }
    }
}
