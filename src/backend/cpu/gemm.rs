//! Matrix products over views with digits (`kernel::MatRef`): a
//! convolution's patches read in place from its input, without an im2col
//! copy.
//!
//! On a CPU with AVX-512 the product is a packed, register-tiled GEMM of
//! our own: the packing of `B` reads the view through a table of column
//! offsets and copies the runs in which they are consecutive (an output
//! row of a stride-1 convolution), so packing the view costs what packing
//! a matrix does, and the im2col pass (a write and a read of nine times
//! the input, for 3x3 taps) disappears. The micro-kernel keeps a 12 x 32
//! tile of `C` in 24 registers. Without AVX-512 the view is gathered into
//! a matrix and multiplied by matrixmultiply; the schedule only asks for
//! views where `patches_in_place()` says they pay.
//!
//! Measured against matrixmultiply on the same shapes in docs/perf.md.

use crate::kernel::{Gemm, MatRef};

/// Whether products over views are fast on this CPU (see the module
/// documentation).
pub fn patches_in_place() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx512f")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Whether a product of plain matrices runs faster through `ViewGemm`
/// than through matrixmultiply: on AVX-512, when `B` is stored by columns
/// (a weight gradient's `patches^T`), which our packing transposes 16 x 16
/// in registers and matrixmultiply's copies element by element. ResNet-18's
/// weight-gradient products went from 29.1–29.5 to 25.7–27.0 ms a step
/// (docs/perf.md). Products of other layouts measured no faster through
/// ours in the network and stay with matrixmultiply.
pub fn ours_pays(g: &Gemm) -> bool {
    patches_in_place() && g.b.row == 1 && g.b.col != 1 && g.n > 1
}

/// A product's shape and its operands' offset tables, made once when the
/// kernel is compiled; the generated code passes its address with the
/// operands' base pointers.
pub struct ViewGemm {
    m: usize,
    n: usize,
    k: usize,
    /// Offsets of `A`'s rows (`m`) and columns (`k`).
    a: (Vec<isize>, Vec<isize>),
    /// Offsets of `B`'s rows (`k`) and columns (`n`).
    b: (Vec<isize>, Vec<isize>),
    /// Offsets of `C`'s rows (`m`) and columns (`n`).
    c: (Vec<isize>, Vec<isize>),
    /// Per panel of `PANEL` columns of `C`: whether their offsets are
    /// consecutive, so that a tile's rows are stored a vector at a time.
    c_panels_contiguous: Vec<bool>,
    /// Per panel of `PANEL` columns of `B`: their runs of consecutive
    /// offsets (`runs`), which its packing copies.
    b_panel_runs: Vec<Vec<Run>>,
    /// `B`'s rows come in runs of consecutive offsets (four or more on
    /// average): a panel whose columns do not is packed by transposing.
    b_rows_in_runs: bool,
    accumulate: bool,
    /// Computed as dot products along the inner size (`dot_products_pay`).
    dots: bool,
    /// For the dot-product form, per block of the inner size
    /// (`dots::block_size`): the runs of `A`'s columns and `B`'s rows.
    dot_runs: Vec<[Vec<Run>; 2]>,
    /// For the dot-product form, when the inner size falls into chunks of
    /// eight consecutive elements in both operands: each chunk's offsets
    /// in `A`'s columns and `B`'s rows, which the kernel reads in place
    /// without packing (`dots::in_place`).
    dot_chunks: Option<Vec<(isize, isize)>>,
    /// For a product with at most `rows::MOST_ROWS` rows whose columns
    /// fall into chunks of eight consecutive elements in both `B` and `C`
    /// (and not the dot-product form): each chunk's offsets in `B`'s and
    /// `C`'s columns (`rows::rows`).
    row_chunks: Option<Vec<(isize, isize)>>,
}

/// A run of consecutive offsets: `(first index, length, offset)`.
type Run = (usize, usize, isize);

/// Columns of a micro-tile (the AVX-512 kernel's `NR`).
pub const PANEL: usize = 32;

fn tables(r: &MatRef, rows: i64, cols: i64) -> (Vec<isize>, Vec<isize>) {
    let t = |v: Vec<i64>| v.into_iter().map(|x| x as isize).collect();
    (t(r.row_offsets(rows)), t(r.col_offsets(cols)))
}

impl ViewGemm {
    pub fn new(g: &Gemm) -> ViewGemm {
        let c = tables(&g.c, g.m, g.n);
        let c_panels_contiguous =
            c.1.chunks(PANEL)
                .map(|p| p.windows(2).all(|w| w[1] == w[0] + 1))
                .collect();
        let b = tables(&g.b, g.k, g.n);
        let b_panel_runs = b.1.chunks(PANEL).map(runs).collect();
        let b_rows_in_runs = mean_run(&b.0) >= 4.0;
        ViewGemm {
            m: g.m as usize,
            n: g.n as usize,
            k: g.k as usize,
            a: tables(&g.a, g.m, g.k),
            b,
            c,
            c_panels_contiguous,
            b_panel_runs,
            b_rows_in_runs,
            accumulate: g.accumulate,
            dots: false,
            dot_runs: Vec::new(),
            dot_chunks: None,
            row_chunks: None,
        }
        .with_dots()
        .with_row_chunks()
    }

    /// Finds the chunks of the row-chunk form where it applies.
    fn with_row_chunks(mut self) -> ViewGemm {
        if !self.dots && self.m <= rows::MOST_ROWS {
            self.row_chunks = chunks_of(&self.b.1, &self.c.1, rows::CHUNK);
        }
        self
    }

    /// Chooses the dot-product form where it pays (`dot_products_pay`),
    /// and finds its blocks' runs.
    fn with_dots(mut self) -> ViewGemm {
        self.dots = dot_products_pay(self.m, self.n, self.k, &self.a.1, &self.b.0);
        if self.dots {
            let kb = dots::block_size(self.k);
            self.dot_runs = (0..self.k)
                .step_by(kb)
                .map(|pc| {
                    let end = (pc + kb).min(self.k);
                    [runs(&self.a.1[pc..end]), runs(&self.b.0[pc..end])]
                })
                .collect();
            self.dot_chunks = chunks_of(&self.a.1, &self.b.0, dots::CHUNK);
        }
        self
    }
}

/// Whether `C = A B` is better done as dot products along the inner size
/// than as the packed panels: when `A` has few rows (a thin weight
/// gradient: at most `DOT_ROWS` output channels, which the 12-row panels
/// cover poorly, their packed `B` serving only those rows), the inner size
/// is long, and both operands run along it in runs of consecutive
/// elements (`A`'s columns and `B`'s rows: rows of output positions), so
/// that packing them is copying runs.
fn dot_products_pay(m: usize, n: usize, k: usize, a_cols: &[isize], b_rows: &[isize]) -> bool {
    m <= DOT_ROWS && n <= 1024 && k >= 256 && mean_run(a_cols) >= 4.0 && mean_run(b_rows) >= 4.0
}

/// The most rows of `A` that the dot-product form takes (LeNet's 16
/// output channels).
const DOT_ROWS: usize = 16;

/// The mean length of the runs of consecutive offsets.
fn mean_run(offsets: &[isize]) -> f64 {
    offsets.len() as f64 / runs(offsets).len().max(1) as f64
}

/// When two tables of offsets both fall into chunks of `chunk`
/// consecutive offsets (index `q * chunk` to `q * chunk + chunk`), each
/// chunk's first offsets.
fn chunks_of(x: &[isize], y: &[isize], chunk: usize) -> Option<Vec<(isize, isize)>> {
    let consecutive = |o: &[isize]| o.windows(2).all(|w| w[1] == w[0] + 1);
    let chunked = x.len() == y.len()
        && !x.is_empty()
        && x.len().is_multiple_of(chunk)
        && (0..x.len())
            .step_by(chunk)
            .all(|q| consecutive(&x[q..q + chunk]) && consecutive(&y[q..q + chunk]));
    chunked.then(|| (0..x.len()).step_by(chunk).map(|q| (x[q], y[q])).collect())
}

/// The runs of consecutive offsets in `offsets`: what the packing
/// routines copy a vector at a time.
fn runs(offsets: &[isize]) -> Vec<Run> {
    let mut out = Vec::new();
    let mut j = 0;
    while j < offsets.len() {
        let first = j;
        while j + 1 < offsets.len() && offsets[j + 1] == offsets[j] + 1 {
            j += 1;
        }
        j += 1;
        out.push((first, j - first, offsets[first]));
    }
    out
}

/// `C (+)= A B` over the views `desc` describes.
///
/// # Safety
/// `desc` is a live `ViewGemm`; every element its tables reach from the
/// base pointers lies inside a live buffer (the verifier proved it); `C`
/// overlaps neither `A` nor `B`.
pub unsafe extern "C" fn nnc_sgemm_view(
    desc: *const ViewGemm,
    a: *const f32,
    b: *const f32,
    c: *mut f32,
) {
    // SAFETY: the caller's contract.
    unsafe {
        let d = &*desc;
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            let vl = std::arch::is_x86_feature_detected!("avx512vl");
            return match &d.row_chunks {
                _ if d.dots => dots::dots(d, a, b, c),
                Some(chunks) if vl => rows::rows(d, (a, b, c), chunks),
                _ => avx512::product(d, a, b, c),
            };
        }
        portable(d, a, b, c)
    }
}

/// Gathers both operands into matrices and multiplies them with
/// matrixmultiply; `C` through its tables.
///
/// # Safety
/// As `nnc_sgemm_view`.
pub unsafe fn portable(d: &ViewGemm, a: *const f32, b: *const f32, c: *mut f32) {
    let (m, n, k) = (d.m, d.n, d.k);
    let gather = |p: *const f32, (rows, cols): &(Vec<isize>, Vec<isize>)| -> Vec<f32> {
        let mut out = Vec::with_capacity(rows.len() * cols.len());
        for &r in rows {
            // SAFETY: the caller's contract.
            out.extend(cols.iter().map(|&col| unsafe { *p.offset(r + col) }));
        }
        out
    };
    let am = gather(a, &d.a);
    let bm = gather(b, &d.b);
    let mut cm = vec![0f32; m * n];
    // SAFETY: the three matrices are ours, of these sizes.
    unsafe {
        matrixmultiply::sgemm(
            m,
            k,
            n,
            1.0,
            am.as_ptr(),
            k as isize,
            1,
            bm.as_ptr(),
            n as isize,
            1,
            0.0,
            cm.as_mut_ptr(),
            n as isize,
            1,
        );
    }
    for (i, &r) in d.c.0.iter().enumerate() {
        for (j, &col) in d.c.1.iter().enumerate() {
            // SAFETY: the caller's contract.
            unsafe {
                let p = c.offset(r + col);
                let v = cm[i * n + j];
                *p = if d.accumulate { *p + v } else { v };
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod dots;

#[cfg(target_arch = "x86_64")]
mod rows;

#[cfg(target_arch = "x86_64")]
mod transpose;

#[cfg(target_arch = "x86_64")]
mod avx512 {
    use super::{transpose, ViewGemm};
    use std::arch::x86_64::*;
    use std::cell::RefCell;

    /// Rows of a micro-tile (broadcast from packed `A`).
    const MR: usize = 12;
    /// Columns of a micro-tile (two vectors of packed `B`).
    const NR: usize = super::PANEL;
    /// The inner size of one packed block: a 12-row panel of `A` (12 KiB)
    /// stays in L1 while the micro-kernel streams `B`'s panels.
    const KC: usize = 256;
    /// Columns of one packed block of `B` (768 KiB with `KC`: in L2).
    const NC: usize = 768;
    // Blocks of `B` hold whole panels (the panel flags of `C` count on it).
    const _: () = assert!(NC.is_multiple_of(NR));

    thread_local! {
        /// Packed `A` panel and `B` block, per thread.
        static PACKED: RefCell<(Vec<f32>, Vec<f32>)> =
            RefCell::new((vec![0.0; KC * MR + PACK_PAD], vec![0.0; KC * NC]));
    }

    /// # Safety
    /// As `nnc_sgemm_view`, and the CPU has AVX-512F.
    pub unsafe fn product(d: &ViewGemm, a: *const f32, b: *const f32, c: *mut f32) {
        PACKED.with(|packed| {
            let mut packed = packed.borrow_mut();
            let (pa, pb) = &mut *packed;
            let (pa, pb) = (pa.as_mut_ptr(), pb.as_mut_ptr());
            // SAFETY: the caller's contract; the packed buffers hold a
            // panel and a block.
            unsafe { blocks(d, a, b, c, pa, pb) }
        })
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn blocks(
        d: &ViewGemm,
        a: *const f32,
        b: *const f32,
        c: *mut f32,
        pa: *mut f32,
        pb: *mut f32,
    ) {
        let (m, n, k) = (d.m, d.n, d.k);
        if k == 0 {
            if !d.accumulate {
                store_zero(d, c);
            }
            return;
        }
        for jc in (0..n).step_by(NC) {
            let nc = (n - jc).min(NC);
            for pc in (0..k).step_by(KC) {
                let kc = (k - pc).min(KC);
                // SAFETY (all calls below): the caller's contract; the
                // tables' ranges are inside the product.
                unsafe {
                    pack_b(
                        b,
                        (&d.b.0[pc..pc + kc], &d.b.1[jc..jc + nc]),
                        &d.b_panel_runs[jc / NR..],
                        d.b_rows_in_runs,
                        pb,
                    );
                    let add = pc > 0 || d.accumulate;
                    for ir in (0..m).step_by(MR) {
                        let rows = (m - ir).min(MR);
                        pack_a(a, &d.a.0[ir..ir + rows], &d.a.1[pc..pc + kc], pa);
                        for (panel, jr) in (0..nc).step_by(NR).enumerate() {
                            let cols = (nc - jr).min(NR);
                            let tile = Tile {
                                c,
                                rows: &d.c.0[ir..ir + rows],
                                cols: &d.c.1[jc + jr..jc + jr + cols],
                                contiguous: d.c_panels_contiguous[(jc + jr) / NR],
                                add,
                            };
                            KERNELS[rows - 1](kc, pa, pb.add(panel * kc * NR), &tile);
                        }
                    }
                }
            }
        }
    }

    /// `C = 0` for an empty inner size.
    unsafe fn store_zero(d: &ViewGemm, c: *mut f32) {
        for &r in &d.c.0 {
            for &col in &d.c.1 {
                // SAFETY: the caller's contract.
                unsafe { *c.offset(r + col) = 0.0 };
            }
        }
    }

    /// `A`'s rows (up to `MR`) over `cols`, as `[k][MR]`: a vector per
    /// step of the inner size where the rows are consecutive (`A` stored
    /// by columns), 16 x 16 transposes where the columns are (by rows),
    /// element by element otherwise. `out` holds `PACK_PAD` floats more
    /// than the panel: each step writes a whole vector.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_a(a: *const f32, rows: &[isize], cols: &[isize], out: *mut f32) {
        let head = |o: &[isize]| transpose::consecutive(&o[..o.len().min(16)]);
        // SAFETY (all): the caller's contract.
        if transpose::consecutive(rows) {
            let m = mask(rows.len());
            for (p, &col) in cols.iter().enumerate() {
                unsafe {
                    let v = _mm512_maskz_loadu_ps(m, a.offset(rows[0] + col));
                    _mm512_storeu_ps(out.add(p * MR), v);
                }
            }
        } else if head(cols) {
            unsafe { transpose::pack_a_cols_consecutive(a, rows, cols, MR, out) };
        } else {
            for (p, &col) in cols.iter().enumerate() {
                for (i, &r) in rows.iter().enumerate() {
                    unsafe { *out.add(p * MR + i) = *a.offset(r + col) };
                }
            }
        }
    }

    /// Floats past a packed `A` panel that `pack_a` may write.
    const PACK_PAD: usize = 16;

    /// `B`'s `rows` over `cols`, as panels of `[k][NR]` (the last padded
    /// with zeros). A panel whose columns fall in few runs of consecutive
    /// offsets (`runs`, per panel) copies the runs; otherwise, where the
    /// rows come in runs (`rows_in_runs`: `B` stored by columns), it
    /// transposes blocks of 16 x 16; otherwise it gathers.
    #[target_feature(enable = "avx512f")]
    unsafe fn pack_b(
        b: *const f32,
        (rows, cols): (&[isize], &[isize]),
        runs: &[Vec<super::Run>],
        rows_in_runs: bool,
        out: *mut f32,
    ) {
        let kc = rows.len();
        for (panel, start) in (0..cols.len()).step_by(NR).enumerate() {
            let co = &cols[start..(start + NR).min(cols.len())];
            let o = unsafe { out.add(panel * kc * NR) };
            let runs = &runs[panel];
            // SAFETY (both): the caller's contract.
            if runs.len() <= 8 {
                unsafe { copy_runs(b, rows, runs, o) };
            } else if rows_in_runs {
                unsafe { transpose::pack_b_transposed(b, rows, co, NR, o) };
            } else {
                unsafe { gather(b, rows, co, o) };
            }
        }
    }

    pub(super) fn mask(len: usize) -> __mmask16 {
        if len >= 16 {
            0xffff
        } else {
            ((1u32 << len) - 1) as u16
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn copy_runs(b: *const f32, rows: &[isize], runs: &[super::Run], o: *mut f32) {
        let zero = _mm512_setzero_ps();
        for (p, &r) in rows.iter().enumerate() {
            // SAFETY: the caller's contract; a panel row holds NR floats.
            unsafe {
                let src = b.offset(r);
                let dst = o.add(p * NR);
                _mm512_storeu_ps(dst, zero);
                _mm512_storeu_ps(dst.add(16), zero);
                for &(s, len, off) in runs {
                    copy_run(src.offset(off), dst.add(s), len);
                }
            }
        }
    }

    /// `len` floats from `from` to `to`: whole vectors of 16 and 8 where
    /// they fit, masked ones for the rest (Zen 4's masked stores took 40 %
    /// of packing's time when every run went through them).
    ///
    /// # Safety
    /// Both ranges are valid.
    #[target_feature(enable = "avx512f")]
    pub(super) unsafe fn copy_run(from: *const f32, to: *mut f32, len: usize) {
        // SAFETY: the caller's contract.
        unsafe {
            let mut done = 0;
            while done + 16 <= len {
                _mm512_storeu_ps(to.add(done), _mm512_loadu_ps(from.add(done)));
                done += 16;
            }
            if done + 8 <= len {
                _mm256_storeu_ps(to.add(done), _mm256_loadu_ps(from.add(done)));
                done += 8;
            }
            if done < len {
                let m = mask(len - done);
                let v = _mm512_maskz_loadu_ps(m, from.add(done));
                _mm512_mask_storeu_ps(to.add(done), m, v);
            }
        }
    }

    #[target_feature(enable = "avx512f")]
    unsafe fn gather(b: *const f32, rows: &[isize], cols: &[isize], o: *mut f32) {
        for (p, &r) in rows.iter().enumerate() {
            // SAFETY: the caller's contract; a panel row holds NR floats.
            unsafe {
                let src = b.offset(r);
                let dst = o.add(p * NR);
                for j in 0..NR {
                    *dst.add(j) = match cols.get(j) {
                        Some(&col) => *src.offset(col),
                        None => 0.0,
                    };
                }
            }
        }
    }

    /// Where a micro-tile of `C` goes.
    struct Tile<'a> {
        c: *mut f32,
        rows: &'a [isize],
        cols: &'a [isize],
        /// The columns are consecutive in memory.
        contiguous: bool,
        /// Add to `C` (a later block of the inner size, or accumulate).
        add: bool,
    }

    type Kernel = unsafe fn(usize, *const f32, *const f32, &Tile);

    const KERNELS: [Kernel; MR] = [
        kernel::<1>,
        kernel::<2>,
        kernel::<3>,
        kernel::<4>,
        kernel::<5>,
        kernel::<6>,
        kernel::<7>,
        kernel::<8>,
        kernel::<9>,
        kernel::<10>,
        kernel::<11>,
        kernel::<12>,
    ];

    /// `R` rows of a tile: `R x 32` sums in `2R` registers, one FMA per
    /// register and step of the inner size.
    #[target_feature(enable = "avx512f")]
    unsafe fn kernel<const R: usize>(kc: usize, pa: *const f32, pb: *const f32, t: &Tile) {
        let mut lo = [_mm512_setzero_ps(); R];
        let mut hi = [_mm512_setzero_ps(); R];
        // SAFETY: the packed panels hold kc steps of MR and NR floats.
        unsafe {
            for p in 0..kc {
                let b0 = _mm512_loadu_ps(pb.add(p * NR));
                let b1 = _mm512_loadu_ps(pb.add(p * NR + 16));
                for i in 0..R {
                    let a = _mm512_set1_ps(*pa.add(p * MR + i));
                    lo[i] = _mm512_fmadd_ps(a, b0, lo[i]);
                    hi[i] = _mm512_fmadd_ps(a, b1, hi[i]);
                }
            }
            let cols = t.cols.len();
            if t.contiguous {
                let (m0, m1) = (mask(cols), mask(cols.saturating_sub(16)));
                for i in 0..R {
                    let at = t.c.offset(t.rows[i] + t.cols[0]);
                    let (mut v0, mut v1) = (lo[i], hi[i]);
                    if t.add {
                        v0 = _mm512_add_ps(v0, _mm512_maskz_loadu_ps(m0, at));
                        v1 = _mm512_add_ps(v1, _mm512_maskz_loadu_ps(m1, at.add(16)));
                    }
                    _mm512_mask_storeu_ps(at, m0, v0);
                    _mm512_mask_storeu_ps(at.add(16), m1, v1);
                }
            } else {
                let mut row = [0f32; NR];
                for i in 0..R {
                    _mm512_storeu_ps(row.as_mut_ptr(), lo[i]);
                    _mm512_storeu_ps(row.as_mut_ptr().add(16), hi[i]);
                    for (j, &col) in t.cols.iter().enumerate() {
                        let at = t.c.offset(t.rows[i] + col);
                        *at = if t.add { *at + row[j] } else { row[j] };
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kernel::{BufId, Digits, IExpr};

    /// A 3x3 convolution's patches of a 2 x 5 x h x w input, read in
    /// place, times an `o`-row weight: every path against a plain sum.
    /// Rows of 7 outputs take the panels; rows of 16 and 24 the row-chunk
    /// form, with 13 weight rows (a chunk a step), 6 (two chunks a step)
    /// and 4 (three a step: 28 chunks, one left for a last step).
    #[test]
    fn products_over_views_match_a_plain_sum() {
        product_over_view_matches_a_plain_sum(7, 9, 13, false);
        product_over_view_matches_a_plain_sum(6, 18, 13, true);
        product_over_view_matches_a_plain_sum(9, 26, 6, true);
        product_over_view_matches_a_plain_sum(9, 18, 4, true);
    }

    fn product_over_view_matches_a_plain_sum(h: usize, w: usize, o: usize, chunked: bool) {
        let (n, c) = (2usize, 5usize);
        let (ho, wo) = (h - 2, w - 2);
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.1)
            .collect();
        let wt: Vec<f32> = (0..o * c * 9)
            .map(|i| ((i * 5 % 17) as f32 - 8.0) * 0.1)
            .collect();
        let plane = (h * w) as i64;
        let g = Gemm {
            m: o as i64,
            n: (n * ho * wo) as i64,
            k: (c * 9) as i64,
            a: MatRef::strided(BufId(0), IExpr::c(0), (c * 9) as i64, 1),
            b: MatRef {
                buf: BufId(1),
                offset: IExpr::c(0),
                row: plane,
                col: c as i64 * plane,
                digits: Digits {
                    rows: vec![(3, w as i64), (3, 1)],
                    cols: vec![(ho as i64, w as i64), (wo as i64, 1)],
                },
            },
            c: MatRef::strided(BufId(2), IExpr::c(0), (n * ho * wo) as i64, 1),
            accumulate: true,
        };
        let d = ViewGemm::new(&g);
        let cols = n * ho * wo;
        let mut expected = vec![0.5f32; o * cols];
        for i in 0..o {
            for j in 0..cols {
                let (img, y, xx) = (j / (ho * wo), j / wo % ho, j % wo);
                let mut s = 0.0;
                for ch in 0..c {
                    for ky in 0..3 {
                        for kx in 0..3 {
                            s += wt[i * c * 9 + ch * 9 + ky * 3 + kx]
                                * x[((img * c + ch) * h + y + ky) * w + xx + kx];
                        }
                    }
                }
                expected[i * cols + j] += s;
            }
        }
        type Path = unsafe fn(&ViewGemm, *const f32, *const f32, *mut f32);
        let mut paths: Vec<(&str, Path)> = vec![("portable", portable)];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            paths.push(("avx512", avx512::product));
            paths.push(("chosen", |d, a, b, c| unsafe { nnc_sgemm_view(d, a, b, c) }));
        }
        assert_eq!(d.row_chunks.is_some(), chunked);
        for (name, f) in paths {
            let mut got = vec![0.5f32; o * cols];
            // SAFETY: the tables stay inside the three vectors.
            unsafe { f(&d, wt.as_ptr(), x.as_ptr(), got.as_mut_ptr()) };
            for (e, g) in expected.iter().zip(&got) {
                assert!(
                    (e - g).abs() <= 1e-4 * e.abs().max(1.0),
                    "{name}: {g} against {e}"
                );
            }
        }
    }

    /// Plain matrices stored by rows or by columns, in sizes that leave
    /// ragged blocks everywhere (inner sizes past one packed block and not
    /// a multiple of 16, columns not a multiple of 32, 12-row panels with
    /// a remainder): the panels with every packing path (runs, the 16 x 16
    /// transposes of `transpose.rs`, column copies of `A`) against a plain
    /// sum.
    #[test]
    fn plain_products_in_every_layout_match_a_plain_sum() {
        for (m, n, k) in [(13, 45, 37), (29, 70, 300), (5, 17, 16), (1, 3, 5)] {
            let a: Vec<f32> = (0..m * k)
                .map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.1)
                .collect();
            let b: Vec<f32> = (0..k * n)
                .map(|i| ((i * 5 % 17) as f32 - 8.0) * 0.1)
                .collect();
            for (a_by_columns, b_by_columns) in
                [(false, false), (false, true), (true, false), (true, true)]
            {
                let (rsa, csa) = if a_by_columns { (1, m) } else { (k, 1) };
                let (rsb, csb) = if b_by_columns { (1, k) } else { (n, 1) };
                let mut expected = vec![0.5f32; m * n];
                for i in 0..m {
                    for j in 0..n {
                        let s: f32 = (0..k)
                            .map(|p| a[i * rsa + p * csa] * b[p * rsb + j * csb])
                            .sum();
                        expected[i * n + j] += s;
                    }
                }
                let g = Gemm {
                    m: m as i64,
                    n: n as i64,
                    k: k as i64,
                    a: MatRef::strided(BufId(0), IExpr::c(0), rsa as i64, csa as i64),
                    b: MatRef::strided(BufId(1), IExpr::c(0), rsb as i64, csb as i64),
                    c: MatRef::strided(BufId(2), IExpr::c(0), n as i64, 1),
                    accumulate: true,
                };
                let d = ViewGemm::new(&g);
                type Path = unsafe fn(&ViewGemm, *const f32, *const f32, *mut f32);
                let mut paths: Vec<(&str, Path)> = vec![("portable", portable)];
                #[cfg(target_arch = "x86_64")]
                if std::arch::is_x86_feature_detected!("avx512f") {
                    paths.push(("avx512", avx512::product));
                }
                for (name, f) in paths {
                    let mut got = vec![0.5f32; m * n];
                    // SAFETY: the tables stay inside the three vectors.
                    unsafe { f(&d, a.as_ptr(), b.as_ptr(), got.as_mut_ptr()) };
                    for (e, g) in expected.iter().zip(&got) {
                        assert!(
                            (e - g).abs() <= 1e-4 * e.abs().max(1.0),
                            "{name} {m}x{n}x{k} by columns {a_by_columns} {b_by_columns}: {g} against {e}"
                        );
                    }
                }
            }
        }
    }

    /// A thin weight gradient's product, both operands read in place: `dy`
    /// (5 channels of 7 images) times the 3x3 patches of a 7 x 3 x h x w
    /// input, added to `C`: the dot-product form against a plain sum.
    /// Rows of 11 output positions (an inner size of 847: two packed
    /// blocks, the second ragged) and of 16 (chunks of eight read in
    /// place, 896 positions: two blocks).
    #[test]
    fn dot_products_over_views_match_a_plain_sum() {
        dot_products_match_a_plain_sum(13, 13, false);
        dot_products_match_a_plain_sum(10, 18, true);
    }

    fn dot_products_match_a_plain_sum(h: usize, w: usize, chunked: bool) {
        weight_gradient_matches_a_plain_sum(5, h, w, Some(chunked));
    }

    /// A weight gradient's product with more rows than the dot-product
    /// form takes (20 output channels): the panels, whose packing of the
    /// input's view transposes runs of output positions. Rows of 8 (two
    /// runs per block of 16), of 5 (runs across blocks) and of 3 (too
    /// short: gathered).
    #[test]
    fn weight_gradients_over_views_match_a_plain_sum() {
        weight_gradient_matches_a_plain_sum(20, 10, 10, None);
        weight_gradient_matches_a_plain_sum(20, 13, 7, None);
        weight_gradient_matches_a_plain_sum(20, 9, 5, None);
    }

    /// `dy` (`o` channels of 7 images) times the 3x3 patches of a 7 x 3 x
    /// h x w input read in place, added to `C`, against a plain sum: the
    /// dot-product form where `chunked` says whether it reads chunks in
    /// place, the panels where it is `None`.
    fn weight_gradient_matches_a_plain_sum(o: usize, h: usize, w: usize, chunked: Option<bool>) {
        let (n, c) = (7usize, 3usize);
        let (ho, wo) = (h - 2, w - 2);
        let p = ho * wo;
        let x: Vec<f32> = (0..n * c * h * w)
            .map(|i| ((i * 7 % 23) as f32 - 11.0) * 0.1)
            .collect();
        let dy: Vec<f32> = (0..n * o * p)
            .map(|i| ((i * 5 % 17) as f32 - 8.0) * 0.1)
            .collect();
        let plane = (h * w) as i64;
        let g = Gemm {
            m: o as i64,
            n: (c * 9) as i64,
            k: (n * p) as i64,
            a: MatRef {
                buf: BufId(0),
                offset: IExpr::c(0),
                row: p as i64,
                col: (o * p) as i64,
                digits: Digits {
                    rows: vec![],
                    cols: vec![(p as i64, 1)],
                },
            },
            b: MatRef {
                buf: BufId(1),
                offset: IExpr::c(0),
                row: c as i64 * plane,
                col: plane,
                digits: Digits {
                    rows: vec![(ho as i64, w as i64), (wo as i64, 1)],
                    cols: vec![(3, w as i64), (3, 1)],
                },
            },
            c: MatRef::strided(BufId(2), IExpr::c(0), (c * 9) as i64, 1),
            accumulate: true,
        };
        let d = ViewGemm::new(&g);
        assert_eq!(
            d.dots,
            chunked.is_some(),
            "dots for a thin product with a long inner size"
        );
        if let Some(chunked) = chunked {
            assert_eq!(d.dot_chunks.is_some(), chunked);
        } else {
            assert_eq!(d.b_rows_in_runs, wo >= 4);
        }
        let mut expected = vec![0.5f32; o * c * 9];
        for oc in 0..o {
            for ch in 0..c {
                for ky in 0..3 {
                    for kx in 0..3 {
                        let mut s = 0.0;
                        for img in 0..n {
                            for y in 0..ho {
                                for xx in 0..wo {
                                    s += dy[(img * o + oc) * p + y * wo + xx]
                                        * x[((img * c + ch) * h + y + ky) * w + xx + kx];
                                }
                            }
                        }
                        expected[oc * c * 9 + ch * 9 + ky * 3 + kx] += s;
                    }
                }
            }
        }
        type Path = unsafe fn(&ViewGemm, *const f32, *const f32, *mut f32);
        let mut paths: Vec<(&str, Path)> = vec![("portable", portable)];
        #[cfg(target_arch = "x86_64")]
        if std::arch::is_x86_feature_detected!("avx512f") {
            paths.push(match chunked {
                Some(_) => ("dots", dots::dots),
                None => ("panels", avx512::product),
            });
        }
        for (name, f) in paths {
            let mut got = vec![0.5f32; o * c * 9];
            // SAFETY: the tables stay inside the three vectors.
            unsafe { f(&d, dy.as_ptr(), x.as_ptr(), got.as_mut_ptr()) };
            for (e, g) in expected.iter().zip(&got) {
                assert!(
                    (e - g).abs() <= 1e-4 * e.abs().max(1.0),
                    "{name}: {g} against {e}"
                );
            }
        }
    }
}
