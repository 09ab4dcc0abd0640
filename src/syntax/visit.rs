//! One walk over expressions and chain steps, in source order, for the
//! passes that read names out of the syntax (the unused-value lint, the
//! unknown-layer lint, the language server's references): each says what
//! it does with a name, a callee and a loop variable, and the walk's
//! structure is written once.

use super::ast::{Expr, ExprKind, Ident, NamePart, Path, Step, StepKind, StepName};

/// What a walk reports (references into the syntax it walks). Every
/// method does nothing unless overridden.
pub trait Visitor<'a> {
    /// A name read as a value (`x`, `classes`, `std::x`).
    fn name(&mut self, _path: &'a Path) {}
    /// The callee of a chain's step: a layer, block or network
    /// (`conv2d` in `-> conv2d(6, 5)`).
    fn layer(&mut self, _path: &'a Path) {}
    /// The callee of a function of values (`concat` in `concat(a, b)`).
    fn function(&mut self, _path: &'a Path) {}
    /// A loop variable, bound before its loop's steps are walked.
    fn bind(&mut self, _name: &'a Ident) {}
}

pub fn expr<'a>(v: &mut impl Visitor<'a>, e: &'a Expr) {
    match &e.kind {
        ExprKind::Name(p) => v.name(p),
        ExprKind::Int(_)
        | ExprKind::Float(_)
        | ExprKind::Bool(_)
        | ExprKind::Str(_)
        | ExprKind::Invalid => {}
        ExprKind::List(items) => items.iter().for_each(|i| expr(v, i)),
        ExprKind::Call { callee, args } => {
            v.function(callee);
            args.iter().for_each(|a| expr(v, &a.value));
        }
        ExprKind::Binary { first, rest } => {
            expr(v, first);
            rest.iter().for_each(|(_, _, e)| expr(v, e));
        }
        ExprKind::Unary { operand, .. } | ExprKind::Paren(operand) => expr(v, operand),
        ExprKind::Index { base, index } => {
            expr(v, base);
            expr(v, index);
        }
        ExprKind::If {
            cond,
            then,
            otherwise,
        } => {
            expr(v, cond);
            expr(v, then);
            expr(v, otherwise);
        }
        ExprKind::Chain { head, steps: s } => {
            expr(v, head);
            steps(v, s);
        }
    }
}

pub fn steps<'a>(v: &mut impl Visitor<'a>, steps_: &'a [Step]) {
    for s in steps_ {
        if let Some(StepName::Computed { parts, .. }) = &s.name {
            for part in parts {
                if let NamePart::Value(e) = part {
                    expr(v, e);
                }
            }
        }
        match &s.kind {
            StepKind::Call { callee, args, .. } => {
                v.layer(callee);
                args.iter().for_each(|a| expr(v, &a.value));
            }
            StepKind::Scope { steps: inner, .. } => steps(v, inner),
            StepKind::Repeat {
                count,
                steps: inner,
            } => {
                expr(v, count);
                steps(v, inner);
            }
            StepKind::For {
                var,
                start,
                end,
                steps: inner,
            } => {
                expr(v, start);
                if let Some(e) = end {
                    expr(v, e);
                }
                v.bind(var);
                steps(v, inner);
            }
            StepKind::If {
                cond,
                then,
                otherwise,
            } => {
                expr(v, cond);
                steps(v, then);
                steps(v, otherwise);
            }
        }
    }
}
