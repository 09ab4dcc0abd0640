//! The schedule of contractions: matrix products and convolutions as
//! `Gemm` statements over packed operands, with the packing (im2col,
//! transposes) and unpacking (col2im) generated as ordinary loop nests.
//!
//! - `matmul`: one product over the operands in place (transposes are
//!   strides).
//! - `conv2d`: per chunk of images, the patches (`col`, rows `c, i, j`,
//!   columns `image, y, x`), then per group `W_g [og x R] * col_g`; the
//!   result is kept channel-major (`[O, N * P]`), and whatever reads it
//!   (bias, batch norm, activation: the fused epilogue) reads it there.
//! - `conv2d_grad_weight`: `dY` channel-major, then per chunk the patches
//!   and `dW_g += dY_g * col_g^T`.
//! - `conv2d_grad_input`: `dcol_g = W_g^T * dY_g`, then each input
//!   position gathers the taps that read it (col2im as a gather, so it
//!   splits over images with no two threads writing one element).
//!
//! `col`, `dcol` and the transposed `dY` live in scratch buffers shared by
//! all contractions of the program: each is written and read within one
//! contraction's kernels, and kernels run in order.

use super::digit_span;
use super::{
    BufId, Buffer, BufferKind, Digits, Gemm, IExpr, Kernel, MatRef, Program, Reg, SExpr, Stmt,
    Target, Var,
};
use crate::ir::ops::ConvGeom;
use crate::ir::{Graph, NodeId, Op};

/// At most this many f32 in the patch buffer: a batch whose patches need
/// more is done in chunks of images.
const PATCH_LIMIT: usize = 1 << 25;

/// Where a contraction's result is, and in which layout.
#[derive(Clone, Copy, Debug)]
pub enum Layout {
    /// The node's own (row-major) layout.
    Natural,
    /// A convolution's output channel-major: `[O, N, P]` for `[N, O, P]`.
    ChannelMajor { n: usize, c: usize, p: usize },
}

#[derive(Clone, Copy, Debug)]
pub struct Product {
    pub buf: BufId,
    pub layout: Layout,
}

/// The shared scratch buffers of a program.
#[derive(Default)]
pub struct Scratch {
    /// The machine the schedule is made for.
    target: Target,
    patches: Option<BufId>,
    transposed: Option<BufId>,
    partial: Option<BufId>,
    padded: Option<BufId>,
    /// Patches a convolution's forward pass wrote into a buffer of their
    /// own, for its weight gradient to read again: input, geometry, weight
    /// shape (a 1x1 and a 2x2 convolution of one input can share the
    /// rest) and buffer.
    kept: Vec<(NodeId, ConvGeom, Vec<usize>, BufId)>,
    /// Their floats, all together with `channel_major` below (at most
    /// `KEPT_PATCH_LIMIT`).
    kept_floats: usize,
    /// Output gradients transposed channel-major in a buffer of their own,
    /// for the second of a convolution's two gradients to read again.
    channel_major: Vec<(BufId, BufId)>,
}

/// How `Conv::input_view` lays out a convolution's patches.
#[derive(Clone, Copy)]
enum Patches {
    /// Rows the taps, columns the output positions (the forward's `B`).
    TapsByPositions,
    /// Rows the output positions, columns the taps (a weight gradient's).
    PositionsByTaps,
}

/// At most this many f32 of patches are kept from forward passes for the
/// weight gradients (256 MiB): ResNet-18 at 64x3x32x32 keeps all of its
/// (about 75 MiB), a batch of 224x224 images none (one 3x3 layer of 64
/// channels is 460 MiB).
const KEPT_PATCH_LIMIT: usize = 1 << 26;

/// Whether both gradients of a convolution read the output gradient `dy`
/// (the input's and the weight's).
fn both_gradients_read(g: &Graph, dy: NodeId) -> bool {
    let input = g
        .nodes
        .iter()
        .any(|n| matches!(n.op, Op::Conv2dGradInput { .. }) && n.args[0] == dy);
    let weight = g
        .nodes
        .iter()
        .any(|n| matches!(n.op, Op::Conv2dGradWeight { .. }) && n.args[1] == dy);
    input && weight
}

/// Whether the graph has the weight gradient of a convolution of `x` with
/// this geometry and weight shape, which reads the same patches.
fn has_weight_gradient(g: &Graph, x: NodeId, geom: &ConvGeom, w: &[usize]) -> bool {
    g.nodes.iter().any(|n| {
        matches!(&n.op, Op::Conv2dGradWeight { geom: other, shape } if other == geom && shape == w)
            && n.args[0] == x
    })
}

/// A convolution whose outputs each sum at most this many inputs per
/// group (`channels * kh * kw`) is done directly.
const DIRECT_ROWS: usize = 32;

/// The most output channels a direct convolution computes side by side
/// (each one vector register of sums, beside the input's and the
/// address arithmetic's).
const DIRECT_FORWARD_TILE: usize = 8;

/// The most sums a direct weight gradient keeps in registers at once
/// (output channels times taps), beside one register of input and one of
/// `dy` per output channel: within x86's 16 vector registers.
const DIRECT_GRAD_TILE: usize = 12;

/// The largest divisor of `channels` up to `most`: a register tile that
/// divides the output channels of a group, so that every tile lies in one
/// group and none is ragged.
fn register_tile(channels: usize, most: usize) -> usize {
    largest_divisor(channels, most)
}

/// The largest divisor of `n` up to `most` (at least 1): equal parts of a
/// batch for threads or slices.
fn largest_divisor(n: usize, most: usize) -> usize {
    (1..=most.max(1))
        .rev()
        .find(|d| n.is_multiple_of(*d))
        .unwrap_or(1)
}

/// A weight gradient with at most this many output channels per group
/// is a loop nest of dot products (`dot_products`), not a GEMM call.
const DOT_ROWS: usize = 16;

/// `C = A * B` for operands that both run along the inner size
/// (`a.col == 1`, `b.row == 1`: the rows of `A` and the columns of `B`
/// are contiguous), as dot products: a register tile of `tm` rows by `tn`
/// columns, four inner positions at a time, its sums in registers. For a
/// thin weight gradient (LeNet's 16 x 150 over 1,024 positions a slice),
/// where a GEMM kernel packs `B` for only 16 rows of `A` to meet it, and
/// the packing costs as much as the arithmetic.
fn dot_products(g: &Gemm, k: &mut Numbering) -> Stmt {
    debug_assert!(g.a.col == 1 && g.b.row == 1 && g.a.is_strided() && g.b.is_strided());
    // The largest tile whose sums, one row of `A` per row and one column
    // of `B` at a time fit in 14 of the 16 vector registers.
    let (m, n) = (g.m as usize, g.n as usize);
    let (tm, tn) = (1..=4)
        .flat_map(|tm| (1..=6).map(move |tn| (tm, tn)))
        .filter(|&(tm, tn)| m.is_multiple_of(tm) && n.is_multiple_of(tn) && tm * tn + tm <= 14)
        .max_by_key(|&(tm, tn)| (tm * tn, std::cmp::Reverse(tm + tn)))
        .expect("a tile of one");
    let (mb, nb, kk) = (k.var(), k.var(), k.var());
    let sums: Vec<Vec<Reg>> = (0..tm)
        .map(|_| (0..tn).map(|_| k.reg()).collect())
        .collect();
    let rows: Vec<Reg> = (0..tm).map(|_| k.reg()).collect();
    let column = k.reg();
    let row = |u: usize| v(mb).mul_c(tm as i64).plus(IExpr::c(u as i64));
    let col = |q: usize| v(nb).mul_c(tn as i64).plus(IExpr::c(q as i64));
    let c_at = |u: usize, q: usize| {
        g.c.offset
            .clone()
            .plus(row(u).mul_c(g.c.row))
            .plus(col(q).mul_c(g.c.col))
    };
    let mut step = Vec::new();
    for (u, &reg) in rows.iter().enumerate() {
        let at = g.a.offset.clone().plus(row(u).mul_c(g.a.row)).plus(v(kk));
        step.push(Stmt::Set {
            reg,
            value: SExpr::load(g.a.buf, at),
        });
    }
    for q in 0..tn {
        let at = g.b.offset.clone().plus(col(q).mul_c(g.b.col)).plus(v(kk));
        step.push(Stmt::Set {
            reg: column,
            value: SExpr::load(g.b.buf, at),
        });
        for (sum_row, &a) in sums.iter().zip(&rows) {
            let sum = sum_row[q];
            step.push(Stmt::Set {
                reg: sum,
                value: SExpr::Reg(sum).plus(SExpr::Reg(a).times(SExpr::Reg(column))),
            });
        }
    }
    let mut tile = Vec::new();
    for (u, sum_row) in sums.iter().enumerate() {
        for (q, &reg) in sum_row.iter().enumerate() {
            let value = if g.accumulate {
                SExpr::load(g.c.buf, c_at(u, q))
            } else {
                SExpr::c(0.0)
            };
            tile.push(Stmt::Set { reg, value });
        }
    }
    tile.push(for_(kk, g.k as usize, step));
    for (u, sum_row) in sums.iter().enumerate() {
        for (q, &reg) in sum_row.iter().enumerate() {
            tile.push(Stmt::Store {
                buf: g.c.buf,
                index: c_at(u, q),
                value: SExpr::Reg(reg),
            });
        }
    }
    nest(&[(mb, m / tm), (nb, n / tn)], tile)
}

/// The most slices of images a direct weight gradient sums separately
/// (for threads to share the work), each into partial sums of the weight.
const DIRECT_SLICES: usize = 16;

/// How many parts a product splits into: one per core (up to 16), each a
/// single-threaded product on the pool's threads. More parts balance
/// better but pack the shared operand once each: on 2 cores, 2 parts beat
/// 16 by 5-10 % on ResNet-18's training step (docs/perf.md). The schedule
/// is made for the machine it runs on, like the rest of a JIT's output.
fn product_parts() -> usize {
    crate::host::threads().min(16)
}

/// The most floats of patch gradients one thread's block holds
/// (`grad_input_blocked`): 256 KiB, a quarter of a Zen 4 core's L2.
const BLOCK_PATCH_FLOATS: usize = 1 << 16;

/// Below this many multiply-adds a product is not split.
const SPLIT_PRODUCT: i64 = 1 << 18;

/// One product as a kernel, split over threads along its larger side
/// into equal blocks (the side's largest divisor up to `product_parts()`):
/// the blocks write disjoint rows (or columns) of the result.
fn split_product(name: String, g: Gemm) -> Kernel {
    if g.m * g.n * g.k < SPLIT_PRODUCT {
        return Numbering::default().kernel(name, false, vec![Stmt::Gemm(Box::new(g))]);
    }
    // Blocks along a side with digits (a convolution's columns read in
    // place) must each span whole digits: they move by the outer stride.
    let parts = |side: i64, spans: [i64; 2]| {
        let span = spans[0].max(spans[1]);
        (1..=product_parts() as i64)
            .rev()
            .find(|d| side % d == 0 && (side / d) % span == 0)
            .unwrap_or(1)
    };
    let d = |r: &MatRef, rows: bool| digit_span(if rows { &r.digits.rows } else { &r.digits.cols });
    let by_rows = parts(g.m, [d(&g.a, true), d(&g.c, true)]);
    let by_cols = parts(g.n, [d(&g.b, false), d(&g.c, false)]);
    let along_rows = if g.m >= g.n {
        by_rows > 1 || by_cols == 1
    } else {
        by_cols == 1 && by_rows > 1
    };
    let parts = if along_rows { by_rows } else { by_cols };
    if parts == 1 {
        return Numbering::default().kernel(name, false, vec![Stmt::Gemm(Box::new(g))]);
    }
    let mut k = Numbering::default();
    let part = k.var();
    let block = if along_rows { g.m } else { g.n } / parts;
    let shift = |r: &MatRef, rows: bool| {
        let (stride, span) = if rows {
            (r.row, digit_span(&r.digits.rows))
        } else {
            (r.col, digit_span(&r.digits.cols))
        };
        MatRef {
            offset: r.offset.clone().plus(v(part).mul_c(block / span * stride)),
            ..r.clone()
        }
    };
    let piece = if along_rows {
        Gemm {
            m: block,
            a: shift(&g.a, true),
            c: shift(&g.c, true),
            ..g.clone()
        }
    } else {
        Gemm {
            n: block,
            b: shift(&g.b, false),
            c: shift(&g.c, false),
            ..g.clone()
        }
    };
    let body = for_(part, parts as usize, vec![Stmt::Gemm(Box::new(piece))]);
    k.kernel(name, true, vec![body])
}

/// `buf[0..len] = 0`.
fn fill_zero(name: String, buf: BufId, len: usize) -> Kernel {
    fill_range(name, buf, 0, len)
}

/// `buf[start..start + len] = 0`, split over threads.
fn fill_range(name: String, buf: BufId, start: i64, len: usize) -> Kernel {
    let mut k = Numbering::default();
    let e = k.var();
    let body = for_(
        e,
        len,
        vec![Stmt::Store {
            buf,
            index: v(e).add_c(start),
            value: SExpr::c(0.0),
        }],
    );
    k.kernel(name, len > 1, vec![body])
}

/// Loops `(var, extent)`, outermost first, around `body`.
pub fn nest(loops: &[(Var, usize)], body: Vec<Stmt>) -> Stmt {
    let mut body = body;
    for &(var, end) in loops.iter().rev() {
        body = vec![for_(var, end, body)];
    }
    body.pop().expect("at least one loop")
}

/// A weight gradient with at most this many elements splits its product's
/// inner size over threads.
const SPLIT_K_OUTPUT: usize = 1 << 14;

/// `out[e] (+)= sum over s of partial[s, e]`, split over elements.
fn sum_slices(
    name: String,
    partial: BufId,
    out: BufId,
    slices: usize,
    len: usize,
    accumulate: bool,
) -> Kernel {
    let mut k = Numbering::default();
    let (e, s) = (k.var(), k.var());
    let acc = k.reg();
    let init = if accumulate {
        SExpr::load(out, v(e))
    } else {
        SExpr::c(0.0)
    };
    let body = for_(
        e,
        len,
        vec![
            Stmt::Set {
                reg: acc,
                value: init,
            },
            for_(
                s,
                slices,
                vec![Stmt::Set {
                    reg: acc,
                    value: SExpr::Reg(acc)
                        .plus(SExpr::load(partial, v(s).mul_c(len as i64).plus(v(e)))),
                }],
            ),
            Stmt::Store {
                buf: out,
                index: v(e),
                value: SExpr::Reg(acc),
            },
        ],
    );
    k.kernel(name, true, vec![body])
}

impl Scratch {
    pub fn for_target(target: Target) -> Scratch {
        Scratch {
            target,
            ..Scratch::default()
        }
    }

    fn get(slot: &mut Option<BufId>, what: &str, len: usize, p: &mut Program) -> BufId {
        let id = *slot.get_or_insert_with(|| {
            p.buffers.push(Buffer {
                kind: BufferKind::Scratch(what.into()),
                len: 0,
                shape: vec![0],
            });
            BufId(p.buffers.len() as u32 - 1)
        });
        let b = &mut p.buffers[id.0 as usize];
        if b.len < len {
            b.len = len;
            b.shape = vec![len];
        }
        id
    }
}

fn scratch(p: &mut Program, what: String, len: usize) -> BufId {
    p.buffers.push(Buffer {
        kind: BufferKind::Scratch(what),
        len,
        shape: vec![len],
    });
    BufId(p.buffers.len() as u32 - 1)
}

/// Numbers the variables and registers of one kernel.
#[derive(Default)]
struct Numbering {
    vars: u32,
    regs: u32,
}

impl Numbering {
    fn var(&mut self) -> Var {
        self.vars += 1;
        Var(self.vars - 1)
    }

    fn reg(&mut self) -> Reg {
        self.regs += 1;
        Reg(self.regs - 1)
    }

    fn kernel(self, name: String, parallel: bool, body: Vec<Stmt>) -> Kernel {
        Kernel {
            name,
            parallel,
            body,
            vars: self.vars,
            regs: self.regs,
        }
    }
}

fn for_(var: Var, end: usize, body: Vec<Stmt>) -> Stmt {
    Stmt::For {
        var,
        start: IExpr::c(0),
        end: IExpr::c(end as i64),
        body,
    }
}

fn v(var: Var) -> IExpr {
    IExpr::var(var)
}

/// Schedules the contraction `id` as products, adding its kernels to `p`.
/// `own` is the node's buffer when its value is materialized (a product
/// in the node's layout is written there directly). Its operands have
/// buffers: the lowering never inlines a contraction's operand.
pub fn schedule(
    g: &Graph,
    id: NodeId,
    buffer_of: &[Option<BufId>],
    own: Option<BufId>,
    scratch_bufs: &mut Scratch,
    p: &mut Program,
) -> Product {
    let node = g.node(id);
    let args: Vec<BufId> = node
        .args
        .iter()
        .map(|a| buffer_of[a.0 as usize].expect("operands of contractions are materialized"))
        .collect();
    let shape = node.ty.shape.clone();
    let first = p.kernels.len();
    let name = |what: &str| format!("k{first}_{}_{what}", node.op.name());
    match &node.op {
        Op::MatMul { trans_a, trans_b } => {
            let a = g.shape(node.args[0]);
            let (m, n) = (shape[0] as i64, shape[1] as i64);
            let k = if *trans_a { a[0] } else { a[1] } as i64;
            let a_ref = if *trans_a { (1, m) } else { (k, 1) };
            let b_ref = if *trans_b { (1, k) } else { (n, 1) };
            let out = own.unwrap_or_else(|| scratch(p, format!("{id}"), (m * n) as usize));
            let gemm = Gemm {
                m,
                n,
                k,
                a: MatRef {
                    buf: args[0],
                    offset: IExpr::c(0),
                    row: a_ref.0,
                    col: a_ref.1,
                    digits: Digits::default(),
                },
                b: MatRef {
                    buf: args[1],
                    offset: IExpr::c(0),
                    row: b_ref.0,
                    col: b_ref.1,
                    digits: Digits::default(),
                },
                c: MatRef {
                    buf: out,
                    offset: IExpr::c(0),
                    row: n,
                    col: 1,
                    digits: Digits::default(),
                },
                accumulate: false,
            };
            p.kernels.push(split_product(name("gemm"), gemm));
            Product {
                buf: out,
                layout: Layout::Natural,
            }
        }
        Op::Conv2d(geom) => {
            let c = Conv::new(g.shape(node.args[0]), g.shape(node.args[1]), &shape, geom);
            if c.direct_forward_pays(scratch_bufs.target) {
                let out = own.unwrap_or_else(|| scratch(p, format!("{id}"), c.n * c.o * c.p));
                c.direct_forward(&name, (args[0], args[1]), out, scratch_bufs, p);
                return Product {
                    buf: out,
                    layout: Layout::Natural,
                };
            }
            let chunk = c.chunk();
            let len = c.rows() * chunk * c.p;
            // Patches of the whole batch that the weight gradient will
            // need again are written where they stay, when they fit.
            let keep = chunk == c.n
                && c.weight_gradient_reads_patches(scratch_bufs.target)
                && has_weight_gradient(g, node.args[0], geom, g.shape(node.args[1]))
                && scratch_bufs.kept_floats + len <= KEPT_PATCH_LIMIT;
            let in_place = !keep && scratch_bufs.target.patches_in_place;
            // The row-chunk form, and the panels where an image's
            // positions are whole panels, write the natural layout as fast
            // as the channel-major one, which was copied after (LeNet's
            // first layer: 3.5 MB, 0.5 ms a step; ResNet-18's stem and
            // first stage at 32x32).
            let panels = scratch_bufs.target.panel_columns;
            let whole_panels = panels > 0 && c.p.is_multiple_of(panels);
            let natural = c.n == 1 || (in_place && (c.forward_in_row_chunks() || whole_panels));
            let out = match own {
                Some(b) if natural => b,
                _ if natural => scratch(p, format!("{id}"), c.n * c.o * c.p),
                _ => scratch(p, format!("{id} channel-major"), c.n * c.o * c.p),
            };
            let product = Product {
                buf: out,
                layout: if natural {
                    Layout::Natural
                } else {
                    Layout::ChannelMajor {
                        n: c.n,
                        c: c.o,
                        p: c.p,
                    }
                },
            };
            if in_place {
                c.forward_in_place(&name, (args[0], args[1]), (out, natural), scratch_bufs, p);
                return product;
            }
            let col = if keep {
                let b = scratch(p, format!("{id} patches, kept"), len);
                let w = g.shape(node.args[1]).to_vec();
                scratch_bufs.kept.push((node.args[0], *geom, w, b));
                scratch_bufs.kept_floats += len;
                b
            } else {
                Scratch::get(&mut scratch_bufs.patches, "patches", len, p)
            };
            for q in 0..c.n / chunk {
                c.patches(&name, args[0], col, (q, chunk), scratch_bufs, p);
                p.kernels.push(c.per_group(name("gemm"), |gv, c| {
                    Gemm {
                        m: c.og as i64,
                        n: (chunk * c.p) as i64,
                        k: c.r as i64,
                        a: MatRef {
                            buf: args[1],
                            offset: gv.clone().mul_c((c.og * c.r) as i64),
                            row: c.r as i64,
                            col: 1,
                            digits: Digits::default(),
                        },
                        b: MatRef {
                            buf: col,
                            offset: gv.clone().mul_c((c.r * chunk * c.p) as i64),
                            row: (chunk * c.p) as i64,
                            col: 1,
                            digits: Digits::default(),
                        },
                        c: MatRef {
                            buf: out,
                            offset: gv
                                .mul_c((c.og * c.n * c.p) as i64)
                                .add_c((q * chunk * c.p) as i64),
                            row: (c.n * c.p) as i64,
                            col: 1,
                            digits: Digits::default(),
                        },
                        accumulate: false,
                    }
                }));
            }
            product
        }
        Op::Conv2dGradWeight { geom, .. } => {
            let c = Conv::new(g.shape(node.args[0]), &shape, g.shape(node.args[1]), geom);
            let out = own.unwrap_or_else(|| scratch(p, format!("{id}"), shape.iter().product()));
            if scratch_bufs.target.patches_in_place && c.grad_weight_as_dots() {
                c.grad_weight_in_place(&name, (args[0], args[1]), out, scratch_bufs, p);
                return Product {
                    buf: out,
                    layout: Layout::Natural,
                };
            }
            // (Its forward kept no patches: `weight_gradient_reads_patches`.)
            if scratch_bufs.target.patches_in_place && !c.direct() && c.grad_weight_over_view() {
                let shared = both_gradients_read(g, node.args[1]);
                c.grad_weight_from_view(&name, (args[0], args[1]), out, shared, scratch_bufs, p);
                return Product {
                    buf: out,
                    layout: Layout::Natural,
                };
            }
            if c.direct() {
                c.direct_grad_weight(&name, (args[0], args[1]), out, scratch_bufs, p);
                return Product {
                    buf: out,
                    layout: Layout::Natural,
                };
            }

            let shared = both_gradients_read(g, node.args[1]);
            let dy = c.channel_major(name("transpose"), args[1], shared, scratch_bufs, p);
            let chunk = c.chunk();
            let kept = scratch_bufs
                .kept
                .iter()
                .find(|(x, kept_geom, w, _)| *x == node.args[0] && kept_geom == geom && *w == shape)
                .map(|k| k.3);
            let col = kept.unwrap_or_else(|| {
                Scratch::get(
                    &mut scratch_bufs.patches,
                    "patches",
                    c.rows() * chunk * c.p,
                    p,
                )
            });
            // A small weight (LeNet's 6 x 25) is a product with a huge
            // inner size and nothing to split over threads: split the
            // inner size over the images instead, into partial sums.
            let slices = if c.o * c.r <= SPLIT_K_OUTPUT {
                largest_divisor(chunk, 16)
            } else {
                1
            };
            let partial = (slices > 1).then(|| {
                Scratch::get(
                    &mut scratch_bufs.partial,
                    "partial sums",
                    slices * c.o * c.r,
                    p,
                )
            });
            for q in 0..c.n / chunk {
                if kept.is_none() {
                    c.patches(&name, args[0], col, (q, chunk), scratch_bufs, p);
                }
                let k_all = chunk * c.p;
                let k_slice = k_all / slices;
                let product = |gv: IExpr, s: IExpr, c: &Conv, into: MatRef, acc: bool| Gemm {
                    m: c.og as i64,
                    n: c.r as i64,
                    k: k_slice as i64,
                    a: MatRef {
                        buf: dy,
                        offset: gv
                            .clone()
                            .mul_c((c.og * c.n * c.p) as i64)
                            .add_c((q * chunk * c.p) as i64)
                            .plus(s.clone().mul_c(k_slice as i64)),
                        row: (c.n * c.p) as i64,
                        col: 1,
                        digits: Digits::default(),
                    },
                    b: MatRef {
                        buf: col,
                        offset: gv
                            .clone()
                            .mul_c((c.r * k_all) as i64)
                            .plus(s.mul_c(k_slice as i64)),
                        row: 1,
                        col: k_all as i64,
                        digits: Digits::default(),
                    },
                    c: MatRef {
                        offset: into.offset.plus(gv.mul_c((c.og * c.r) as i64)),
                        ..into
                    },
                    accumulate: acc,
                };
                let into_weight = MatRef {
                    buf: out,
                    offset: IExpr::c(0),
                    row: c.r as i64,
                    col: 1,
                    digits: Digits::default(),
                };
                match partial {
                    None if c.og <= DOT_ROWS => {
                        let mut k = Numbering::default();
                        let gv = k.var();
                        let product = product(v(gv), IExpr::c(0), &c, into_weight, q > 0);
                        let body = for_(gv, c.groups, vec![dot_products(&product, &mut k)]);
                        p.kernels
                            .push(k.kernel(name("dot"), c.groups > 1, vec![body]));
                    }
                    None => p.kernels.push(c.per_group(name("gemm"), |gv, c| {
                        product(gv, IExpr::c(0), c, into_weight.clone(), q > 0)
                    })),
                    Some(partial) => {
                        let mut k = Numbering::default();
                        let (sv, gv) = (k.var(), k.var());
                        let into = MatRef {
                            buf: partial,
                            offset: v(sv).mul_c((c.o * c.r) as i64),
                            row: c.r as i64,
                            col: 1,
                            digits: Digits::default(),
                        };
                        let product = product(v(gv), v(sv), &c, into, false);
                        let (stmt, kind) = if c.og <= DOT_ROWS {
                            (dot_products(&product, &mut k), "dot")
                        } else {
                            (Stmt::Gemm(Box::new(product)), "gemm")
                        };
                        let body = for_(sv, slices, vec![for_(gv, c.groups, vec![stmt])]);
                        p.kernels.push(k.kernel(name(kind), true, vec![body]));
                        p.kernels.push(sum_slices(
                            name("sum"),
                            partial,
                            out,
                            slices,
                            c.o * c.r,
                            q > 0,
                        ));
                    }
                }
            }
            Product {
                buf: out,
                layout: Layout::Natural,
            }
        }
        Op::Conv2dGradInput { geom, .. } => {
            let c = Conv::new(&shape, g.shape(node.args[1]), g.shape(node.args[0]), geom);
            let out = own.unwrap_or_else(|| scratch(p, format!("{id}"), shape.iter().product()));
            if scratch_bufs.target.patches_in_place && c.grad_input_is_convolution() {
                c.grad_input_in_place(&name, (args[0], args[1]), out, scratch_bufs, p);
                return Product {
                    buf: out,
                    layout: Layout::Natural,
                };
            }
            let shared = both_gradients_read(g, node.args[0]);
            let dy = c.channel_major(name("transpose"), args[0], shared, scratch_bufs, p);
            if c.og <= DOT_ROWS {
                c.grad_input_blocked(&name, (dy, args[1]), out, scratch_bufs, p);
                return Product {
                    buf: out,
                    layout: Layout::Natural,
                };
            }
            let chunk = c.chunk();
            let dcol = Scratch::get(
                &mut scratch_bufs.patches,
                "patches",
                c.rows() * chunk * c.p,
                p,
            );
            for q in 0..c.n / chunk {
                p.kernels.push(c.per_group(name("gemm"), |gv, c| {
                    Gemm {
                        m: c.r as i64,
                        n: (chunk * c.p) as i64,
                        k: c.og as i64,
                        a: MatRef {
                            buf: args[1],
                            offset: gv.clone().mul_c((c.og * c.r) as i64),
                            row: 1,
                            col: c.r as i64,
                            digits: Digits::default(),
                        },
                        b: MatRef {
                            buf: dy,
                            offset: gv
                                .clone()
                                .mul_c((c.og * c.n * c.p) as i64)
                                .add_c((q * chunk * c.p) as i64),
                            row: (c.n * c.p) as i64,
                            col: 1,
                            digits: Digits::default(),
                        },
                        c: MatRef {
                            buf: dcol,
                            offset: gv.mul_c((c.r * chunk * c.p) as i64),
                            row: (chunk * c.p) as i64,
                            col: 1,
                            digits: Digits::default(),
                        },
                        accumulate: false,
                    }
                }));
                c.unpatch(&name, dcol, out, (q, chunk), scratch_bufs, p);
            }
            Product {
                buf: out,
                layout: Layout::Natural,
            }
        }
        op => unreachable!("`{}` is not a contraction", op.name()),
    }
}

/// The sizes of a convolution, from its input, weight and output shapes.
#[derive(Clone, Copy)]
struct Conv {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    /// Output positions per image.
    p: usize,
    groups: usize,
    og: usize,
    /// Patch rows per group: `cg * kh * kw`.
    r: usize,
    geom: ConvGeom,
}

impl Conv {
    fn new(x: &[usize], w: &[usize], y: &[usize], geom: &ConvGeom) -> Conv {
        Conv {
            n: x[0],
            c: x[1],
            h: x[2],
            w: x[3],
            o: w[0],
            kh: w[2],
            kw: w[3],
            ho: y[2],
            wo: y[3],
            p: y[2] * y[3],
            groups: geom.groups,
            og: w[0] / geom.groups,
            r: w[1] * w[2] * w[3],
            geom: *geom,
        }
    }

    /// Patch rows of all groups.
    fn rows(&self) -> usize {
        self.c * self.kh * self.kw
    }

    /// Images per chunk: the largest divisor of the batch whose patches
    /// fit the limit (at least one image).
    fn chunk(&self) -> usize {
        let per_image = self.rows() * self.p;
        (1..=self.n)
            .rev()
            .find(|d| self.n.is_multiple_of(*d) && d * per_image <= PATCH_LIMIT)
            .unwrap_or(1)
    }

    /// A kernel with one product per group (a loop over groups when there
    /// are several).
    ///
    /// The groups' products write disjoint parts of their result, so they
    /// split over threads; a single product splits its larger side.
    fn per_group(&self, name: String, gemm: impl Fn(IExpr, &Conv) -> Gemm) -> Kernel {
        if self.groups == 1 {
            return split_product(name, gemm(IExpr::c(0), self));
        }
        let mut k = Numbering::default();
        let gv = k.var();
        let body = vec![for_(
            gv,
            self.groups,
            vec![Stmt::Gemm(Box::new(gemm(v(gv), self)))],
        )];
        k.kernel(name, true, body)
    }

    /// Whether the convolution is done directly rather than as products:
    /// when each output sums few inputs (a first layer on one to three
    /// channels), the products are too thin for a GEMM kernel and the
    /// patches cost more than the arithmetic.
    fn direct(&self) -> bool {
        self.r <= DIRECT_ROWS
    }

    /// Whether the forward convolution is done directly: as `direct`, and
    /// also when the product would have few rows (at most `DOT_ROWS`
    /// output channels per group, LeNet's second layer) and would need an
    /// im2col copy: a direct tile of 8 channels reads the input in place.
    /// Where products read the patches in place (AVX-512), the product
    /// wins (LeNet's second layer 1.03 -> 0.86 ms), and with output rows
    /// of whole chunks of eight the cpu backend's row-chunk form (256-bit
    /// vectors, all rows in registers) beats the direct tile for a thin
    /// first layer too (docs/perf.md).
    fn direct_forward_pays(&self, target: Target) -> bool {
        if target.patches_in_place {
            self.direct() && !self.forward_in_row_chunks()
        } else {
            self.direct() || self.og <= DOT_ROWS
        }
    }

    /// Whether the forward product's output rows fall into chunks of
    /// eight consecutive input and output positions (stride 1, a
    /// multiple of eight wide) with few enough output channels for the
    /// row-chunk form (`gemm::rows`).
    fn forward_in_row_chunks(&self) -> bool {
        self.og <= DOT_ROWS && self.geom.stride[1] == 1 && self.wo.is_multiple_of(8)
    }

    /// Whether the forward's patches are worth keeping for the weight
    /// gradient: not when it reads the input in place (as dot products,
    /// or as panels over the input's view).
    fn weight_gradient_reads_patches(&self, target: Target) -> bool {
        !(target.patches_in_place && (self.grad_weight_as_dots() || self.grad_weight_over_view()))
    }

    /// Whether the weight gradient reads the input in place as the `B` of
    /// a panels product (`grad_weight_from_view`): where the output
    /// positions run along input rows (stride 1) at least four wide, so
    /// that packing `B` transposes runs of them; the forward then reads
    /// its patches in place too, and no im2col is written.
    fn grad_weight_over_view(&self) -> bool {
        self.geom.stride[1] == 1 && self.wo >= 4
    }

    /// The input, padded when the convolution pads (a zeroed copy), as
    /// `(buffer, height, width)` planes of all `n` images.
    fn padded_input(
        &self,
        name: &dyn Fn(&str) -> String,
        x: BufId,
        scratch: &mut Scratch,
        p: &mut Program,
    ) -> (BufId, usize, usize) {
        if !self.padded() {
            return (x, self.h, self.w);
        }
        let (hp, wp) = self.padded_size();
        let at = (self.geom.padding[0], self.geom.padding[2]);
        let padded = self.zero_padded(name, (x, self.c, self.h, self.w), (hp, wp, at), scratch, p);
        (padded, hp, wp)
    }

    /// A zeroed copy of the `n` images of `(buffer, channels, height,
    /// width)` in the shared padded buffer, with planes of `(height,
    /// width, (top, left))`, the copy at `(top, left)` in each.
    fn zero_padded(
        &self,
        name: &dyn Fn(&str) -> String,
        (x, channels, h, w): (BufId, usize, usize, usize),
        (hp, wp, (top, left)): (usize, usize, (usize, usize)),
        scratch: &mut Scratch,
        p: &mut Program,
    ) -> BufId {
        let len = self.n * channels * hp * wp;
        let padded = Scratch::get(&mut scratch.padded, "padded", len, p);
        p.kernels.push(fill_zero(name("pad_zero"), padded, len));
        // `copy_plane` copies `c` channels.
        let planes = Conv {
            c: channels,
            ..*self
        };
        p.kernels.push(planes.copy_plane(
            name("pad"),
            (x, 0, h, w, 0, 0),
            (padded, 0, hp, wp, top, left),
            self.n,
        ));
        padded
    }

    /// The forward product over the patches read in place from the
    /// (padded) input, for all images at once: per group, `W_g [og x R]`
    /// times the view whose row `(c, i, j)` and column `(image, oy, ox)`
    /// is the input element that tap reads; the result channel-major
    /// (`[O, N * P]`), as from the im2col path, or in the natural layout
    /// (`natural`).
    fn forward_in_place(
        &self,
        name: &dyn Fn(&str) -> String,
        (x, w): (BufId, BufId),
        (out, natural): (BufId, bool),
        scratch: &mut Scratch,
        p: &mut Program,
    ) {
        let (src, hp, wp) = self.padded_input(name, x, scratch, p);
        let plane = (hp * wp) as i64;
        p.kernels.push(self.per_group(name("gemm"), |gv, c| Gemm {
            m: c.og as i64,
            n: (c.n * c.p) as i64,
            k: c.r as i64,
            a: MatRef::strided(w, gv.clone().mul_c((c.og * c.r) as i64), c.r as i64, 1),
            b: c.input_view(
                src,
                gv.clone().mul_c((c.r / (c.kh * c.kw)) as i64 * plane),
                (plane, wp),
                Patches::TapsByPositions,
            ),
            c: if natural {
                // Rows the channels, columns `(image, position)`.
                MatRef {
                    buf: out,
                    offset: gv.mul_c((c.og * c.p) as i64),
                    row: c.p as i64,
                    col: (c.o * c.p) as i64,
                    digits: Digits {
                        rows: vec![],
                        cols: vec![(c.p as i64, 1)],
                    },
                }
            } else {
                MatRef::strided(
                    out,
                    gv.mul_c((c.og * c.n * c.p) as i64),
                    (c.n * c.p) as i64,
                    1,
                )
            },
            accumulate: false,
        }));
    }

    /// Whether the input gradient is itself a convolution of `dy`: at
    /// stride 1 (one group), `dx` is `dy` padded by what the taps reach
    /// beyond the forward padding, convolved with the weight flipped and
    /// transposed. The padding must not exceed what the taps reach (no
    /// cropping), the input must have no more positions than the output
    /// (LeNet's 5x5 taps without padding, 10x10 from 14x14, would double
    /// the multiply-adds: 1.4 -> 2.5 ms), and the input enough channels
    /// that packing `dy` pays (each packed element serves one per channel).
    fn grad_input_is_convolution(&self) -> bool {
        let g = &self.geom;
        let reach = [(self.kh - 1) * g.dilation[0], (self.kw - 1) * g.dilation[1]];
        g.stride == [1, 1]
            && self.groups == 1
            && g.padding[0].max(g.padding[1]) <= reach[0]
            && g.padding[2].max(g.padding[3]) <= reach[1]
            && self.h * self.w <= self.ho * self.wo
            && self.c >= 16
    }

    /// `dx[n, c, y, x] = sum over (o, i, j) of w[o, c, i, j] *
    /// dyp[n, o, y + (kh-1-i) * dh, x + (kw-1-j) * dw]`: one product over
    /// `dy` padded (`dyp`) and the weight, both read in place, written
    /// straight into `dx` (columns `(image, y * x)`). It replaces the
    /// product into patch gradients and their col2im scatter.
    fn grad_input_in_place(
        &self,
        name: &dyn Fn(&str) -> String,
        (dy, w): (BufId, BufId),
        dx: BufId,
        scratch: &mut Scratch,
        p: &mut Program,
    ) {
        let g = &self.geom;
        let (reach_y, reach_x) = ((self.kh - 1) * g.dilation[0], (self.kw - 1) * g.dilation[1]);
        let (top, left) = (reach_y - g.padding[0], reach_x - g.padding[2]);
        let (hq, wq) = (self.h + reach_y, self.w + reach_x);
        // The padded dy: a zeroed copy, unless nothing pads.
        let dyp = if (hq, wq) == (self.ho, self.wo) {
            dy
        } else {
            let source = (dy, self.o, self.ho, self.wo);
            self.zero_padded(name, source, (hq, wq, (top, left)), scratch, p)
        };
        let taps = self.kh * self.kw;
        let plane = (hq * wq) as i64;
        let positions = (self.h * self.w) as i64;
        p.kernels.push(split_product(
            name("gemm"),
            Gemm {
                m: self.c as i64,
                n: self.n as i64 * positions,
                k: (self.o * taps) as i64,
                // The weight transposed, read in place: rows c, columns
                // (o, i, j).
                a: MatRef {
                    buf: w,
                    offset: IExpr::c(0),
                    row: taps as i64,
                    col: (self.c * taps) as i64,
                    digits: Digits {
                        rows: Vec::new(),
                        cols: vec![(self.kh as i64, self.kw as i64), (self.kw as i64, 1)],
                    },
                },
                // Tap (i, j) of the weight meets dyp at (kh-1-i, kw-1-j):
                // the flip is in the view's row digits, which step back.
                b: MatRef {
                    buf: dyp,
                    offset: IExpr::c((reach_y * wq + reach_x) as i64),
                    row: plane,
                    col: self.o as i64 * plane,
                    digits: Digits {
                        rows: vec![
                            (self.kh as i64, -((g.dilation[0] * wq) as i64)),
                            (self.kw as i64, -(g.dilation[1] as i64)),
                        ],
                        cols: vec![(self.h as i64, wq as i64), (self.w as i64, 1)],
                    },
                },
                c: MatRef {
                    buf: dx,
                    offset: IExpr::c(0),
                    row: positions,
                    col: self.c as i64 * positions,
                    digits: Digits {
                        rows: Vec::new(),
                        cols: vec![(positions, 1)],
                    },
                },
                accumulate: false,
            },
        ));
    }

    /// The input position tap `(i, j)` of output `(oy, ox)` reads in the
    /// padded planes of image `n`, channel `ch`.
    fn padded_at(&self, plane: (usize, usize), n: IExpr, ch: IExpr, taps: [IExpr; 4]) -> IExpr {
        let g = &self.geom;
        let [oy, ox, i, j] = taps;
        let iy = oy
            .mul_c(g.stride[0] as i64)
            .plus(i.mul_c(g.dilation[0] as i64));
        let ix = ox
            .mul_c(g.stride[1] as i64)
            .plus(j.mul_c(g.dilation[1] as i64));
        n.mul_c((self.c * plane.0 * plane.1) as i64)
            .plus(ch.mul_c((plane.0 * plane.1) as i64))
            .plus(iy.mul_c(plane.1 as i64))
            .plus(ix)
    }

    /// The loops over every patch element of a chunk, in the order the
    /// patches buffer is laid out, around `body`.
    fn patch_loops(&self, chunk: usize, [t, c, i, j, oy, ox]: [Var; 6], body: Stmt) -> Stmt {
        nest(
            &[
                (t, chunk),
                (c, self.c),
                (i, self.kh),
                (j, self.kw),
                (oy, self.ho),
                (ox, self.wo),
            ],
            vec![body],
        )
    }

    /// The input gradient of a thin convolution (at most `DOT_ROWS`
    /// output channels per group) as products into patch gradients and
    /// col2im, a block of images at a time: each thread takes a part of
    /// the images and, per block, multiplies into its own patch-gradient
    /// buffer (sized to stay in L2) and scatters it into `dx` at once.
    /// The product's inner size is the few output channels, so the whole
    /// batch's patch gradients went through memory twice (LeNet's second
    /// layer: 9.8 MB written by the product, read by col2im).
    fn grad_input_blocked(
        &self,
        name: &dyn Fn(&str) -> String,
        (dy, w): (BufId, BufId),
        dx: BufId,
        scratch: &mut Scratch,
        p: &mut Program,
    ) {
        let (target, (rows, cols)) = self.scatter_target(dx, self.n, scratch, p);
        let parts = largest_divisor(self.n, product_parts());
        let per_part = self.n / parts;
        let per_image = self.rows() * self.p;
        let block = (1..=per_part)
            .rev()
            .find(|b| per_part.is_multiple_of(*b) && b * per_image <= BLOCK_PATCH_FLOATS)
            .unwrap_or(1);
        let len = block * per_image;
        let dcol = Scratch::get(&mut scratch.patches, "patches", parts * len, p);
        let mut k = Numbering::default();
        let (part, b, gv) = (k.var(), k.var(), k.var());
        let (t, c, i, j, oy, ox) = (k.var(), k.var(), k.var(), k.var(), k.var(), k.var());
        let first = v(part)
            .mul_c(per_part as i64)
            .plus(v(b).mul_c(block as i64));
        let region = v(part).mul_c(len as i64);
        let cols_all = (block * self.p) as i64;
        let product = Gemm {
            m: self.r as i64,
            n: cols_all,
            k: self.og as i64,
            a: MatRef::strided(w, v(gv).mul_c((self.og * self.r) as i64), 1, self.r as i64),
            b: MatRef::strided(
                dy,
                v(gv)
                    .mul_c((self.og * self.n * self.p) as i64)
                    .plus(first.clone().mul_c(self.p as i64)),
                (self.n * self.p) as i64,
                1,
            ),
            c: MatRef::strided(
                dcol,
                region.clone().plus(v(gv).mul_c(self.r as i64 * cols_all)),
                cols_all,
                1,
            ),
            accumulate: false,
        };
        let plane = (self.c * rows * cols) as i64;
        let zero = {
            let e = k.var();
            for_(
                e,
                block * self.c * rows * cols,
                vec![Stmt::Store {
                    buf: target,
                    index: first.clone().mul_c(plane).plus(v(e)),
                    value: SExpr::c(0.0),
                }],
            )
        };
        let at = self
            .padded_at((rows, cols), v(t), v(c), [v(oy), v(ox), v(i), v(j)])
            .plus(first.mul_c(plane));
        let from = region.plus(self.patch_at(block, [t, c, i, j, oy, ox]));
        let scatter = self.patch_loops(
            block,
            [t, c, i, j, oy, ox],
            Stmt::Store {
                buf: target,
                index: at.clone(),
                value: SExpr::load(target, at).plus(SExpr::load(dcol, from)),
            },
        );
        let body = for_(
            part,
            parts,
            vec![for_(
                b,
                per_part / block,
                vec![
                    for_(gv, self.groups, vec![Stmt::Gemm(Box::new(product))]),
                    zero,
                    scatter,
                ],
            )],
        );
        p.kernels
            .push(k.kernel(name("blocks"), parts > 1, vec![body]));
        if self.padded() {
            p.kernels
                .push(self.crop_scattered(name, target, dx, (0, self.n)));
        }
    }

    /// The element of the patches buffer (rows `(c, i, j)`, columns
    /// `(t, oy, ox)` for the `chunk` images of a chunk) for these loop
    /// variables.
    fn patch_at(&self, chunk: usize, [t, c, i, j, oy, ox]: [Var; 6]) -> IExpr {
        let row = v(c)
            .mul_c((self.kh * self.kw) as i64)
            .plus(v(i).mul_c(self.kw as i64))
            .plus(v(j));
        row.mul_c((chunk * self.p) as i64)
            .plus(v(t).mul_c(self.p as i64))
            .plus(v(oy).mul_c(self.wo as i64))
            .plus(v(ox))
    }

    /// `y[n, o, oy, ox]`: the sum over channels and taps of `w * x`, from
    /// the padded input (no guards), four output columns at a time; split
    /// over images. A register tile of output channels shares each load
    /// of the input: `tile` sums run side by side, so that the chains of
    /// dependent multiply-adds overlap instead of waiting on each other
    /// (one chain of 25 runs at a quarter of the FMA units' rate).
    fn direct_forward(
        &self,
        name: &dyn Fn(&str) -> String,
        (x, w): (BufId, BufId),
        y: BufId,
        scratch: &mut Scratch,
        p: &mut Program,
    ) {
        let (xp, hp, wp) = self.padded_input(name, x, scratch, p);
        let cg = self.c / self.groups;
        let tile = register_tile(self.og, DIRECT_FORWARD_TILE);
        let mut k = Numbering::default();
        let (n, b, oy, ox, c, i, j) = (
            k.var(),
            k.var(),
            k.var(),
            k.var(),
            k.var(),
            k.var(),
            k.var(),
        );
        let sums: Vec<Reg> = (0..tile).map(|_| k.reg()).collect();
        let input = k.reg();
        // Output channel `u` of block `b`; the block lies in one group.
        let o = |u: usize| v(b).mul_c(tile as i64).plus(IExpr::Const(u as i64));
        let channel = v(b)
            .div_c((self.og / tile) as i64)
            .mul_c(cg as i64)
            .plus(v(c));
        let at = self.padded_at((hp, wp), v(n), channel, [v(oy), v(ox), v(i), v(j)]);
        let mut taps = vec![Stmt::Set {
            reg: input,
            value: SExpr::load(xp, at),
        }];
        for (u, &sum) in sums.iter().enumerate() {
            let weight = self.weight_at(o(u), v(c), v(i), v(j));
            taps.push(Stmt::Set {
                reg: sum,
                value: SExpr::Reg(sum).plus(SExpr::load(w, weight).times(SExpr::Reg(input))),
            });
        }
        let mut inner: Vec<Stmt> = sums
            .iter()
            .map(|&reg| Stmt::Set {
                reg,
                value: SExpr::c(0.0),
            })
            .collect();
        inner.push(nest(&[(c, cg), (i, self.kh), (j, self.kw)], taps));
        for (u, &sum) in sums.iter().enumerate() {
            let out = v(n)
                .mul_c((self.o * self.p) as i64)
                .plus(o(u).mul_c(self.p as i64))
                .plus(v(oy).mul_c(self.wo as i64))
                .plus(v(ox));
            inner.push(Stmt::Store {
                buf: y,
                index: out,
                value: SExpr::Reg(sum),
            });
        }
        let body = nest(
            &[
                (n, self.n),
                (b, self.o / tile),
                (oy, self.ho),
                (ox, self.wo),
            ],
            inner,
        );
        p.kernels
            .push(k.kernel(name("direct"), self.n > 1, vec![body]));
    }

    /// `dw[o, c, i, j]`: the sum over images and output positions of
    /// `dy * x`, read in place (the padded input, no patches), four output
    /// columns at a time. A thin layer's weight (LeNet's 6 x 25) has too
    /// few elements to split over threads, so the images are split into
    /// slices with partial sums, added up after. A register tile of
    /// output channels by a row of taps (2 x 5 for LeNet) shares the loads
    /// of `dy` and `x` between its sums, whose independent chains keep the
    /// FMA units busy.
    fn direct_grad_weight(
        &self,
        name: &dyn Fn(&str) -> String,
        (x, dy): (BufId, BufId),
        dw: BufId,
        scratch: &mut Scratch,
        p: &mut Program,
    ) {
        let (xp, hp, wp) = self.padded_input(name, x, scratch, p);
        let cg = self.c / self.groups;
        let (slices, into) = self.weight_slices(dw, scratch, p);
        let per_slice = self.n / slices;
        let len = self.o * self.r;
        // The tile: a whole row of taps when it is short, and as many
        // output channels as fit beside it.
        let taps = if self.kw <= DIRECT_GRAD_TILE / 2 {
            self.kw
        } else {
            1
        };
        let tile = register_tile(self.og, DIRECT_GRAD_TILE / taps);
        let mut k = Numbering::default();
        let (s, b, c, i, jb, t, oy, ox) = (
            k.var(),
            k.var(),
            k.var(),
            k.var(),
            k.var(),
            k.var(),
            k.var(),
            k.var(),
        );
        let sums: Vec<Vec<Reg>> = (0..tile)
            .map(|_| (0..taps).map(|_| k.reg()).collect())
            .collect();
        let grads: Vec<Reg> = (0..tile).map(|_| k.reg()).collect();
        let input = k.reg();
        let n = v(s).mul_c(per_slice as i64).plus(v(t));
        let o = |u: usize| v(b).mul_c(tile as i64).plus(IExpr::Const(u as i64));
        let channel = v(b)
            .div_c((self.og / tile) as i64)
            .mul_c(cg as i64)
            .plus(v(c));
        let j = |q: usize| v(jb).mul_c(taps as i64).plus(IExpr::Const(q as i64));
        let mut step = Vec::new();
        for (u, &grad) in grads.iter().enumerate() {
            let at = n
                .clone()
                .mul_c((self.o * self.p) as i64)
                .plus(o(u).mul_c(self.p as i64))
                .plus(v(oy).mul_c(self.wo as i64))
                .plus(v(ox));
            step.push(Stmt::Set {
                reg: grad,
                value: SExpr::load(dy, at),
            });
        }
        for q in 0..taps {
            let at = self.padded_at(
                (hp, wp),
                n.clone(),
                channel.clone(),
                [v(oy), v(ox), v(i), j(q)],
            );
            step.push(Stmt::Set {
                reg: input,
                value: SExpr::load(xp, at),
            });
            for (row, &grad) in sums.iter().zip(&grads) {
                let sum = row[q];
                step.push(Stmt::Set {
                    reg: sum,
                    value: SExpr::Reg(sum).plus(SExpr::Reg(grad).times(SExpr::Reg(input))),
                });
            }
        }
        let mut inner: Vec<Stmt> = sums
            .iter()
            .flatten()
            .map(|&reg| Stmt::Set {
                reg,
                value: SExpr::c(0.0),
            })
            .collect();
        inner.push(nest(&[(t, per_slice), (oy, self.ho), (ox, self.wo)], step));
        for (u, row) in sums.iter().enumerate() {
            for (q, &sum) in row.iter().enumerate() {
                let element = self.weight_at(o(u), v(c), v(i), j(q));
                inner.push(Stmt::Store {
                    buf: into,
                    index: v(s).mul_c(len as i64).plus(element),
                    value: SExpr::Reg(sum),
                });
            }
        }
        let body = nest(
            &[
                (s, slices),
                (b, self.o / tile),
                (c, cg),
                (i, self.kh),
                (jb, self.kw / taps),
            ],
            inner,
        );
        let parallel = slices > 1 || self.o / tile > 1;
        p.kernels
            .push(k.kernel(name("direct"), parallel, vec![body]));
        if slices > 1 {
            p.kernels
                .push(sum_slices(name("sum"), into, dw, slices, len, false));
        }
    }

    /// The digits of a tap `(i, j)` in an input plane `wp` wide (a view
    /// of the patches in place; the channel is the outer index).
    fn tap_digits(&self, wp: usize) -> Vec<(i64, i64)> {
        let g = &self.geom;
        vec![
            (self.kh as i64, (g.dilation[0] * wp) as i64),
            (self.kw as i64, g.dilation[1] as i64),
        ]
    }

    /// A convolution's patches read in place from its (padded) input
    /// `src`, planes `plane` floats apart and `wp` wide, from `offset`
    /// (the group's first channel, a slice's first image): rows the taps
    /// `(c, i, j)` and columns the output positions `(image, oy, ox)` for
    /// a forward product, or the other way round for a weight gradient's.
    fn input_view(
        &self,
        src: BufId,
        offset: IExpr,
        (plane, wp): (i64, usize),
        how: Patches,
    ) -> MatRef {
        let (taps, positions) = (self.tap_digits(wp), self.position_digits(wp));
        let (channel, image) = (plane, self.c as i64 * plane);
        let (row, col, digits) = match how {
            Patches::TapsByPositions => (
                channel,
                image,
                Digits {
                    rows: taps,
                    cols: positions,
                },
            ),
            Patches::PositionsByTaps => (
                image,
                channel,
                Digits {
                    rows: positions,
                    cols: taps,
                },
            ),
        };
        MatRef {
            buf: src,
            offset,
            row,
            col,
            digits,
        }
    }

    /// The digits of an output position `(oy, ox)` in an input plane `wp`
    /// wide (the image is the outer index).
    fn position_digits(&self, wp: usize) -> Vec<(i64, i64)> {
        let g = &self.geom;
        vec![
            (self.ho as i64, (g.stride[0] * wp) as i64),
            (self.wo as i64, g.stride[1] as i64),
        ]
    }

    /// Whether the weight gradient is dot products over the patches read
    /// in place (`grad_weight_in_place`): a thin gradient (at most
    /// `DOT_ROWS` output channels per group) whose output rows are runs
    /// of at least four consecutive input elements (stride 1), with at
    /// most 1,024 patch rows. These are the shapes for which the cpu
    /// backend's products over views take their dot-product form
    /// (`gemm::dot_products_pay`), which packs a block of both operands
    /// along the output positions in cache instead of an im2col pass
    /// through memory.
    fn grad_weight_as_dots(&self) -> bool {
        self.og <= DOT_ROWS && self.geom.stride[1] == 1 && self.wo >= 4 && self.r <= 1024
    }

    /// `dw_g[o, (c, i, j)] = sum over (image, oy, ox) of dy[o, (image, oy,
    /// ox)] * x[image, c, oy * sh + i * dh, ox * sw + j * dw]`: per slice
    /// of images and group, one product of `dy` and the (padded) input,
    /// both read in place (rows the output positions, columns
    /// the taps), into partial sums per slice that a last kernel adds.
    fn grad_weight_in_place(
        &self,
        name: &dyn Fn(&str) -> String,
        (x, dy): (BufId, BufId),
        dw: BufId,
        scratch: &mut Scratch,
        p: &mut Program,
    ) {
        let (src, hp, wp) = self.padded_input(name, x, scratch, p);
        let plane = (hp * wp) as i64;
        let cg = self.c / self.groups;
        let (slices, into) = self.weight_slices(dw, scratch, p);
        let per_slice = self.n / slices;
        let len = self.o * self.r;
        let mut k = Numbering::default();
        let (sv, gv) = (k.var(), k.var());
        let positions = (per_slice * self.p) as i64;
        let product = Gemm {
            m: self.og as i64,
            n: self.r as i64,
            k: positions,
            // `dy` in its natural layout: rows the channels, columns
            // `(image, position)`.
            a: MatRef {
                buf: dy,
                offset: v(gv)
                    .mul_c((self.og * self.p) as i64)
                    .plus(v(sv).mul_c((per_slice * self.o * self.p) as i64)),
                row: self.p as i64,
                col: (self.o * self.p) as i64,
                digits: Digits {
                    rows: vec![],
                    cols: vec![(self.p as i64, 1)],
                },
            },
            b: self.input_view(
                src,
                v(gv)
                    .mul_c(cg as i64 * plane)
                    .plus(v(sv).mul_c(per_slice as i64 * self.c as i64 * plane)),
                (plane, wp),
                Patches::PositionsByTaps,
            ),
            c: MatRef::strided(
                into,
                v(sv)
                    .mul_c(if slices > 1 { len as i64 } else { 0 })
                    .plus(v(gv).mul_c((self.og * self.r) as i64)),
                self.r as i64,
                1,
            ),
            accumulate: false,
        };
        let body = for_(
            sv,
            slices,
            vec![for_(gv, self.groups, vec![Stmt::Gemm(Box::new(product))])],
        );
        let parallel = slices > 1 || self.groups > 1;
        p.kernels.push(k.kernel(name("dots"), parallel, vec![body]));
        if slices > 1 {
            p.kernels
                .push(sum_slices(name("sum"), into, dw, slices, len, false));
        }
    }

    /// `dw_g = dy_g * patches^T` as one product (split over the weight's
    /// columns), `dy` channel-major and the patches read in place from
    /// the (padded) input: rows the output positions, columns the taps.
    /// The panels' packing transposes `B` run by run
    /// (`gemm::transpose::pack_b_transposed`), so no im2col is written.
    fn grad_weight_from_view(
        &self,
        name: &dyn Fn(&str) -> String,
        (x, dy): (BufId, BufId),
        dw: BufId,
        shared: bool,
        scratch: &mut Scratch,
        p: &mut Program,
    ) {
        let dy = self.channel_major(name("transpose"), dy, shared, scratch, p);
        let (src, hp, wp) = self.padded_input(name, x, scratch, p);
        let plane = (hp * wp) as i64;
        let cg = self.c / self.groups;
        p.kernels.push(self.per_group(name("gemm"), |gv, c| Gemm {
            m: c.og as i64,
            n: c.r as i64,
            k: (c.n * c.p) as i64,
            a: MatRef::strided(
                dy,
                gv.clone().mul_c((c.og * c.n * c.p) as i64),
                (c.n * c.p) as i64,
                1,
            ),
            b: c.input_view(
                src,
                gv.clone().mul_c(cg as i64 * plane),
                (plane, wp),
                Patches::PositionsByTaps,
            ),
            c: MatRef::strided(dw, gv.mul_c((c.og * c.r) as i64), c.r as i64, 1),
            accumulate: false,
        }));
    }

    /// The slices of images whose weight gradients a direct or in-place
    /// weight gradient sums separately (for threads to share the work),
    /// and where their partial sums go: `dw` itself for one slice.
    fn weight_slices(&self, dw: BufId, scratch: &mut Scratch, p: &mut Program) -> (usize, BufId) {
        let slices = largest_divisor(self.n, DIRECT_SLICES);
        let len = self.o * self.r;
        let into = if slices > 1 {
            Scratch::get(&mut scratch.partial, "partial sums", slices * len, p)
        } else {
            dw
        };
        (slices, into)
    }

    /// The index of `w[o, c, i, j]` (`c` within the group).
    fn weight_at(&self, o: IExpr, c: IExpr, i: IExpr, j: IExpr) -> IExpr {
        o.mul_c(self.r as i64)
            .plus(c.mul_c((self.kh * self.kw) as i64))
            .plus(i.mul_c(self.kw as i64))
            .plus(j)
    }

    /// Whether the convolution pads its input.
    fn padded(&self) -> bool {
        self.geom.padding.iter().any(|&p| p > 0)
    }

    /// Padded height and width.
    fn padded_size(&self) -> (usize, usize) {
        let g = &self.geom;
        (
            self.h + g.padding[0] + g.padding[1],
            self.w + g.padding[2] + g.padding[3],
        )
    }

    /// Kernels that write `col[(c, i, j), (t, oy, ox)] = x[q * chunk + t,
    /// c, iy, ix]` (zero in the padding). A padded input is first copied
    /// into a zeroed, padded buffer, so that the patch loops need no
    /// guards and run four lanes at a time.
    fn patches(
        &self,
        name: &dyn Fn(&str) -> String,
        x: BufId,
        col: BufId,
        (q, chunk): (usize, usize),
        scratch: &mut Scratch,
        p: &mut Program,
    ) {
        let (hp, wp) = self.padded_size();
        let (source, base, row) = if self.padded() {
            let padded = Scratch::get(&mut scratch.padded, "padded", chunk * self.c * hp * wp, p);
            p.kernels.push(fill_zero(
                name("pad_zero"),
                padded,
                chunk * self.c * hp * wp,
            ));
            p.kernels.push(self.copy_plane(
                name("pad"),
                (
                    x,
                    (q * chunk * self.c * self.h * self.w) as i64,
                    self.h,
                    self.w,
                    0,
                    0,
                ),
                (
                    padded,
                    0,
                    hp,
                    wp,
                    self.geom.padding[0],
                    self.geom.padding[2],
                ),
                chunk,
            ));
            (padded, 0, (hp, wp))
        } else {
            (
                x,
                (q * chunk * self.c * self.h * self.w) as i64,
                (self.h, self.w),
            )
        };
        let mut k = Numbering::default();
        let (t, c, i, j, oy, ox) = (k.var(), k.var(), k.var(), k.var(), k.var(), k.var());
        // Positions in the padded input: never negative, never past it.
        let taps = [v(oy), v(ox), v(i), v(j)];
        let src = self.padded_at(row, v(t), v(c), taps).add_c(base);
        let dst = self.patch_at(chunk, [t, c, i, j, oy, ox]);
        let store = Stmt::Store {
            buf: col,
            index: dst,
            value: SExpr::load(source, src),
        };
        let body = self.patch_loops(chunk, [t, c, i, j, oy, ox], store);
        p.kernels
            .push(k.kernel(name("im2col"), chunk > 1, vec![body]));
    }

    /// Copies planes of `chunk * c` images between buffers of different
    /// plane sizes: `(buffer, offset, height, width, top, left)` each; the
    /// smaller plane lies at `(top, left)` inside the larger one.
    fn copy_plane(
        &self,
        name: String,
        from: (BufId, i64, usize, usize, usize, usize),
        to: (BufId, i64, usize, usize, usize, usize),
        chunk: usize,
    ) -> Kernel {
        let mut k = Numbering::default();
        let (t, c, y, x) = (k.var(), k.var(), k.var(), k.var());
        // The loops run over the smaller plane.
        let (h, w) = (from.2.min(to.2), from.3.min(to.3));
        let at = |(_, off, ph, pw, top, left): (BufId, i64, usize, usize, usize, usize)| {
            v(t).mul_c((self.c * ph * pw) as i64)
                .plus(v(c).mul_c((ph * pw) as i64))
                .plus(v(y).add_c(top as i64).mul_c(pw as i64))
                .plus(v(x).add_c(left as i64))
                .add_c(off)
        };
        let store = Stmt::Store {
            buf: to.0,
            index: at(to),
            value: SExpr::load(from.0, at(from)),
        };
        let body = nest(&[(t, chunk), (c, self.c), (y, h), (x, w)], vec![store]);
        k.kernel(name, chunk > 1, vec![body])
    }

    /// `dy` (`[N, O, P]`) channel-major in the shared transpose buffer, or
    /// `dy` itself for a single image (the layouts agree).
    ///
    /// `shared`: both gradients of the convolution read this `dy`, so the
    /// transpose is kept for the second, when it fits the budget.
    fn channel_major(
        &self,
        name: String,
        dy: BufId,
        shared: bool,
        s: &mut Scratch,
        p: &mut Program,
    ) -> BufId {
        if self.n == 1 {
            return dy;
        }
        if let Some(&(_, kept)) = s.channel_major.iter().find(|(of, _)| *of == dy) {
            return kept;
        }
        let len = self.n * self.o * self.p;
        let out = if shared && s.kept_floats + len <= KEPT_PATCH_LIMIT {
            let b = scratch(p, "channel-major, kept".into(), len);
            s.channel_major.push((dy, b));
            s.kept_floats += len;
            b
        } else {
            Scratch::get(&mut s.transposed, "channel-major", len, p)
        };
        let mut k = Numbering::default();
        let (o, n, q) = (k.var(), k.var(), k.var());
        let store = Stmt::Store {
            buf: out,
            index: v(o)
                .mul_c((self.n * self.p) as i64)
                .plus(v(n).mul_c(self.p as i64))
                .plus(v(q)),
            value: SExpr::load(
                dy,
                v(n).mul_c((self.o * self.p) as i64)
                    .plus(v(o).mul_c(self.p as i64))
                    .plus(v(q)),
            ),
        };
        let body = for_(
            o,
            self.o,
            vec![for_(n, self.n, vec![for_(q, self.p, vec![store])])],
        );
        p.kernels.push(k.kernel(name, self.o > 1, vec![body]));
        out
    }

    /// Kernels that write `dx[q * chunk + t]`: every patch gradient added
    /// into the input position it was read from (col2im). The scatter
    /// goes into a zeroed, padded buffer (no guards, four lanes at a time
    /// at stride 1) whose inside is then copied out; each image's scatter
    /// stays in its planes, so images split over threads.
    fn unpatch(
        &self,
        name: &dyn Fn(&str) -> String,
        dcol: BufId,
        dx: BufId,
        (q, chunk): (usize, usize),
        scratch: &mut Scratch,
        p: &mut Program,
    ) {
        let image = (self.c * self.h * self.w) as i64;
        let (target, row) = self.scatter_target(dx, chunk, scratch, p);
        let base = if self.padded() {
            0
        } else {
            q as i64 * chunk as i64 * image
        };
        let plane = chunk * self.c * row.0 * row.1;
        p.kernels
            .push(fill_range(name("zero"), target, base, plane));
        let mut k = Numbering::default();
        let (t, c, i, j, oy, ox) = (k.var(), k.var(), k.var(), k.var(), k.var(), k.var());
        let taps = [v(oy), v(ox), v(i), v(j)];
        let at = self.padded_at(row, v(t), v(c), taps).add_c(base);
        let src = self.patch_at(chunk, [t, c, i, j, oy, ox]);
        let store = Stmt::Store {
            buf: target,
            index: at.clone(),
            value: SExpr::load(target, at).plus(SExpr::load(dcol, src)),
        };
        let body = self.patch_loops(chunk, [t, c, i, j, oy, ox], store);
        p.kernels
            .push(k.kernel(name("col2im"), chunk > 1, vec![body]));
        if self.padded() {
            p.kernels
                .push(self.crop_scattered(name, target, dx, (q * chunk, chunk)));
        }
    }

    /// Where the patch gradients of `images` images are scattered: a
    /// padded copy when the convolution pads (zeroed by the caller,
    /// cropped into `dx` after by `crop_scattered`), else `dx` itself;
    /// with its planes' height and width.
    fn scatter_target(
        &self,
        dx: BufId,
        images: usize,
        scratch: &mut Scratch,
        p: &mut Program,
    ) -> (BufId, (usize, usize)) {
        if self.padded() {
            let (hp, wp) = self.padded_size();
            let len = images * self.c * hp * wp;
            let target = Scratch::get(&mut scratch.padded, "padded", len, p);
            (target, (hp, wp))
        } else {
            (dx, (self.h, self.w))
        }
    }

    /// The padded scatter target's `images` images, cropped into `dx`'s
    /// from image `first` on.
    fn crop_scattered(
        &self,
        name: &dyn Fn(&str) -> String,
        target: BufId,
        dx: BufId,
        (first, images): (usize, usize),
    ) -> Kernel {
        let g = &self.geom;
        let (hp, wp) = self.padded_size();
        let image = (self.c * self.h * self.w) as i64;
        self.copy_plane(
            name("crop"),
            (target, 0, hp, wp, g.padding[0], g.padding[2]),
            (dx, first as i64 * image, self.h, self.w, 0, 0),
            images,
        )
    }
}
