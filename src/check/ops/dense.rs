//! Fully connected layers and layers that only rearrange elements.

use super::args::{opt, req, ArgTy, Default};
use super::{Built, Op, OpCtx, OpDecl};
use crate::check::dim::{shape_to_string, Dim};
use crate::check::value::Value;
use crate::diag::Diagnostic;
use crate::diag_codes as codes;

pub const LINEAR: OpDecl = OpDecl {
    name: "linear",
    doc: "Fully connected layer (torch.nn.Linear) on the last axis; input features come from the input.",
    params: &[
        req("out", ArgTy::Int),
        opt("bias", ArgTy::Bool, Default::Bool(true)),
        opt("in_features", ArgTy::Int, Default::Absent),
    ],
    build: linear,
};

fn linear(ctx: &mut OpCtx<'_>) -> Option<Built> {
    let out = ctx.int_min("out", 1);
    let bias = ctx.bool("bias");
    if !ctx.expect_rank(&[2, 3], "[N, features]") {
        return None;
    }
    let (out, bias) = (out?, bias?);
    let last = ctx.input.len() - 1;
    let width = ctx.known_dim(last, "number of input features")?;
    if let Some(declared) = ctx.arg("in_features").cloned() {
        let declared_v = super::args::known_int(
            &declared.value,
            declared.span,
            "in_features",
            "linear",
            ctx.diags,
        )?;
        if declared_v != width {
            let shape = shape_to_string(ctx.input);
            let mut d = Diagnostic::error(
                codes::WIDTH_MISMATCH,
                format!("`linear` expects {declared_v} input features, but its input has {width}"),
            )
            .at(declared.span, format!("declared {declared_v} here"))
            .with_label(ctx.input_origin, format!("this is {shape}"));
            if let Some((op, before)) = ctx.producer {
                if op == "flatten" {
                    let factors: Vec<String> = before[1..].iter().map(|d| d.to_string()).collect();
                    d = d.with_note(format!(
                        "`flatten` turned {} into {width} = {} features",
                        shape_to_string(before),
                        factors.join(" × ")
                    ));
                }
            }
            ctx.error(d.with_help(format!(
                "write `in_features={width}`, or drop `in_features`: nnc infers it"
            )));
            return None;
        }
    }
    let mut shape = ctx.input.to_vec();
    shape[last] = Dim::constant(out);
    Some(Built {
        op: Op::Linear {
            in_features: width,
            out_features: out,
            bias,
        },
        shape,
    })
}

pub const FLATTEN: OpDecl = OpDecl {
    name: "flatten",
    doc: "Merges axes `start..=end` into one (torch.nn.Flatten; by default all but the batch).",
    params: &[
        opt("start", ArgTy::Int, Default::Int(1)),
        opt("end", ArgTy::Int, Default::Int(-1)),
    ],
    build: |ctx| {
        let start = ctx.axis("start")?;
        let end = ctx.axis("end")?;
        if start > end {
            let span = ctx.span_of("start");
            ctx.error(
                Diagnostic::error(
                    codes::OUT_OF_RANGE,
                    "`flatten` start axis comes after its end axis",
                )
                .at(span, format!("axis {start} is after axis {end}")),
            );
            return None;
        }
        let mut merged = Dim::constant(1);
        for d in &ctx.input[start..=end] {
            merged = match merged.checked_mul(d) {
                Some(m) => m,
                None => {
                    let span = ctx.step_span;
                    ctx.error(
                        Diagnostic::error(codes::OVERFLOW, "flattened size overflows 64 bits")
                            .at(span, "here"),
                    );
                    return None;
                }
            };
        }
        let mut shape = ctx.input[..start].to_vec();
        shape.push(merged);
        shape.extend_from_slice(&ctx.input[end + 1..]);
        Some(Built {
            op: Op::Flatten { start, end },
            shape,
        })
    },
};

pub const RESHAPE: OpDecl = OpDecl {
    name: "reshape",
    doc: "Gives the tensor a new shape with the same number of elements; one size may be -1.",
    params: &[req("shape", ArgTy::Sizes)],
    build: reshape,
};

fn reshape(ctx: &mut OpCtx<'_>) -> Option<Built> {
    let arg = ctx.arg("shape")?.clone();
    let Value::List(items) = &arg.value else {
        return None;
    };
    let dims: Vec<Dim> = items
        .iter()
        .map(|v| match v {
            Value::Int(d) => d.clone(),
            _ => Dim::constant(0),
        })
        .collect();
    let numel = product(ctx.input)?;
    let holes: Vec<usize> = (0..dims.len())
        .filter(|&i| dims[i].as_const() == Some(-1))
        .collect();
    let bad = dims
        .iter()
        .any(|d| d.as_const().is_some_and(|v| v == 0 || v < -1));
    if holes.len() > 1 || bad {
        ctx.error(
            Diagnostic::error(
                codes::OUT_OF_RANGE,
                "`reshape` sizes must be positive, with at most one -1",
            )
            .at(arg.span, format!("this is {}", arg.value.describe())),
        );
        return None;
    }
    let mut shape = dims.clone();
    let mismatch = |ctx: &mut OpCtx<'_>, target: String| {
        let input = shape_to_string(ctx.input);
        ctx.error(
            Diagnostic::error(
                codes::RESHAPE_MISMATCH,
                format!("`reshape` cannot turn {input} ({numel} elements) into {target}"),
            )
            .at(arg.span, "the element counts differ")
            .with_label(ctx.input_origin, format!("this is {input}")),
        );
    };
    if let Some(&hole) = holes.first() {
        let mut known = Dim::constant(1);
        for (i, d) in dims.iter().enumerate() {
            if i != hole {
                known = known.checked_mul(d)?;
            }
        }
        match divide_exact(&numel, &known) {
            Some(q) => shape[hole] = q,
            None => {
                mismatch(
                    ctx,
                    format!("{} (the -1 cannot be filled)", shape_to_string(&dims)),
                );
                return None;
            }
        }
    } else if product(&dims)? != numel {
        mismatch(ctx, shape_to_string(&dims));
        return None;
    }
    Some(Built {
        op: Op::Reshape {
            shape: shape.clone(),
        },
        shape,
    })
}

fn product(dims: &[Dim]) -> Option<Dim> {
    dims.iter()
        .try_fold(Dim::constant(1), |acc, d| acc.checked_mul(d))
}

/// `a / b` when it divides exactly: a constant divisor, or a divisor that is
/// one of `a`'s own factors (`N*C*H*W / N`).
fn divide_exact(a: &Dim, b: &Dim) -> Option<Dim> {
    if let Some(k) = b.as_const() {
        if k <= 0 {
            return None;
        }
        let q = a.floor_div(k)?;
        return (q.checked_mul(b)? == *a).then_some(q);
    }
    // Try dividing by each symbol of b in turn: a / (s * rest) = (a / s) / rest.
    let mut syms = Vec::new();
    b.symbols(&mut syms);
    for s in syms {
        let sym = Dim::symbol(&s);
        let rest = b.substitute(&|name| (*name == *s).then_some(1))?;
        if rest.checked_mul(&sym)? != *b {
            continue;
        }
        let a_over_s = a.substitute(&|name| (*name == *s).then_some(1))?;
        if a_over_s.checked_mul(&sym)? == *a {
            return divide_exact(&a_over_s, &rest);
        }
    }
    None
}
