//! `out[r] = sum_c w[r, c] * x[c]` for an f32 matrix `w` `[rows, cols]`, row-major.
//!
//! `rows = min(out.len(), w.len() / cols)`, `cols = x.len()`; rows past that are left
//! as they are, and `cols == 0` gives zeros. The SIMD paths take 4 rows at a time so each
//! load of `x` feeds 4 FMAs, with 2 accumulators per row (16 columns a step, 8 independent
//! FMA chains) to cover the FMA latency; a row's lanes are summed once at the end, then
//! the tail columns are added in order. Summation order differs from the scalar
//! reference, so results agree to rounding, not bit for bit.
use wide::f32x8;

/// out (rows) = w (rows, cols) · x (cols).
// Thumb: one out-of-line copy, not one inlined per call site (flash).
#[cfg_attr(target_arch = "arm", inline(never))]
pub fn matvec_f32(out: &mut [f32], w: &[f32], x: &[f32]) {
    // Thumb: `wide` has no SIMD backend there (plain arrays): the plain loop is
    // faster and smaller.
    if cfg!(target_arch = "arm") {
        return scalar::matvec_f32(out, w, x);
    }
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86_64::enabled() {
        // SAFETY: `enabled()` is true only when AVX2, FMA and F16C are available
        // (enabled at compile time, or detected on this CPU).
        return unsafe { avx2::matvec_f32(out, w, x) };
    }
    // aarch64 included: `wide` lowers this to NEON `fmla`.
    portable::matvec_f32(out, w, x)
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    /// Scalar `matvec_f32`.
    pub fn matvec_f32(out: &mut [f32], w: &[f32], x: &[f32]) {
        let cols = x.len();
        if cols == 0 {
            out.fill(0.0);
            return;
        }
        for (o, row) in out.iter_mut().zip(w.chunks_exact(cols)) {
            *o = row.iter().zip(x).map(|(a, b)| a * b).sum();
        }
    }
}

/// Splits `out`/`w` into the rows the kernel computes: `(rows, cols)` with
/// `rows = min(out.len(), w.len() / cols)`; `None` when `cols == 0` (after zeroing `out`).
#[inline(always)]
pub(crate) fn rows_of<T>(out: &mut [f32], w: &[T], cols: usize) -> Option<usize> {
    if cols == 0 {
        out.fill(0.0);
        return None;
    }
    Some(out.len().min(w.len() / cols))
}

mod portable {
    use super::*;

    pub fn matvec_f32(out: &mut [f32], w: &[f32], x: &[f32]) {
        let cols = x.len();
        let Some(rows) = rows_of(out, w, cols) else {
            return;
        };
        let (out, w) = (&mut out[..rows], &w[..rows * cols]);
        let mut o4 = out.chunks_exact_mut(4);
        let mut w4 = w.chunks_exact(4 * cols);
        for (o, w) in (&mut o4).zip(&mut w4) {
            let [r0, r1, r2, r3] = split4(w, cols);
            let (x8, xt) = x.as_chunks::<8>();
            let (c0, c1, c2, c3) = (
                r0.as_chunks::<8>().0,
                r1.as_chunks::<8>().0,
                r2.as_chunks::<8>().0,
                r3.as_chunks::<8>().0,
            );
            let mut acc = [f32x8::ZERO; 4];
            for ((((xv, a), b), c), d) in x8.iter().zip(c0).zip(c1).zip(c2).zip(c3) {
                let xv = f32x8::from(*xv);
                acc[0] = f32x8::from(*a).mul_add(xv, acc[0]);
                acc[1] = f32x8::from(*b).mul_add(xv, acc[1]);
                acc[2] = f32x8::from(*c).mul_add(xv, acc[2]);
                acc[3] = f32x8::from(*d).mul_add(xv, acc[3]);
            }
            let t = x8.len() * 8;
            for (k, (o, r)) in o.iter_mut().zip([r0, r1, r2, r3]).enumerate() {
                *o = acc[k].reduce_add() + tail_dot(&r[t..], xt);
            }
        }
        for (o, r) in o4
            .into_remainder()
            .iter_mut()
            .zip(w4.remainder().chunks_exact(cols))
        {
            let (x8, xt) = x.as_chunks::<8>();
            let (r8, rt) = r.as_chunks::<8>();
            let mut acc = f32x8::ZERO;
            for (xv, a) in x8.iter().zip(r8) {
                acc = f32x8::from(*a).mul_add(f32x8::from(*xv), acc);
            }
            *o = acc.reduce_add() + tail_dot(rt, xt);
        }
    }
}

/// A block of 4 rows (`4 * cols` elements) as its rows.
#[inline(always)]
fn split4<T>(w: &[T], cols: usize) -> [&[T]; 4] {
    let (r0, r) = w.split_at(cols);
    let (r1, r) = r.split_at(cols);
    let (r2, r3) = r.split_at(cols);
    [r0, r1, r2, r3]
}

/// Dot product of the tail columns, in order.
#[inline(always)]
pub(crate) fn tail_dot(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(a, b)| a * b).sum()
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{rows_of, split4, tail_dot};
    use crate::arch::x86_64::blocks16;
    use crate::arch::x86_64::{hsum, load_f32};
    use core::arch::x86_64::*;

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn matvec_f32(out: &mut [f32], w: &[f32], x: &[f32]) {
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
            let [r0, r1, r2, r3] = split4(w, cols);
            let rs = [r0, r1, r2, r3];
            let c = rs.map(blocks16);
            let mut a = [_mm256_setzero_ps(); 8];
            for (i, [xl, xh]) in x16.iter().enumerate() {
                let (xl, xh) = (load_f32(xl), load_f32(xh));
                for k in 0..4 {
                    let Some([wl, wh]) = c[k].get(i) else {
                        continue;
                    };
                    a[2 * k] = _mm256_fmadd_ps(load_f32(wl), xl, a[2 * k]);
                    a[2 * k + 1] = _mm256_fmadd_ps(load_f32(wh), xh, a[2 * k + 1]);
                }
            }
            for (k, o) in o.iter_mut().enumerate() {
                *o = hsum(_mm256_add_ps(a[2 * k], a[2 * k + 1])) + tail_dot(&rs[k][t..], &x[t..]);
            }
        }
        for (o, r) in o4
            .into_remainder()
            .iter_mut()
            .zip(w4.remainder().chunks_exact(cols))
        {
            let (mut al, mut ah) = (_mm256_setzero_ps(), _mm256_setzero_ps());
            for ([xl, xh], [wl, wh]) in x16.iter().zip(blocks16(r)) {
                al = _mm256_fmadd_ps(load_f32(wl), load_f32(xl), al);
                ah = _mm256_fmadd_ps(load_f32(wh), load_f32(xh), ah);
            }
            *o = hsum(_mm256_add_ps(al, ah)) + tail_dot(&r[t..], &x[t..]);
        }
    }
}
