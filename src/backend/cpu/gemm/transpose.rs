//! Packing an operand that runs along the other axis, for the panels of
//! `avx512::product`: `B` whose rows (the inner size) are consecutive in
//! memory and `A` whose columns (again the inner size) are. A weight
//! gradient's product `dy [O x NP] * patches^T [NP x CKK]` reads both
//! operands that way, and element-by-element packing of them took as
//! long as the multiply-adds (matrixmultiply's strided packing was 15 %
//! of ResNet-18's training step).
//!
//! Both read 16 vectors of 16 consecutive elements and transpose them in
//! registers (`transpose`), so a packed element costs a fraction of a
//! load, a shuffle and a store instead of a scalar load and store.

use std::arch::x86_64::*;

/// Elements per vector, and the side of a transposed block.
const L: usize = 16;

/// Transposes a 16 x 16 block held as 16 rows: afterwards `r[j]` lane `i`
/// is what `r[i]` lane `j` was. Pairs, then quads within each 128-bit
/// lane, then the four lanes across rows four apart.
#[target_feature(enable = "avx512f")]
pub(super) fn transpose(r: &mut [__m512; L]) {
    let mut t = [_mm512_setzero_ps(); L];
    for i in 0..L / 2 {
        t[2 * i] = _mm512_unpacklo_ps(r[2 * i], r[2 * i + 1]);
        t[2 * i + 1] = _mm512_unpackhi_ps(r[2 * i], r[2 * i + 1]);
    }
    // u[4q + c], lane l: column 4l + c of rows 4q..4q + 4.
    let mut u = [_mm512_setzero_ps(); L];
    let pd = _mm512_castps_pd;
    let ps = _mm512_castpd_ps;
    for q in 0..L / 4 {
        let (t0, t1, t2, t3) = (t[4 * q], t[4 * q + 1], t[4 * q + 2], t[4 * q + 3]);
        u[4 * q] = ps(_mm512_unpacklo_pd(pd(t0), pd(t2)));
        u[4 * q + 1] = ps(_mm512_unpackhi_pd(pd(t0), pd(t2)));
        u[4 * q + 2] = ps(_mm512_unpacklo_pd(pd(t1), pd(t3)));
        u[4 * q + 3] = ps(_mm512_unpackhi_pd(pd(t1), pd(t3)));
    }
    for c in 0..4 {
        let (x, y, z, w) = (u[c], u[4 + c], u[8 + c], u[12 + c]);
        let xy_low = _mm512_shuffle_f32x4::<0x44>(x, y);
        let xy_high = _mm512_shuffle_f32x4::<0xee>(x, y);
        let zw_low = _mm512_shuffle_f32x4::<0x44>(z, w);
        let zw_high = _mm512_shuffle_f32x4::<0xee>(z, w);
        r[c] = _mm512_shuffle_f32x4::<0x88>(xy_low, zw_low);
        r[4 + c] = _mm512_shuffle_f32x4::<0xdd>(xy_low, zw_low);
        r[8 + c] = _mm512_shuffle_f32x4::<0x88>(xy_high, zw_high);
        r[12 + c] = _mm512_shuffle_f32x4::<0xdd>(xy_high, zw_high);
    }
}

/// Whether `offsets` are consecutive.
pub(super) fn consecutive(offsets: &[isize]) -> bool {
    offsets.windows(2).all(|w| w[1] == w[0] + 1)
}

/// Packs the panel of `B` at `rows` x `cols` (at most `width` columns)
/// as `[k][width]` rows at `out`, zero past the last column, for rows that
/// come in runs of consecutive offsets: each block of 16 rows is loaded
/// per column as one masked load per run (a weight gradient over a
/// convolution's input read in place has runs of one output row, 8 wide
/// in ResNet-18's first stage at 32x32), then transposed. A block of more
/// than `MOST_RUNS` runs is gathered element by element. `width` is a
/// multiple of 16.
///
/// # Safety
/// Every element the tables reach from `b` is readable; `out` holds
/// `rows.len() * width` floats.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_b_transposed(
    b: *const f32,
    rows: &[isize],
    cols: &[isize],
    width: usize,
    out: *mut f32,
) {
    for p0 in (0..rows.len()).step_by(L) {
        let len = (rows.len() - p0).min(L);
        let block = &rows[p0..p0 + len];
        let runs = super::runs(block);
        if runs.len() > MOST_RUNS {
            for (p, &r) in block.iter().enumerate() {
                for j in 0..width {
                    // SAFETY: the caller's contract.
                    unsafe {
                        *out.add((p0 + p) * width + j) = match cols.get(j) {
                            Some(&col) => *b.offset(r + col),
                            None => 0.0,
                        }
                    };
                }
            }
            continue;
        }
        // Per run: the lanes it fills, and where lane 0 would be read
        // from (masked-off lanes are not read).
        let loads: Vec<(__mmask16, isize)> = runs
            .iter()
            .map(|&(s, n, off)| (lanes(s, n), off - s as isize))
            .collect();
        for j0 in (0..width).step_by(L) {
            let mut v = [_mm512_setzero_ps(); L];
            for (i, v) in v.iter_mut().enumerate() {
                if let Some(&col) = cols.get(j0 + i) {
                    for &(m, off) in &loads {
                        // SAFETY: the caller's contract: the run's
                        // elements of this column; the other lanes are
                        // masked off, so the pointer is never read there.
                        *v = unsafe { _mm512_mask_loadu_ps(*v, m, b.wrapping_offset(off + col)) };
                    }
                }
            }
            transpose(&mut v);
            for (p, v) in v.iter().take(len).enumerate() {
                // SAFETY: `out` holds the panel.
                unsafe { _mm512_storeu_ps(out.add((p0 + p) * width + j0), *v) };
            }
        }
    }
}

/// The most runs of consecutive rows in a block of 16 that
/// `pack_b_transposed` loads run by run (runs of four or more).
const MOST_RUNS: usize = 4;

/// Lanes `start..start + len` of a 16-lane mask.
fn lanes(start: usize, len: usize) -> __mmask16 {
    (((1u32 << len) - 1) << start) as __mmask16
}

/// Packs `A`'s `rows` (at most 16) over `cols` as `[k][stride]` at `out`,
/// for columns that come in blocks of 16 consecutive offsets (a block
/// that is not is gathered). Writes 16 floats per step of the inner size
/// where `stride` is smaller, the next step's overwriting the excess, so
/// `out` must hold `(cols.len() - 1) * stride + 16` floats.
///
/// # Safety
/// Every element the tables reach from `a` is readable; `out` holds the
/// floats above.
#[target_feature(enable = "avx512f")]
pub(super) unsafe fn pack_a_cols_consecutive(
    a: *const f32,
    rows: &[isize],
    cols: &[isize],
    stride: usize,
    out: *mut f32,
) {
    for p0 in (0..cols.len()).step_by(L) {
        let len = (cols.len() - p0).min(L);
        let block = &cols[p0..p0 + len];
        if !consecutive(block) {
            for (p, &col) in block.iter().enumerate() {
                for (i, &r) in rows.iter().enumerate() {
                    // SAFETY: the caller's contract.
                    unsafe { *out.add((p0 + p) * stride + i) = *a.offset(r + col) };
                }
            }
            continue;
        }
        let m = super::avx512::mask(len);
        let mut v = [_mm512_setzero_ps(); L];
        for (v, &r) in v.iter_mut().zip(rows) {
            // SAFETY: the caller's contract: `len` consecutive columns.
            *v = unsafe { _mm512_maskz_loadu_ps(m, a.offset(r + block[0])) };
        }
        transpose(&mut v);
        for (p, v) in v.iter().take(len).enumerate() {
            // SAFETY: `out` holds the padded panel.
            unsafe { _mm512_storeu_ps(out.add((p0 + p) * stride), *v) };
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_block_transposes() {
        if !std::arch::is_x86_feature_detected!("avx512f") {
            return;
        }
        let x: Vec<f32> = (0..L * L).map(|i| i as f32).collect();
        let mut got = vec![0f32; L * L];
        // SAFETY: AVX-512F is present; both vectors hold 256 floats.
        unsafe {
            let mut v = [_mm512_setzero_ps(); L];
            for (i, v) in v.iter_mut().enumerate() {
                *v = _mm512_loadu_ps(x.as_ptr().add(i * L));
            }
            transpose(&mut v);
            for (i, v) in v.iter().enumerate() {
                _mm512_storeu_ps(got.as_mut_ptr().add(i * L), *v);
            }
        }
        for i in 0..L {
            for j in 0..L {
                assert_eq!(got[j * L + i], x[i * L + j], "({i}, {j})");
            }
        }
    }
}
