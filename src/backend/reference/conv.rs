//! 2-d convolution by im2col and matrix products, forward and backward,
//! with strides, asymmetric padding, dilation and groups.

use super::{Elem, Tensor};
use crate::ir::ops::ConvGeom;
use ndarray::{s, Array2, Array4, ArrayD, ArrayView3, Ix4, IxDyn};

struct Dims {
    n: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    kh: usize,
    kw: usize,
    ho: usize,
    wo: usize,
    cg: usize,
    og: usize,
}

fn dims(x: &[usize], w: &[usize], y: &[usize], g: &ConvGeom) -> Dims {
    Dims {
        n: x[0],
        c: x[1],
        h: x[2],
        w: x[3],
        o: w[0],
        kh: w[2],
        kw: w[3],
        ho: y[2],
        wo: y[3],
        cg: x[1] / g.groups,
        og: w[0] / g.groups,
    }
}

/// The input row (or column) that output position `o`, kernel tap `k` reads,
/// if it is inside the input.
fn source(
    o: usize,
    k: usize,
    stride: usize,
    dilation: usize,
    pad: usize,
    size: usize,
) -> Option<usize> {
    let pos = (o * stride + k * dilation) as isize - pad as isize;
    (pos >= 0 && (pos as usize) < size).then_some(pos as usize)
}

/// Calls `f(row, column, channel, input_y, input_x)` for every (kernel
/// tap, output position) pair that reads inside the input: row indexes
/// the tap (`(c * kh + i) * kw + j`), column the output position.
fn for_each_tap(d: &Dims, g: &ConvGeom, mut f: impl FnMut(usize, usize, usize, usize, usize)) {
    for c in 0..d.cg {
        for i in 0..d.kh {
            for j in 0..d.kw {
                let row = (c * d.kh + i) * d.kw + j;
                for oy in 0..d.ho {
                    let Some(iy) = source(oy, i, g.stride[0], g.dilation[0], g.padding[0], d.h)
                    else {
                        continue;
                    };
                    for ox in 0..d.wo {
                        if let Some(ix) =
                            source(ox, j, g.stride[1], g.dilation[1], g.padding[2], d.w)
                        {
                            f(row, oy * d.wo + ox, c, iy, ix);
                        }
                    }
                }
            }
        }
    }
}

/// `[cg * kh * kw, ho * wo]` patches of one image's channel group.
fn im2col<T: Elem>(x: ArrayView3<'_, T>, d: &Dims, g: &ConvGeom) -> Array2<T> {
    let mut cols = Array2::zeros((d.cg * d.kh * d.kw, d.ho * d.wo));
    for_each_tap(d, g, |row, col, c, iy, ix| {
        cols[[row, col]] = x[[c, iy, ix]]
    });
    cols
}

/// Adds patches back into an image's channel group (the transpose of
/// [`im2col`]).
fn col2im<T: Elem>(
    cols: &Array2<T>,
    dx: &mut ndarray::ArrayViewMut3<'_, T>,
    d: &Dims,
    g: &ConvGeom,
) {
    for_each_tap(d, g, |row, col, c, iy, ix| {
        dx[[c, iy, ix]] = dx[[c, iy, ix]] + cols[[row, col]]
    });
}

fn as4<T: Elem>(a: &Tensor<T>) -> ndarray::ArrayView4<'_, T> {
    a.view().into_dimensionality::<Ix4>().expect("4-d")
}

fn weight_matrix<T: Elem>(w: &Tensor<T>, d: &Dims, group: usize) -> Array2<T> {
    as4(w)
        .slice(s![group * d.og..(group + 1) * d.og, .., .., ..])
        .to_owned()
        .into_shape_with_order((d.og, d.cg * d.kh * d.kw))
        .expect("contiguous weight slice")
}

fn output_shape(x: &[usize], w: &[usize], g: &ConvGeom) -> Vec<usize> {
    let out = |size, k, s, p: [usize; 2], dl| {
        crate::ir::ops::window_out(size, k, s, p, dl, false).expect("type-checked conv")
    };
    vec![
        x[0],
        w[0],
        out(
            x[2],
            w[2],
            g.stride[0],
            [g.padding[0], g.padding[1]],
            g.dilation[0],
        ),
        out(
            x[3],
            w[3],
            g.stride[1],
            [g.padding[2], g.padding[3]],
            g.dilation[1],
        ),
    ]
}

pub fn forward<T: Elem>(x: &Tensor<T>, w: &Tensor<T>, g: &ConvGeom) -> Tensor<T> {
    let y_shape = output_shape(x.shape(), w.shape(), g);
    let d = dims(x.shape(), w.shape(), &y_shape, g);
    let x4 = as4(x);
    let mut y = Array4::zeros((d.n, d.o, d.ho, d.wo));
    for b in 0..d.n {
        for grp in 0..g.groups {
            let xg = x4.slice(s![b, grp * d.cg..(grp + 1) * d.cg, .., ..]);
            let cols = im2col(xg, &d, g);
            let out = weight_matrix(w, &d, grp).dot(&cols);
            y.slice_mut(s![b, grp * d.og..(grp + 1) * d.og, .., ..])
                .assign(
                    &out.into_shape_with_order((d.og, d.ho, d.wo))
                        .expect("contiguous product"),
                );
        }
    }
    y.into_dyn()
}

pub fn grad_input<T: Elem>(
    dy: &Tensor<T>,
    w: &Tensor<T>,
    g: &ConvGeom,
    x_shape: &[usize],
) -> Tensor<T> {
    let d = dims(x_shape, w.shape(), dy.shape(), g);
    let dy4 = as4(dy);
    let mut dx = Array4::zeros((d.n, d.c, d.h, d.w));
    for b in 0..d.n {
        for grp in 0..g.groups {
            let dyg = dy4
                .slice(s![b, grp * d.og..(grp + 1) * d.og, .., ..])
                .to_owned()
                .into_shape_with_order((d.og, d.ho * d.wo))
                .expect("contiguous dy slice");
            let cols = weight_matrix(w, &d, grp).t().dot(&dyg);
            let mut dxg = dx.slice_mut(s![b, grp * d.cg..(grp + 1) * d.cg, .., ..]);
            col2im(&cols, &mut dxg, &d, g);
        }
    }
    dx.into_dyn()
}

pub fn grad_weight<T: Elem>(
    x: &Tensor<T>,
    dy: &Tensor<T>,
    g: &ConvGeom,
    w_shape: &[usize],
) -> Tensor<T> {
    let d = dims(x.shape(), w_shape, dy.shape(), g);
    let x4 = as4(x);
    let dy4 = as4(dy);
    let mut dw: ArrayD<T> = ArrayD::zeros(IxDyn(w_shape));
    for grp in 0..g.groups {
        let mut acc = Array2::<T>::zeros((d.og, d.cg * d.kh * d.kw));
        for b in 0..d.n {
            let xg = x4.slice(s![b, grp * d.cg..(grp + 1) * d.cg, .., ..]);
            let cols = im2col(xg, &d, g);
            let dyg = dy4
                .slice(s![b, grp * d.og..(grp + 1) * d.og, .., ..])
                .to_owned()
                .into_shape_with_order((d.og, d.ho * d.wo))
                .expect("contiguous dy slice");
            acc = acc + dyg.dot(&cols.t());
        }
        let acc4 = acc
            .into_shape_with_order((d.og, d.cg, d.kh, d.kw))
            .expect("contiguous");
        dw.slice_mut(s![grp * d.og..(grp + 1) * d.og, .., .., ..])
            .assign(&acc4);
    }
    dw
}
