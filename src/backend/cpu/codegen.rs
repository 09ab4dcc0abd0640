//! Native code for kernels, with Cranelift's JIT.
//!
//! Each kernel becomes one function
//! `extern "C" fn(buffers: *const *mut f32, lo: i64, hi: i64, seed: i64)`:
//! `buffers` holds the base address of every program buffer, `lo..hi` is
//! the part of the outermost loop to run (the whole loop, or one thread's
//! share of a parallel kernel), and `seed` picks the dropout masks. Loads
//! and stores carry no bounds checks: the program passed the verifier,
//! which proved every index in range.

use super::vectorize::Plan;
use crate::kernel::{BinOp, BufId, CmpOp, Cond, IExpr, Kernel, Program, SExpr, Stmt, UnOp, Var};
use cranelift_codegen::cursor::{Cursor, FuncCursor};
use cranelift_codegen::ir::condcodes::{FloatCC, IntCC};
use cranelift_codegen::ir::{types, AbiParam, FuncRef, InstBuilder, MemFlagsData, Value};
use cranelift_codegen::settings::{self, Configurable};
use cranelift_frontend::{FunctionBuilder, FunctionBuilderContext, Variable};
use cranelift_jit::{JITBuilder, JITModule};
use cranelift_module::{FuncId, Linkage, Module};
use std::collections::{HashMap, HashSet};

/// A compiled kernel's entry point.
pub type KernelFn = unsafe extern "C" fn(*const *mut f32, i64, i64, i64);

/// The compiled kernels of one program, and the JIT memory that holds
/// their code (freed with it).
pub struct Compiled {
    module: Option<JITModule>,
    pub functions: Vec<KernelFn>,
    /// The descriptors of products over views, whose addresses the code
    /// holds: they live as long as it, boxed so that they never move.
    #[allow(clippy::vec_box)]
    _views: Vec<Box<super::gemm::ViewGemm>>,
}

impl Drop for Compiled {
    fn drop(&mut self) {
        if let Some(m) = self.module.take() {
            // SAFETY: the functions pointing into this memory are dropped
            // with `self` and never called after.
            unsafe { m.free_memory() };
        }
    }
}

// The math the kernels call. `extern "C"` so that generated code can call
// them by address; the interpreter uses the same functions.
extern "C" fn nnc_expf(x: f32) -> f32 {
    x.exp()
}
extern "C" fn nnc_logf(x: f32) -> f32 {
    x.ln()
}
extern "C" fn nnc_tanhf(x: f32) -> f32 {
    x.tanh()
}
extern "C" fn nnc_erff(x: f32) -> f32 {
    libm::erff(x)
}
extern "C" fn nnc_powf(x: f32, e: f32) -> f32 {
    x.powf(e)
}

/// `C = A B (+ C)` through matrixmultiply's micro-kernels (AVX2 and FMA,
/// chosen at run time, threaded). A product wider than it is tall is
/// computed as its transpose `C^T = B^T A^T`: matrixmultiply is faster
/// with the larger side as rows (measured in docs/perf.md, where the gemm
/// crate was measured too and lost on average).
///
/// # Safety
/// The views must lie inside live buffers (the verifier proved it) and C
/// must not overlap A or B.
#[allow(clippy::too_many_arguments)]
unsafe extern "C" fn nnc_sgemm(
    m: i64,
    n: i64,
    k: i64,
    a: *const f32,
    rsa: i64,
    csa: i64,
    b: *const f32,
    rsb: i64,
    csb: i64,
    c: *mut f32,
    rsc: i64,
    csc: i64,
    beta: f32,
) {
    let (m, n, k) = (m as usize, n as usize, k as usize);
    let (rsa, csa, rsb, csb, rsc, csc) = (
        rsa as isize,
        csa as isize,
        rsb as isize,
        csb as isize,
        rsc as isize,
        csc as isize,
    );
    // SAFETY: the caller's contract; the transpose reads and writes the
    // same elements.
    unsafe {
        if m < n {
            matrixmultiply::sgemm(n, k, m, 1.0, b, csb, rsb, a, csa, rsa, beta, c, csc, rsc)
        } else {
            matrixmultiply::sgemm(m, k, n, 1.0, a, rsa, csa, b, rsb, csb, beta, c, rsc, csc)
        }
    }
}

const MATH: [(&str, usize); 5] = [
    ("nnc_expf", 1),
    ("nnc_logf", 1),
    ("nnc_tanhf", 1),
    ("nnc_erff", 1),
    ("nnc_powf", 2),
];

fn math_symbol(op: UnOp) -> Option<usize> {
    Some(match op {
        UnOp::Exp => 0,
        UnOp::Log => 1,
        UnOp::Tanh => 2,
        UnOp::Erf => 3,
        UnOp::Pow(_) => 4,
        UnOp::Neg | UnOp::Abs | UnOp::Sqrt | UnOp::Sigmoid => return None,
    })
}

/// Compiles every kernel of `p` (which must have passed the verifier).
pub fn compile(p: &Program) -> Result<Compiled, String> {
    let mut flags = settings::builder();
    let set = |f: &mut settings::Builder, k: &str, v: &str| {
        f.set(k, v)
            .map_err(|e| format!("cranelift setting {k}: {e}"))
    };
    // No e-graph optimization: it places every pure instruction at its
    // first use and then fails to hoist `x * c` out of loops (the constant
    // is rematerialized inside), which undid the hoisting `Emitter::hoist`
    // does. The kernels arrive already simplified and scheduled; with
    // "speed", LeNet-BN's direct convolutions ran 2-2.5 times slower and
    // ResNet-18's step about 5-10 % (docs/perf.md).
    set(&mut flags, "opt_level", "none")?;
    set(&mut flags, "use_colocated_libcalls", "false")?;
    set(&mut flags, "is_pic", "false")?;
    let isa = cranelift_native::builder()
        .map_err(|e| format!("this CPU is not supported by Cranelift: {e}"))?
        .finish(settings::Flags::new(flags))
        .map_err(|e| format!("cranelift: {e}"))?;
    // Fused multiply-add where the CPU has it (detected by
    // cranelift-native); without it, a multiply and an add.
    let fma = isa
        .isa_flags()
        .iter()
        .any(|f| f.name == "has_fma" && f.as_bool() == Some(true));
    let mut jb = JITBuilder::with_isa(isa, cranelift_module::default_libcall_names());
    let addresses: [*const u8; 5] = [
        nnc_expf as *const u8,
        nnc_logf as *const u8,
        nnc_tanhf as *const u8,
        nnc_erff as *const u8,
        nnc_powf as *const u8,
    ];
    for ((name, _), addr) in MATH.iter().zip(addresses) {
        jb.symbol(*name, addr);
    }
    jb.symbol("nnc_sgemm", nnc_sgemm as *const u8);
    jb.symbol("nnc_sgemm_view", super::gemm::nnc_sgemm_view as *const u8);
    let mut module = JITModule::new(jb);
    let sgemm = {
        let mut sig = module.make_signature();
        let ptr = module.target_config().pointer_type();
        for t in [types::I64, types::I64, types::I64] {
            sig.params.push(AbiParam::new(t));
        }
        for _ in 0..3 {
            sig.params.push(AbiParam::new(ptr));
            sig.params.push(AbiParam::new(types::I64));
            sig.params.push(AbiParam::new(types::I64));
        }
        sig.params.push(AbiParam::new(types::F32));
        module
            .declare_function("nnc_sgemm", Linkage::Import, &sig)
            .map_err(|e| e.to_string())?
    };
    let sgemm_view = {
        let mut sig = module.make_signature();
        let ptr = module.target_config().pointer_type();
        for _ in 0..4 {
            sig.params.push(AbiParam::new(ptr));
        }
        module
            .declare_function("nnc_sgemm_view", Linkage::Import, &sig)
            .map_err(|e| e.to_string())?
    };
    let mut math = Vec::new();
    for (name, arity) in MATH {
        let mut sig = module.make_signature();
        for _ in 0..arity {
            sig.params.push(AbiParam::new(types::F32));
        }
        sig.returns.push(AbiParam::new(types::F32));
        let id = module
            .declare_function(name, Linkage::Import, &sig)
            .map_err(|e| e.to_string())?;
        math.push(id);
    }
    let config = module.target_config();
    let ptr = config.pointer_type();
    let mut ctx = module.make_context();
    let mut fctx = FunctionBuilderContext::new();
    let mut ids = Vec::new();
    let mut views = Vec::new();
    // A tool for reading the machine code (`NNC_DUMP_ASM=FILE`): Cranelift's
    // disassembly of every kernel, in order.
    let dump_asm = std::env::var_os("NNC_DUMP_ASM");
    let mut asm = String::new();
    for (i, k) in p.kernels.iter().enumerate() {
        ctx.set_disasm(dump_asm.is_some());
        ctx.func.signature.params.push(AbiParam::new(ptr));
        for _ in 0..3 {
            ctx.func.signature.params.push(AbiParam::new(types::I64));
        }
        {
            let mut b = FunctionBuilder::new(&mut ctx.func, &mut fctx);
            let mut refs = Vec::new();
            for id in &math {
                refs.push(module.declare_func_in_func(*id, b.func));
            }
            refs.push(module.declare_func_in_func(sgemm, b.func));
            refs.push(module.declare_func_in_func(sgemm_view, b.func));
            views.extend(Emitter::emit(&mut b, k, ptr, &refs, fma));
            b.finalize(config);
        }
        let id = module
            .declare_function(&format!("k{i}"), Linkage::Local, &ctx.func.signature)
            .map_err(|e| e.to_string())?;
        module
            .define_function(id, &mut ctx)
            .map_err(|e| format!("kernel `{}`: {e:?}", k.name))?;
        if let Some(vcode) = ctx.compiled_code().and_then(|c| c.vcode.as_ref()) {
            asm.push_str(&format!("kernel {}\n{vcode}\n", k.name));
        }
        module.clear_context(&mut ctx);
        ids.push(id);
    }
    if let Some(path) = dump_asm {
        std::fs::write(&path, asm).map_err(|e| format!("NNC_DUMP_ASM: {e}"))?;
    }
    module.finalize_definitions().map_err(|e| e.to_string())?;
    let functions = ids
        .iter()
        .map(|id: &FuncId| {
            let code = module.get_finalized_function(*id);
            // SAFETY: the function was defined with exactly this signature.
            unsafe { std::mem::transmute::<*const u8, KernelFn>(code) }
        })
        .collect();
    Ok(Compiled {
        module: Some(module),
        functions,
        _views: views,
    })
}

/// Boxed descriptors whose addresses generated code holds.
#[allow(clippy::vec_box)]
type Views = Vec<Box<super::gemm::ViewGemm>>;

struct Emitter<'a, 'b> {
    b: &'a mut FunctionBuilder<'b>,
    bases: HashMap<BufId, Value>,
    vars: Vec<Variable>,
    regs: Vec<Variable>,
    math: &'a [FuncRef],
    lo: Value,
    hi: Value,
    seed: Value,
    /// Aligned, non-trapping: what the verifier proved of every access.
    trusted: MemFlagsData,
    /// Each register as four lanes, for vectorized loops.
    vregs: Vec<Variable>,
    /// Whether `a * b + c` is one instruction (x86's FMA3).
    fma: bool,
    /// Index arithmetic computed before the loops it does not vary in,
    /// innermost loop last (see `hoist`).
    hoisted: Vec<HashMap<IExpr, Value>>,
    /// Reductions whose partial results an enclosing scalar loop starts
    /// and combines, with their second set when they have one (see `stmt`).
    carried: HashMap<u32, Option<Variable>>,
    /// Index arithmetic already computed in the current block, keyed by
    /// expression, so that the loads of an unrolled window or a register
    /// tile share it (Cranelift's e-graph, which would merge duplicates,
    /// is off: see `compile`). Valid while the block and the values of
    /// the loop variables stay: `int` drops it on a new block, `step_var`
    /// when a variable changes.
    local: HashMap<IExpr, Value>,
    local_block: Option<cranelift_codegen::ir::Block>,
    /// The vector loop being emitted: its values that no step changes,
    /// made before it (see `VectorInvariants`).
    invariants: Option<VectorInvariants>,
    /// Descriptors of the kernel's products over views (see `gemm`),
    /// boxed: the code holds their addresses.
    #[allow(clippy::vec_box)]
    views: Vec<Box<super::gemm::ViewGemm>>,
}

/// Four lanes of f32: the widest vectors Cranelift emits on x86-64.
pub(super) const LANES: i64 = 4;

/// A vector loop with at most this many reductions keeps two sets of
/// partial results, so that twice as many chains of dependent additions
/// run at once. With more, its chains are already enough to keep the FMA
/// units busy (4 cycles of latency, 2 a cycle: 8 chains), and a second set
/// would need more than x86's 16 vector registers (a convolution's
/// register tile of 2 x 5 sums, `contract.rs`).
const PAIRED_REDUCTIONS: usize = 4;
const F32X4: types::Type = types::F32X4;

/// In bounds but maybe not aligned to the vector's size.
fn unaligned() -> MemFlagsData {
    MemFlagsData::new().with_notrap()
}

impl<'a, 'b> Emitter<'a, 'b> {
    fn emit(
        b: &'a mut FunctionBuilder<'b>,
        k: &Kernel,
        ptr: types::Type,
        math: &'a [FuncRef],
        fma: bool,
    ) -> Views {
        let entry = b.create_block();
        b.append_block_params_for_function_params(entry);
        b.switch_to_block(entry);
        b.seal_block(entry);
        let trusted = MemFlagsData::trusted();
        let params = b.block_params(entry).to_vec();
        let (table, lo, hi, seed) = (params[0], params[1], params[2], params[3]);
        // Every buffer's base address, loaded once.
        let mut used = Vec::new();
        for s in &k.body {
            buffers_of(s, &mut used);
        }
        used.sort();
        used.dedup();
        let mut bases = HashMap::new();
        for buf in used {
            let offset = (buf.0 as usize * ptr.bytes() as usize) as i32;
            let base = b.ins().load(ptr, trusted, table, offset);
            bases.insert(buf, base);
        }
        let vars = (0..k.vars).map(|_| b.declare_var(types::I64)).collect();
        let regs: Vec<Variable> = (0..k.regs).map(|_| b.declare_var(types::F32)).collect();
        for r in &regs {
            let zero = b.ins().f32const(0.0);
            b.def_var(*r, zero);
        }
        let vregs: Vec<Variable> = (0..k.regs).map(|_| b.declare_var(F32X4)).collect();
        for r in &vregs {
            let zero = b.ins().f32const(0.0);
            let zero = b.ins().splat(F32X4, zero);
            b.def_var(*r, zero);
        }
        let mut e = Emitter {
            b,
            fma,
            hoisted: Vec::new(),
            carried: HashMap::new(),
            local: HashMap::new(),
            local_block: None,
            invariants: None,
            bases,
            vars,
            regs,
            math,
            lo,
            hi,
            seed,
            trusted,
            vregs,
            views: Vec::new(),
        };
        for (i, s) in k.body.iter().enumerate() {
            // The outermost loop of a parallel kernel runs `lo..hi`.
            e.stmt(s, k.parallel && i == 0);
        }
        e.b.ins().return_(&[]);
        e.views
    }

    fn stmt(&mut self, s: &Stmt, split: bool) {
        match s {
            Stmt::For {
                var,
                start,
                end,
                body,
            } => {
                // Whether the loop runs a whole number of vector steps,
                // known here: then it has no scalar tail.
                let whole = match (start, end, split) {
                    (IExpr::Const(a), IExpr::Const(b), false) => (b - a) % LANES == 0,
                    _ => false,
                };
                // Whether the whole loop runs at least once (each thread's
                // part of a split one may not), so that a load whose index
                // it does not change may be made before it.
                let runs = matches!((start, end), (IExpr::Const(a), IExpr::Const(b)) if b > a);
                let (start, end) = if split {
                    (self.lo, self.hi)
                } else {
                    (self.int(start), self.int(end))
                };
                self.hoist(*var, body);
                if let Some(plan) = loop_plan(s, split) {
                    self.vector_loop(*var, (start, end, whole), body, &plan, runs);
                } else {
                    // A scalar loop around the vector loop of a reduction
                    // (images around a row of positions): the partial
                    // results run on across it and are combined once after
                    // it, not after every row.
                    let chain = chain_reductions(body);
                    let paired = chain.len() <= PAIRED_REDUCTIONS;
                    let carried: Vec<(u32, BinOp)> = chain
                        .into_iter()
                        .filter(|(r, _)| !self.carried.contains_key(r))
                        .collect();
                    // Without a scalar tail, the sums so far move into the
                    // partial results for the loops (see `start_partials`).
                    let moved = chain_whole(body);
                    for &(r, op) in &carried {
                        self.start_partials(self.vregs[r as usize], op, moved.then_some(r));
                        let second = paired.then(|| self.b.declare_var(F32X4));
                        if let Some(second) = second {
                            self.start_partials(second, op, None);
                        }
                        self.carried.insert(r, second);
                    }
                    let v = self.vars[var.0 as usize];
                    self.step_var(v, start);
                    self.scalar_loop(v, end, body);
                    for &(r, op) in &carried {
                        if let Some(second) = self.carried.remove(&r).expect("inserted above") {
                            self.join_partials(r, op, second);
                        }
                        self.combine_partials(r, op, moved);
                    }
                }
                self.hoisted.pop();
            }
            Stmt::Set { reg, value } => {
                let v = self.float(value);
                self.b.def_var(self.regs[reg.0 as usize], v);
            }
            Stmt::Store { buf, index, value } => {
                let v = self.float(value);
                let (addr, off) = self.place(*buf, index);
                self.b.ins().store(self.trusted, v, addr, off);
            }
            Stmt::Gemm(g)
                if !(g.a.is_strided() && g.b.is_strided() && g.c.is_strided())
                    || super::gemm::ours_pays(g) =>
            {
                let desc = Box::new(super::gemm::ViewGemm::new(g));
                let mut args = vec![self.b.ins().iconst(types::I64, &*desc as *const _ as i64)];
                self.views.push(desc);
                for r in [&g.a, &g.b, &g.c] {
                    args.push(self.address(r.buf, &r.offset));
                }
                // The view product's function follows the strided one.
                let f = self.math[MATH.len() + 1];
                self.b.ins().call(f, &args);
            }
            Stmt::Gemm(g) => {
                let mut args = Vec::new();
                for v in [g.m, g.n, g.k] {
                    args.push(self.b.ins().iconst(types::I64, v));
                }
                for r in [&g.a, &g.b, &g.c] {
                    let at = self.address(r.buf, &r.offset);
                    args.push(at);
                    args.push(self.b.ins().iconst(types::I64, r.row));
                    args.push(self.b.ins().iconst(types::I64, r.col));
                }
                args.push(self.b.ins().f32const(if g.accumulate { 1.0 } else { 0.0 }));
                // The product's function follows the math functions.
                let f = self.math[MATH.len()];
                self.b.ins().call(f, &args);
            }
            Stmt::If { cond, then } => {
                let c = self.cond(cond);
                let yes = self.b.create_block();
                let done = self.b.create_block();
                self.b.ins().brif(c, yes, &[], done, &[]);
                self.b.switch_to_block(yes);
                self.b.seal_block(yes);
                for s in then {
                    self.stmt(s, false);
                }
                self.b.ins().jump(done, &[]);
                self.b.switch_to_block(done);
                self.b.seal_block(done);
            }
        }
    }

    /// `for var in start..end` four elements at a time, then the rest one
    /// by one (none when `whole` says the steps divide the range).
    fn vector_loop(
        &mut self,
        var: Var,
        (start, end, whole): (Value, Value, bool),
        body: &[Stmt],
        plan: &Plan,
        runs: bool,
    ) {
        let invariants = self.vector_invariants(var, body, runs);
        let outer = self.invariants.replace(invariants);
        let v = self.vars[var.0 as usize];
        self.step_var(v, start);
        // Each reduction keeps four partial results, from its identity
        // (unless an enclosing loop carries them).
        for &(r, op) in &plan.reductions {
            if !self.carried.contains_key(&r) {
                self.start_partials(self.vregs[r as usize], op, None);
            }
        }
        // A reduction is a chain of dependent additions: two sets of
        // partial results, eight elements a step, let two chains run at
        // once, joined after.
        let paired = plan.reductions.len() <= PAIRED_REDUCTIONS;
        if !plan.reductions.is_empty() && paired {
            let mut second = HashMap::new();
            for &(r, op) in &plan.reductions {
                let other = match self.carried.get(&r) {
                    Some(&Some(carried)) => carried,
                    _ => {
                        let other = self.b.declare_var(F32X4);
                        self.start_partials(other, op, None);
                        other
                    }
                };
                second.insert(r, other);
            }
            let last = self.b.ins().iadd_imm_s(end, -(2 * LANES - 1));
            let pairs = self.b.create_block();
            self.counted_loop(v, last, LANES, pairs, |e| {
                e.vector_body(body, plan, var, None);
                let i = e.b.use_var(v);
                let next = e.b.ins().iadd_imm_s(i, LANES);
                e.step_var(v, next);
                e.vector_body(body, plan, var, Some(&second));
            });
            self.b.switch_to_block(pairs);
            self.b.seal_block(pairs);
            // A second set an enclosing loop carries is joined after it.
            for &(r, op) in &plan.reductions {
                if !matches!(self.carried.get(&r), Some(Some(_))) {
                    self.join_partials(r, op, second[&r]);
                }
            }
        }
        // Four at a time while four remain.
        let last = self.b.ins().iadd_imm_s(end, -(LANES - 1));
        let combine = self.b.create_block();
        self.counted_loop(v, last, LANES, combine, |e| {
            e.vector_body(body, plan, var, None);
        });
        // The partial results join the scalar register; the tail goes on
        // from there, one element at a time.
        self.b.switch_to_block(combine);
        self.b.seal_block(combine);
        for &(r, op) in &plan.reductions {
            if !self.carried.contains_key(&r) {
                self.combine_partials(r, op, false);
            }
        }
        self.invariants = outer;
        if !whole {
            self.scalar_loop(v, end, body);
        }
    }

    /// The lanes of the vector loop over `var` that all its steps share,
    /// computed here, before it: loads at an index that no loop inside
    /// changes (a batch norm's per-channel statistics) from a buffer the
    /// loop does not store to. Without this, each step of the first batch
    /// norm and sigmoid of LeNet reloaded and broadcast five of them, and
    /// fourteen constants: 24 of its 60 instructions.
    /// (Loads only when the loop is known to run, `runs`, and only those
    /// of its own statements, not of loops inside, which may not.)
    fn vector_invariants(&mut self, var: Var, body: &[Stmt], runs: bool) -> VectorInvariants {
        let mut inside = HashSet::new();
        inside.insert(var);
        let mut stored = HashSet::new();
        for s in body {
            loop_vars(s, &mut inside);
            stored_bufs(s, &mut stored);
        }
        let mut wanted = Vec::new();
        for s in body.iter().filter(|_| runs) {
            if let Stmt::Set { value, .. } | Stmt::Store { value, .. } = s {
                value.for_each_load(&mut |buf, index| {
                    if !stored.contains(&buf) && !reads_any(index, &inside) {
                        wanted.push((buf, index.clone()));
                    }
                });
            }
        }
        let mut loads = HashMap::new();
        for key in wanted {
            if let std::collections::hash_map::Entry::Vacant(slot) = loads.entry(key) {
                let (buf, index) = slot.key();
                let (addr, off) = self.place(*buf, index);
                let x = self.b.ins().load(types::F32, self.trusted, addr, off);
                slot.insert(self.b.ins().splat(F32X4, x));
            }
        }
        VectorInvariants {
            before: self.b.current_block().expect("a block is open"),
            constants: HashMap::new(),
            loads,
        }
    }

    /// Four lanes of the constant `x`, made before the vector loop being
    /// emitted, if any.
    fn vconst(&mut self, x: f32) -> Value {
        self.splat_constant(Lanes::F32(x.to_bits()))
    }

    /// Four i32 lanes of `x`, as `vconst`.
    fn vconst_i32(&mut self, x: i32) -> Value {
        self.splat_constant(Lanes::I32(x))
    }

    fn splat_constant(&mut self, key: Lanes) -> Value {
        let before = match &self.invariants {
            None => None,
            Some(inv) => match inv.constants.get(&key) {
                Some(&v) => return v,
                None => Some(inv.before),
            },
        };
        let v = match before {
            Some(block) if self.b.current_block() != Some(block) => {
                // Before the jump that ends the block before the loop.
                let last = self
                    .b
                    .func
                    .layout
                    .last_inst(block)
                    .expect("the block jumps on");
                let mut pos = FuncCursor::new(self.b.func).at_inst(last);
                match key {
                    Lanes::F32(bits) => {
                        let c = pos.ins().f32const(f32::from_bits(bits));
                        pos.ins().splat(F32X4, c)
                    }
                    Lanes::I32(x) => {
                        let c = pos.ins().iconst(types::I32, i64::from(x));
                        pos.ins().splat(types::I32X4, c)
                    }
                }
            }
            _ => match key {
                Lanes::F32(bits) => {
                    let c = self.b.ins().f32const(f32::from_bits(bits));
                    self.b.ins().splat(F32X4, c)
                }
                Lanes::I32(x) => {
                    let c = self.b.ins().iconst(types::I32, i64::from(x));
                    self.b.ins().splat(types::I32X4, c)
                }
            },
        };
        if let Some(inv) = &mut self.invariants {
            inv.constants.insert(key, v);
        }
        v
    }

    /// Four lanes of `op`'s identity into `lanes`, the first lane taking
    /// the scalar register `from`'s value instead when given (loops around
    /// a vector loop without a scalar tail): the sum so far moves into the
    /// partial results, so that the scalar register does not hold a
    /// machine register through the loops (with a register tile's ten
    /// sums, both did not fit, and sums were spilled and reloaded at every
    /// step); `combine_partials` moves it back.
    fn start_partials(&mut self, lanes: Variable, op: BinOp, from: Option<u32>) {
        let c = self.b.ins().f32const(identity_of(op));
        let mut start = self.b.ins().splat(F32X4, c);
        if let Some(r) = from {
            let so_far = self.b.use_var(self.regs[r as usize]);
            start = self.b.ins().insertlane(start, so_far, 0);
        }
        self.b.def_var(lanes, start);
    }

    /// The second set of partial results of `r` joined into the first.
    fn join_partials(&mut self, r: u32, op: BinOp, second: Variable) {
        let (a, b) = (
            self.b.use_var(self.vregs[r as usize]),
            self.b.use_var(second),
        );
        let joined = self.bin_op(op, a, b);
        self.b.def_var(self.vregs[r as usize], joined);
    }

    /// The four partial results of `r` joined into its scalar register,
    /// or, when they hold its value from before the loop (`moved`, see
    /// `start_partials`), replacing it.
    fn combine_partials(&mut self, r: u32, op: BinOp, moved: bool) {
        let lanes = self.b.use_var(self.vregs[r as usize]);
        let mut acc = self.b.ins().extractlane(lanes, 0);
        if !moved {
            let so_far = self.b.use_var(self.regs[r as usize]);
            acc = self.bin_op(op, so_far, acc);
        }
        for k in 1..LANES as u8 {
            let x = self.b.ins().extractlane(lanes, k);
            acc = self.bin_op(op, acc, x);
        }
        self.b.def_var(self.regs[r as usize], acc);
    }

    /// One vector step of a loop's body; a reduction adds into its four
    /// partial results, or into the second set `second` holds.
    fn vector_body(
        &mut self,
        body: &[Stmt],
        plan: &Plan,
        var: Var,
        second: Option<&HashMap<u32, Variable>>,
    ) {
        let vector = &plan.lanes;
        for s in body {
            match s {
                Stmt::Set { reg, value } if plan.reductions.iter().any(|(r, _)| *r == reg.0) => {
                    let (_, op) = *plan.reductions.iter().find(|(r, _)| *r == reg.0).unwrap();
                    let into = second.map_or(self.vregs[reg.0 as usize], |m| m[&reg.0]);
                    let acc = self.b.use_var(into);
                    // A register tile's sums (more than the paired few)
                    // multiply and add in two instructions, not one FMA:
                    // x86's FMA overwrites a multiplicand, and a tile's
                    // multiplicands live on, so each FMA needed a copy and
                    // the loop's end a shuffle of the sums back into place;
                    // the add writes its sum in place. The FMA units take
                    // the multiplies, the adders the adds.
                    let next = match reduced_operand(value, reg.0) {
                        SExpr::Bin(BinOp::Mul, a, b)
                            if self.fma
                                && op == BinOp::Add
                                && plan.reductions.len() <= PAIRED_REDUCTIONS =>
                        {
                            let (a, b) = (self.vfloat(a, var, vector), self.vfloat(b, var, vector));
                            self.b.ins().fma(a, b, acc)
                        }
                        operand => {
                            let x = self.vfloat(operand, var, vector);
                            self.bin_op(op, acc, x)
                        }
                    };
                    self.b.def_var(into, next);
                }
                s => self.vector_stmt(s, var, vector),
            }
        }
    }

    /// `body` one element at a time while `v < end`, from `v`'s value now.
    fn scalar_loop(&mut self, v: Variable, end: Value, body: &[Stmt]) {
        let exit = self.b.create_block();
        self.counted_loop(v, end, 1, exit, |e| {
            for s in body {
                e.stmt(s, false);
            }
        });
        self.b.switch_to_block(exit);
        self.b.seal_block(exit);
    }

    /// Computes, here (before the loop over `var`), the index arithmetic
    /// of `body` that neither `var` nor a loop inside `body` changes, for
    /// `int` to use inside; the caller pops it after the loop. Without it
    /// an image's offset was multiplied out again for every four elements
    /// (Cranelift's own loop-invariant code motion left `x * c` in the
    /// loop, and is off: see `compile`).
    fn hoist(&mut self, var: Var, body: &[Stmt]) {
        let mut inside = HashSet::new();
        inside.insert(var);
        for s in body {
            loop_vars(s, &mut inside);
        }
        let mut found = Vec::new();
        // Addresses are computed from indices without their constants
        // (`place`): those are what to hoist.
        for s in body {
            stmt_exprs(s, &mut |e| {
                invariant_parts(e, &inside, &mut found);
                invariant_parts(&crate::kernel::split_offset(e).0, &inside, &mut found);
            });
        }
        let mut map = HashMap::new();
        for e in found {
            if let std::collections::hash_map::Entry::Vacant(slot) = map.entry(e) {
                let v = self.int(slot.key());
                slot.insert(v);
            }
        }
        self.hoisted.push(map);
    }

    /// `while v < bound { body; v += step }` from the current block, leaving
    /// to `exit` (which the caller seals once it has all its predecessors).
    fn counted_loop(
        &mut self,
        v: Variable,
        bound: Value,
        step: i64,
        exit: cranelift_codegen::ir::Block,
        body: impl FnOnce(&mut Self),
    ) {
        let header = self.b.create_block();
        let inner = self.b.create_block();
        self.b.ins().jump(header, &[]);
        self.b.switch_to_block(header);
        let i = self.b.use_var(v);
        let more = self.b.ins().icmp(IntCC::SignedLessThan, i, bound);
        self.b.ins().brif(more, inner, &[], exit, &[]);
        self.b.switch_to_block(inner);
        self.b.seal_block(inner);
        body(self);
        let i = self.b.use_var(v);
        let next = self.b.ins().iadd_imm_s(i, step);
        self.step_var(v, next);
        self.b.ins().jump(header, &[]);
        self.b.seal_block(header);
    }

    /// `a op b`, on scalars or vectors alike.
    fn bin_op(&mut self, op: BinOp, a: Value, b: Value) -> Value {
        match op {
            BinOp::Add => self.b.ins().fadd(a, b),
            BinOp::Sub => self.b.ins().fsub(a, b),
            BinOp::Mul => self.b.ins().fmul(a, b),
            BinOp::Div => self.b.ins().fdiv(a, b),
            // Cranelift's fmax and fmin give NaN when either side is.
            BinOp::Max => self.b.ins().fmax(a, b),
            BinOp::Min => self.b.ins().fmin(a, b),
        }
    }

    fn vector_stmt(&mut self, s: &Stmt, var: Var, vector: &HashSet<u32>) {
        match s {
            Stmt::Set { reg, value } => {
                let v = self.vfloat(value, var, vector);
                self.b.def_var(self.vregs[reg.0 as usize], v);
            }
            Stmt::Store { buf, index, value } => {
                let v = self.vfloat(value, var, vector);
                let (addr, off) = self.place(*buf, index);
                self.b.ins().store(unaligned(), v, addr, off);
            }
            // An inner loop, the same for all four lanes: scalar control,
            // vector body.
            Stmt::For {
                var: inner,
                start,
                end,
                body,
            } => {
                let (start, end) = (self.int(start), self.int(end));
                self.hoist(*inner, body);
                let iv = self.vars[inner.0 as usize];
                self.step_var(iv, start);
                let exit = self.b.create_block();
                self.counted_loop(iv, end, 1, exit, |e| {
                    for s in body {
                        e.vector_stmt(s, var, vector);
                    }
                });
                self.hoisted.pop();
                self.b.switch_to_block(exit);
                self.b.seal_block(exit);
            }
            _ => unreachable!("vectorize::plan admits sets, stores and inner loops"),
        }
    }

    /// Four lanes of a value: lane `k` is the value at `var + k`.
    fn vfloat(&mut self, e: &SExpr, var: Var, vector: &HashSet<u32>) -> Value {
        match e {
            SExpr::Const(c) => self.vconst(*c),
            SExpr::Load { buf, index } => {
                let hoisted = self
                    .invariants
                    .as_ref()
                    .and_then(|inv| inv.loads.get(&(*buf, index.clone())));
                if let Some(&v) = hoisted {
                    return v;
                }
                let Some(step) = super::vectorize::step(index, var) else {
                    // Each lane at its own index.
                    let mut lanes = Vec::new();
                    for k in 0..LANES {
                        let at = crate::kernel::shift_var(index, var, k);
                        let (addr, off) = self.place(*buf, &at);
                        lanes.push(self.b.ins().load(types::F32, self.trusted, addr, off));
                    }
                    return self.gather(&lanes);
                };
                let (addr, at) = self.place(*buf, index);
                match step {
                    1 => self.b.ins().load(F32X4, unaligned(), addr, at),
                    0 => {
                        let x = self.b.ins().load(types::F32, self.trusted, addr, at);
                        self.b.ins().splat(F32X4, x)
                    }
                    s => {
                        let mut lanes = Vec::new();
                        for k in 0..LANES {
                            let off = at + (k * s * 4) as i32;
                            lanes.push(self.b.ins().load(types::F32, self.trusted, addr, off));
                        }
                        self.gather(&lanes)
                    }
                }
            }
            SExpr::Reg(r) if vector.contains(&r.0) => self.b.use_var(self.vregs[r.0 as usize]),
            SExpr::Reg(r) => {
                let x = self.b.use_var(self.regs[r.0 as usize]);
                self.b.ins().splat(F32X4, x)
            }
            SExpr::Index(_) => unreachable!("vectorize::plan refuses indices as values"),
            SExpr::Un(op, a) => {
                let a = self.vfloat(a, var, vector);
                match (op, math_symbol(*op)) {
                    (UnOp::Exp, _) => self.vector_exp(a),
                    (UnOp::Sigmoid, _) => self.vector_sigmoid(a),
                    (UnOp::Neg, _) => self.b.ins().fneg(a),
                    (UnOp::Abs, _) => self.b.ins().fabs(a),
                    (UnOp::Sqrt, _) => self.b.ins().sqrt(a),
                    (op, Some(f)) => {
                        // No vector math library: a call per lane.
                        let mut lanes = Vec::new();
                        for k in 0..LANES as u8 {
                            let x = self.b.ins().extractlane(a, k);
                            let mut args = vec![x];
                            if let UnOp::Pow(e) = op {
                                args.push(self.b.ins().f32const(*e));
                            }
                            let call = self.b.ins().call(self.math[f], &args);
                            lanes.push(self.b.inst_results(call)[0]);
                        }
                        self.gather(&lanes)
                    }
                    (_, None) => unreachable!("instructions are handled above"),
                }
            }
            SExpr::Bin(BinOp::Add, a, b) if self.fma && (a.is_mul() || b.is_mul()) => {
                let (SExpr::Bin(_, x, y), c) = (if a.is_mul() { (&**a, b) } else { (&**b, a) })
                else {
                    unreachable!("one side is a product")
                };
                let (x, y) = (self.vfloat(x, var, vector), self.vfloat(y, var, vector));
                let c = self.vfloat(c, var, vector);
                self.b.ins().fma(x, y, c)
            }
            SExpr::Bin(op @ (BinOp::Max | BinOp::Min), a, b) if b.is_number() => {
                // Against a constant that is not NaN, the comparison and
                // select that x86's maxps and minps implement: NaN in `a`
                // fails the comparison and stays.
                let (a, b) = (self.vfloat(a, var, vector), self.vfloat(b, var, vector));
                let cc = if *op == BinOp::Max {
                    FloatCC::LessThan
                } else {
                    FloatCC::GreaterThan
                };
                let take_b = self.b.ins().fcmp(cc, a, b);
                let take_b = self.b.ins().bitcast(F32X4, MemFlagsData::new(), take_b);
                self.b.ins().bitselect(take_b, b, a)
            }
            SExpr::Bin(op, a, b) => {
                let (a, b) = (self.vfloat(a, var, vector), self.vfloat(b, var, vector));
                self.bin_op(*op, a, b)
            }
            SExpr::Select(c, a, b) => {
                // Both sides are evaluated: a vectorized loop has no guards,
                // so every load in it is in bounds on its own.
                let mask = self.vcond(c, var, vector);
                let mask = self.b.ins().bitcast(F32X4, MemFlagsData::new(), mask);
                let (a, b) = (self.vfloat(a, var, vector), self.vfloat(b, var, vector));
                self.b.ins().bitselect(mask, a, b)
            }
        }
    }

    /// `e^r` and `n` with `e^x = 2^n e^r`, for `x` already clamped to
    /// `[-87.34, 88.73]`: `n` the nearest integer to `x / ln 2` (a whole
    /// number as a float) and `e^r` a degree-6 polynomial on
    /// `|r| <= ln 2 / 2` (Cephes' expf coefficients: relative error about
    /// 1e-7).
    fn exp_parts(&mut self, clamped: Value) -> (Value, Value) {
        let c = |e: &mut Self, v: f32| e.vconst(v);
        // n = floor(x log2(e) + 1/2)
        let log2e = c(self, std::f32::consts::LOG2_E);
        let half = c(self, 0.5);
        let t = self.mul_add(clamped, log2e, half);
        let n = self.b.ins().floor(t);
        // r = x - n ln 2, in two parts for precision.
        let (c1, c2) = (c(self, -0.693_359_4), c(self, 2.121_944_4e-4));
        let r = self.mul_add(n, c1, clamped);
        let r = self.mul_add(n, c2, r);
        let coefficients = [
            1.987_569_1e-4,
            1.398_199_9e-3,
            8.333_452e-3,
            4.166_579_6e-2,
            0.166_666_65,
            0.5,
        ];
        let mut p = c(self, coefficients[0]);
        for &k in &coefficients[1..] {
            let k = c(self, k);
            p = self.mul_add(p, r, k);
        }
        let r2 = self.b.ins().fmul(r, r);
        let one = c(self, 1.0);
        let y = self.mul_add(p, r2, r);
        let y = self.b.ins().fadd(y, one);
        (y, n)
    }

    /// `1 / (1 + e^-x)` of four lanes. `e^-x` is needed only on `-x` in
    /// `[-87.34, 88]`: above, the sigmoid is below 6e-39 (and returned as
    /// that, not as 0 or a subnormal); below, it is 1 to the last bit.
    /// There `n` lies in `[-126, 127]`, so `2^n` is one exponent field,
    /// without `exp`'s second scale and its infinite and zero ends: about
    /// half of `exp`'s instructions. NaN fails both comparisons and stays.
    fn vector_sigmoid(&mut self, x: Value) -> Value {
        let c = |e: &mut Self, v: f32| e.vconst(v);
        let z = self.b.ins().fneg(x);
        let z = self.clamp(z, -87.336_55, 88.0);
        let (y, n) = self.exp_parts(z);
        let ni = self.float_to_int(n);
        let scale = self.power_of_two(ni, 127);
        let e = self.b.ins().fmul(y, scale);
        let one = c(self, 1.0);
        let d = self.b.ins().fadd(one, e);
        self.b.ins().fdiv(one, d)
    }

    /// Four lanes clamped to `[lo, hi]` by comparison and select (two
    /// instructions each, where fmin and fmax take eight): NaN fails both
    /// comparisons and stays.
    fn clamp(&mut self, x: Value, lo: f32, hi: f32) -> Value {
        let mut x = x;
        for (bound, cc) in [(hi, FloatCC::GreaterThan), (lo, FloatCC::LessThan)] {
            let bound = self.vconst(bound);
            let beyond = self.b.ins().fcmp(cc, x, bound);
            let beyond = self.b.ins().bitcast(F32X4, MemFlagsData::new(), beyond);
            x = self.b.ins().bitselect(beyond, bound, x);
        }
        x
    }

    /// `2^(n + bias - 127)` from whole numbers `n` (i32 lanes) put in the
    /// exponent field: `bias` 127 for `2^n`.
    fn power_of_two(&mut self, n: Value, bias: i32) -> Value {
        let b = self.vconst_i32(bias);
        let biased = self.b.ins().iadd(n, b);
        let shift = self.b.ins().iconst(types::I32, 23);
        let bits = self.b.ins().ishl(biased, shift);
        self.b.ins().bitcast(F32X4, MemFlagsData::new(), bits)
    }

    /// A whole number (or NaN, whose result is NaN whatever this gives)
    /// as four i32 lanes: x86's truncating conversion needs none of the
    /// saturating conversion's fix-ups.
    fn float_to_int(&mut self, n: Value) -> Value {
        if cfg!(target_arch = "x86_64") {
            self.b.ins().x86_cvtt2dq(types::I32X4, n)
        } else {
            self.b.ins().fcvt_to_sint_sat(types::I32X4, n)
        }
    }

    /// `exp` of four lanes without a call: `2^n * e^r` with `n` the nearest
    /// integer to `x / ln 2` and `e^r` a degree-6 polynomial on
    /// `|r| <= ln 2 / 2` (Cephes' expf coefficients: relative error about
    /// 1e-7). Above 88.72 the result is infinite, below -87.33 zero, and NaN
    /// stays NaN.
    fn vector_exp(&mut self, x: Value) -> Value {
        // Cephes' scheme is exact enough without fusing; with FMA each
        // step is one instruction.
        let c = |e: &mut Self, v: f32| e.vconst(v);
        let (hi, lo) = (c(self, 88.722_84), c(self, -87.336_55));
        let clamped = self.clamp(x, -87.336_55, 88.722_84);
        let (y, n) = self.exp_parts(clamped);
        // 2^n from n's bits in the exponent field. n reaches 128 near the
        // top of the range, past the largest exponent: there the scale is
        // 2^(n-1), and y is doubled instead.
        // n is a whole number in [-127, 128] after the clamp, or NaN.
        let ni = self.float_to_int(n);
        let (low, high) = (self.power_of_two(ni, 127), self.power_of_two(ni, 126));
        let two = c(self, 2.0);
        let zero_f = c(self, 0.0);
        let doubled = self.b.ins().fmul(y, two);
        let positive = self.b.ins().fcmp(FloatCC::GreaterThan, n, zero_f);
        let positive = self.b.ins().bitcast(F32X4, MemFlagsData::new(), positive);
        let from_low = self.b.ins().fmul(y, low);
        let from_high = self.b.ins().fmul(doubled, high);
        let result = self.b.ins().bitselect(positive, from_high, from_low);
        // Beyond the range: infinity above (and for +inf), zero below.
        let inf = c(self, f32::INFINITY);
        let zero = c(self, 0.0);
        let over = self.b.ins().fcmp(FloatCC::GreaterThan, x, hi);
        let over = self.b.ins().bitcast(F32X4, MemFlagsData::new(), over);
        let result = self.b.ins().bitselect(over, inf, result);
        let under = self.b.ins().fcmp(FloatCC::LessThan, x, lo);
        let under = self.b.ins().bitcast(F32X4, MemFlagsData::new(), under);
        self.b.ins().bitselect(under, zero, result)
    }

    /// `a * b + c`.
    fn mul_add(&mut self, a: Value, b: Value, c: Value) -> Value {
        if self.fma {
            return self.b.ins().fma(a, b, c);
        }
        let p = self.b.ins().fmul(a, b);
        self.b.ins().fadd(p, c)
    }

    /// A condition on scalar values as an i32x4 mask (every lane the same),
    /// when it only compares floats; `None` for index conditions.
    fn lane_mask(&mut self, c: &Cond) -> Option<Value> {
        match c {
            Cond::FCmp { op, a, b } => {
                let (a, b) = (self.float(a), self.float(b));
                let (a, b) = (self.b.ins().splat(F32X4, a), self.b.ins().splat(F32X4, b));
                Some(self.b.ins().fcmp(float_cc(*op), a, b))
            }
            Cond::And(x, y) | Cond::Or(x, y) if !c.has_load() => {
                let (x, y) = (self.lane_mask(x)?, self.lane_mask(y)?);
                Some(if matches!(c, Cond::And(..)) {
                    self.b.ins().band(x, y)
                } else {
                    self.b.ins().bor(x, y)
                })
            }
            _ => None,
        }
    }

    /// Four lanes of a condition, as an i32x4 mask.
    fn vcond(&mut self, c: &Cond, var: Var, vector: &HashSet<u32>) -> Value {
        match c {
            Cond::FCmp { op, a, b } => {
                let (a, b) = (self.vfloat(a, var, vector), self.vfloat(b, var, vector));
                self.b.ins().fcmp(float_cc(*op), a, b)
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                let (x, y) = (self.vcond(a, var, vector), self.vcond(b, var, vector));
                if matches!(c, Cond::And(..)) {
                    self.b.ins().band(x, y)
                } else {
                    self.b.ins().bor(x, y)
                }
            }
            _ => unreachable!("vectorize::plan admits only comparisons"),
        }
    }

    /// A vector of four scalars.
    fn gather(&mut self, lanes: &[Value]) -> Value {
        let mut v = self.b.ins().splat(F32X4, lanes[0]);
        for (k, x) in lanes.iter().enumerate().skip(1) {
            v = self.b.ins().insertlane(v, *x, k as u8);
        }
        v
    }

    /// The address of `buf[index]` as a base and a displacement in bytes:
    /// the index's constant part goes into the instruction, so that loads
    /// that differ by constants (an unrolled window's taps, a register
    /// tile's channels) share one address computation.
    fn place(&mut self, buf: BufId, index: &IExpr) -> (Value, i32) {
        let (rest, constant) = crate::kernel::split_offset(index);
        match i32::try_from(constant * 4) {
            Ok(bytes) if constant != 0 => (self.address(buf, &rest), bytes),
            _ => (self.address(buf, index), 0),
        }
    }

    fn address(&mut self, buf: BufId, index: &IExpr) -> Value {
        let i = self.int(index);
        let bytes = self.b.ins().ishl_imm_s(i, 2);
        let base = self.bases[&buf];
        self.b.ins().iadd(base, bytes)
    }

    fn int(&mut self, e: &IExpr) -> Value {
        if matches!(e, IExpr::Const(_) | IExpr::Var(_)) {
            return self.int_uncached(e);
        }
        if let Some(v) = self.hoisted.iter().rev().find_map(|m| m.get(e)) {
            return *v;
        }
        let block = self.b.current_block();
        if block != self.local_block {
            self.local.clear();
            self.local_block = block;
        }
        if let Some(v) = self.local.get(e) {
            return *v;
        }
        let v = self.int_uncached(e);
        self.local.insert(e.clone(), v);
        v
    }

    /// A loop variable's new value: index arithmetic computed from the
    /// old one is stale.
    fn step_var(&mut self, var: Variable, value: Value) {
        self.b.def_var(var, value);
        self.local.clear();
    }

    fn int_uncached(&mut self, e: &IExpr) -> Value {
        match e {
            IExpr::Const(v) => self.b.ins().iconst(types::I64, *v),
            IExpr::Var(v) => self.b.use_var(self.vars[v.0 as usize]),
            IExpr::Add(a, b) => {
                if let IExpr::Const(c) = **b {
                    let a = self.int(a);
                    return self.b.ins().iadd_imm_s(a, c);
                }
                let (a, b) = (self.int(a), self.int(b));
                self.b.ins().iadd(a, b)
            }
            IExpr::Mul(a, b) => {
                if let IExpr::Const(c) = **b {
                    let a = self.int(a);
                    return self.b.ins().imul_imm_s(a, c);
                }
                let (a, b) = (self.int(a), self.int(b));
                self.b.ins().imul(a, b)
            }
            // Numerators are non-negative (verified), so unsigned division
            // is floor division.
            IExpr::Div(a, d) => {
                let a = self.int(a);
                if (*d as u64).is_power_of_two() {
                    self.b.ins().ushr_imm_s(a, d.trailing_zeros() as i64)
                } else {
                    self.b.ins().udiv_imm_s(a, *d)
                }
            }
            IExpr::Rem(a, d) => {
                let a = self.int(a);
                if (*d as u64).is_power_of_two() {
                    self.b.ins().band_imm_s(a, d - 1)
                } else {
                    self.b.ins().urem_imm_s(a, *d)
                }
            }
            IExpr::Min(a, b) => {
                let (a, b) = (self.int(a), self.int(b));
                self.b.ins().smin(a, b)
            }
            IExpr::Max(a, b) => {
                let (a, b) = (self.int(a), self.int(b));
                self.b.ins().smax(a, b)
            }
        }
    }

    /// A condition as an i8 truth value.
    fn cond(&mut self, c: &Cond) -> Value {
        match c {
            Cond::InRange { value, lo, hi } => {
                // lo <= v < hi as one unsigned comparison of v - lo.
                let v = self.int(value);
                let shifted = self.b.ins().iadd_imm_s(v, -lo);
                self.b
                    .ins()
                    .icmp_imm_s(IntCC::UnsignedLessThan, shifted, hi - lo)
            }
            Cond::Divides { value, by } => {
                let v = self.int(value);
                let r = if (*by as u64).is_power_of_two() {
                    self.b.ins().band_imm_s(v, by - 1)
                } else {
                    self.b.ins().srem_imm_s(v, *by)
                };
                self.b.ins().icmp_imm_s(IntCC::Equal, r, 0)
            }
            Cond::FCmp { op, a, b } => {
                let (a, b) = (self.float(a), self.float(b));
                self.b.ins().fcmp(float_cc(*op), a, b)
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                let and = matches!(c, Cond::And(..));
                let first = self.cond(a);
                if !b.has_load() {
                    let second = self.cond(b);
                    return if and {
                        self.b.ins().band(first, second)
                    } else {
                        self.b.ins().bor(first, second)
                    };
                }
                // The second may load where the first guards: branch.
                let eval = self.b.create_block();
                let done = self.b.create_block();
                self.b.append_block_param(done, types::I8);
                if and {
                    self.b.ins().brif(first, eval, &[], done, &[first.into()]);
                } else {
                    self.b.ins().brif(first, done, &[first.into()], eval, &[]);
                }
                self.b.switch_to_block(eval);
                self.b.seal_block(eval);
                let second = self.cond(b);
                self.b.ins().jump(done, &[second.into()]);
                self.b.switch_to_block(done);
                self.b.seal_block(done);
                self.b.block_params(done)[0]
            }
            Cond::Keep { p, salt, index } => {
                // keep when to_unit(mix(mix(seed ^ mix(salt)) ^ index)) >= p,
                // decided on the 53-bit integer to_unit divides by 2^53.
                let i = self.int(index);
                let s = self
                    .b
                    .ins()
                    .bxor_imm_s(self.seed, crate::rng::mix(*salt) as i64);
                let m = self.mix(s);
                let x = self.b.ins().bxor(m, i);
                let bits = self.mix(x);
                let top = self.b.ins().ushr_imm_s(bits, 11);
                let threshold = (p * (1u64 << 53) as f64).ceil() as i64;
                self.b
                    .ins()
                    .icmp_imm_s(IntCC::UnsignedGreaterThanOrEqual, top, threshold)
            }
        }
    }

    /// `rng::mix` (splitmix64's finalizer) in generated code.
    fn mix(&mut self, z: Value) -> Value {
        let z = self.b.ins().iadd_imm_s(z, 0x9e37_79b9_7f4a_7c15u64 as i64);
        let s = self.b.ins().ushr_imm_s(z, 30);
        let z = self.b.ins().bxor(z, s);
        let z = self.b.ins().imul_imm_s(z, 0xbf58_476d_1ce4_e5b9u64 as i64);
        let s = self.b.ins().ushr_imm_s(z, 27);
        let z = self.b.ins().bxor(z, s);
        let z = self.b.ins().imul_imm_s(z, 0x94d0_49bb_1331_11ebu64 as i64);
        let s = self.b.ins().ushr_imm_s(z, 31);
        self.b.ins().bxor(z, s)
    }

    fn float(&mut self, e: &SExpr) -> Value {
        match e {
            SExpr::Const(v) => self.b.ins().f32const(*v),
            SExpr::Load { buf, index } => {
                let (addr, off) = self.place(*buf, index);
                self.b.ins().load(types::F32, self.trusted, addr, off)
            }
            SExpr::Reg(r) => self.b.use_var(self.regs[r.0 as usize]),
            // A tap's number is a constant once its loop is unrolled.
            SExpr::Index(IExpr::Const(c)) => self.b.ins().f32const(*c as f32),
            SExpr::Index(i) => {
                let i = self.int(i);
                self.b.ins().fcvt_from_sint(types::F32, i)
            }
            SExpr::Un(op, a) => {
                let a = self.float(a);
                match (op, math_symbol(*op)) {
                    (UnOp::Neg, _) => self.b.ins().fneg(a),
                    (UnOp::Abs, _) => self.b.ins().fabs(a),
                    (UnOp::Sqrt, _) => self.b.ins().sqrt(a),
                    (UnOp::Sigmoid, _) => {
                        let minus = self.b.ins().fneg(a);
                        let call = self.b.ins().call(self.math[0], &[minus]);
                        let e = self.b.inst_results(call)[0];
                        let one = self.b.ins().f32const(1.0);
                        let d = self.b.ins().fadd(one, e);
                        self.b.ins().fdiv(one, d)
                    }
                    (UnOp::Pow(e), Some(f)) => {
                        let e = self.b.ins().f32const(*e);
                        let call = self.b.ins().call(self.math[f], &[a, e]);
                        self.b.inst_results(call)[0]
                    }
                    (_, Some(f)) => {
                        let call = self.b.ins().call(self.math[f], &[a]);
                        self.b.inst_results(call)[0]
                    }
                    (_, None) => unreachable!("instructions are handled above"),
                }
            }
            SExpr::Bin(BinOp::Add, a, b) if self.fma && (a.is_mul() || b.is_mul()) => {
                let (SExpr::Bin(_, x, y), c) = (if a.is_mul() { (&**a, b) } else { (&**b, a) })
                else {
                    unreachable!("one side is a product")
                };
                let (x, y, c) = (self.float(x), self.float(y), self.float(c));
                self.b.ins().fma(x, y, c)
            }
            SExpr::Bin(op, a, b) => {
                let (a, b) = (self.float(a), self.float(b));
                self.bin_op(*op, a, b)
            }
            SExpr::Select(c, a, b) => {
                if !a.has_load() && !b.has_load() {
                    // Cranelift lowers a scalar float select to a jump
                    // around a move: a branch on the data, mispredicted as
                    // often as a max pooling's maximum moves. A comparison
                    // of values selects in lane 0 of a vector instead.
                    if let Some(mask) = self.lane_mask(c) {
                        let (a, b) = (self.float(a), self.float(b));
                        let (a, b) = (self.b.ins().splat(F32X4, a), self.b.ins().splat(F32X4, b));
                        let mask = self.b.ins().bitcast(F32X4, MemFlagsData::new(), mask);
                        let chosen = self.b.ins().bitselect(mask, a, b);
                        return self.b.ins().extractlane(chosen, 0);
                    }
                    let c = self.cond(c);
                    let (a, b) = (self.float(a), self.float(b));
                    return self.b.ins().select(c, a, b);
                }
                let c = self.cond(c);
                let yes = self.b.create_block();
                let no = self.b.create_block();
                let done = self.b.create_block();
                self.b.append_block_param(done, types::F32);
                self.b.ins().brif(c, yes, &[], no, &[]);
                self.b.switch_to_block(yes);
                self.b.seal_block(yes);
                let a = self.float(a);
                self.b.ins().jump(done, &[a.into()]);
                self.b.switch_to_block(no);
                self.b.seal_block(no);
                let b = self.float(b);
                self.b.ins().jump(done, &[b.into()]);
                self.b.switch_to_block(done);
                self.b.seal_block(done);
                self.b.block_params(done)[0]
            }
        }
    }
}

/// The `e` of a reduction `r = r op e` (or `r = e op r`).
fn reduced_operand(value: &SExpr, r: u32) -> &SExpr {
    match value {
        SExpr::Bin(_, a, b) => match (&**a, &**b) {
            (SExpr::Reg(x), e) if x.0 == r => e,
            (e, _) => e,
        },
        _ => unreachable!("vectorize::plan checked the form"),
    }
}

fn float_cc(op: CmpOp) -> FloatCC {
    match op {
        CmpOp::Lt => FloatCC::LessThan,
        CmpOp::Le => FloatCC::LessThanOrEqual,
        CmpOp::Gt => FloatCC::GreaterThan,
        CmpOp::Ge => FloatCC::GreaterThanOrEqual,
        CmpOp::Eq => FloatCC::Equal,
        // Unordered or unequal: true for NaN, as Rust's `!=`.
        CmpOp::Ne => FloatCC::NotEqual,
    }
}

/// Every buffer `s` reads or writes, with repeats.
pub fn buffers_of(s: &Stmt, out: &mut Vec<BufId>) {
    let value = |e: &SExpr, out: &mut Vec<BufId>| e.for_each_load(&mut |b, _| out.push(b));
    match s {
        Stmt::For { body, .. } => body.iter().for_each(|s| buffers_of(s, out)),
        Stmt::Set { value: v, .. } => value(v, out),
        Stmt::Store { buf, value: v, .. } => {
            out.push(*buf);
            value(v, out);
        }
        Stmt::If { cond: c, then } => {
            c.for_each_load(&mut |b, _| out.push(b));
            then.iter().for_each(|s| buffers_of(s, out));
        }
        Stmt::Gemm(g) => out.extend([g.a.buf, g.b.buf, g.c.buf]),
    }
}

/// The variables of the loops in `s`.
fn loop_vars(s: &Stmt, out: &mut HashSet<Var>) {
    match s {
        Stmt::For { var, body, .. } => {
            out.insert(*var);
            body.iter().for_each(|s| loop_vars(s, out));
        }
        Stmt::If { then, .. } => then.iter().for_each(|s| loop_vars(s, out)),
        Stmt::Set { .. } | Stmt::Store { .. } | Stmt::Gemm(_) => {}
    }
}

/// Calls `f` on every index expression of `s`.
fn stmt_exprs(s: &Stmt, f: &mut impl FnMut(&IExpr)) {
    fn value(e: &SExpr, f: &mut impl FnMut(&IExpr)) {
        match e {
            SExpr::Const(_) | SExpr::Reg(_) => {}
            SExpr::Load { index, .. } | SExpr::Index(index) => f(index),
            SExpr::Un(_, a) => value(a, f),
            SExpr::Bin(_, a, b) => {
                value(a, f);
                value(b, f);
            }
            SExpr::Select(c, a, b) => {
                cond(c, f);
                value(a, f);
                value(b, f);
            }
        }
    }
    fn cond(c: &Cond, f: &mut impl FnMut(&IExpr)) {
        match c {
            Cond::FCmp { a, b, .. } => {
                value(a, f);
                value(b, f);
            }
            Cond::And(a, b) | Cond::Or(a, b) => {
                cond(a, f);
                cond(b, f);
            }
            Cond::InRange { value, .. } | Cond::Divides { value, .. } => f(value),
            Cond::Keep { index, .. } => f(index),
        }
    }
    match s {
        Stmt::For {
            start, end, body, ..
        } => {
            f(start);
            f(end);
            body.iter().for_each(|s| stmt_exprs(s, f));
        }
        Stmt::Set { value: v, .. } => value(v, f),
        Stmt::Store {
            index, value: v, ..
        } => {
            f(index);
            value(v, f);
        }
        Stmt::If { cond: c, then } => {
            cond(c, f);
            then.iter().for_each(|s| stmt_exprs(s, f));
        }
        Stmt::Gemm(g) => {
            for r in [&g.a, &g.b, &g.c] {
                f(&r.offset);
            }
        }
    }
}

/// The largest parts of `e` that read none of the variables `inside`
/// (and are more than a constant or a variable), appended to `out`.
fn invariant_parts(e: &IExpr, inside: &HashSet<Var>, out: &mut Vec<IExpr>) {
    if !reads_any(e, inside) {
        if !matches!(e, IExpr::Const(_) | IExpr::Var(_)) {
            out.push(e.clone());
        }
        return;
    }
    match e {
        IExpr::Const(_) | IExpr::Var(_) => {}
        IExpr::Add(a, b) | IExpr::Mul(a, b) | IExpr::Min(a, b) | IExpr::Max(a, b) => {
            invariant_parts(a, inside, out);
            invariant_parts(b, inside, out);
        }
        IExpr::Div(a, _) | IExpr::Rem(a, _) => invariant_parts(a, inside, out),
    }
}

fn reads_any(e: &IExpr, vars: &HashSet<Var>) -> bool {
    match e {
        IExpr::Const(_) => false,
        IExpr::Var(v) => vars.contains(v),
        IExpr::Add(a, b) | IExpr::Mul(a, b) | IExpr::Min(a, b) | IExpr::Max(a, b) => {
            reads_any(a, vars) || reads_any(b, vars)
        }
        IExpr::Div(a, _) | IExpr::Rem(a, _) => reads_any(a, vars),
    }
}

/// The value a reduction starts from.
fn identity_of(op: BinOp) -> f32 {
    match op {
        BinOp::Max => f32::NEG_INFINITY,
        BinOp::Min => f32::INFINITY,
        _ => 0.0,
    }
}

/// How the loop `s` runs four lanes at a time, or `None` for one at a
/// time. A short loop around inner loops (a kernel row's five taps) would
/// leave most of its work to the scalar tail: its inner loops are the
/// better ones to vectorize. `split`: the loop is the kernel's outermost,
/// its range given at run time.
fn loop_plan(s: &Stmt, split: bool) -> Option<Plan> {
    let Stmt::For {
        var,
        start,
        end,
        body,
    } = s
    else {
        return None;
    };
    let nested = body.iter().any(|s| matches!(s, Stmt::For { .. }));
    if let (IExpr::Const(a), IExpr::Const(b), false, true) = (start, end, split, nested) {
        if b - a < 2 * LANES {
            return None;
        }
    }
    super::vectorize::plan(*var, body)
}

/// The reductions of the vector loop at the bottom of a chain of loops
/// that each hold only the next (`for n { for q { r = r + ... } }`), whose
/// partial results the chain's outer loops can carry.
fn chain_reductions(body: &[Stmt]) -> Vec<(u32, BinOp)> {
    chain_vector_loop(body)
        .and_then(|inner| loop_plan(inner, false))
        .map_or_else(Vec::new, |plan| plan.reductions)
}

/// Whether the vector loop at the bottom of a chain runs whole vector
/// steps (constant bounds, a multiple of four apart): no scalar tail.
fn chain_whole(body: &[Stmt]) -> bool {
    matches!(
        chain_vector_loop(body),
        Some(Stmt::For { start: IExpr::Const(a), end: IExpr::Const(b), .. }) if (b - a) % LANES == 0
    )
}

/// The vector loop at the bottom of a chain of loops that each hold only
/// the next.
fn chain_vector_loop(body: &[Stmt]) -> Option<&Stmt> {
    let [inner @ Stmt::For {
        body: inner_body, ..
    }] = body
    else {
        return None;
    };
    match loop_plan(inner, false) {
        Some(_) => Some(inner),
        None => chain_vector_loop(inner_body),
    }
}

/// A vector constant's lanes (`Emitter::splat_constant`).
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
enum Lanes {
    F32(u32),
    I32(i32),
}

/// Values that every step of a vector loop shares, made in the block
/// before it (`before`, which dominates the loop): constants as the
/// loop's body asks for them (inserted before the block's jump), and the
/// invariant loads found before the loop is emitted.
struct VectorInvariants {
    before: cranelift_codegen::ir::Block,
    constants: HashMap<Lanes, Value>,
    loads: HashMap<(BufId, IExpr), Value>,
}

/// The buffers `s` stores to.
fn stored_bufs(s: &Stmt, out: &mut HashSet<BufId>) {
    match s {
        Stmt::Store { buf, .. } => {
            out.insert(*buf);
        }
        Stmt::Gemm(g) => {
            out.insert(g.c.buf);
        }
        Stmt::For { body, .. } => body.iter().for_each(|s| stored_bufs(s, out)),
        Stmt::If { then, .. } => then.iter().for_each(|s| stored_bufs(s, out)),
        Stmt::Set { .. } => {}
    }
}
