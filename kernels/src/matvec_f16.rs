//! `out[r] = sum_c w[r, c] * x[c]` for an f16 matrix `w` `[rows, cols]`, f32 accumulation.
//!
//! Weights are widened exactly to f32 (AVX2: F16C `vcvtph2ps`; NEON: `fcvtl`; portable:
//! integer ops on `wide` lanes) and multiplied in f32 with FMA. Shapes, row blocking (4 rows, 2 accumulators
//! each) and tails as [`matvec_f32`](crate::matvec_f32).
use crate::convert::widen_f16x8;
use crate::matvec_f32::rows_of;
use half::f16;
use wide::f32x8;

/// out (rows) = w (rows, cols, f16) · x (cols).
// Thumb: one out-of-line copy, not one inlined per call site (flash).
#[cfg_attr(target_arch = "arm", inline(never))]
pub fn matvec_f16(out: &mut [f32], w: &[f16], x: &[f32]) {
    // Thumb: `wide` has no SIMD backend there (plain arrays): the plain loop is
    // faster and smaller.
    if cfg!(target_arch = "arm") {
        return scalar::matvec_f16(out, w, x);
    }
    simd!(matvec_f16(out, w, x) else portable::matvec_f16(out, w, x))
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use half::f16;
    /// Scalar `matvec_f16`.
    pub fn matvec_f16(out: &mut [f32], w: &[f16], x: &[f32]) {
        let cols = x.len();
        if cols == 0 {
            out.fill(0.0);
            return;
        }
        for (o, row) in out.iter_mut().zip(w.chunks_exact(cols)) {
            *o = row.iter().zip(x).map(|(a, b)| a.to_f32() * b).sum();
        }
    }
}

/// Tail columns of an f16 row, in order.
#[inline(always)]
fn tail_dot_f16(a: &[f16], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(a, b)| a.to_f32() * b).sum()
}

/// Portable path (`wide`), one row at a time; f16 widened by
/// [`widen_f16x8`](crate::convert::widen_f16x8).
#[allow(dead_code)]
mod portable {
    use super::*;

    pub fn matvec_f16(out: &mut [f32], w: &[f16], x: &[f32]) {
        let cols = x.len();
        let Some(rows) = rows_of(out, w, cols) else {
            return;
        };
        let (x8, xt) = x.as_chunks::<8>();
        let t = x8.len() * 8;
        for (o, r) in out[..rows].iter_mut().zip(w.chunks_exact(cols)) {
            let mut acc = f32x8::ZERO;
            for (xv, a) in x8.iter().zip(r.as_chunks::<8>().0) {
                acc = widen_f16x8(a).mul_add(f32x8::from(*xv), acc);
            }
            *o = acc.reduce_add() + tail_dot_f16(&r[t..], xt);
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use crate::arch::x86_64::{blocks16, hsum, load_f16, load_f32};
    use core::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn matvec_f16(out: &mut [f32], w: &[f16], x: &[f32]) {
        let cols = x.len();
        let Some(rows) = rows_of(out, w, cols) else {
            return;
        };
        let (out, w) = (&mut out[..rows], &w[..rows * cols]);
        let x16 = blocks16(x);
        let t = x16.len() * 16;
        let mut o4 = out.chunks_exact_mut(4);
        let mut w4 = w.chunks_exact(4 * cols);
        for (o, w) in (&mut o4).zip(&mut w4) {
            let rs: [&[f16]; 4] = core::array::from_fn(|k| &w[k * cols..(k + 1) * cols]);
            let c = rs.map(blocks16);
            let mut a = [_mm256_setzero_ps(); 8];
            for (i, [xl, xh]) in x16.iter().enumerate() {
                let (xl, xh) = (load_f32(xl), load_f32(xh));
                for k in 0..4 {
                    let Some([wl, wh]) = c[k].get(i) else {
                        continue;
                    };
                    a[2 * k] = _mm256_fmadd_ps(load_f16(wl), xl, a[2 * k]);
                    a[2 * k + 1] = _mm256_fmadd_ps(load_f16(wh), xh, a[2 * k + 1]);
                }
            }
            for (k, o) in o.iter_mut().enumerate() {
                *o = hsum(_mm256_add_ps(a[2 * k], a[2 * k + 1]))
                    + tail_dot_f16(&rs[k][t..], &x[t..]);
            }
        }
        for (o, r) in o4
            .into_remainder()
            .iter_mut()
            .zip(w4.remainder().chunks_exact(cols))
        {
            let (mut al, mut ah) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for ([xl, xh], [wl, wh]) in x16.iter().zip(blocks16(r)) {
                al = _mm256_fmadd_ps(load_f16(wl), load_f32(xl), al);
                ah = _mm256_fmadd_ps(load_f16(wh), load_f32(xh), ah);
            }
            *o = hsum(_mm256_add_ps(al, ah)) + tail_dot_f16(&r[t..], &x[t..]);
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use super::*;
    use crate::arch::aarch64::{blocks8, load_f16, load_f32};
    use core::arch::aarch64::*;

    #[target_feature(enable = "neon")]
    pub fn matvec_f16(out: &mut [f32], w: &[f16], x: &[f32]) {
        let cols = x.len();
        let Some(rows) = rows_of(out, w, cols) else {
            return;
        };
        let (out, w) = (&mut out[..rows], &w[..rows * cols]);
        let x8 = blocks8(x);
        let t = x8.len() * 8;
        let mut o4 = out.chunks_exact_mut(4);
        let mut w4 = w.chunks_exact(4 * cols);
        for (o, w) in (&mut o4).zip(&mut w4) {
            let rs: [&[f16]; 4] = core::array::from_fn(|k| &w[k * cols..(k + 1) * cols]);
            let c = rs.map(blocks8);
            let mut a = [vdupq_n_f32(0.0); 8];
            for (i, [xl, xh]) in x8.iter().enumerate() {
                let (xl, xh) = (load_f32(xl), load_f32(xh));
                for k in 0..4 {
                    let Some([wl, wh]) = c[k].get(i) else {
                        continue;
                    };
                    a[2 * k] = vfmaq_f32(a[2 * k], load_f16(wl), xl);
                    a[2 * k + 1] = vfmaq_f32(a[2 * k + 1], load_f16(wh), xh);
                }
            }
            for (k, o) in o.iter_mut().enumerate() {
                *o = vaddvq_f32(vaddq_f32(a[2 * k], a[2 * k + 1]))
                    + tail_dot_f16(&rs[k][t..], &x[t..]);
            }
        }
        for (o, r) in o4
            .into_remainder()
            .iter_mut()
            .zip(w4.remainder().chunks_exact(cols))
        {
            let (mut al, mut ah) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            for ([xl, xh], [wl, wh]) in x8.iter().zip(blocks8(r)) {
                al = vfmaq_f32(al, load_f16(wl), load_f32(xl));
                ah = vfmaq_f32(ah, load_f16(wh), load_f32(xh));
            }
            *o = vaddvq_f32(vaddq_f32(al, ah)) + tail_dot_f16(&r[t..], &x[t..]);
        }
    }
}
