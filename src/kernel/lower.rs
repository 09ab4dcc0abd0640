//! From the graph and its fusion plan to loop nests.
//!
//! A value is *materialized* (gets a buffer, and a kernel that writes it)
//! when it leaves its fusion group: a graph output, a value read by
//! another group or read twice, an operand of a contraction (products read
//! matrices in memory), or an op whose loops cannot take a consumer (the
//! gradients of pooling scatter into their result). Every other value is
//! *inlined*: computed where its one reader needs it, at the reader's
//! index, so it never touches memory; so is a value the fusion plan marks
//! as recomputed, by each of its readers. Each materialized value gets one
//! kernel: loops over its elements and, inside, the expression of its
//! group's inlined ops. A reduction or a pooling window inside that
//! expression becomes an inner loop into a register.
//!
//! Contractions (matmul, convolutions and their gradients) are scheduled by
//! `contract.rs` as products; their consumers read the product where it
//! was written (`products`), in its layout.

use super::contract::{self, Layout, Product, Scratch};
use super::{
    BinOp, BufId, Buffer, BufferKind, CmpOp, Cond, IExpr, Kernel, Program, Reg, SExpr, Stmt, Var,
};
use crate::ir::ops::{OpClass, PoolGeom};
use crate::ir::{BinaryFn, Graph, NodeId, Op, Output, UnaryFn};
use crate::passes::fusion::FusionPlan;
use std::collections::HashMap;

/// A program with the buffer of each graph value and output.
#[derive(Clone, Debug)]
pub struct Lowered {
    pub program: Program,
    /// Per node: its buffer, for inputs and materialized values.
    pub buffer_of: Vec<Option<BufId>>,
    pub outputs: Vec<(Output, BufId)>,
}

/// Whether `op`'s loops scatter into its result, so nothing can be fused
/// after it: the gradients of pooling, which add each output gradient into
/// the input positions its window read.
pub fn scatters(op: &Op) -> bool {
    match op {
        Op::AvgPool2dGrad { .. } => tiling_window(op).is_none(),
        Op::MaxPool2dGrad(_) | Op::AdaptiveAvgPool2dGrad { .. } | Op::AdaptiveMaxPool2dGrad => true,
        _ => false,
    }
}

/// The window of an average pooling's gradient whose windows tile the
/// input exactly (stride equal to the window, no padding or dilation,
/// sizes multiples of the window: LeNet's 2 x 2). Each input position
/// then lies in exactly one window, and its gradient is a gather,
/// `dy[y / kh, x / kw] / (kh * kw)`, which elementwise gradients after it
/// (a sigmoid's) can join, instead of a zero fill and a scatter.
fn tiling_window(op: &Op) -> Option<[usize; 2]> {
    let Op::AvgPool2dGrad { geom, shape, .. } = op else {
        return None;
    };
    let k = geom.kernel;
    (geom.stride == k
        && geom.padding == [0, 0]
        && geom.dilation == [1, 1]
        && shape.len() == 4
        && shape[2].is_multiple_of(k[0])
        && shape[3].is_multiple_of(k[1]))
    .then_some(k)
}

/// Whether `id` is a reshape, broadcast or slice of an input, directly or
/// through other such views.
fn view_of_input(g: &Graph, id: NodeId) -> bool {
    let node = g.node(id);
    match node.op {
        Op::Input { .. } => true,
        Op::Reshape { .. } | Op::BroadcastTo { .. } | Op::Slice { .. } => {
            let a = node.args[0];
            matches!(g.node(a).op, Op::Input { .. }) || view_of_input(g, a)
        }
        _ => false,
    }
}

pub fn lower(g: &Graph, plan: &FusionPlan, target: super::Target) -> Lowered {
    let n = g.nodes.len();
    let mut uses = vec![0usize; n];
    let mut reader: Vec<Option<usize>> = vec![None; n];
    for (i, node) in g.nodes.iter().enumerate() {
        for a in &node.args {
            uses[a.0 as usize] += 1;
            reader[a.0 as usize] = Some(i);
        }
    }
    let mut is_output = vec![false; n];
    for (_, id) in &g.outputs {
        is_output[id.0 as usize] = true;
    }
    // A contraction's operands are matrices in memory: its products read
    // them through strides, so they are never inlined.
    let mut operand = vec![false; n];
    for node in &g.nodes {
        if node.op.class() == OpClass::Contraction {
            for a in &node.args {
                operand[a.0 as usize] = true;
            }
        }
    }
    let mut program = Program::default();
    let mut buffer_of: Vec<Option<BufId>> = vec![None; n];
    let mut inline = vec![false; n];
    for (i, node) in g.nodes.iter().enumerate() {
        let add_buffer = |program: &mut Program, kind| {
            program.buffers.push(Buffer {
                kind,
                len: node.ty.numel(),
                shape: node.ty.shape.clone(),
            });
            Some(BufId(program.buffers.len() as u32 - 1))
        };
        match &node.op {
            Op::Input { name, .. } => {
                buffer_of[i] = add_buffer(&mut program, BufferKind::Input(name.clone()));
            }
            Op::Const { .. } if !is_output[i] && !operand[i] => inline[i] = true,
            _ if plan.recompute[i] => inline[i] = true,
            _ => {
                let same_group = reader[i].is_some_and(|r| {
                    plan.kernel_of[r].is_some() && plan.kernel_of[r] == plan.kernel_of[i]
                });
                // A view of an input (a bias reshaped for broadcasting, a
                // weight's live taps sliced from it) is index arithmetic
                // its one reader can do, whatever its group.
                let view_of_input = view_of_input(g, NodeId(i as u32));
                let private =
                    uses[i] == 1 && !is_output[i] && !operand[i] && (same_group || view_of_input);
                if private && !scatters(&node.op) {
                    inline[i] = true;
                } else {
                    buffer_of[i] = add_buffer(&mut program, BufferKind::Value(NodeId(i as u32)));
                }
            }
        }
    }
    let mut products = HashMap::new();
    let mut scratch = Scratch::for_target(target);
    for (i, node) in g.nodes.iter().enumerate() {
        if matches!(node.op, Op::Input { .. } | Op::Const { .. }) && inline[i] {
            continue;
        }
        if matches!(node.op, Op::Input { .. }) {
            continue;
        }
        let id = NodeId(i as u32);
        if node.op.class() == OpClass::Contraction {
            let own = buffer_of[i];
            let p = contract::schedule(g, id, &buffer_of, own, &mut scratch, &mut program);
            products.insert(id, p);
            if Some(p.buf) == own {
                // The product was written where the value lives.
                continue;
            }
        }
        if inline[i] {
            continue;
        }
        let out = buffer_of[i].expect("materialized values have buffers");
        let mut b = Builder {
            g,
            inline: &inline,
            buffer_of: &buffer_of,
            products: &products,
            vars: 0,
            regs: 0,
            first_new: program.buffers.len() as u32,
            new_buffers: Vec::new(),
        };
        let name = format!("k{}_{}", program.kernels.len(), node.op.name());
        let bodies = b.kernels_for(NodeId(i as u32), out);
        program.buffers.append(&mut b.new_buffers);
        for body in bodies {
            program.kernels.push(Kernel {
                name: name.clone(),
                parallel: body.parallel,
                body: body.stmts,
                vars: b.vars,
                regs: b.regs,
            });
        }
    }
    let outputs = g
        .outputs
        .iter()
        .map(|(o, id)| {
            (
                o.clone(),
                buffer_of[id.0 as usize].expect("outputs are materialized"),
            )
        })
        .collect();
    Lowered {
        program,
        buffer_of,
        outputs,
    }
}

struct Body {
    parallel: bool,
    stmts: Vec<Stmt>,
}

struct Builder<'a> {
    g: &'a Graph,
    inline: &'a [bool],
    buffer_of: &'a [Option<BufId>],
    /// Contractions already computed by products, and where.
    products: &'a HashMap<NodeId, Product>,
    vars: u32,
    regs: u32,
    /// Scratch buffers this node's kernels need, numbered from `first_new`
    /// (the program's buffer count when the builder was made).
    first_new: u32,
    new_buffers: Vec<Buffer>,
}

fn strides(shape: &[usize]) -> Vec<i64> {
    let mut s = vec![1i64; shape.len()];
    for i in (0..shape.len().saturating_sub(1)).rev() {
        s[i] = s[i + 1] * shape[i + 1] as i64;
    }
    s
}

/// The flat index of a multi-index.
fn linearize(idx: &[IExpr], shape: &[usize]) -> IExpr {
    let st = strides(shape);
    idx.iter()
        .zip(&st)
        .zip(shape)
        .fold(IExpr::c(0), |acc, ((e, &s), &d)| {
            if d == 1 {
                acc
            } else {
                acc.plus(e.clone().mul_c(s))
            }
        })
}

/// The multi-index of a flat index (`lin` is below the shape's size, so
/// the first axis that is not 1 needs no remainder).
fn unravel(lin: &IExpr, shape: &[usize]) -> Vec<IExpr> {
    let st = strides(shape);
    (0..shape.len())
        .map(|i| {
            if shape[i] == 1 {
                IExpr::c(0)
            } else if shape[..i].iter().all(|&d| d == 1) {
                lin.clone().div_c(st[i])
            } else {
                lin.clone().div_c(st[i]).rem_c(shape[i] as i64)
            }
        })
        .collect()
}

/// The index into an argument of shape `from` that a broadcast to `to`
/// reads for output index `idx`.
fn broadcast_index(idx: &[IExpr], to: &[usize], from: &[usize]) -> Vec<IExpr> {
    let lead = to.len() - from.len();
    (0..from.len())
        .map(|j| {
            if from[j] == 1 {
                IExpr::c(0)
            } else {
                idx[j + lead].clone()
            }
        })
        .collect()
}

/// How many leading and how many trailing axes two shapes share (the
/// same sizes, in order), not counting an axis twice.
pub fn shared_axes(to: &[usize], from: &[usize]) -> (usize, usize) {
    let lead = to.iter().zip(from).take_while(|(a, b)| a == b).count();
    let trail = to[lead..]
        .iter()
        .rev()
        .zip(from[lead..].iter().rev())
        .take_while(|(a, b)| a == b)
        .count();
    (lead, trail)
}

/// A reshape's index map: direct when the shapes differ only by axes of
/// size 1, through the flat index otherwise.
fn reshape_index(idx: &[IExpr], to: &[usize], from: &[usize]) -> Vec<IExpr> {
    let to_big: Vec<usize> = (0..to.len()).filter(|&i| to[i] != 1).collect();
    let from_big: Vec<usize> = (0..from.len()).filter(|&i| from[i] != 1).collect();
    let same = to_big.len() == from_big.len()
        && to_big
            .iter()
            .zip(&from_big)
            .all(|(&a, &b)| to[a] == from[b]);
    if same {
        let mut out = vec![IExpr::c(0); from.len()];
        for (&a, &b) in to_big.iter().zip(&from_big) {
            out[b] = idx[a].clone();
        }
        return out;
    }
    // Leading and trailing axes the two shapes share map one to one; only
    // the axes between are regrouped through their flat index (a kernel's
    // 3x3 taps from 9: `i * 3 + j`, no division).
    let (lead, trail) = shared_axes(to, from);
    let (to_mid, from_mid) = (&to[lead..to.len() - trail], &from[lead..from.len() - trail]);
    let mut out = idx[..lead].to_vec();
    out.extend(unravel(
        &linearize(&idx[lead..to.len() - trail], to_mid),
        from_mid,
    ));
    out.extend_from_slice(&idx[to.len() - trail..]);
    out
}

impl Builder<'_> {
    fn var(&mut self) -> Var {
        self.vars += 1;
        Var(self.vars - 1)
    }

    fn reg(&mut self) -> Reg {
        self.regs += 1;
        Reg(self.regs - 1)
    }

    fn shape(&self, id: NodeId) -> &[usize] {
        self.g.shape(id)
    }

    /// Loops over `shape` around `inner`, which receives the index; axes of
    /// size 1 get no loop. Returns the statements and whether there is an
    /// outermost loop to split over threads.
    fn nest(
        &mut self,
        shape: &[usize],
        inner: impl FnOnce(&mut Self, &[IExpr]) -> Vec<Stmt>,
    ) -> Body {
        let mut idx = Vec::new();
        let mut vars = Vec::new();
        for &d in shape {
            if d == 1 {
                idx.push(IExpr::c(0));
            } else {
                let v = self.var();
                vars.push((v, d));
                idx.push(IExpr::var(v));
            }
        }
        let mut stmts = inner(self, &idx);
        let parallel = !vars.is_empty();
        for (v, d) in vars.into_iter().rev() {
            stmts = vec![Stmt::For {
                var: v,
                start: IExpr::c(0),
                end: IExpr::c(d as i64),
                body: stmts,
            }];
        }
        Body { parallel, stmts }
    }

    /// The kernels that write node `id` into `out`.
    fn kernels_for(&mut self, id: NodeId, out: BufId) -> Vec<Body> {
        let node = &self.g.nodes[id.0 as usize];
        let shape = node.ty.shape.clone();
        if let Op::MaxPool2dGrad(geom) = node.op {
            if let Some(padded) = self.padded_pool_size(&geom, &shape, self.shape(node.args[1])) {
                return self.padded_max_pool_grad(id, out, &geom, padded);
            }
        }
        if scatters(&node.op) {
            let zero = self.fill(out, &shape, 0.0);
            let scatter = self.scatter(id, out);
            return vec![zero, scatter];
        }
        if let Op::MaxPool2d(geom) = node.op {
            if let Some(padded) = self.padded_pool_size(&geom, self.shape(node.args[0]), &shape) {
                return self.padded_max_pool(id, out, &geom, padded);
            }
        }
        if let Op::PadAxis { axis, before, .. } = node.op {
            // Zeros, then the argument copied into the middle: two loops
            // without guards (a select on the position, per element, keeps
            // a loop from running four lanes at a time).
            let zero = self.fill(out, &shape, 0.0);
            let arg = node.args[0];
            let inner = self.shape(arg).to_vec();
            let copy = self.nest(&inner, |b, idx| {
                let mut pre = Vec::new();
                let value = b.value(arg, idx, &mut pre);
                let mut at = idx.to_vec();
                at[axis] = idx[axis].clone().add_c(before as i64);
                pre.push(Stmt::Store {
                    buf: out,
                    index: linearize(&at, &shape),
                    value,
                });
                pre
            });
            return vec![zero, copy];
        }
        vec![self.nest(&shape, |b, idx| {
            let mut pre = Vec::new();
            let value = b.compute(id, idx, &mut pre);
            pre.push(Stmt::Store {
                buf: out,
                index: linearize(idx, &shape),
                value,
            });
            pre
        })]
    }

    /// The buffer of `f(x)`, when the graph computes it before node
    /// `before` and it is in memory.
    fn stored_unary(&self, f: UnaryFn, x: NodeId, before: NodeId) -> Option<BufId> {
        let i = self.g.nodes[..before.0 as usize]
            .iter()
            .position(|n| n.op == Op::Unary(f) && n.args[0] == x)?;
        (!self.inline[i]).then_some(self.buffer_of[i]).flatten()
    }

    /// A loop nest that sets every element of `buf` (of `shape`) to
    /// `value`.
    fn fill(&mut self, buf: BufId, shape: &[usize], value: f32) -> Body {
        self.nest(shape, |_, idx| {
            vec![Stmt::Store {
                buf,
                index: linearize(idx, shape),
                value: SExpr::c(value),
            }]
        })
    }

    /// A scratch buffer for this node's kernels.
    fn scratch(&mut self, what: String, shape: Vec<usize>) -> BufId {
        self.new_buffers.push(Buffer {
            kind: BufferKind::Scratch(what),
            len: shape.iter().product(),
            shape,
        });
        BufId(self.first_new + self.new_buffers.len() as u32 - 1)
    }

    /// The padded height and width a max pooling's windows need, when some
    /// tap of some window falls outside the input (padding, or the last
    /// window of `ceil_mode`); `None` when every tap is inside.
    fn padded_pool_size(&self, g: &PoolGeom, x: &[usize], y: &[usize]) -> Option<[usize; 2]> {
        let reach = |a: usize| (y[2 + a] - 1) * g.stride[a] + (g.kernel[a] - 1) * g.dilation[a] + 1;
        let size = |a: usize| (x[2 + a] + g.padding[a]).max(reach(a));
        let inside = (0..2).all(|a| g.padding[a] == 0 && reach(a) <= x[2 + a]);
        (!inside).then(|| [size(0), size(1)])
    }

    /// Max pooling over a copy of the input padded with -inf, so that the
    /// windows need no bounds checks and run four outputs at a time (a tap
    /// in the padding never wins: the reference skips it, and every window
    /// has a tap inside).
    fn padded_max_pool(
        &mut self,
        id: NodeId,
        out: BufId,
        geom: &PoolGeom,
        [hp, wp]: [usize; 2],
    ) -> Vec<Body> {
        let node = &self.g.nodes[id.0 as usize];
        let (arg, shape) = (node.args[0], node.ty.shape.clone());
        let (xp, padded_shape, mut bodies) = self.padded_input(id, arg, geom, [hp, wp]);
        let pool = self.nest(&shape, |b, idx| {
            let best = b.reg();
            let (ty, tx) = (b.var(), b.var());
            let at = [
                idx[0].clone(),
                idx[1].clone(),
                idx[2]
                    .clone()
                    .mul_c(geom.stride[0] as i64)
                    .plus(IExpr::var(ty).mul_c(geom.dilation[0] as i64)),
                idx[3]
                    .clone()
                    .mul_c(geom.stride[1] as i64)
                    .plus(IExpr::var(tx).mul_c(geom.dilation[1] as i64)),
            ];
            let taps = Stmt::For {
                var: ty,
                start: IExpr::c(0),
                end: IExpr::c(geom.kernel[0] as i64),
                body: vec![Stmt::For {
                    var: tx,
                    start: IExpr::c(0),
                    end: IExpr::c(geom.kernel[1] as i64),
                    body: vec![Stmt::Set {
                        reg: best,
                        value: SExpr::bin(
                            BinOp::Max,
                            SExpr::Reg(best),
                            SExpr::load(xp, linearize(&at, &padded_shape)),
                        ),
                    }],
                }],
            };
            vec![
                Stmt::Set {
                    reg: best,
                    value: SExpr::c(f32::NEG_INFINITY),
                },
                taps,
                Stmt::Store {
                    buf: out,
                    index: linearize(idx, &shape),
                    value: SExpr::Reg(best),
                },
            ]
        });
        bodies.push(pool);
        bodies
    }

    /// A copy of `arg` padded with -inf to `[hp, wp]` (the pooling's
    /// padding before, the rest after), and the kernels that write it.
    fn padded_input(
        &mut self,
        id: NodeId,
        arg: NodeId,
        geom: &PoolGeom,
        [hp, wp]: [usize; 2],
    ) -> (BufId, Vec<usize>, Vec<Body>) {
        let x = self.shape(arg).to_vec();
        let padded_shape = vec![x[0], x[1], hp, wp];
        let xp = self.scratch(format!("{id} padded with -inf"), padded_shape.clone());
        let fill = self.fill(xp, &padded_shape, f32::NEG_INFINITY);
        let copy = self.nest(&x, |b, idx| {
            let mut pre = Vec::new();
            let value = b.value(arg, idx, &mut pre);
            let mut at = idx.to_vec();
            at[2] = idx[2].clone().add_c(geom.padding[0] as i64);
            at[3] = idx[3].clone().add_c(geom.padding[1] as i64);
            pre.push(Stmt::Store {
                buf: xp,
                index: linearize(&at, &padded_shape),
                value,
            });
            pre
        });
        (xp, padded_shape, vec![fill, copy])
    }

    /// Max pooling's gradient without bounds checks: the window's first
    /// maximum found in the -inf-padded input (branch-free; the search
    /// starts at the window's first tap inside the input, so that a window
    /// of -inf gives its gradient there, as the reference does, and a tap
    /// in the padding never wins), the gradient added there in a zeroed,
    /// padded gradient, which is then cropped.
    fn padded_max_pool_grad(
        &mut self,
        id: NodeId,
        out: BufId,
        geom: &PoolGeom,
        [hp, wp]: [usize; 2],
    ) -> Vec<Body> {
        let node = &self.g.nodes[id.0 as usize];
        let (x_arg, dy_arg, xs) = (node.args[0], node.args[1], node.ty.shape.clone());
        let dys = self.shape(dy_arg).to_vec();
        let (xp, padded_shape, mut bodies) = self.padded_input(id, x_arg, geom, [hp, wp]);
        let dxp = self.scratch(format!("{id} padded gradient"), padded_shape.clone());
        bodies.push(self.fill(dxp, &padded_shape, 0.0));
        let mut scatter = self.nest(&dys, |b, idx| {
            let mut pre = Vec::new();
            let dy = b.value(dy_arg, idx, &mut pre);
            let dy = b.bind(dy, &mut pre);
            // The first tap inside the input, per axis: the smallest t with
            // o * stride + t * dilation >= padding.
            let first = |a: usize| {
                let (s, p, d) = (geom.stride[a], geom.padding[a], geom.dilation[a]);
                IExpr::c(p as i64)
                    .plus(idx[2 + a].clone().mul_c(-(s as i64)))
                    .max(IExpr::c(0))
                    .add_c(d as i64 - 1)
                    .div_c(d as i64)
            };
            let kw = geom.kernel[1] as i64;
            let (best, at, v, flag) = (b.reg(), b.reg(), b.reg(), b.reg());
            pre.push(Stmt::Set {
                reg: best,
                value: SExpr::c(f32::NEG_INFINITY),
            });
            pre.push(Stmt::Set {
                reg: at,
                value: SExpr::Index(first(0).mul_c(kw).plus(first(1))),
            });
            let taps = |b: &mut Self, body: &dyn Fn(IExpr, IExpr) -> Vec<Stmt>| {
                let (ty, tx) = (b.var(), b.var());
                let position = |t: Var, a: usize| {
                    idx[2 + a]
                        .clone()
                        .mul_c(geom.stride[a] as i64)
                        .plus(IExpr::var(t).mul_c(geom.dilation[a] as i64))
                };
                let at_padded = linearize(
                    &[
                        idx[0].clone(),
                        idx[1].clone(),
                        position(ty, 0),
                        position(tx, 1),
                    ],
                    &padded_shape,
                );
                let tap = IExpr::var(ty).mul_c(kw).plus(IExpr::var(tx));
                Stmt::For {
                    var: ty,
                    start: IExpr::c(0),
                    end: IExpr::c(geom.kernel[0] as i64),
                    body: vec![Stmt::For {
                        var: tx,
                        start: IExpr::c(0),
                        end: IExpr::c(geom.kernel[1] as i64),
                        body: body(at_padded, tap),
                    }],
                }
            };
            let search = taps(b, &|position, tap| {
                let (vr, br) = (SExpr::Reg(v), SExpr::Reg(best));
                let take = Cond::Or(
                    Box::new(Cond::cmp(CmpOp::Gt, vr.clone(), br)),
                    Box::new(Cond::cmp(CmpOp::Ne, vr.clone(), vr.clone())),
                );
                let won = || Cond::cmp(CmpOp::Ne, SExpr::Reg(flag), SExpr::c(0.0));
                vec![
                    Stmt::Set {
                        reg: v,
                        value: SExpr::load(xp, position),
                    },
                    Stmt::Set {
                        reg: flag,
                        value: SExpr::select(take, SExpr::c(1.0), SExpr::c(0.0)),
                    },
                    Stmt::Set {
                        reg: best,
                        value: SExpr::select(won(), vr, SExpr::Reg(best)),
                    },
                    Stmt::Set {
                        reg: at,
                        value: SExpr::select(won(), SExpr::Index(tap), SExpr::Reg(at)),
                    },
                ]
            });
            pre.push(search);
            let add = taps(b, &|position, tap| {
                let hit = Cond::cmp(CmpOp::Eq, SExpr::Reg(at), SExpr::Index(tap));
                vec![Stmt::Store {
                    buf: dxp,
                    index: position.clone(),
                    value: SExpr::load(dxp, position).plus(SExpr::select(
                        hit,
                        dy.clone(),
                        SExpr::c(0.0),
                    )),
                }]
            });
            pre.push(add);
            pre
        });
        // Windows overlap inside a plane: split over images or channels.
        scatter.parallel = dys[0] > 1 || dys[1] > 1;
        bodies.push(scatter);
        bodies.push(self.nest(&xs, |_, idx| {
            let mut at = idx.to_vec();
            at[2] = idx[2].clone().add_c(geom.padding[0] as i64);
            at[3] = idx[3].clone().add_c(geom.padding[1] as i64);
            vec![Stmt::Store {
                buf: out,
                index: linearize(idx, &xs),
                value: SExpr::load(dxp, linearize(&at, &padded_shape)),
            }]
        }));
        bodies
    }

    /// The value of node `id` at `idx`: a load of a materialized value, or
    /// the inlined computation (its statements, such as an inner
    /// reduction loop, appended to `pre`).
    fn value(&mut self, id: NodeId, idx: &[IExpr], pre: &mut Vec<Stmt>) -> SExpr {
        let i = id.0 as usize;
        if let Op::Const { value, .. } = self.g.nodes[i].op {
            return SExpr::c(value as f32);
        }
        if !self.inline[i] {
            let buf = self.buffer_of[i].expect("materialized values have buffers");
            return SExpr::load(buf, linearize(idx, self.shape(id)));
        }
        self.compute(id, idx, pre)
    }

    /// A value needed more than once, held in a register.
    fn bind(&mut self, value: SExpr, pre: &mut Vec<Stmt>) -> SExpr {
        match value {
            SExpr::Const(_) | SExpr::Reg(_) => value,
            v => {
                let r = self.reg();
                pre.push(Stmt::Set { reg: r, value: v });
                SExpr::Reg(r)
            }
        }
    }

    /// Node `id`'s own computation at `idx`, reading its arguments.
    fn compute(&mut self, id: NodeId, idx: &[IExpr], pre: &mut Vec<Stmt>) -> SExpr {
        if let Some(p) = self.products.get(&id) {
            let index = match p.layout {
                Layout::Natural => linearize(idx, self.shape(id)),
                Layout::ChannelMajor {
                    n,
                    c: _,
                    p: positions,
                } => {
                    let [b, c, y, x] = [&idx[0], &idx[1], &idx[2], &idx[3]];
                    let wo = self.shape(id)[3] as i64;
                    c.clone()
                        .mul_c((n * positions) as i64)
                        .plus(b.clone().mul_c(positions as i64))
                        .plus(y.clone().mul_c(wo))
                        .plus(x.clone())
                }
            };
            return SExpr::load(p.buf, index);
        }
        let node = &self.g.nodes[id.0 as usize];
        let shape = node.ty.shape.clone();
        let args = node.args.clone();
        let arg_shape = |b: &Self, k: usize| b.shape(args[k]).to_vec();
        match &node.op {
            Op::Input { .. } => unreachable!("inputs are loaded"),
            Op::Const { value, .. } => SExpr::c(*value as f32),
            Op::Unary(f) => {
                let x = self.value(args[0], idx, pre);
                let x = self.bind(x, pre);
                super::unary(*f, x)
            }
            // The gradient of a sigmoid or tanh whose value is in memory
            // reads it rather than computing the exponential again:
            // s * (1 - s) and 1 - t * t.
            Op::UnaryGrad(f @ (UnaryFn::Sigmoid | UnaryFn::Tanh))
                if self.stored_unary(*f, args[0], id).is_some() =>
            {
                let y = self.stored_unary(*f, args[0], id).expect("checked above");
                let y = SExpr::load(y, linearize(idx, &shape));
                let y = self.bind(y, pre);
                let dy = self.value(args[1], idx, pre);
                let d = if *f == UnaryFn::Sigmoid {
                    y.clone().times(SExpr::c(1.0).minus(y))
                } else {
                    SExpr::c(1.0).minus(y.clone().times(y))
                };
                dy.times(d)
            }
            Op::UnaryGrad(f) => {
                let x = self.value(args[0], idx, pre);
                let x = self.bind(x, pre);
                let dy = self.value(args[1], idx, pre);
                super::unary_grad(*f, x, dy, &mut |v| self.bind(v, pre))
            }
            Op::Binary(f) => {
                let ia = broadcast_index(idx, &shape, &arg_shape(self, 0));
                let a = self.value(args[0], &ia, pre);
                let ib = broadcast_index(idx, &shape, &arg_shape(self, 1));
                let b = self.value(args[1], &ib, pre);
                let op = match f {
                    BinaryFn::Add => BinOp::Add,
                    BinaryFn::Sub => BinOp::Sub,
                    BinaryFn::Mul => BinOp::Mul,
                    BinaryFn::Div => BinOp::Div,
                    BinaryFn::Max => BinOp::Max,
                    BinaryFn::Eq => {
                        return SExpr::select(
                            Cond::cmp(CmpOp::Eq, a, b),
                            SExpr::c(1.0),
                            SExpr::c(0.0),
                        )
                    }
                };
                SExpr::bin(op, a, b)
            }
            Op::BroadcastTo { .. } => {
                let i = broadcast_index(idx, &shape, &arg_shape(self, 0));
                self.value(args[0], &i, pre)
            }
            Op::Reshape { .. } => {
                let i = reshape_index(idx, &shape, &arg_shape(self, 0));
                self.value(args[0], &i, pre)
            }
            Op::Dropout { p, salt } => {
                let x = self.value(args[0], idx, pre);
                let scale = (1.0 / (1.0 - p)) as f32;
                SExpr::select(
                    Cond::Keep {
                        p: *p,
                        salt: *salt,
                        index: linearize(idx, &shape),
                    },
                    x.times(SExpr::c(scale)),
                    SExpr::c(0.0),
                )
            }
            Op::ReduceSum { axes } | Op::ReduceMean { axes } | Op::ReduceMax { axes } => {
                let from = arg_shape(self, 0);
                let max = matches!(node.op, Op::ReduceMax { .. });
                let count: usize = axes.iter().map(|&a| from[a]).product();
                let reduced: Vec<bool> = (0..from.len()).map(|a| axes.contains(&a)).collect();
                let r = self.reduce(args[0], idx, &from, &reduced, max, pre);
                if matches!(node.op, Op::ReduceMean { .. }) {
                    r.over(SExpr::c(count as f32))
                } else {
                    r
                }
            }
            Op::SumTo { shape: to } => {
                let from = arg_shape(self, 0);
                let lead = from.len() - to.len();
                let reduced: Vec<bool> = (0..from.len())
                    .map(|a| a < lead || (to[a - lead] == 1 && from[a] != 1))
                    .collect();
                // The output index, widened with zeros for the leading axes.
                let mut wide = vec![IExpr::c(0); lead];
                wide.extend(idx.iter().cloned());
                self.reduce(args[0], &wide, &from, &reduced, false, pre)
            }
            Op::MatMul { .. }
            | Op::Conv2d(_)
            | Op::Conv2dGradInput { .. }
            | Op::Conv2dGradWeight { .. } => {
                unreachable!("contractions are products, read through `products`")
            }
            // The value alone needs no position: a running maximum (NaN
            // wins, an empty window is -inf, as in the reference), which
            // runs four lanes at a time once its taps are unrolled.
            Op::MaxPool2d(geom) => {
                let x = arg_shape(self, 0);
                self.window_value_max(args[0], &x, idx, Window::Pool(*geom), pre)
            }
            Op::AdaptiveMaxPool2d { .. } => {
                let x = arg_shape(self, 0);
                let w = Window::Adaptive(shape[2..].to_vec());
                self.window_value_max(args[0], &x, idx, w, pre)
            }
            Op::AvgPool2d {
                geom,
                count_include_pad,
            } => {
                let x = arg_shape(self, 0);
                let w = Window::Avg(*geom, *count_include_pad);
                self.window_mean(args[0], &x, idx, &w, pre)
            }
            Op::AdaptiveAvgPool2d { .. } => {
                let x = arg_shape(self, 0);
                let w = Window::Adaptive(shape[2..].to_vec());
                self.window_mean(args[0], &x, idx, &w, pre)
            }
            Op::ChannelWindowSum { before, after, .. } => {
                let c = shape[1] as i64;
                let acc = self.reg();
                pre.push(Stmt::Set {
                    reg: acc,
                    value: SExpr::c(0.0),
                });
                let j = self.var();
                let mut inner = idx.to_vec();
                inner[1] = IExpr::var(j);
                let mut body = Vec::new();
                let v = self.value(args[0], &inner, &mut body);
                body.push(Stmt::Set {
                    reg: acc,
                    value: SExpr::Reg(acc).plus(v),
                });
                pre.push(Stmt::For {
                    var: j,
                    start: idx[1].clone().add_c(-(*before as i64)).max(IExpr::c(0)),
                    end: idx[1].clone().add_c(*after as i64 + 1).min(IExpr::c(c)),
                    body,
                });
                SExpr::Reg(acc)
            }
            Op::Concat { axis } => {
                let axis = *axis;
                // Nested selects, last argument innermost; each branch is
                // guarded by the range its argument covers.
                let mut offsets = Vec::new();
                let mut off = 0i64;
                for a in &args {
                    offsets.push(off);
                    off += self.shape(*a)[axis] as i64;
                }
                let mut cases = Vec::new();
                for (k, &arg) in args.iter().enumerate() {
                    let len = self.shape(arg)[axis] as i64;
                    let mut inner = idx.to_vec();
                    inner[axis] = idx[axis].clone().add_c(-offsets[k]);
                    let mut branch = Vec::new();
                    let v = self.value(arg, &inner, &mut branch);
                    let cond = Cond::in_range(idx[axis].clone(), offsets[k], offsets[k] + len);
                    cases.push((cond, branch, v));
                }
                self.choose(cases, SExpr::c(0.0), pre)
            }
            Op::Slice { axis, start, .. } => {
                let mut inner = idx.to_vec();
                inner[*axis] = idx[*axis].clone().add_c(*start as i64);
                self.value(args[0], &inner, pre)
            }
            Op::PadAxis { axis, before, .. } => {
                let len = self.shape(args[0])[*axis] as i64;
                let mut inner = idx.to_vec();
                inner[*axis] = idx[*axis].clone().add_c(-(*before as i64));
                let mut branch = Vec::new();
                let v = self.value(args[0], &inner, &mut branch);
                let cond = Cond::in_range(inner[*axis].clone(), 0, len);
                self.choose(vec![(cond, branch, v)], SExpr::c(0.0), pre)
            }
            op @ Op::AvgPool2dGrad { .. } if !scatters(op) => {
                let [kh, kw] = tiling_window(op).expect("a tiling window");
                let dy = *args.last().expect("the output gradient");
                let inner = [
                    idx[0].clone(),
                    idx[1].clone(),
                    idx[2].clone().div_c(kh as i64),
                    idx[3].clone().div_c(kw as i64),
                ];
                self.value(dy, &inner, pre).over(SExpr::c((kh * kw) as f32))
            }
            Op::MaxPool2dGrad(_)
            | Op::AvgPool2dGrad { .. }
            | Op::AdaptiveAvgPool2dGrad { .. }
            | Op::AdaptiveMaxPool2dGrad => unreachable!("scattering ops are materialized"),
        }
    }

    /// The value of the first case whose condition holds (the conditions
    /// are disjoint), else `default`. Cases whose values need statements
    /// first (a fused producer's registers) cannot live inside a select,
    /// and their statements may only run where their condition holds (they
    /// read at indices shifted by the case), so then each case is a
    /// guarded block that sets one register; otherwise nested selects.
    fn choose(
        &mut self,
        cases: Vec<(Cond, Vec<Stmt>, SExpr)>,
        default: SExpr,
        pre: &mut Vec<Stmt>,
    ) -> SExpr {
        if cases.iter().all(|(_, stmts, _)| stmts.is_empty()) {
            return cases
                .into_iter()
                .rev()
                .fold(default, |rest, (cond, _, v)| SExpr::select(cond, v, rest));
        }
        let acc = self.reg();
        pre.push(Stmt::Set {
            reg: acc,
            value: default,
        });
        for (cond, mut then, v) in cases {
            then.push(Stmt::Set { reg: acc, value: v });
            pre.push(Stmt::If { cond, then });
        }
        SExpr::Reg(acc)
    }

    /// A sum (or NaN-propagating maximum) of `arg` over the axes marked in
    /// `reduced`; `idx` gives the other axes (and is ignored on reduced
    /// ones).
    fn reduce(
        &mut self,
        arg: NodeId,
        idx: &[IExpr],
        from: &[usize],
        reduced: &[bool],
        max: bool,
        pre: &mut Vec<Stmt>,
    ) -> SExpr {
        let acc = self.reg();
        pre.push(Stmt::Set {
            reg: acc,
            value: SExpr::c(if max { f32::NEG_INFINITY } else { 0.0 }),
        });
        let mut inner = Vec::new();
        let mut loops = Vec::new();
        for (a, &d) in from.iter().enumerate() {
            if reduced[a] && d != 1 {
                let v = self.var();
                loops.push((v, d));
                inner.push(IExpr::var(v));
            } else if reduced[a] {
                inner.push(IExpr::c(0));
            } else {
                inner.push(idx[a].clone());
            }
        }
        // A sum over several loops adds each iteration of the outermost one
        // (an image, for batch norm's N·H·W) into a partial sum of its own,
        // then the partials into `acc`. One float32 accumulator over all of
        // them (295,000 elements in DenseNet's stem) rounds each addition at
        // the running total's scale; two levels round at an image's. The
        // batch-norm backward subtracts sums that nearly cancel, and with
        // one accumulator its gradients were 0.4-4 % off float64's where
        // PyTorch's are within 0.4 % (docs/perf.md). A maximum is exact in
        // any order.
        let split = !max && loops.len() >= 2;
        let part = if split { self.reg() } else { acc };
        let mut body = Vec::new();
        let v = self.value(arg, &inner, &mut body);
        let op = if max { BinOp::Max } else { BinOp::Add };
        body.push(Stmt::Set {
            reg: part,
            value: SExpr::bin(op, SExpr::Reg(part), v),
        });
        let wrap = |body: Vec<Stmt>, (var, d): (Var, usize)| {
            vec![Stmt::For {
                var,
                start: IExpr::c(0),
                end: IExpr::c(d as i64),
                body,
            }]
        };
        let outermost = split.then(|| loops.remove(0));
        for l in loops.into_iter().rev() {
            body = wrap(body, l);
        }
        if let Some(outer) = outermost {
            body.insert(
                0,
                Stmt::Set {
                    reg: part,
                    value: SExpr::c(0.0),
                },
            );
            body.push(Stmt::Set {
                reg: acc,
                value: SExpr::bin(BinOp::Add, SExpr::Reg(acc), SExpr::Reg(part)),
            });
            body = wrap(body, outer);
        }
        pre.extend(body);
        SExpr::Reg(acc)
    }

    /// The input rows (or columns) of output position `o` along `axis`:
    /// `(start, end, taps)` where a tap `t` reads `start + t * step` for
    /// `t` in `0..taps`, and `guard` says whether a tap needs a bounds
    /// check.
    fn window_axis(&self, w: &Window, axis: usize, o: &IExpr, size: usize) -> WindowAxis {
        match w {
            Window::Pool(g) => WindowAxis::Taps {
                base: o
                    .clone()
                    .mul_c(g.stride[axis] as i64)
                    .add_c(-(g.padding[axis] as i64)),
                taps: g.kernel[axis],
                step: g.dilation[axis] as i64,
            },
            // Without padding and rounding down, every window is whole:
            // a fixed number of taps (unrolled, four outputs at a time)
            // rather than a range clipped to the input.
            Window::Avg(g, _) if g.padding == [0, 0] && !g.ceil_mode => WindowAxis::Taps {
                base: o.clone().mul_c(g.stride[axis] as i64),
                taps: g.kernel[axis],
                step: g.dilation[axis] as i64,
            },
            Window::Avg(g, _) => {
                let base = o
                    .clone()
                    .mul_c(g.stride[axis] as i64)
                    .add_c(-(g.padding[axis] as i64));
                let end = base.clone().add_c(g.kernel[axis] as i64);
                WindowAxis::Range {
                    start: base.clone().max(IExpr::c(0)),
                    end: end.clone().min(IExpr::c(size as i64)),
                    span: Some((base, end.min(IExpr::c((size + g.padding[axis]) as i64)))),
                }
            }
            Window::Adaptive(out) => {
                let out = out[axis] as i64;
                let size = size as i64;
                WindowAxis::Range {
                    start: o.clone().mul_c(size).div_c(out),
                    end: o.clone().add_c(1).mul_c(size).add_c(out - 1).div_c(out),
                    span: None,
                }
            }
        }
    }

    /// Loops over a window of `x` at output `idx`, calling `f` with the
    /// input row and column and the tap number; returns the loop.
    fn window_loops(
        &mut self,
        w: &Window,
        x: &[usize],
        idx: &[IExpr],
        f: impl FnOnce(&mut Self, IExpr, IExpr, IExpr) -> Vec<Stmt>,
    ) -> Stmt {
        let ay = self.window_axis(w, 0, &idx[2], x[2]);
        let ax = self.window_axis(w, 1, &idx[3], x[3]);
        let (vy, vx) = (self.var(), self.var());
        let (iy, y_lo, y_hi, guard_y) = ay.position(vy);
        let (ix, x_lo, x_hi, guard_x) = ax.position(vx);
        let ty = IExpr::var(vy).plus(y_lo.clone().mul_c(-1));
        let tx = IExpr::var(vx).plus(x_lo.clone().mul_c(-1));
        let kw = ax.extent_bound(x[3]);
        let tap = ty.mul_c(kw).plus(tx);
        let mut body = f(self, iy.clone(), ix.clone(), tap);
        let mut guard: Option<Cond> = None;
        if guard_y {
            guard = Some(Cond::in_range(iy, 0, x[2] as i64));
        }
        if guard_x {
            let c = Cond::in_range(ix, 0, x[3] as i64);
            guard = Some(match guard {
                Some(g) => g.and(c),
                None => c,
            });
        }
        if let Some(cond) = guard {
            body = vec![Stmt::If { cond, then: body }];
        }
        Stmt::For {
            var: vy,
            start: y_lo,
            end: y_hi,
            body: vec![Stmt::For {
                var: vx,
                start: x_lo,
                end: x_hi,
                body,
            }],
        }
    }

    /// The maximum of a window, without its position.
    fn window_value_max(
        &mut self,
        arg: NodeId,
        x: &[usize],
        idx: &[IExpr],
        w: Window,
        pre: &mut Vec<Stmt>,
    ) -> SExpr {
        let best = self.reg();
        pre.push(Stmt::Set {
            reg: best,
            value: SExpr::c(f32::NEG_INFINITY),
        });
        let stmt = self.window_loops(&w, x, idx, |b, iy, ix, _| {
            let mut body = Vec::new();
            let v = b.value(arg, &[idx[0].clone(), idx[1].clone(), iy, ix], &mut body);
            body.push(Stmt::Set {
                reg: best,
                value: SExpr::bin(BinOp::Max, SExpr::Reg(best), v),
            });
            body
        });
        pre.push(stmt);
        SExpr::Reg(best)
    }

    /// The maximum of a window (NaN wins; the first maximum is kept, as
    /// the reference executor keeps it) and the register holding its tap.
    fn window_max(
        &mut self,
        arg: NodeId,
        x: &[usize],
        idx: &[IExpr],
        w: Window,
        pre: &mut Vec<Stmt>,
    ) -> (SExpr, Reg) {
        let best = self.reg();
        let at = self.reg();
        let v = self.reg();
        pre.push(Stmt::Set {
            reg: best,
            value: SExpr::c(f32::NEG_INFINITY),
        });
        pre.push(Stmt::Set {
            reg: at,
            value: SExpr::c(-1.0),
        });
        let stmt = self.window_loops(&w, x, idx, |b, iy, ix, tap| {
            let mut body = Vec::new();
            let load = b.value(arg, &[idx[0].clone(), idx[1].clone(), iy, ix], &mut body);
            body.push(Stmt::Set {
                reg: v,
                value: load,
            });
            let (vr, br, ar) = (SExpr::Reg(v), SExpr::Reg(best), SExpr::Reg(at));
            let take = Cond::Or(
                Box::new(Cond::cmp(CmpOp::Gt, vr.clone(), br)),
                Box::new(Cond::Or(
                    Box::new(Cond::cmp(CmpOp::Ne, vr.clone(), vr.clone())),
                    Box::new(Cond::cmp(CmpOp::Lt, ar, SExpr::c(0.0))),
                )),
            );
            // Branch-free: whether a tap wins depends on the data, so a
            // branch on it is mispredicted about as often as it is taken.
            // The flag is set first: both updates test the old maximum.
            let flag = b.reg();
            body.push(Stmt::Set {
                reg: flag,
                value: SExpr::select(take, SExpr::c(1.0), SExpr::c(0.0)),
            });
            let won = || Cond::cmp(CmpOp::Ne, SExpr::Reg(flag), SExpr::c(0.0));
            body.push(Stmt::Set {
                reg: best,
                value: SExpr::select(won(), vr, SExpr::Reg(best)),
            });
            body.push(Stmt::Set {
                reg: at,
                value: SExpr::select(won(), SExpr::Index(tap), SExpr::Reg(at)),
            });
            body
        });
        pre.push(stmt);
        (SExpr::Reg(best), at)
    }

    fn window_mean(
        &mut self,
        arg: NodeId,
        x: &[usize],
        idx: &[IExpr],
        w: &Window,
        pre: &mut Vec<Stmt>,
    ) -> SExpr {
        let acc = self.reg();
        pre.push(Stmt::Set {
            reg: acc,
            value: SExpr::c(0.0),
        });
        let stmt = self.window_loops(w, x, idx, |b, iy, ix, _| {
            let mut body = Vec::new();
            let v = b.value(arg, &[idx[0].clone(), idx[1].clone(), iy, ix], &mut body);
            body.push(Stmt::Set {
                reg: acc,
                value: SExpr::Reg(acc).plus(v),
            });
            body
        });
        pre.push(stmt);
        SExpr::Reg(acc).over(self.window_divisor(w, x, idx))
    }

    fn window_divisor(&self, w: &Window, x: &[usize], idx: &[IExpr]) -> SExpr {
        let count =
            |b: &Self, axis: usize| match b.window_axis(w, axis, &idx[2 + axis], x[2 + axis]) {
                WindowAxis::Range {
                    span: Some((lo, hi)),
                    ..
                } if matches!(w, Window::Avg(_, true)) => hi.plus(lo.mul_c(-1)),
                WindowAxis::Range { start, end, .. } => end.plus(start.mul_c(-1)),
                WindowAxis::Taps { taps, .. } => IExpr::c(taps as i64),
            };
        match count(self, 0).times(count(self, 1)) {
            // Whole windows: a constant, which vector loops can take.
            IExpr::Const(n) => SExpr::c(n as f32),
            n => SExpr::Index(n),
        }
    }

    /// A pooling gradient: each output gradient added into the input
    /// positions of its window (the maximum's alone, for max pooling).
    /// Parallel over the batch: each image's scatter stays in its plane.
    fn scatter(&mut self, id: NodeId, out: BufId) -> Body {
        let node = &self.g.nodes[id.0 as usize];
        let xs = node.ty.shape.clone();
        let args = node.args.clone();
        let op = node.op.clone();
        let dy_arg = if args.len() == 2 { args[1] } else { args[0] };
        let dys = self.shape(dy_arg).to_vec();
        let window = match &op {
            Op::MaxPool2dGrad(g) => Window::Pool(*g),
            Op::AvgPool2dGrad {
                geom,
                count_include_pad,
                ..
            } => Window::Avg(*geom, *count_include_pad),
            _ => Window::Adaptive(dys[2..].to_vec()),
        };
        let max = matches!(op, Op::MaxPool2dGrad(_) | Op::AdaptiveMaxPool2dGrad);
        let mut body = self.nest(&dys, |b, idx| {
            let mut pre = Vec::new();
            let dy = b.value(dy_arg, idx, &mut pre);
            let dy = b.bind(dy, &mut pre);
            let add_into = |iy: IExpr, ix: IExpr, v: SExpr| {
                let at = linearize(&[idx[0].clone(), idx[1].clone(), iy, ix], &xs);
                Stmt::Store {
                    buf: out,
                    index: at.clone(),
                    value: SExpr::load(out, at).plus(v),
                }
            };
            if max {
                let (_, at) = b.window_max(args[0], &xs, idx, window.clone(), &mut pre);
                // Every tap adds, zero where it is not the maximum: a
                // store costs less than a mispredicted branch.
                let stmt = b.window_loops(&window, &xs, idx, |_, iy, ix, tap| {
                    let hit = Cond::cmp(CmpOp::Eq, SExpr::Reg(at), SExpr::Index(tap));
                    vec![add_into(
                        iy,
                        ix,
                        SExpr::select(hit, dy.clone(), SExpr::c(0.0)),
                    )]
                });
                pre.push(stmt);
            } else {
                let share = dy.over(b.window_divisor(&window, &xs, idx));
                let share = b.bind(share, &mut pre);
                let stmt = b.window_loops(&window, &xs, idx, |_, iy, ix, _| {
                    vec![add_into(iy, ix, share)]
                });
                pre.push(stmt);
            }
            pre
        });
        // Only the batch or channel axis may be split: a window's scatter
        // crosses the spatial axes of its plane but never leaves the plane.
        body.parallel = dys[0] > 1 || dys[1] > 1;
        body
    }
}

#[derive(Clone, Debug)]
enum Window {
    /// Max pooling: taps with dilation, bounds-checked.
    Pool(PoolGeom),
    /// Average pooling: the clipped window; whether the padding counts.
    Avg(PoolGeom, bool),
    /// Adaptive pooling to this output size.
    Adaptive(Vec<usize>),
}

enum WindowAxis {
    Taps {
        base: IExpr,
        taps: usize,
        step: i64,
    },
    Range {
        start: IExpr,
        end: IExpr,
        /// The unclipped window (for a divisor that counts padding).
        span: Option<(IExpr, IExpr)>,
    },
}

impl WindowAxis {
    /// For loop variable `v`: the input position, the loop bounds, and
    /// whether the position needs a bounds guard.
    fn position(&self, v: Var) -> (IExpr, IExpr, IExpr, bool) {
        match self {
            WindowAxis::Taps { base, taps, step } => (
                base.clone().plus(IExpr::var(v).mul_c(*step)),
                IExpr::c(0),
                IExpr::c(*taps as i64),
                true,
            ),
            WindowAxis::Range { start, end, .. } => {
                (IExpr::var(v), start.clone(), end.clone(), false)
            }
        }
    }

    /// A bound on the number of taps of a row, to number the taps row by
    /// row: a range window is at most the input's `size` wide. The numbers
    /// stay below 2^24 for inputs up to 4096 x 4096, so they are exact as
    /// f32.
    fn extent_bound(&self, size: usize) -> i64 {
        match self {
            WindowAxis::Taps { taps, .. } => *taps as i64,
            WindowAxis::Range { .. } => size as i64,
        }
    }
}
