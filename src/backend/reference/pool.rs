//! Pooling, forward and backward, with PyTorch's window and divisor rules.

use super::{Elem, Tensor};
use crate::ir::ops::PoolGeom;
use ndarray::{Array4, ArrayView4, Ix4};

fn as4<T: Elem>(a: &Tensor<T>) -> ArrayView4<'_, T> {
    a.view().into_dimensionality::<Ix4>().expect("4-d")
}

fn out_size(size: usize, g: &PoolGeom, axis: usize) -> usize {
    crate::ir::ops::window_out(
        size,
        g.kernel[axis],
        g.stride[axis],
        [g.padding[axis]; 2],
        g.dilation[axis],
        g.ceil_mode,
    )
    .expect("type-checked pooling")
}

/// The input index of the maximum of each output window, or `None` for a
/// window entirely in the padding.
fn argmax<T: Elem>(x: &ArrayView4<'_, T>, g: &PoolGeom) -> Array4<Option<(usize, usize)>> {
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let (ho, wo) = (out_size(h, g, 0), out_size(w, g, 1));
    let mut idx = Array4::from_elem((n, c, ho, wo), None);
    for b in 0..n {
        for ch in 0..c {
            for oy in 0..ho {
                for ox in 0..wo {
                    let mut best: Option<(T, (usize, usize))> = None;
                    for i in 0..g.kernel[0] {
                        let iy =
                            (oy * g.stride[0] + i * g.dilation[0]) as isize - g.padding[0] as isize;
                        if iy < 0 || iy as usize >= h {
                            continue;
                        }
                        for j in 0..g.kernel[1] {
                            let ix = (ox * g.stride[1] + j * g.dilation[1]) as isize
                                - g.padding[1] as isize;
                            if ix < 0 || ix as usize >= w {
                                continue;
                            }
                            let v = x[[b, ch, iy as usize, ix as usize]];
                            // The first maximum wins, and NaN propagates, as in PyTorch.
                            if best.is_none_or(|(m, _)| v > m || v.is_nan()) {
                                best = Some((v, (iy as usize, ix as usize)));
                            }
                        }
                    }
                    idx[[b, ch, oy, ox]] = best.map(|(_, p)| p);
                }
            }
        }
    }
    idx
}

pub fn max_forward<T: Elem>(x: &Tensor<T>, g: &PoolGeom) -> Tensor<T> {
    let x4 = as4(x);
    let idx = argmax(&x4, g);
    let mut y = Array4::zeros(idx.raw_dim());
    for ((b, c, oy, ox), p) in idx.indexed_iter() {
        y[[b, c, oy, ox]] = match p {
            Some((iy, ix)) => x4[[b, c, *iy, *ix]],
            None => T::neg_infinity(),
        };
    }
    y.into_dyn()
}

pub fn max_backward<T: Elem>(x: &Tensor<T>, dy: &Tensor<T>, g: &PoolGeom) -> Tensor<T> {
    let x4 = as4(x);
    let dy4 = as4(dy);
    let idx = argmax(&x4, g);
    let mut dx = Array4::zeros(x4.raw_dim());
    for ((b, c, oy, ox), p) in idx.indexed_iter() {
        if let Some((iy, ix)) = p {
            dx[[b, c, *iy, *ix]] = dx[[b, c, *iy, *ix]] + dy4[[b, c, oy, ox]];
        }
    }
    dx.into_dyn()
}

/// One output's window on one axis: `start..end` clipped to the input, and
/// the span PyTorch divides by when padding counts.
#[derive(Clone, Copy)]
struct Window {
    start: usize,
    end: usize,
    span: usize,
}

/// The windows of average pooling on one axis: clipped to the input, with
/// the span clipped to the padded input only (PyTorch's divisor).
fn pool_windows(size: usize, g: &PoolGeom, axis: usize) -> Vec<Window> {
    (0..out_size(size, g, axis))
        .map(|o| {
            let start = (o * g.stride[axis]) as isize - g.padding[axis] as isize;
            let end = (start + g.kernel[axis] as isize).min((size + g.padding[axis]) as isize);
            Window {
                start: start.max(0) as usize,
                end: end.min(size as isize).max(0) as usize,
                span: (end - start) as usize,
            }
        })
        .collect()
}

/// Adaptive windows: `[floor(o*in/out), ceil((o+1)*in/out))`.
fn adaptive_windows(size: usize, out: usize) -> Vec<Window> {
    (0..out)
        .map(|o| {
            let (start, end) = (o * size / out, ((o + 1) * size).div_ceil(out));
            Window {
                start,
                end,
                span: end - start,
            }
        })
        .collect()
}

fn divisor(wy: Window, wx: Window, count_padding: bool) -> f64 {
    if count_padding {
        (wy.span * wx.span) as f64
    } else {
        ((wy.end - wy.start) * (wx.end - wx.start)) as f64
    }
}

/// The mean of every window: average and adaptive average pooling.
fn window_means<T: Elem>(
    x: &Tensor<T>,
    wys: &[Window],
    wxs: &[Window],
    count_padding: bool,
) -> Tensor<T> {
    let x4 = as4(x);
    let [n, c] = [x4.shape()[0], x4.shape()[1]];
    let mut y = Array4::zeros((n, c, wys.len(), wxs.len()));
    for (oy, &wy) in wys.iter().enumerate() {
        for (ox, &wx) in wxs.iter().enumerate() {
            let div = T::of(divisor(wy, wx, count_padding));
            for b in 0..n {
                for ch in 0..c {
                    let mut s = T::zero();
                    for iy in wy.start..wy.end {
                        for ix in wx.start..wx.end {
                            s = s + x4[[b, ch, iy, ix]];
                        }
                    }
                    y[[b, ch, oy, ox]] = s / div;
                }
            }
        }
    }
    y.into_dyn()
}

/// The transpose of [`window_means`]: each output's gradient is shared
/// evenly by its window.
fn window_means_backward<T: Elem>(
    dy: &Tensor<T>,
    shape: &[usize],
    wys: &[Window],
    wxs: &[Window],
    count_padding: bool,
) -> Tensor<T> {
    let dy4 = as4(dy);
    let [n, c, h, w] = [shape[0], shape[1], shape[2], shape[3]];
    let mut dx = Array4::zeros((n, c, h, w));
    for (oy, &wy) in wys.iter().enumerate() {
        for (ox, &wx) in wxs.iter().enumerate() {
            let div = T::of(divisor(wy, wx, count_padding));
            for b in 0..n {
                for ch in 0..c {
                    let share = dy4[[b, ch, oy, ox]] / div;
                    for iy in wy.start..wy.end {
                        for ix in wx.start..wx.end {
                            dx[[b, ch, iy, ix]] = dx[[b, ch, iy, ix]] + share;
                        }
                    }
                }
            }
        }
    }
    dx.into_dyn()
}

pub fn avg_forward<T: Elem>(x: &Tensor<T>, g: &PoolGeom, count_include_pad: bool) -> Tensor<T> {
    let s = x.shape();
    window_means(
        x,
        &pool_windows(s[2], g, 0),
        &pool_windows(s[3], g, 1),
        count_include_pad,
    )
}

pub fn avg_backward<T: Elem>(
    dy: &Tensor<T>,
    g: &PoolGeom,
    count_include_pad: bool,
    shape: &[usize],
) -> Tensor<T> {
    window_means_backward(
        dy,
        shape,
        &pool_windows(shape[2], g, 0),
        &pool_windows(shape[3], g, 1),
        count_include_pad,
    )
}

pub fn adaptive_avg_forward<T: Elem>(x: &Tensor<T>, size: [usize; 2]) -> Tensor<T> {
    let s = x.shape();
    window_means(
        x,
        &adaptive_windows(s[2], size[0]),
        &adaptive_windows(s[3], size[1]),
        true,
    )
}

pub fn adaptive_avg_backward<T: Elem>(dy: &Tensor<T>, shape: &[usize]) -> Tensor<T> {
    let (ho, wo) = (dy.shape()[2], dy.shape()[3]);
    window_means_backward(
        dy,
        shape,
        &adaptive_windows(shape[2], ho),
        &adaptive_windows(shape[3], wo),
        true,
    )
}

fn adaptive_argmax<T: Elem>(x: &ArrayView4<'_, T>, size: [usize; 2]) -> Array4<(usize, usize)> {
    let [n, c, h, w] = [x.shape()[0], x.shape()[1], x.shape()[2], x.shape()[3]];
    let (wys, wxs) = (adaptive_windows(h, size[0]), adaptive_windows(w, size[1]));
    let mut idx = Array4::from_elem((n, c, size[0], size[1]), (0, 0));
    for b in 0..n {
        for ch in 0..c {
            for (oy, wy) in wys.iter().enumerate() {
                for (ox, wx) in wxs.iter().enumerate() {
                    let mut best = (wy.start, wx.start);
                    for iy in wy.start..wy.end {
                        for ix in wx.start..wx.end {
                            let v = x[[b, ch, iy, ix]];
                            if v > x[[b, ch, best.0, best.1]] || v.is_nan() {
                                best = (iy, ix);
                            }
                        }
                    }
                    idx[[b, ch, oy, ox]] = best;
                }
            }
        }
    }
    idx
}

pub fn adaptive_max_forward<T: Elem>(x: &Tensor<T>, size: [usize; 2]) -> Tensor<T> {
    let x4 = as4(x);
    let idx = adaptive_argmax(&x4, size);
    let mut y = Array4::zeros(idx.raw_dim());
    for ((b, c, oy, ox), (iy, ix)) in idx.indexed_iter() {
        y[[b, c, oy, ox]] = x4[[b, c, *iy, *ix]];
    }
    y.into_dyn()
}

pub fn adaptive_max_backward<T: Elem>(x: &Tensor<T>, dy: &Tensor<T>) -> Tensor<T> {
    let x4 = as4(x);
    let dy4 = as4(dy);
    let idx = adaptive_argmax(&x4, [dy4.shape()[2], dy4.shape()[3]]);
    let mut dx = Array4::zeros(x4.raw_dim());
    for ((b, c, oy, ox), (iy, ix)) in idx.indexed_iter() {
        dx[[b, c, *iy, *ix]] = dx[[b, c, *iy, *ix]] + dy4[[b, c, oy, ox]];
    }
    dx.into_dyn()
}
