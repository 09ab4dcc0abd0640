//! A structural copy of a kernel's statements with their index
//! expressions, loop variables and registers mapped: the one walk that
//! unrolling (a loop variable becomes each constant), collapsing (the
//! outer variable of two merged loops becomes 0) and merging (a second
//! kernel's variables and registers renumbered into the first's) need.

use super::{Cond, IExpr, Reg, SExpr, Stmt, Var};

/// The maps a rewrite applies; everything else is copied.
pub struct Rewrite<'a> {
    pub index: &'a dyn Fn(&IExpr) -> IExpr,
    pub var: &'a dyn Fn(Var) -> Var,
    pub reg: &'a dyn Fn(Reg) -> Reg,
}

fn same_var(v: Var) -> Var {
    v
}

fn same_reg(r: Reg) -> Reg {
    r
}

impl<'a> Rewrite<'a> {
    /// A rewrite of the index expressions alone.
    pub fn of_indices(index: &'a dyn Fn(&IExpr) -> IExpr) -> Rewrite<'a> {
        Rewrite {
            index,
            var: &same_var,
            reg: &same_reg,
        }
    }

    pub fn stmts(&self, body: &[Stmt]) -> Vec<Stmt> {
        body.iter().map(|s| self.stmt(s)).collect()
    }

    pub fn stmt(&self, s: &Stmt) -> Stmt {
        let i = self.index;
        match s {
            Stmt::For {
                var,
                start,
                end,
                body,
            } => Stmt::For {
                var: (self.var)(*var),
                start: i(start),
                end: i(end),
                body: self.stmts(body),
            },
            Stmt::Set { reg, value } => Stmt::Set {
                reg: (self.reg)(*reg),
                value: self.value(value),
            },
            Stmt::Store { buf, index, value } => Stmt::Store {
                buf: *buf,
                index: i(index),
                value: self.value(value),
            },
            Stmt::If { cond, then } => Stmt::If {
                cond: self.cond(cond),
                then: self.stmts(then),
            },
            Stmt::Gemm(g) => {
                let mut g = g.clone();
                for m in [&mut g.a, &mut g.b, &mut g.c] {
                    m.offset = i(&m.offset);
                }
                Stmt::Gemm(g)
            }
        }
    }

    pub fn value(&self, e: &SExpr) -> SExpr {
        let i = self.index;
        match e {
            SExpr::Const(c) => SExpr::Const(*c),
            SExpr::Load { buf, index } => SExpr::load(*buf, i(index)),
            SExpr::Reg(r) => SExpr::Reg((self.reg)(*r)),
            SExpr::Index(x) => SExpr::Index(i(x)),
            SExpr::Un(op, a) => SExpr::un(*op, self.value(a)),
            SExpr::Bin(op, a, b) => SExpr::bin(*op, self.value(a), self.value(b)),
            SExpr::Select(c, a, b) => SExpr::select(self.cond(c), self.value(a), self.value(b)),
        }
    }

    pub fn cond(&self, c: &Cond) -> Cond {
        let i = self.index;
        match c {
            Cond::InRange { value, lo, hi } => Cond::InRange {
                value: i(value),
                lo: *lo,
                hi: *hi,
            },
            Cond::Divides { value, by } => Cond::Divides {
                value: i(value),
                by: *by,
            },
            Cond::Keep { p, salt, index } => Cond::Keep {
                p: *p,
                salt: *salt,
                index: i(index),
            },
            Cond::FCmp { op, a, b } => Cond::FCmp {
                op: *op,
                a: self.value(a),
                b: self.value(b),
            },
            Cond::And(a, b) => self.cond(a).and(self.cond(b)),
            Cond::Or(a, b) => Cond::Or(Box::new(self.cond(a)), Box::new(self.cond(b))),
        }
    }
}
