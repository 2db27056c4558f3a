//! q8_0 matvec against int8 activations. Weights: codes `q` i8 `[rows, cols]` and f16
//! scales `[rows, cols / QK]`, `w[r, c] = q[r, c] * scales[r, c / QK]`. Activations: the
//! int8 groups `xq (cols)`, `xs (cols / QK)` of
//! [`quantize_act`](crate::quantize_act::quantize_act).
//!
//! `out[r] = sum_g f32(isum_g) * (scales[r, g] * xs_g)` with `isum_g = sum_{c in g}
//! q[r, c] * xq[c]` exact in i32 (`|isum| <= 32 * 128 * 127`) and the float order of
//! [`quantize_act`](mod@crate::quantize_act): 8 lane accumulators, `g % 8`, one fixed final
//! reduction. Every path gives the bits of [`scalar::matvec_q8`], and every i8 code
//! (`-128` included) is multiplied exactly:
//! - AVX2, 4 rows a pass sharing each activation load: `vpmaddubsw(|w|, x * sign(w))`
//!   (u8 x i8 pairs, at most `2 * 128 * 127`, no saturation) then `vpmaddwd` by ones into
//!   8 i32 a group; 8 groups reduced to one vector of group sums by `vphaddd`, converted
//!   (`vcvtdq2ps`) and scaled by 8 F16C-widened scales at once.
//! - NEON, 4 rows a pass: `smull`/`smlal2` (i8 x i8 pairs into i16) and `sadalp` into i32
//!   lanes; with `dotprod` (`cfg(target_feature = "dotprod")`), `sdot`. Groups `j` and
//!   `j + 4` of each 8 go to two 4-lane accumulators.
//! - ARMv7E-M (`cfg(folio_dsp)`), 4 rows a pass: `SXTB16` splits 4 codes of weights
//!   and activations into sign-extended halfword pairs, `SMLAD` multiplies and adds two
//!   pairs; each activation word is split once for the 4 rows.
//! - elsewhere the scalar reference.
use half::f16;

/// out (rows) = dequant(q, scales) (rows, cols) · dequant(xq, xs) (cols).
// Thumb: one out-of-line copy, not one inlined per call site (flash).
#[cfg_attr(target_arch = "arm", inline(never))]
pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], xq: &[i8], xs: &[f32]) {
    #[cfg(target_arch = "x86_64")]
    if crate::arch::x86_64::enabled() {
        // SAFETY: `enabled()` is true only when AVX2, FMA and F16C are available
        // (enabled at compile time, or detected on this CPU).
        return unsafe { avx2::matvec_q8(out, q, scales, xq, xs) };
    }
    #[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
    {
        // SAFETY: NEON is enabled at compile time (the `cfg` above).
        unsafe { neon::matvec_q8(out, q, scales, xq, xs) }
    }
    #[cfg(all(target_arch = "arm", folio_dsp))]
    {
        dsp::matvec_q8(out, q, scales, xq, xs)
    }
    #[cfg(not(any(
        all(target_arch = "aarch64", target_feature = "neon"),
        all(target_arch = "arm", folio_dsp)
    )))]
    {
        scalar::matvec_q8(out, q, scales, xq, xs)
    }
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use crate::quantize_act::{scalar::row, Shape};
    use crate::QK;
    use half::f16;

    /// Scalar `matvec_q8`.
    pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], xq: &[i8], xs: &[f32]) {
        let Some(sh) = Shape::new(out, q.len(), scales.len(), xq.len(), xs.len(), 1) else {
            return;
        };
        let xg = xq.as_chunks::<QK>().0;
        let xs = xs.get(..sh.groups).unwrap_or(&[]);
        for ((o, w), s) in out
            .iter_mut()
            .take(sh.rows)
            .zip(q.chunks_exact(sh.row_bytes))
            .zip(scales.chunks_exact(sh.row_scales))
        {
            let isums = w.as_chunks::<QK>().0.iter().zip(xg).map(|(w, x)| dot(w, x));
            *o = row(isums, s, xs);
        }
    }

    /// `sum_k w[k] * x[k]`, exact in i32.
    #[inline(always)]
    pub(crate) fn dot(w: &[i8; QK], x: &[i8; QK]) -> i32 {
        w.iter()
            .zip(x)
            .fold(0i32, |a, (&w, &x)| a + i32::from(w) * i32::from(x))
    }
}

/// ARMv7E-M DSP path: 4 rows a pass. Each word of 4 activation codes is split once by
/// `SXTB16` into the sign-extended halfword pairs (x0, x2) and (x1, x3); each weight word
/// likewise, and `SMLAD` adds both pair products (two 16 x 16 multiplies and adds a
/// cycle): 23 instructions per 4 columns of 4 rows. The group sums are exact, so the
/// float part (the reference's own code order) gives the reference's bits; rows past
/// the last multiple of 4 take the reference itself.
#[cfg(all(target_arch = "arm", folio_dsp))]
mod dsp {
    use super::*;
    use crate::quantize_act::Shape;
    use crate::quantize_act::{h2f, scalar::finish};
    use crate::QK;

    /// DSP `matvec_q8`, bit-identical to [`scalar::matvec_q8`].
    pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], xq: &[i8], xs: &[f32]) {
        let Some(sh) = Shape::new(out, q.len(), scales.len(), xq.len(), xs.len(), 1) else {
            return;
        };
        let (xg, xs) = (xq.as_chunks::<QK>().0, xs.get(..sh.groups).unwrap_or(&[]));
        let (stride, row_scales) = (sh.row_bytes, sh.row_scales);
        let out = out.get_mut(..sh.rows).unwrap_or(&mut []);
        let mut o4 = out.chunks_exact_mut(4);
        let mut q4 = q.chunks_exact(4 * stride);
        let mut s4 = scales.chunks_exact(4 * row_scales);
        for ((o, w), s) in (&mut o4).zip(&mut q4).zip(&mut s4) {
            let mut d = s.chunks_exact(row_scales);
            let mut row = || d.next().unwrap_or(&[]).iter();
            let (d0, d1, d2, d3) = (row(), row(), row(), row());
            // Rows 0 and 2 at the current group; the asm advances them a group a call.
            let (mut pa, mut pb) = (w.as_ptr(), w.as_ptr().wrapping_add(2 * stride));
            let mut acc = [[0.0f32; 8]; 4];
            let groups = xg.iter().zip(xs).zip(d0.zip(d1).zip(d2.zip(d3)));
            for (g, ((x, &xs), ((d0, d1), (d2, d3)))) in groups.enumerate() {
                // SAFETY: `w` holds 4 rows of `stride >= 32 * groups` bytes (`Shape`), so
                // group `g` of each row lies inside it; `x` is 32 bytes.
                let [s0, s1, s2, s3] = unsafe { dot4(&mut pa, &mut pb, stride, x) };
                // Written out row by row: opt-level "s" keeps a loop over the 4 rolled.
                let lane = g % 8;
                let [a0, a1, a2, a3] = &mut acc;
                let add = |a: &mut [f32; 8], isum: i32, d: &f16| {
                    if let Some(a) = a.get_mut(lane) {
                        *a += isum as f32 * (h2f(*d) * xs);
                    }
                };
                add(a0, s0, d0);
                add(a1, s1, d1);
                add(a2, s2, d2);
                add(a3, s3, d3);
            }
            if let [o0, o1, o2, o3] = o {
                *o0 = finish(&acc[0]);
                *o1 = finish(&acc[1]);
                *o2 = finish(&acc[2]);
                *o3 = finish(&acc[3]);
            }
        }
        let o = o4.into_remainder();
        scalar::matvec_q8(o, q4.remainder(), s4.remainder(), xq, xs);
    }

    /// The exact sums of one group of 4 rows: rows 0, 1 at `pa`, `pa + stride`, rows 2, 3
    /// at `pb`, `pb + stride`, against the activation codes `x`; `pa` and `pb` move on by
    /// the group's 32 bytes.
    ///
    /// # Safety
    /// The 32 bytes at `pa`, `pa + stride`, `pb`, `pb + stride` must be readable.
    #[inline(always)]
    unsafe fn dot4(
        pa: &mut *const i8,
        pb: &mut *const i8,
        stride: usize,
        x: &[i8; QK],
    ) -> [i32; 4] {
        let px = x.as_ptr();
        let (mut a, mut b, mut c, mut d) = (0i32, 0i32, 0i32, 0i32);
        // One row's word of 4 codes at `$load` into accumulator `$acc`: two SMLADs with
        // the activation halves `x0`, `x1`.
        macro_rules! row {
            ($load:literal, $acc:literal) => {
                concat!(
                    concat!("ldr {w}, ", $load, "\n"),
                    "sxtb16 {t}, {w}\n",
                    concat!("smlad {", $acc, "}, {t}, {x0}, {", $acc, "}\n"),
                    "sxtb16 {w}, {w}, ror #8\n",
                    concat!("smlad {", $acc, "}, {w}, {x1}, {", $acc, "}\n"),
                )
            };
        }
        // 4 codes of `x` split once, then rows 1, 0, 3, 2.
        macro_rules! step {
            () => {
                concat!(
                    "ldr {x1}, [{px}], #4\n",
                    "sxtb16 {x0}, {x1}\n",
                    "sxtb16 {x1}, {x1}, ror #8\n",
                    row!("[{pa}, {st}]", "b"),
                    row!("[{pa}], #4", "a"),
                    row!("[{pb}, {st}]", "d"),
                    row!("[{pb}], #4", "c"),
                )
            };
        }
        // SAFETY: reads the 32 bytes of the 4 rows (the caller's contract) and of `x`,
        // with word loads (any alignment on ARMv7-M); registers only otherwise (ARMv7E-M
        // DSP, `cfg(folio_dsp)` set by build.rs).
        unsafe {
            core::arch::asm!(
                step!(), step!(), step!(), step!(), step!(), step!(), step!(), step!(),
                pa = inout(reg) *pa,
                pb = inout(reg) *pb,
                px = inout(reg) px => _,
                st = in(reg) stride,
                a = inout(reg) a,
                b = inout(reg) b,
                c = inout(reg) c,
                d = inout(reg) d,
                x0 = out(reg) _,
                x1 = out(reg) _,
                w = out(reg) _,
                t = out(reg) _,
                options(pure, readonly, nostack),
            );
        }
        [a, b, c, d]
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::*;
    use crate::arch::x86_64::{halves, load_i8x32, quad, rows4};
    use crate::QK;
    use core::arch::x86_64::*;

    /// 8 i32 partial sums of one group: `vpmaddubsw(|w|, x * sign(w))`, `vpmaddwd` by 1.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dot(w: &[i8; QK], x: __m256i) -> __m256i {
        let w = load_i8x32(w);
        let p = _mm256_maddubs_epi16(_mm256_abs_epi8(w), _mm256_sign_epi8(x, w));
        _mm256_madd_epi16(p, _mm256_set1_epi16(1))
    }

    /// Partial sums of 4 groups of 4 rows (`d[j][k]`: group `j`, row `k`).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn dots4(w: [&[[i8; QK]; 4]; 4], x: &[[i8; QK]; 4]) -> [[__m256i; 4]; 4] {
        let mut d = [[_mm256_setzero_si256(); 4]; 4];
        for j in 0..4 {
            let xv = load_i8x32(&x[j]);
            for k in 0..4 {
                d[j][k] = dot(&w[k][j], xv);
            }
        }
        d
    }

    /// Group sums of 4 rows over 8 groups.
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn full(w: [&[[i8; QK]; 8]; 4], x: &[[i8; QK]; 8]) -> [__m256i; 4] {
        let h: [&[[[i8; QK]; 4]; 2]; 4] = [
            bytemuck::cast_ref(w[0]),
            bytemuck::cast_ref(w[1]),
            bytemuck::cast_ref(w[2]),
            bytemuck::cast_ref(w[3]),
        ];
        let x: &[[[i8; QK]; 4]; 2] = bytemuck::cast_ref(x);
        let lo = quad(dots4([&h[0][0], &h[1][0], &h[2][0], &h[3][0]], &x[0]));
        let hi = quad(dots4([&h[0][1], &h[1][1], &h[2][1], &h[3][1]], &x[1]));
        halves(lo, hi)
    }

    /// Group sums of 4 rows over 4 groups (lanes 4-7 zero).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn half(w: [&[[i8; QK]; 4]; 4], x: &[[i8; QK]; 4]) -> [__m256i; 4] {
        halves(quad(dots4(w, x)), [_mm256_setzero_si256(); 4])
    }

    /// Group sums of 4 rows over up to 4 groups (`x.len()`; lanes past them zero).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn part(w: [&[[i8; QK]]; 4], x: &[[i8; QK]]) -> [__m256i; 4] {
        let mut d = [[_mm256_setzero_si256(); 4]; 4];
        for (dj, (j, x)) in d.iter_mut().zip(x.iter().enumerate()) {
            let xv = load_i8x32(x);
            for (d, w) in dj.iter_mut().zip(w) {
                if let Some(w) = w.get(j) {
                    *d = dot(w, xv);
                }
            }
        }
        halves(quad(d), [_mm256_setzero_si256(); 4])
    }

    /// AVX2 `matvec_q8` (see the module header).
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], xq: &[i8], xs: &[f32]) {
        rows4(
            out,
            q,
            scales,
            xq,
            xs,
            |w, x| full(w, x),
            |w, x| half(w, x),
            |w, x| part(w, x),
        );
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use super::*;
    use crate::arch::aarch64::{load_i8x16x2, rows4_dot};
    use crate::QK;
    use core::arch::aarch64::*;

    /// 4 i32 partial sums of one group: `sdot` with `dotprod`, else `smull`/`smlal2`
    /// (i8 x i8 pairs into i16: at most `2 * 128 * 127`, activations being within
    /// +-127) and `sadalp`.
    #[inline]
    #[target_feature(enable = "neon")]
    fn dot(w: &[i8; QK], x: [int8x16_t; 2]) -> int32x4_t {
        let w = load_i8x16x2(w);
        #[cfg(target_feature = "dotprod")]
        {
            crate::arch::aarch64::sdot2(w, x)
        }
        #[cfg(not(target_feature = "dotprod"))]
        {
            let a = vmlal_high_s8(vmull_s8(vget_low_s8(w[0]), vget_low_s8(x[0])), w[0], x[0]);
            let b = vmlal_high_s8(vmull_s8(vget_low_s8(w[1]), vget_low_s8(x[1])), w[1], x[1]);
            vpadalq_s16(vpaddlq_s16(a), b)
        }
    }

    /// NEON `matvec_q8` (see the module header).
    #[target_feature(enable = "neon")]
    pub fn matvec_q8(out: &mut [f32], q: &[i8], scales: &[f16], xq: &[i8], xs: &[f32]) {
        rows4_dot(out, q, scales, xq, xs, |w, x| dot(w, x));
    }
}
