//! Activations quantised to int8 groups, and the float order every integer-dot matvec
//! ([`matvec_q8`](fn@crate::matvec_q8), [`matvec_q4`](fn@crate::matvec_q4)) shares.
//!
//! # Activation groups
//! `x (cols)` becomes `xq (cols)` i8 codes and `xs (cols / QK)` f32 scales, one per group
//! `g` of [`QK`] consecutive columns, with `amax = max_c |x_c|` (a NaN counts as larger
//! than every number):
//! - `amax` not finite (an inf or NaN in the group): `xs = NaN`, codes 0, so every row
//!   that reads the group is NaN;
//! - `amax < 2^-100` (0 included): `xs = 0`, codes 0 (the group adds `+0`);
//! - otherwise `xs = amax / 127` and `xq_c = round_ties_even(x_c * (127 / amax))`, which
//!   lies in `-127..=127` (`x_c * (127 / amax)` is at most `127 (1 + 2^-23)`).
//!
//! Only IEEE operations with one defined result are used (`/`, `*`, round-to-nearest-even
//! by `(v + 1.5 * 2^23) - 1.5 * 2^23` in the reference, `cvtps2dq` on AVX2, `fcvtns` on
//! NEON), so every target makes the same codes. `amax` is taken on the bit patterns
//! (`bits & 0x7fff_ffff` as an unsigned integer orders non-negative floats, NaN above inf).
//!
//! # Row value (the defined accumulation order)
//! With weight codes `w` and f16 weight scales `d` (q8_0: i8; q4_0: nibble - 8):
//! ```text
//! isum_g = sum_{c in g} w_c * xq_c                       exact in i32 (any order)
//! t_g    = f32(d_g) * xs_g                               one rounding
//! f_g    = f32(isum_g) * t_g                             one rounding (never fused)
//! acc[g % 8] += f_g                                      g ascending, acc from +0.0
//! out    = ((acc0 + acc4) + (acc2 + acc6)) + ((acc1 + acc5) + (acc3 + acc7))
//! ```
//! A vector path may add `+0.0` for groups past the end (an accumulator that starts at
//! `+0.0` is never `-0.0`, so that changes nothing): AVX2 keeps `acc` as one 8-lane
//! register, NEON as two 4-lane ones, and both end with the reduction above, so every
//! path gives the same bits as [`scalar::row`].
//!
//! # Shapes
//! `quantize_act` writes `n = min(x.len(), xq.len()) / QK` groups (at most `xs.len()`)
//! and sets the codes past them to 0. The matvecs read `cols = xq.len()` (row stride in
//! columns), `groups = cols / QK` (scale row stride) and use the first
//! `min(groups, xs.len())` groups; `rows = min(out.len(), q.len() / row_bytes,
//! scales.len() / groups)`; rows past that are left as they are; `groups == 0` zeroes
//! `out`.
use crate::QK;
use half::f16;

/// `|x|` bits of `inf`: at or above it, the group is not finite.
const INF_BITS: u32 = 0x7f80_0000;
/// Bits of `2^-100`: below it, the group is zero.
const TINY_BITS: u32 = (127 - 100) << 23;

/// Quantise `x` into int8 groups: codes `xq (cols)`, scales `xs (cols / QK)`.
pub fn quantize_act(xq: &mut [i8], xs: &mut [f32], x: &[f32]) {
    simd!(quantize_act(xq, xs, x) else scalar::quantize_act(xq, xs, x))
}

/// What a group's `amax` (as `|x|` bits) makes of it.
#[derive(Clone, Copy)]
pub(crate) enum Group {
    /// `xs = NaN`, codes 0.
    NotFinite,
    /// `xs = 0`, codes 0.
    Zero,
    /// `xs = amax / 127`; codes `round(x * inv)` with `inv = 127 / amax`.
    Scaled { xs: f32, inv: f32 },
}

impl Group {
    #[inline(always)]
    pub(crate) fn of(amax_bits: u32) -> Group {
        if amax_bits >= INF_BITS {
            Group::NotFinite
        } else if amax_bits < TINY_BITS {
            Group::Zero
        } else {
            let amax = f32::from_bits(amax_bits);
            Group::Scaled {
                xs: amax / 127.0,
                inv: 127.0 / amax,
            }
        }
    }

    #[inline(always)]
    pub(crate) fn xs(self) -> f32 {
        match self {
            Group::NotFinite => f32::NAN,
            Group::Zero => 0.0,
            Group::Scaled { xs, .. } => xs,
        }
    }
}

/// The rows and groups an integer-dot matvec computes over (see the module header).
#[derive(Clone, Copy)]
pub(crate) struct Shape {
    pub rows: usize,
    /// Groups used (`min(cols / QK, xs.len())`).
    pub groups: usize,
    /// Bytes of one row of codes.
    pub row_bytes: usize,
    /// Scales of one row (`cols / QK`).
    pub row_scales: usize,
}

impl Shape {
    /// `None` (after zeroing `out`) when `xq` holds no full group. `per_byte` columns a
    /// byte of codes (1 for q8_0, 2 for q4_0).
    #[inline(always)]
    pub(crate) fn new(
        out: &mut [f32],
        q_len: usize,
        scales_len: usize,
        xq_len: usize,
        xs_len: usize,
        per_byte: usize,
    ) -> Option<Shape> {
        let row_scales = xq_len / QK;
        if row_scales == 0 {
            out.fill(0.0);
            return None;
        }
        let row_bytes = xq_len / per_byte;
        Some(Shape {
            rows: out
                .len()
                .min(q_len / row_bytes)
                .min(scales_len / row_scales),
            groups: row_scales.min(xs_len),
            row_bytes,
            row_scales,
        })
    }
}

/// Row bookkeeping of the vector drivers (`arch::*::rows4`).
#[cfg(any(
    target_arch = "x86_64",
    all(target_arch = "aarch64", target_feature = "neon")
))]
pub(crate) mod rows {
    use super::Shape;
    use crate::QK;

    /// The activation groups and scales used (`sh.groups` of each).
    #[inline(always)]
    pub(crate) fn activations<'a>(
        sh: &Shape,
        xq: &'a [i8],
        xs: &'a [f32],
    ) -> (&'a [[i8; QK]], &'a [f32]) {
        let xg = xq.as_chunks::<QK>().0;
        (
            xg.get(..sh.groups).unwrap_or(xg),
            xs.get(..sh.groups).unwrap_or(xs),
        )
    }

    /// `s` as blocks of 8 (the rest left out).
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    pub(crate) fn groups8<T>(s: &[T]) -> &[[T; 8]] {
        s.as_chunks::<8>().0
    }

    /// The first `groups` groups of `B` elements of a row.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    pub(crate) fn used<T, const B: usize>(w: &[T], groups: usize) -> &[[T; B]] {
        let w = w.as_chunks::<B>().0;
        w.get(..groups).unwrap_or(w)
    }

    /// The first `n` elements of `s` (all of it if shorter).
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    pub(crate) fn first<T>(s: &[T], n: usize) -> &[T] {
        s.get(..n).unwrap_or(s)
    }

    /// The first 4 rows of `len` elements of `s`; rows past its end repeat the last one.
    #[cfg(target_arch = "aarch64")]
    #[inline(always)]
    pub(crate) fn split4<T>(s: &[T], len: usize) -> [&[T]; 4] {
        let mut rows = s.chunks_exact(len.max(1));
        let r0 = rows.next().unwrap_or(&[]);
        let r1 = rows.next().unwrap_or(r0);
        let r2 = rows.next().unwrap_or(r1);
        let r3 = rows.next().unwrap_or(r2);
        [r0, r1, r2, r3]
    }
}

/// f16 -> f32, exact: on the Cortex-M4F one `VCVTB.F32.F16` (FPv4-SP has the
/// half-precision conversions), elsewhere bit arithmetic for normal values and `half` for
/// the rest.
#[inline(always)]
#[cfg(all(target_arch = "arm", folio_dsp, target_abi = "eabihf"))]
pub(crate) fn h2f(h: f16) -> f32 {
    let out: u32;
    // SAFETY: register-only FPU conversion on a hard-float ARMv7E-M target.
    unsafe {
        core::arch::asm!(
            "vmov s0, {r}",
            "vcvtb.f32.f16 s0, s0",
            "vmov {o}, s0",
            r = in(reg) u32::from(h.to_bits()),
            o = lateout(reg) out,
            out("s0") _,
            options(pure, nomem, nostack),
        );
    }
    f32::from_bits(out)
}

/// f16 -> f32: bit arithmetic for normal values (exact), `half` for the rest.
#[inline(always)]
#[cfg(not(all(target_arch = "arm", folio_dsp, target_abi = "eabihf")))]
pub(crate) fn h2f(h: f16) -> f32 {
    let b = u32::from(h.to_bits());
    let e = b & 0x7c00;
    if e != 0 && e != 0x7c00 {
        f32::from_bits(((b & 0x8000) << 16) | (((b & 0x7fff) << 13) + 0x3800_0000))
    } else {
        h.to_f32()
    }
}

/// `f(codes, scale, x)` for each whole group of `x` (`QK` columns, with its codes and
/// scale), then the codes past the last whole group zeroed: every path's outer loop.
#[inline(always)]
fn for_groups(
    xq: &mut [i8],
    xs: &mut [f32],
    x: &[f32],
    mut f: impl FnMut(&mut [i8; QK], &mut f32, &[f32; QK]),
) {
    let (groups, _) = xq.as_chunks_mut::<QK>();
    let mut n = 0;
    for ((qg, s), xg) in groups
        .iter_mut()
        .zip(xs.iter_mut())
        .zip(x.as_chunks::<QK>().0)
    {
        f(qg, s, xg);
        n += 1;
    }
    xq.get_mut(n * QK..).unwrap_or(&mut []).fill(0);
}

/// Plain-loop reference, always compiled: the activation groups and the row value.
pub mod scalar {
    use super::{for_groups, h2f, Group};
    use half::f16;

    /// Scalar `quantize_act`.
    pub fn quantize_act(xq: &mut [i8], xs: &mut [f32], x: &[f32]) {
        for_groups(xq, xs, x, |qg, s, xg| {
            // 4 columns a step: Cortex-M builds at opt-level "s" keep loops rolled.
            let bits = |v: f32| v.to_bits() & 0x7fff_ffff;
            let amax = xg.as_chunks::<4>().0.iter().fold(0u32, |m, v| {
                m.max(bits(v[0]).max(bits(v[1])).max(bits(v[2]).max(bits(v[3]))))
            });
            let g = Group::of(amax);
            *s = g.xs();
            match g {
                Group::Scaled { inv, .. } => {
                    let (q4, x4) = (qg.as_chunks_mut::<4>().0, xg.as_chunks::<4>().0);
                    for (o, v) in q4.iter_mut().zip(x4) {
                        *o = [
                            round_code(v[0] * inv),
                            round_code(v[1] * inv),
                            round_code(v[2] * inv),
                            round_code(v[3] * inv),
                        ];
                    }
                }
                _ => qg.fill(0),
            }
        });
    }

    /// `round_ties_even(v)` as an i8 (saturating as the vector packs do; `|v| <=
    /// 127.00002` here, so never reached), for `|v| < 2^22`.
    #[inline(always)]
    pub(crate) fn round_code(v: f32) -> i8 {
        const MAGIC: f32 = 12_582_912.0; // 1.5 * 2^23: the sum's ulp is 1
        (((v + MAGIC) - MAGIC) as i32).clamp(-128, 127) as i8
    }

    /// One row's value from its group sums, in the order of the module header.
    #[inline(always)]
    pub fn row(isums: impl Iterator<Item = i32>, scales: &[f16], xs: &[f32]) -> f32 {
        let mut acc = [0.0f32; 8];
        for (g, ((isum, d), s)) in isums.zip(scales).zip(xs).enumerate() {
            let t = h2f(*d) * *s;
            if let Some(a) = acc.get_mut(g % 8) {
                *a += isum as f32 * t;
            }
        }
        finish(&acc)
    }

    /// `((a0 + a4) + (a2 + a6)) + ((a1 + a5) + (a3 + a7))`.
    #[inline(always)]
    pub(crate) fn finish(a: &[f32; 8]) -> f32 {
        ((a[0] + a[4]) + (a[2] + a[6])) + ((a[1] + a[5]) + (a[3] + a[7]))
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::{for_groups, Group};
    use core::arch::x86_64::*;

    /// AVX2 `quantize_act`: `|x|` bits maxed as u32 (`vpmaxud`), codes by `vcvtps2dq`
    /// (round to nearest even) and saturating packs.
    ///
    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn quantize_act(xq: &mut [i8], xs: &mut [f32], x: &[f32]) {
        let abs = _mm256_set1_epi32(0x7fff_ffff);
        // packs interleave 128-bit halves: lanes 0 4 1 5 2 6 3 7 restore column order.
        let order = _mm256_setr_epi32(0, 4, 1, 5, 2, 6, 3, 7);
        for_groups(xq, xs, x, |qg, s, xg| {
            // SAFETY: `xg` is 32 f32 (128 readable bytes), `qg` 32 writable bytes.
            unsafe {
                let p = xg.as_ptr();
                let v = [
                    _mm256_loadu_ps(p),
                    _mm256_loadu_ps(p.add(8)),
                    _mm256_loadu_ps(p.add(16)),
                    _mm256_loadu_ps(p.add(24)),
                ];
                let b = |v: __m256| _mm256_and_si256(_mm256_castps_si256(v), abs);
                let m = _mm256_max_epu32(
                    _mm256_max_epu32(b(v[0]), b(v[1])),
                    _mm256_max_epu32(b(v[2]), b(v[3])),
                );
                let m = _mm_max_epu32(_mm256_castsi256_si128(m), _mm256_extracti128_si256::<1>(m));
                let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0b01_00_11_10>(m));
                let m = _mm_max_epu32(m, _mm_shuffle_epi32::<0b10_11_00_01>(m));
                let g = Group::of(_mm_cvtsi128_si32(m) as u32);
                *s = g.xs();
                let codes = match g {
                    Group::Scaled { inv, .. } => {
                        let inv = _mm256_set1_ps(inv);
                        let c = |v: __m256| _mm256_cvtps_epi32(_mm256_mul_ps(v, inv));
                        let lo = _mm256_packs_epi32(c(v[0]), c(v[1]));
                        let hi = _mm256_packs_epi32(c(v[2]), c(v[3]));
                        _mm256_permutevar8x32_epi32(_mm256_packs_epi16(lo, hi), order)
                    }
                    _ => _mm256_setzero_si256(),
                };
                _mm256_storeu_si256(qg.as_mut_ptr().cast(), codes);
            }
        });
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use super::{for_groups, Group};
    use core::arch::aarch64::*;

    /// NEON `quantize_act`: `|x|` bits maxed as u32 (`umaxv`), codes by `fcvtns` (round to
    /// nearest even) and saturating narrows.
    #[target_feature(enable = "neon")]
    pub fn quantize_act(xq: &mut [i8], xs: &mut [f32], x: &[f32]) {
        for_groups(xq, xs, x, |qg, s, xg| {
            // SAFETY: `xg` is 32 f32 (128 readable bytes), `qg` 32 writable bytes.
            unsafe {
                let p = xg.as_ptr();
                let v: [float32x4_t; 8] = core::array::from_fn(|k| vld1q_f32(p.add(4 * k)));
                let abs = vdupq_n_u32(0x7fff_ffff);
                let b = |v: float32x4_t| vandq_u32(vreinterpretq_u32_f32(v), abs);
                let m = vmaxq_u32(
                    vmaxq_u32(vmaxq_u32(b(v[0]), b(v[1])), vmaxq_u32(b(v[2]), b(v[3]))),
                    vmaxq_u32(vmaxq_u32(b(v[4]), b(v[5])), vmaxq_u32(b(v[6]), b(v[7]))),
                );
                let g = Group::of(vmaxvq_u32(m));
                *s = g.xs();
                let o = qg.as_mut_ptr();
                match g {
                    Group::Scaled { inv, .. } => {
                        let c = |k: usize| vqmovn_s32(vcvtnq_s32_f32(vmulq_n_f32(v[k], inv)));
                        let n8 = |k: usize| vqmovn_s16(vcombine_s16(c(k), c(k + 1)));
                        vst1q_s8(o, vcombine_s8(n8(0), n8(2)));
                        vst1q_s8(o.add(16), vcombine_s8(n8(4), n8(6)));
                    }
                    _ => {
                        vst1q_s8(o, vdupq_n_s8(0));
                        vst1q_s8(o.add(16), vdupq_n_s8(0));
                    }
                }
            }
        });
    }
}
