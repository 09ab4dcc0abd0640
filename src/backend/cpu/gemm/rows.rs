//! The row-chunk form of a product over views (`ViewGemm::row_chunks`),
//! for AVX-512 machines: `C = A B` where `A` has few rows (at most 16: a
//! thin convolution's output channels) and `C`'s columns fall into chunks
//! of eight consecutive positions, which are consecutive in `B` too (a
//! stride-1 convolution's output rows, 8 or 24 wide in LeNet).
//!
//! Each step takes `Q` chunks of eight columns and keeps all `R` rows of
//! their sums in registers; per inner index it loads the chunks of `B`'s
//! row where they are (no packing: `B` is the input read through the
//! taps) and multiplies them by `A`'s column, broadcast from a packed
//! copy of `A`. The panels' 12 x 32 tile covered 16 rows as 12 + 4 and
//! packed every tap's copy of the input; the direct convolutions ran on
//! Cranelift's 128-bit vectors.

use super::ViewGemm;
use std::arch::x86_64::*;
use std::cell::RefCell;

/// Columns in a chunk: one 256-bit vector (Zen 4's FMA units take two of
/// those a cycle, as many lanes as one 512-bit FMA).
pub const CHUNK: usize = 8;

/// The most rows of `A` the form takes (all in registers at once).
pub const MOST_ROWS: usize = 16;

thread_local! {
    /// `A` packed as `[k][m]`, per thread.
    static PACKED: RefCell<Vec<f32>> = const { RefCell::new(Vec::new()) };
}

/// # Safety
/// As `nnc_sgemm_view`; the CPU has AVX-512F and AVX-512VL; `d.m` is at
/// most `MOST_ROWS` and `chunks` are `d.row_chunks`.
pub unsafe fn rows(
    d: &ViewGemm,
    (a, b, c): (*const f32, *const f32, *mut f32),
    chunks: &[(isize, isize)],
) {
    PACKED.with(|packed| {
        let mut pa = packed.borrow_mut();
        pa.clear();
        for &col in &d.a.1 {
            // SAFETY: the caller's contract.
            pa.extend(d.a.0.iter().map(|&row| unsafe { *a.offset(row + col) }));
        }
        // SAFETY: the caller's contract; `pa` holds `A` as `[k][m]`.
        unsafe { steps(d, (pa.as_ptr(), b, c), chunks) }
    })
}

#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn steps(
    d: &ViewGemm,
    (pa, b, c): (*const f32, *const f32, *mut f32),
    chunks: &[(isize, isize)],
) {
    let m = d.m;
    let q = chunks_per_step(m);
    let whole = chunks.len() / q * q;
    let operands = Operands {
        pa,
        b,
        b_rows: &d.b.0,
        c,
        c_rows: &d.c.0,
        add: d.accumulate,
    };
    for step in chunks[..whole].chunks(q) {
        // SAFETY (both): the caller's contract.
        unsafe { WIDE[m - 1](&operands, step) };
    }
    for chunk in chunks[whole..].chunks(1) {
        unsafe { NARROW[m - 1](&operands, chunk) };
    }
}

/// Chunks a step takes for `m` rows: as many as keep the sums (`m` rows
/// by the chunks) within 18 of the 32 vector registers.
fn chunks_per_step(m: usize) -> usize {
    match m {
        0..=5 => 3,
        6..=8 => 2,
        _ => 1,
    }
}

/// What every step reads and writes.
struct Operands<'a> {
    /// `A` packed as `[k][m]`.
    pa: *const f32,
    b: *const f32,
    b_rows: &'a [isize],
    c: *mut f32,
    c_rows: &'a [isize],
    /// Add to `C` rather than overwrite it.
    add: bool,
}

type Step = unsafe fn(&Operands, &[(isize, isize)]);

macro_rules! steps_of {
    ($q:literal for $($r:literal)*) => { [$(step::<$r, $q> as Step),*] };
}

/// Steps of `chunks_per_step(m)` chunks, by `m - 1`.
const WIDE: [Step; MOST_ROWS] = {
    let three = steps_of!(3 for 1 2 3 4 5);
    let two = steps_of!(2 for 6 7 8);
    let one = steps_of!(1 for 9 10 11 12 13 14 15 16);
    [
        three[0], three[1], three[2], three[3], three[4], two[0], two[1], two[2], one[0], one[1],
        one[2], one[3], one[4], one[5], one[6], one[7],
    ]
};

/// Steps of one chunk (the rest), by `m - 1`.
const NARROW: [Step; MOST_ROWS] = steps_of!(1 for 1 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16);

/// `R` rows by `Q` chunks of `C`: the sums over the inner size of `A`'s
/// column (broadcast) times the chunks of `B`'s row.
#[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
unsafe fn step<const R: usize, const Q: usize>(o: &Operands, chunks: &[(isize, isize)]) {
    // SAFETY: the caller's contract: every chunk of every row of `B` and
    // `C` is inside its buffer; `pa` holds `k` columns of `R` floats.
    unsafe {
        let b_at: [isize; Q] = std::array::from_fn(|q| chunks[q].0);
        let mut acc = [[_mm256_setzero_ps(); Q]; R];
        for (l, &row) in o.b_rows.iter().enumerate() {
            let from = o.b.offset(row);
            let bv: [__m256; Q] = std::array::from_fn(|q| _mm256_loadu_ps(from.offset(b_at[q])));
            let column = o.pa.add(l * R);
            for (i, sums) in acc.iter_mut().enumerate() {
                let w = _mm256_broadcast_ss(&*column.add(i));
                for (sum, x) in sums.iter_mut().zip(&bv) {
                    *sum = _mm256_fmadd_ps(w, *x, *sum);
                }
            }
        }
        for (i, sums) in acc.iter().enumerate() {
            for (q, sum) in sums.iter().enumerate() {
                let at = o.c.offset(o.c_rows[i] + chunks[q].1);
                let v = if o.add {
                    _mm256_add_ps(*sum, _mm256_loadu_ps(at))
                } else {
                    *sum
                };
                _mm256_storeu_ps(at, v);
            }
        }
    }
}
