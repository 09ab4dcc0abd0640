//! Optimizers as IR update rules, with torch.optim's semantics.
//!
//! [`Optimizer::add_update`] appends the update of every trainable
//! parameter to a graph that has its gradients: the parameter `NAME`, the
//! optimizer state (`momentum_buffer:NAME`, `exp_avg:NAME`,
//! `exp_avg_sq:NAME`, buffer inputs) and a few per-step scalars the host
//! computes ([`Optimizer::scalars`]: the learning rate and bias
//! corrections, scalar inputs) give `Update(NAME)` and `Update(state)`
//! outputs. [`Optimizer::training_step`] does this to a training graph, so
//! that forward, loss, backward and update are one graph a backend compiles
//! whole. Lookahead (Zhang et al., 2019) adds slow weights `slow:NAME` and
//! a second graph that syncs them every `k` steps.

use crate::check::train::Optimizer as Spec;
use crate::ir::{BinaryFn, Graph, Mode, NodeId, Op, Output, Role, UnaryFn};
use std::collections::BTreeMap;

/// The scalar inputs of an update graph, by name.
pub type Scalars = BTreeMap<&'static str, f64>;

#[derive(Clone, Debug)]
pub struct Optimizer {
    pub spec: Spec,
}

fn base(spec: &Spec) -> &Spec {
    match spec {
        Spec::Lookahead { inner, .. } => base(inner),
        s => s,
    }
}

impl Optimizer {
    pub fn new(spec: Spec) -> Optimizer {
        Optimizer { spec }
    }

    /// The names of the per-parameter state tensors, zero-initialized.
    pub fn state_names(&self) -> &'static [&'static str] {
        match base(&self.spec) {
            Spec::Sgd { momentum, .. } if *momentum != 0.0 => &["momentum_buffer"],
            Spec::Sgd { .. } => &[],
            _ => &["exp_avg", "exp_avg_sq"],
        }
    }

    pub fn base_lr(&self) -> f64 {
        match base(&self.spec) {
            Spec::Sgd { lr, .. }
            | Spec::Adam { lr, .. }
            | Spec::AdamW { lr, .. }
            | Spec::RAdam { lr, .. } => *lr,
            Spec::Lookahead { .. } => unreachable!("base() unwraps lookahead"),
        }
    }

    /// Lookahead's `(k, alpha)`, if the optimizer is wrapped in it.
    pub fn lookahead(&self) -> Option<(i64, f64)> {
        match &self.spec {
            Spec::Lookahead { k, alpha, .. } => Some((*k, *alpha)),
            _ => None,
        }
    }

    /// The per-step scalars for step `t` (1-based) at learning rate `lr`.
    pub fn scalars(&self, t: u64, lr: f64) -> Scalars {
        let mut s = Scalars::new();
        let t_f = t as f64;
        match base(&self.spec) {
            Spec::Sgd { dampening, .. } => {
                s.insert("lr", lr);
                // torch starts the momentum buffer at the first gradient, undamped.
                s.insert("damp", if t == 1 { 1.0 } else { 1.0 - dampening });
            }
            Spec::Adam {
                betas,
                weight_decay,
                ..
            }
            | Spec::AdamW {
                betas,
                weight_decay,
                ..
            } => {
                let bc1 = 1.0 - betas[0].powf(t_f);
                let bc2 = 1.0 - betas[1].powf(t_f);
                s.insert("step_size", lr / bc1);
                s.insert("inv_sqrt_bc2", 1.0 / bc2.sqrt());
                if matches!(base(&self.spec), Spec::AdamW { .. }) {
                    s.insert("decay", 1.0 - lr * weight_decay);
                }
            }
            Spec::RAdam { betas, .. } => {
                let bc1 = 1.0 - betas[0].powf(t_f);
                let bc2 = 1.0 - betas[1].powf(t_f);
                let rho_inf = 2.0 / (1.0 - betas[1]) - 1.0;
                let rho_t = rho_inf - 2.0 * t_f * betas[1].powf(t_f) / bc2;
                let (adaptive, plain) = if rho_t > 5.0 {
                    let rect = ((rho_t - 4.0) * (rho_t - 2.0) * rho_inf
                        / ((rho_inf - 4.0) * (rho_inf - 2.0) * rho_t))
                        .sqrt();
                    (lr * rect * bc2.sqrt() / bc1, 0.0)
                } else {
                    (0.0, lr / bc1)
                };
                s.insert("adaptive", adaptive);
                s.insert("plain", plain);
            }
            Spec::Lookahead { .. } => unreachable!("base() unwraps lookahead"),
        }
        s
    }

    /// Appends the update of each `(name, parameter node, gradient node)`
    /// to `g`, with its scalar and state inputs and `Update` outputs.
    pub fn add_update(&self, g: &mut Graph, params: &[(String, NodeId, NodeId)]) {
        let names: Vec<&'static str> = self.scalars(1, 1.0).keys().copied().collect();
        let scalar: BTreeMap<&str, NodeId> = names
            .iter()
            .map(|n| (*n, g.input(n, Role::Scalar, Vec::new(), "step")))
            .collect();
        for (name, p, grad) in params {
            let shape = g.shape(*p).to_vec();
            let scope = format!("{name}:update");
            let mut b = B { g, scope: &scope };
            let outs = b.update(base(&self.spec), *p, *grad, &shape, &scalar, name);
            for (state, id) in outs {
                g.set_output(Output::Update(state), id);
            }
        }
    }

    /// Turns a training graph (with a `Grad(NAME)` output for each trainable
    /// parameter) into a training step: the optimizer's update of every
    /// parameter it has a gradient for, and a `GradCheck` output, 0 when
    /// every gradient is finite and NaN otherwise (so the host reads one
    /// number, not every gradient, to catch a diverging run).
    pub fn training_step(&self, g: &mut Graph) -> Result<(), String> {
        let grads: Vec<(String, NodeId)> = g
            .outputs
            .iter()
            .filter_map(|(o, id)| match o {
                Output::Grad(p) => Some((p.clone(), *id)),
                _ => None,
            })
            .collect();
        let mut params = Vec::new();
        for (name, grad) in &grads {
            let p = g
                .inputs(Role::Parameter)
                .find(|(_, n)| n == name)
                .map(|(id, _)| id)
                .ok_or_else(|| format!("a gradient for `{name}`, which is not a parameter"))?;
            params.push((name.clone(), p, *grad));
        }
        self.add_update(g, &params);
        // sum(g * 0) over every gradient: NaN or infinite anywhere gives NaN.
        let mut check: Option<NodeId> = None;
        for (_, grad) in &grads {
            let zero = g.add(
                Op::Const {
                    value: 0.0,
                    shape: vec![],
                },
                &[],
                "grad_check",
            );
            let z = g.add(Op::Binary(BinaryFn::Mul), &[*grad, zero], "grad_check");
            // In two stages, over all but the first axis first: a sum of
            // a whole tensor is one loop that no thread shares, and
            // ResNet-18's 11 million gradients made it 2.5 ms of the step
            // on one core; a sum per output channel splits over threads.
            let shape = g.shape(z).to_vec();
            let all: Vec<usize> = (0..shape.len()).collect();
            let sum = if shape.len() > 1 && shape[0] > 1 {
                let rows = g.add(
                    Op::ReduceSum {
                        axes: all[1..].to_vec(),
                    },
                    &[z],
                    "grad_check",
                );
                g.add(Op::ReduceSum { axes: all }, &[rows], "grad_check")
            } else {
                g.add(Op::ReduceSum { axes: all }, &[z], "grad_check")
            };
            let sum = g.add(Op::Reshape { shape: vec![] }, &[sum], "grad_check");
            check = Some(match check {
                None => sum,
                Some(c) => g.add(Op::Binary(BinaryFn::Add), &[c, sum], "grad_check"),
            });
        }
        if let Some(c) = check {
            g.set_output(Output::GradCheck, c);
        }
        crate::ir::verify::debug_verify(g, "the training step");
        Ok(())
    }

    /// A graph of the update alone: parameter `NAME` and gradient
    /// `grad:NAME` (fed) for each of `params` (name and shape).
    pub fn graph(&self, params: &[(String, Vec<usize>)]) -> Graph {
        let mut g = Graph::new("optimizer", Mode::Train);
        let mut nodes = Vec::new();
        for (name, shape) in params {
            let p = g.input(name, Role::Parameter, shape.clone(), name);
            let grad = g.input(&format!("grad:{name}"), Role::Data, shape.clone(), name);
            nodes.push((name.clone(), p, grad));
        }
        self.add_update(&mut g, &nodes);
        crate::ir::verify::debug_verify(&g, "optimizer construction");
        g
    }

    /// Lookahead's sync: `slow += alpha * (fast - slow)`, and the fast
    /// weights restart from the new slow ones.
    pub fn lookahead_graph(&self, params: &[(String, Vec<usize>)], alpha: f64) -> Graph {
        let mut g = Graph::new("lookahead", Mode::Train);
        for (name, shape) in params {
            let fast = g.input(name, Role::Parameter, shape.clone(), name);
            let slow = g.input(&format!("slow:{name}"), Role::Buffer, shape.clone(), name);
            let a = g.add(
                Op::Const {
                    value: alpha,
                    shape: vec![],
                },
                &[],
                name,
            );
            let diff = g.add(Op::Binary(BinaryFn::Sub), &[fast, slow], name);
            let step = g.add(Op::Binary(BinaryFn::Mul), &[diff, a], name);
            let new_slow = g.add(Op::Binary(BinaryFn::Add), &[slow, step], name);
            g.set_output(Output::Update(format!("slow:{name}")), new_slow);
            g.set_output(Output::Update(name.clone()), new_slow);
        }
        g
    }

    /// The optimizer's state for `params` before the first step: zeros, and
    /// the slow weights of Lookahead at the parameters.
    pub fn initial_state(&self, params: &crate::weights::WeightSet) -> crate::weights::WeightSet {
        let mut state = crate::weights::WeightSet::new();
        for (name, value) in params {
            for kind in self.state_names() {
                state.insert(
                    format!("{kind}:{name}"),
                    ndarray::ArrayD::zeros(value.raw_dim()),
                );
            }
            if self.lookahead().is_some() {
                state.insert(format!("slow:{name}"), value.clone());
            }
        }
        state
    }
}

struct B<'g> {
    g: &'g mut Graph,
    scope: &'g str,
}

impl B<'_> {
    fn bin(&mut self, f: BinaryFn, a: NodeId, b: NodeId) -> NodeId {
        self.g.add(Op::Binary(f), &[a, b], self.scope)
    }

    fn c(&mut self, v: f64) -> NodeId {
        self.g.add(
            Op::Const {
                value: v,
                shape: vec![],
            },
            &[],
            self.scope,
        )
    }

    /// `x * k` for a constant; nothing for k = 1.
    fn scale(&mut self, x: NodeId, k: f64) -> NodeId {
        if k == 1.0 {
            return x;
        }
        let kc = self.c(k);
        self.bin(BinaryFn::Mul, x, kc)
    }

    /// `g + wd * p` (L2 weight decay added to the gradient).
    fn l2(&mut self, grad: NodeId, p: NodeId, wd: f64) -> NodeId {
        if wd == 0.0 {
            return grad;
        }
        let d = self.scale(p, wd);
        self.bin(BinaryFn::Add, grad, d)
    }

    fn state(&mut self, kind: &str, name: &str, shape: &[usize]) -> NodeId {
        self.g.input(
            &format!("{kind}:{name}"),
            Role::Buffer,
            shape.to_vec(),
            self.scope,
        )
    }

    fn update(
        &mut self,
        spec: &Spec,
        p: NodeId,
        grad: NodeId,
        shape: &[usize],
        s: &BTreeMap<&str, NodeId>,
        name: &str,
    ) -> Vec<(String, NodeId)> {
        let mut out = Vec::new();
        match spec {
            Spec::Sgd {
                momentum,
                nesterov,
                weight_decay,
                ..
            } => {
                let d = self.l2(grad, p, *weight_decay);
                let step = if *momentum != 0.0 {
                    let buf = self.state("momentum_buffer", name, shape);
                    let kept = self.scale(buf, *momentum);
                    let fresh = self.bin(BinaryFn::Mul, d, s["damp"]);
                    let new_buf = self.bin(BinaryFn::Add, kept, fresh);
                    out.push((format!("momentum_buffer:{name}"), new_buf));
                    if *nesterov {
                        let ahead = self.scale(new_buf, *momentum);
                        self.bin(BinaryFn::Add, d, ahead)
                    } else {
                        new_buf
                    }
                } else {
                    d
                };
                let delta = self.bin(BinaryFn::Mul, step, s["lr"]);
                out.push((name.to_string(), self.bin(BinaryFn::Sub, p, delta)));
            }
            Spec::Adam {
                betas,
                eps,
                weight_decay,
                ..
            }
            | Spec::AdamW {
                betas,
                eps,
                weight_decay,
                ..
            } => {
                let decoupled = matches!(spec, Spec::AdamW { .. });
                let (p0, d) = if decoupled {
                    (self.bin(BinaryFn::Mul, p, s["decay"]), grad)
                } else {
                    (p, self.l2(grad, p, *weight_decay))
                };
                let (m, v) = self.moments(d, shape, name, *betas, &mut out);
                let root = self.g.add(Op::Unary(UnaryFn::Sqrt), &[v], self.scope);
                let root = self.bin(BinaryFn::Mul, root, s["inv_sqrt_bc2"]);
                let e = self.c(*eps);
                let denom = self.bin(BinaryFn::Add, root, e);
                let ratio = self.bin(BinaryFn::Div, m, denom);
                let delta = self.bin(BinaryFn::Mul, ratio, s["step_size"]);
                out.push((name.to_string(), self.bin(BinaryFn::Sub, p0, delta)));
            }
            Spec::RAdam {
                betas,
                eps,
                weight_decay,
                ..
            } => {
                let d = self.l2(grad, p, *weight_decay);
                let (m, v) = self.moments(d, shape, name, *betas, &mut out);
                let root = self.g.add(Op::Unary(UnaryFn::Sqrt), &[v], self.scope);
                let e = self.c(*eps);
                let denom = self.bin(BinaryFn::Add, root, e);
                let ratio = self.bin(BinaryFn::Div, m, denom);
                let adaptive = self.bin(BinaryFn::Mul, ratio, s["adaptive"]);
                let plain = self.bin(BinaryFn::Mul, m, s["plain"]);
                let delta = self.bin(BinaryFn::Add, adaptive, plain);
                out.push((name.to_string(), self.bin(BinaryFn::Sub, p, delta)));
            }
            Spec::Lookahead { .. } => {
                unreachable!("the update graph is built for the inner optimizer")
            }
        }
        out
    }

    /// Adam's moment estimates: `m = b1 m + (1 - b1) g`, `v = b2 v + (1 - b2) g^2`.
    fn moments(
        &mut self,
        d: NodeId,
        shape: &[usize],
        name: &str,
        betas: [f64; 2],
        out: &mut Vec<(String, NodeId)>,
    ) -> (NodeId, NodeId) {
        let m = self.state("exp_avg", name, shape);
        let v = self.state("exp_avg_sq", name, shape);
        let m_keep = self.scale(m, betas[0]);
        let m_new = self.scale(d, 1.0 - betas[0]);
        let m = self.bin(BinaryFn::Add, m_keep, m_new);
        let sq = self.g.add(Op::Unary(UnaryFn::Square), &[d], self.scope);
        let v_keep = self.scale(v, betas[1]);
        let v_new = self.scale(sq, 1.0 - betas[1]);
        let v = self.bin(BinaryFn::Add, v_keep, v_new);
        out.push((format!("exp_avg:{name}"), m));
        out.push((format!("exp_avg_sq:{name}"), v));
        (m, v)
    }
}

/// An optimizer stepping parameters on their own, outside a training
/// graph (the parity tests against torch.optim): the update graph and the
/// Lookahead sync compiled on the reference backend, which owns the
/// parameters and the state.
pub struct Stepper {
    pub optimizer: Optimizer,
    /// Steps taken so far.
    pub step: u64,
    exe: Box<dyn crate::backend::Executable>,
    update: crate::backend::Entry,
    sync: Option<(crate::backend::Entry, i64)>,
    names: Vec<String>,
}

impl Stepper {
    /// State starts at zero (and slow weights at the parameters), as in torch.
    pub fn new(optimizer: Optimizer, params: &crate::weights::WeightSet) -> Stepper {
        use crate::backend::Backend as _;
        let shapes: Vec<(String, Vec<usize>)> = params
            .iter()
            .map(|(k, v)| (k.clone(), v.shape().to_vec()))
            .collect();
        let mut state = optimizer.initial_state(params);
        state.extend(params.clone());
        let mut exe = crate::backend::reference::Reference.instantiate(state);
        let update = exe
            .compile(&optimizer.graph(&shapes))
            .expect("the update graph reads only its own state");
        let sync = optimizer.lookahead().map(|(k, alpha)| {
            let entry = exe
                .compile(&optimizer.lookahead_graph(&shapes, alpha))
                .expect("the sync graph reads only its own state");
            (entry, k)
        });
        Stepper {
            optimizer,
            step: 0,
            exe,
            update,
            sync,
            names: params.keys().cloned().collect(),
        }
    }

    /// One step: `params` are replaced by their updated values.
    pub fn apply(
        &mut self,
        params: &mut crate::weights::WeightSet,
        grads: &crate::weights::WeightSet,
        lr: f64,
    ) -> Result<(), String> {
        self.step += 1;
        let e = self.update;
        let mut feeds = Vec::new();
        for (name, value) in self.optimizer.scalars(self.step, lr) {
            let h = self.exe.handle_named(e, name).ok_or("no such scalar")?;
            feeds.push((h, ndarray::arr0(value as f32).into_dyn()));
        }
        for name in &self.names {
            let g = grads
                .get(name)
                .ok_or_else(|| format!("no gradient for `{name}`"))?;
            let h = self
                .exe
                .handle_named(e, &format!("grad:{name}"))
                .ok_or("no such gradient input")?;
            feeds.push((h, g.clone()));
        }
        let err = |e: crate::backend::BackendError| e.to_string();
        self.exe.run(e, feeds, 0).map_err(err)?;
        self.exe.commit(e).map_err(err)?;
        if let Some((sync, k)) = self.sync {
            if self.step.is_multiple_of(k as u64) {
                self.exe.run(sync, Vec::new(), 0).map_err(err)?;
                self.exe.commit(sync).map_err(err)?;
            }
        }
        for name in &self.names {
            if let Some(v) = self.exe.read_state(name) {
                params.insert(name.clone(), v);
            }
        }
        Ok(())
    }
}
