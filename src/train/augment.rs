//! Augmentation: resize (bilinear), random crop with padding, horizontal
//! flip, normalize. Seeded per image (from the run's seed, the epoch and
//! the image's index), so every run with the same seed sees the same
//! images, whatever the number of loader threads.

use crate::check::train::Augment;
use crate::rng::Rng;

/// The pipeline of a training section, for images of shape `[C, H, W]`.
#[derive(Clone, Debug)]
pub struct Pipeline {
    steps: Vec<Augment>,
    input: [usize; 3],
}

impl Pipeline {
    pub fn new(steps: Vec<Augment>, input: [usize; 3]) -> Result<Pipeline, String> {
        let p = Pipeline { steps, input };
        p.output_shape()?;
        Ok(p)
    }

    /// The shape images have after the pipeline; errors for impossible
    /// steps (a crop larger than its padded image, a normalize with the
    /// wrong number of channels).
    pub fn output_shape(&self) -> Result<[usize; 3], String> {
        let [c, mut h, mut w] = self.input;
        for s in &self.steps {
            match s {
                Augment::Resize { size } => {
                    h = size[0] as usize;
                    w = size[1] as usize;
                }
                Augment::RandomCrop { size, padding } => {
                    let (ch, cw) = (size[0] as usize, size[1] as usize);
                    let p = *padding as usize;
                    if ch > h + 2 * p || cw > w + 2 * p {
                        return Err(format!(
                            "random_crop of {ch}x{cw} is larger than the padded {}x{} image",
                            h + 2 * p,
                            w + 2 * p
                        ));
                    }
                    h = ch;
                    w = cw;
                }
                Augment::HorizontalFlip { .. } => {}
                Augment::Normalize { mean, std } => {
                    if mean.len() != 1 && mean.len() != c || std.len() != mean.len() {
                        return Err(format!(
                            "normalize has {} means for images of {c} channels",
                            mean.len()
                        ));
                    }
                }
            }
        }
        Ok([c, h, w])
    }

    /// Applies the pipeline to one image. In evaluation (`rng` is `None`)
    /// random crops become center crops without padding and flips are off,
    /// as torchvision's evaluation transforms do.
    pub fn apply(&self, image: Vec<f32>, mut rng: Option<&mut Rng>) -> Vec<f32> {
        let [c, mut h, mut w] = self.input;
        let mut img = image;
        for s in &self.steps {
            match s {
                Augment::Resize { size } => {
                    let (nh, nw) = (size[0] as usize, size[1] as usize);
                    if (nh, nw) != (h, w) {
                        img = resize_bilinear(&img, c, h, w, nh, nw);
                        h = nh;
                        w = nw;
                    }
                }
                Augment::RandomCrop { size, padding } => {
                    let (ch, cw) = (size[0] as usize, size[1] as usize);
                    let (top, left, pad) = match rng.as_deref_mut() {
                        Some(r) => {
                            let p = *padding as usize;
                            let top = (r.uniform() * (h + 2 * p - ch + 1) as f64) as usize;
                            let left = (r.uniform() * (w + 2 * p - cw + 1) as f64) as usize;
                            (top, left, p)
                        }
                        None if ch <= h && cw <= w => ((h - ch) / 2, (w - cw) / 2, 0),
                        None => (
                            (h + 2 * *padding as usize - ch) / 2,
                            (w + 2 * *padding as usize - cw) / 2,
                            *padding as usize,
                        ),
                    };
                    img = crop(&img, c, h, w, top, left, ch, cw, pad);
                    h = ch;
                    w = cw;
                }
                Augment::HorizontalFlip { p } => {
                    if let Some(r) = rng.as_deref_mut() {
                        if r.uniform() < *p {
                            for row in img.chunks_exact_mut(w) {
                                row.reverse();
                            }
                        }
                    }
                }
                Augment::Normalize { mean, std } => {
                    for ch in 0..c {
                        let (m, s) = if mean.len() == 1 {
                            (mean[0], std[0])
                        } else {
                            (mean[ch], std[ch])
                        };
                        for v in &mut img[ch * h * w..(ch + 1) * h * w] {
                            *v = ((f64::from(*v) - m) / s) as f32;
                        }
                    }
                }
            }
        }
        img
    }
}

/// Bilinear resize with half-pixel centres (PyTorch's `align_corners=False`).
pub fn resize_bilinear(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    nh: usize,
    nw: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; c * nh * nw];
    let axis = |o: usize, n: usize, size: usize| -> (usize, usize, f32) {
        let src = ((o as f64 + 0.5) * size as f64 / n as f64 - 0.5).max(0.0);
        let i0 = (src.floor() as usize).min(size - 1);
        let i1 = (i0 + 1).min(size - 1);
        (i0, i1, (src - i0 as f64) as f32)
    };
    for ch in 0..c {
        let plane = &img[ch * h * w..(ch + 1) * h * w];
        for oy in 0..nh {
            let (y0, y1, fy) = axis(oy, nh, h);
            for ox in 0..nw {
                let (x0, x1, fx) = axis(ox, nw, w);
                let top = plane[y0 * w + x0] * (1.0 - fx) + plane[y0 * w + x1] * fx;
                let bottom = plane[y1 * w + x0] * (1.0 - fx) + plane[y1 * w + x1] * fx;
                out[ch * nh * nw + oy * nw + ox] = top * (1.0 - fy) + bottom * fy;
            }
        }
    }
    out
}

/// The `ch x cw` window at (`top`, `left`) of the image padded by `pad`
/// zeros on every side.
#[allow(clippy::too_many_arguments)]
fn crop(
    img: &[f32],
    c: usize,
    h: usize,
    w: usize,
    top: usize,
    left: usize,
    ch: usize,
    cw: usize,
    pad: usize,
) -> Vec<f32> {
    let mut out = vec![0f32; c * ch * cw];
    for k in 0..c {
        for y in 0..ch {
            let sy = (top + y) as isize - pad as isize;
            if sy < 0 || sy as usize >= h {
                continue;
            }
            for x in 0..cw {
                let sx = (left + x) as isize - pad as isize;
                if sx >= 0 && (sx as usize) < w {
                    out[k * ch * cw + y * cw + x] = img[k * h * w + sy as usize * w + sx as usize];
                }
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_keeps_constant_images_and_crops_center_in_eval() {
        let img = vec![0.5f32; 4 * 4];
        let r = resize_bilinear(&img, 1, 4, 4, 7, 9);
        assert!(r.iter().all(|&v| (v - 0.5).abs() < 1e-6));
        let p = Pipeline::new(
            vec![Augment::RandomCrop {
                size: [2, 2],
                padding: 0,
            }],
            [1, 4, 4],
        )
        .unwrap();
        let seq: Vec<f32> = (0..16).map(|v| v as f32).collect();
        assert_eq!(p.apply(seq, None), vec![5.0, 6.0, 9.0, 10.0]);
        assert!(Pipeline::new(
            vec![Augment::RandomCrop {
                size: [9, 9],
                padding: 2
            }],
            [1, 4, 4]
        )
        .is_err());
    }

    #[test]
    fn augmentation_is_reproducible() {
        let p = Pipeline::new(
            vec![
                Augment::RandomCrop {
                    size: [4, 4],
                    padding: 2,
                },
                Augment::HorizontalFlip { p: 0.5 },
            ],
            [1, 4, 4],
        )
        .unwrap();
        let seq: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let a = p.apply(seq.clone(), Some(&mut Rng::new(9)));
        let b = p.apply(seq, Some(&mut Rng::new(9)));
        assert_eq!(a, b);
    }
}
