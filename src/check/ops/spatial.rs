//! Layers that slide a window over height and width: convolution and pooling.

use super::args::{opt, req, ArgTy, Default};
use super::{out_of_range, Built, Op, OpCtx, OpDecl};
use crate::check::dim::{shape_to_string, Dim};
use crate::check::value::Value;
use crate::diag::Diagnostic;
use crate::diag_codes as codes;

const NCHW: &str = "[N, C, H, W]";

pub const CONV2D: OpDecl = OpDecl {
    name: "conv2d",
    doc: "2-d convolution (torch.nn.Conv2d); input channels come from the input.",
    params: &[
        req("out", ArgTy::Int),
        req("kernel", ArgTy::IntPair),
        opt("stride", ArgTy::IntPair, Default::Int(1)),
        opt("padding", ArgTy::Padding, Default::Int(0)),
        opt("dilation", ArgTy::IntPair, Default::Int(1)),
        opt("groups", ArgTy::Int, Default::Int(1)),
        opt("bias", ArgTy::Bool, Default::Bool(true)),
        opt("in_channels", ArgTy::Int, Default::Absent),
    ],
    build: conv2d,
};

fn conv2d(ctx: &mut OpCtx<'_>) -> Option<Built> {
    let out = ctx.int_min("out", 1);
    let kernel = ctx.pair("kernel", 1);
    let stride = ctx.pair("stride", 1);
    let dilation = ctx.pair("dilation", 1);
    let groups = ctx.int_min("groups", 1);
    let bias = ctx.bool("bias");
    if !ctx.expect_rank(&[4], NCHW) {
        return None;
    }
    let (out, kernel, stride, dilation, groups, bias) =
        (out?, kernel?, stride?, dilation?, groups?, bias?);
    let padding = conv_padding(ctx, kernel, stride, dilation)?;
    let c = ctx.known_dim(1, "number of input channels (axis 1)")?;
    if let Some(declared) = ctx.arg("in_channels").cloned() {
        let declared_v = super::args::known_int(
            &declared.value,
            declared.span,
            "in_channels",
            "conv2d",
            ctx.diags,
        )?;
        if declared_v != c {
            let shape = shape_to_string(ctx.input);
            ctx.error(
                Diagnostic::error(
                    codes::CHANNEL_MISMATCH,
                    format!("`conv2d` declares {declared_v} input channels, but its input has {c}"),
                )
                .at(declared.span, format!("declared {declared_v} here"))
                .with_label(ctx.input_origin, format!("this is {shape}: {c} channels"))
                .with_help(format!(
                    "write `in_channels={c}`, or drop `in_channels`: nnc infers it"
                )),
            );
            return None;
        }
    }
    for (what, n) in [("input channels", c), ("output channels", out)] {
        if n % groups != 0 {
            let span = ctx.span_of("groups");
            let shape = shape_to_string(ctx.input);
            ctx.error(
                Diagnostic::error(
                    codes::NOT_DIVISIBLE,
                    format!("`conv2d` with {groups} groups needs {what} divisible by {groups}, but there are {n}"),
                )
                .at(span, format!("{groups} groups"))
                .with_label(ctx.input_origin, format!("this is {shape}"))
                .with_help(format!("use a number of groups that divides both {c} and {out}")),
            );
            return None;
        }
    }
    let h = window(
        ctx,
        2,
        [padding[0], padding[1]],
        kernel[0],
        dilation[0],
        stride[0],
        false,
    )?;
    let w = window(
        ctx,
        3,
        [padding[2], padding[3]],
        kernel[1],
        dilation[1],
        stride[1],
        false,
    )?;
    let n = ctx.input[0].clone();
    Some(Built {
        op: Op::Conv2d {
            in_channels: c,
            out_channels: out,
            kernel,
            stride,
            padding,
            dilation,
            groups,
            bias,
        },
        shape: vec![n, Dim::constant(out), h, w],
    })
}

/// `[top, bottom, left, right]` from an int, a pair, `"same"` or `"valid"`.
fn conv_padding(
    ctx: &mut OpCtx<'_>,
    kernel: [i64; 2],
    stride: [i64; 2],
    dilation: [i64; 2],
) -> Option<[i64; 4]> {
    let arg = ctx.arg("padding")?.clone();
    match &arg.value {
        Value::Str(s) if s == "valid" => Some([0; 4]),
        Value::Str(_) => {
            if stride != [1, 1] {
                ctx.error(
                    Diagnostic::error(
                        codes::OUT_OF_RANGE,
                        "`conv2d` with `padding=\"same\"` needs stride 1",
                    )
                    .at(arg.span, "\"same\" padding")
                    .with_label(ctx.span_of("stride"), format!("stride is {}", pair_text(stride)))
                    .with_help("give the padding as a number, as PyTorch requires for strided convolutions"),
                );
                return None;
            }
            let (Some(e0), Some(e1)) = (
                effective_kernel(kernel[0], dilation[0]),
                effective_kernel(kernel[1], dilation[1]),
            ) else {
                ctx.error(overflow(ctx.step_span));
                return None;
            };
            let total = [e0 - 1, e1 - 1];
            Some([
                total[0] / 2,
                total[0] - total[0] / 2,
                total[1] / 2,
                total[1] - total[1] / 2,
            ])
        }
        other => {
            let p = super::args::known_pair(other, arg.span, "padding", "conv2d", ctx.diags)?;
            if p[0] < 0 || p[1] < 0 {
                ctx.error(out_of_range(
                    "conv2d",
                    "padding",
                    &other.describe(),
                    "at least 0",
                    arg.span,
                ));
                return None;
            }
            Some([p[0], p[0], p[1], p[1]])
        }
    }
}

fn pair_text(p: [i64; 2]) -> String {
    if p[0] == p[1] {
        p[0].to_string()
    } else {
        format!("{}×{}", p[0], p[1])
    }
}

/// `dilation * (kernel - 1) + 1`, the extent of a dilated kernel; `None`
/// when it overflows (both are user values, at least 1).
fn effective_kernel(kernel: i64, dilation: i64) -> Option<i64> {
    dilation.checked_mul(kernel.checked_sub(1)?)?.checked_add(1)
}

fn overflow(at: crate::syntax::source::Span) -> Diagnostic {
    Diagnostic::error(codes::OVERFLOW, "a size overflows 64 bits").at(at, "here")
}

/// The output size of a sliding window on `axis` (2 = height, 3 = width),
/// rounding down as PyTorch does, or up in ceil mode (with PyTorch's rule
/// that the last window must start inside the input or its left padding).
fn window(
    ctx: &mut OpCtx<'_>,
    axis: usize,
    pad: [i64; 2],
    kernel: i64,
    dilation: i64,
    stride: i64,
    ceil: bool,
) -> Option<Dim> {
    let size = ctx.input[axis].clone();
    let axis_name = if axis == 2 { "height" } else { "width" };
    let (Some(effective), Some(pad_sum)) = (
        effective_kernel(kernel, dilation),
        pad[0].checked_add(pad[1]),
    ) else {
        ctx.error(overflow(ctx.step_span));
        return None;
    };
    let Some(padded) = size.checked_add(&Dim::constant(pad_sum)) else {
        ctx.error(overflow(ctx.step_span));
        return None;
    };
    if let Some(p) = padded.as_const() {
        if p < effective {
            let input = size.as_const().unwrap_or(0);
            let shape = shape_to_string(ctx.input);
            let dilated = if dilation > 1 {
                format!(" (dilated to {effective})")
            } else {
                String::new()
            };
            let padding_note = if pad_sum > 0 {
                format!(
                    "padded input {axis_name} {p} ({input} + {} + {})",
                    pad[0], pad[1]
                )
            } else {
                format!("input {axis_name} {input}")
            };
            // effective > p >= input here, so this cannot overflow downwards.
            let need = (effective - input).saturating_add(1) / 2;
            ctx.error(
                Diagnostic::error(
                    codes::KERNEL_TOO_LARGE,
                    format!(
                        "`{}` kernel {kernel}{dilated} is larger than its {padding_note}",
                        ctx.decl.name
                    ),
                )
                .at(ctx.span_of("kernel"), format!("kernel {kernel} on the {axis_name} axis"))
                .with_label(ctx.input_origin, format!("this is {shape}"))
                .with_help(format!(
                    "use a kernel of at most {p}, pad by at least {need} on each side, or remove an earlier downsampling layer"
                )),
            );
            return None;
        }
    }
    let span = padded.checked_sub(&Dim::constant(effective));
    let steps = match span {
        Some(s) if ceil => s.ceil_div(stride),
        Some(s) => s.floor_div(stride),
        None => None,
    };
    let Some(mut out) = steps.and_then(|s| s.checked_add(&Dim::constant(1))) else {
        ctx.error(overflow(ctx.step_span));
        return None;
    };
    if ceil {
        // PyTorch: drop the last window if it would start in the right padding.
        if let (Some(o), Some(s)) = (out.as_const(), size.as_const()) {
            let start = (o - 1).checked_mul(stride);
            if start.is_some_and(|start| s.checked_add(pad[0]).is_none_or(|end| start >= end)) {
                out = Dim::constant(o - 1);
            }
        }
    }
    if let Some(o) = out.as_const() {
        if o <= 0 {
            let shape = shape_to_string(ctx.input);
            ctx.error(
                Diagnostic::error(
                    codes::EMPTY_OUTPUT,
                    format!(
                        "`{}` would produce an output {axis_name} of {o}",
                        ctx.decl.name
                    ),
                )
                .at(ctx.step_span, "output size is zero or less")
                .with_label(ctx.input_origin, format!("this is {shape}")),
            );
            return None;
        }
    }
    Some(out)
}

pub const MAX_POOL: OpDecl = OpDecl {
    name: "max_pool",
    doc: "2-d max pooling (torch.nn.MaxPool2d); `stride` defaults to the kernel.",
    params: &[
        req("kernel", ArgTy::IntPair),
        opt("stride", ArgTy::IntPair, Default::Absent),
        opt("padding", ArgTy::IntPair, Default::Int(0)),
        opt("dilation", ArgTy::IntPair, Default::Int(1)),
        opt("ceil_mode", ArgTy::Bool, Default::Bool(false)),
    ],
    build: max_pool,
};

pub const AVG_POOL: OpDecl = OpDecl {
    name: "avg_pool",
    doc: "2-d average pooling (torch.nn.AvgPool2d); `stride` defaults to the kernel.",
    params: &[
        req("kernel", ArgTy::IntPair),
        opt("stride", ArgTy::IntPair, Default::Absent),
        opt("padding", ArgTy::IntPair, Default::Int(0)),
        opt("ceil_mode", ArgTy::Bool, Default::Bool(false)),
        opt("count_include_pad", ArgTy::Bool, Default::Bool(true)),
    ],
    build: avg_pool,
};

struct PoolGeometry {
    kernel: [i64; 2],
    stride: [i64; 2],
    padding: [i64; 2],
    dilation: [i64; 2],
    ceil: bool,
    shape: Vec<Dim>,
}

fn pool_geometry(ctx: &mut OpCtx<'_>, dilation: [i64; 2]) -> Option<PoolGeometry> {
    let kernel = ctx.pair("kernel", 1);
    let stride = match ctx.arg("stride") {
        Some(_) => ctx.pair("stride", 1),
        None => kernel,
    };
    let padding = ctx.pair("padding", 0);
    let ceil = ctx.bool("ceil_mode");
    if !ctx.expect_rank(&[4], NCHW) {
        return None;
    }
    let (kernel, stride, padding, ceil) = (kernel?, stride?, padding?, ceil?);
    for i in 0..2 {
        let Some(effective) = effective_kernel(kernel[i], dilation[i]) else {
            ctx.error(overflow(ctx.step_span));
            return None;
        };
        if padding[i] > effective / 2 {
            let span = ctx.span_of("padding");
            ctx.error(
                out_of_range(
                    ctx.decl.name,
                    "padding",
                    &padding[i].to_string(),
                    &format!("at most half the kernel ({})", effective / 2),
                    span,
                )
                .with_help("PyTorch pads pooling windows by at most half their size"),
            );
            return None;
        }
    }
    let h = window(
        ctx,
        2,
        [padding[0]; 2],
        kernel[0],
        dilation[0],
        stride[0],
        ceil,
    )?;
    let w = window(
        ctx,
        3,
        [padding[1]; 2],
        kernel[1],
        dilation[1],
        stride[1],
        ceil,
    )?;
    let shape = vec![ctx.input[0].clone(), ctx.input[1].clone(), h, w];
    Some(PoolGeometry {
        kernel,
        stride,
        padding,
        dilation,
        ceil,
        shape,
    })
}

fn max_pool(ctx: &mut OpCtx<'_>) -> Option<Built> {
    let dilation = ctx.pair("dilation", 1)?;
    let g = pool_geometry(ctx, dilation)?;
    Some(Built {
        op: Op::MaxPool {
            kernel: g.kernel,
            stride: g.stride,
            padding: g.padding,
            dilation: g.dilation,
            ceil_mode: g.ceil,
        },
        shape: g.shape,
    })
}

fn avg_pool(ctx: &mut OpCtx<'_>) -> Option<Built> {
    let count_include_pad = ctx.bool("count_include_pad")?;
    let g = pool_geometry(ctx, [1, 1])?;
    Some(Built {
        op: Op::AvgPool {
            kernel: g.kernel,
            stride: g.stride,
            padding: g.padding,
            ceil_mode: g.ceil,
            count_include_pad,
        },
        shape: g.shape,
    })
}

pub const ADAPTIVE_AVG_POOL: OpDecl = OpDecl {
    name: "adaptive_avg_pool",
    doc: "Average pooling to a fixed output size (torch.nn.AdaptiveAvgPool2d).",
    params: &[req("size", ArgTy::IntPair)],
    build: |ctx| adaptive(ctx, false),
};

pub const ADAPTIVE_MAX_POOL: OpDecl = OpDecl {
    name: "adaptive_max_pool",
    doc: "Max pooling to a fixed output size (torch.nn.AdaptiveMaxPool2d).",
    params: &[req("size", ArgTy::IntPair)],
    build: |ctx| adaptive(ctx, true),
};

fn adaptive(ctx: &mut OpCtx<'_>, max: bool) -> Option<Built> {
    let size = ctx.pair("size", 1);
    if !ctx.expect_rank(&[4], NCHW) {
        return None;
    }
    let size = size?;
    nonempty_spatial(ctx)?;
    let shape = vec![
        ctx.input[0].clone(),
        ctx.input[1].clone(),
        Dim::constant(size[0]),
        Dim::constant(size[1]),
    ];
    let op = if max {
        Op::AdaptiveMaxPool { size }
    } else {
        Op::AdaptiveAvgPool { size }
    };
    Some(Built { op, shape })
}

/// Pooling over an empty height or width is an error.
fn nonempty_spatial(ctx: &mut OpCtx<'_>) -> Option<()> {
    for axis in 2..4 {
        if ctx.input[axis].as_const().is_some_and(|v| v <= 0) {
            let shape = shape_to_string(ctx.input);
            ctx.error(
                Diagnostic::error(
                    codes::EMPTY_OUTPUT,
                    format!("`{}` gets an empty input {shape}", ctx.decl.name),
                )
                .at(ctx.step_span, "nothing to pool")
                .with_label(ctx.input_origin, format!("this is {shape}")),
            );
            return None;
        }
    }
    Some(())
}

pub const GLOBAL_AVG_POOL: OpDecl = OpDecl {
    name: "global_avg_pool",
    doc: "Average over height and width: [N, C, H, W] to [N, C] (Keras' GlobalAveragePooling2D).",
    params: &[],
    build: |ctx| {
        if !ctx.expect_rank(&[4], NCHW) {
            return None;
        }
        nonempty_spatial(ctx)?;
        Some(Built {
            op: Op::GlobalAvgPool,
            shape: ctx.input[..2].to_vec(),
        })
    },
};
