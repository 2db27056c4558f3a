//! Causal attention of one query head over the f16 KV cache.
//!
//! `k` and `v` start at this head's first element of position 0; position `t`'s head vector
//! is `k[t * stride .. t * stride + hs]` where `hs = q.len()` and `stride` is `n_embd`.
//! `scores` (at least `n_pos`) is caller scratch. `out (hs) = softmax(q·k_t / sqrt(hs)) · v`.
//!
//! Three passes over `n = min(n_pos, scores.len())` positions: `scores[t] = (q · k_t) *
//! scale` (f16 widened exactly: F16C / `fcvtl` / integer ops, f32 FMA), the SIMD
//! [`softmax`](crate::softmax) in place, then `out += scores[t] * v_t` for each `t`
//! (`out` stays in L1; `hs` is 16..128 here). On AVX2 the scores go 4 positions a step
//! (each `q` chunk loaded once, one reduction for the 4) and `out` is accumulated 64
//! columns at a time in registers across all positions. A position whose `k_t` lies outside `k`
//! scores 0 and one whose `v_t` lies outside `v` adds nothing, as in the reference; the
//! kernel never panics.
use half::f16;

/// One head, one query, positions `0..n_pos`.
pub fn attention_f16(
    out: &mut [f32],
    q: &[f32],
    k: &[f16],
    v: &[f16],
    stride: usize,
    n_pos: usize,
    scores: &mut [f32],
) {
    // Thumb: `wide` has no SIMD backend there (plain arrays): the plain loop is
    // faster and smaller.
    if cfg!(target_arch = "arm") {
        return scalar::attention_f16(out, q, k, v, stride, n_pos, scores);
    }
    simd!(attention_f16(out, q, k, v, stride, n_pos, scores) else portable::attention_f16(out, q, k, v, stride, n_pos, scores))
}

/// Position `t`'s head vector in `kv`, if it lies inside.
#[inline(always)]
pub(crate) fn head_at(kv: &[f16], t: usize, stride: usize, hs: usize) -> Option<&[f16]> {
    let start = t.checked_mul(stride)?;
    kv.get(start..start.checked_add(hs)?)
}

/// Plain-loop reference, always compiled.
pub mod scalar {
    use super::head_at;
    use half::f16;

    /// Scalar `attention_f16` (scalar softmax).
    pub fn attention_f16(
        out: &mut [f32],
        q: &[f32],
        k: &[f16],
        v: &[f16],
        stride: usize,
        n_pos: usize,
        scores: &mut [f32],
    ) {
        let hs = q.len();
        let scale = 1.0 / libm::sqrtf(hs as f32);
        let n = n_pos.min(scores.len());
        let scores = &mut scores[..n];
        for (t, s) in scores.iter_mut().enumerate() {
            let kt = head_at(k, t, stride, hs).unwrap_or(&[]);
            *s = kt.iter().zip(q).map(|(a, b)| a.to_f32() * b).sum::<f32>() * scale;
        }
        crate::softmax::scalar::softmax(scores);
        out.fill(0.0);
        for (t, &p) in scores.iter().enumerate() {
            let vt = head_at(v, t, stride, hs).unwrap_or(&[]);
            for (o, x) in out.iter_mut().zip(vt) {
                *o += p * x.to_f32();
            }
        }
    }
}

/// Portable path: `wide` dot products, f16 widened by
/// [`widen_f16x8`](crate::convert::widen_f16x8).
#[allow(dead_code)]
mod portable {
    use super::head_at;
    use crate::convert::widen_f16x8;
    use half::f16;
    use wide::f32x8;

    pub fn attention_f16(
        out: &mut [f32],
        q: &[f32],
        k: &[f16],
        v: &[f16],
        stride: usize,
        n_pos: usize,
        scores: &mut [f32],
    ) {
        let hs = q.len();
        let scale = 1.0 / libm::sqrtf(hs as f32);
        let n = n_pos.min(scores.len());
        let scores = &mut scores[..n];
        let (q8, qt) = q.as_chunks::<8>();
        let t8 = q8.len() * 8;
        for (t, s) in scores.iter_mut().enumerate() {
            let kt = head_at(k, t, stride, hs).unwrap_or(&[]);
            let mut acc = f32x8::ZERO;
            for (a, b) in kt.as_chunks::<8>().0.iter().zip(q8) {
                acc = widen_f16x8(a).mul_add(f32x8::from(*b), acc);
            }
            let tail: f32 = kt
                .get(t8..)
                .unwrap_or(&[])
                .iter()
                .zip(qt)
                .map(|(a, b)| a.to_f32() * b)
                .sum();
            *s = (acc.reduce_add() + tail) * scale;
        }
        crate::softmax(scores);
        out.fill(0.0);
        let n_out = out.len().min(hs);
        let (o8, ot) = out[..n_out].as_chunks_mut::<8>();
        for (t, &p) in scores.iter().enumerate() {
            let Some(vt) = head_at(v, t, stride, hs) else {
                continue;
            };
            let pv = f32x8::splat(p);
            for (o, a) in o8.iter_mut().zip(vt.as_chunks::<8>().0) {
                *o = widen_f16x8(a).mul_add(pv, f32x8::from(*o)).to_array();
            }
            for (o, a) in ot.iter_mut().zip(&vt[o8.len() * 8..]) {
                *o += p * a.to_f32();
            }
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod avx2 {
    use super::head_at;
    use crate::arch::x86_64::{f16_to_f32, hsum, load_f16, load_f32, store_f32};
    use core::arch::x86_64::*;
    use half::f16;

    /// `q . k` over the columns past the 8-column chunks (`hs % 8` of them).
    #[inline]
    #[target_feature(enable = "avx2,fma,f16c")]
    fn tail_dot(k: &[f16], q: &[f32]) -> f32 {
        k.iter().zip(q).map(|(&a, b)| f16_to_f32(a) * b).sum()
    }

    /// # Safety
    /// The CPU must support AVX2, FMA and F16C.
    #[target_feature(enable = "avx2,fma,f16c")]
    pub unsafe fn attention_f16(
        out: &mut [f32],
        q: &[f32],
        k: &[f16],
        v: &[f16],
        stride: usize,
        n_pos: usize,
        scores: &mut [f32],
    ) {
        let hs = q.len();
        let scale = 1.0 / libm::sqrtf(hs as f32);
        let n = n_pos.min(scores.len());
        let scores = &mut scores[..n];
        let (q8, qt) = q.as_chunks::<8>();
        let t8 = q8.len() * 8;
        // Scores, 4 positions a step: each q chunk loaded once for the 4, one horizontal
        // reduction (`vhaddps` twice) for the 4 sums.
        let (s4, s1) = scores.as_chunks_mut::<4>();
        for (i, s) in s4.iter_mut().enumerate() {
            let t = 4 * i;
            let kt = [
                head_at(k, t, stride, hs),
                head_at(k, t + 1, stride, hs),
                head_at(k, t + 2, stride, hs),
                head_at(k, t + 3, stride, hs),
            ];
            let mut acc = [_mm256_setzero_ps(); 4];
            let mut tail = [0.0f32; 4];
            for j in 0..4 {
                let Some(kj) = kt[j] else {
                    continue;
                };
                for (qc, kc) in q8.iter().zip(kj.as_chunks::<8>().0) {
                    acc[j] = _mm256_fmadd_ps(load_f16(kc), load_f32(qc), acc[j]);
                }
                tail[j] = tail_dot(kj.get(t8..).unwrap_or(&[]), qt);
            }
            let h = _mm256_hadd_ps(
                _mm256_hadd_ps(acc[0], acc[1]),
                _mm256_hadd_ps(acc[2], acc[3]),
            );
            let h = _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps::<1>(h));
            let tail = _mm_set_ps(tail[3], tail[2], tail[1], tail[0]);
            let h = _mm_mul_ps(_mm_add_ps(h, tail), _mm_set1_ps(scale));
            // SAFETY: `s` is 4 writable f32; `storeu` has no alignment requirement.
            unsafe { _mm_storeu_ps(s.as_mut_ptr(), h) };
        }
        let t0 = 4 * s4.len();
        for (t, s) in s1.iter_mut().enumerate() {
            let Some(kt) = head_at(k, t0 + t, stride, hs) else {
                *s = 0.0;
                continue;
            };
            let mut acc = _mm256_setzero_ps();
            for (qc, kc) in q8.iter().zip(kt.as_chunks::<8>().0) {
                acc = _mm256_fmadd_ps(load_f16(kc), load_f32(qc), acc);
            }
            *s = (hsum(acc) + tail_dot(kt.get(t8..).unwrap_or(&[]), qt)) * scale;
        }
        crate::softmax(scores);
        out.fill(0.0);
        let n_out = out.len().min(hs);
        let (o8, ot) = out[..n_out].as_chunks_mut::<8>();
        let t8 = o8.len() * 8;
        // `out += p_t * v_t`, 64 columns at a time in 8 registers across all positions.
        let (o64, o8r) = o8.as_chunks_mut::<8>();
        for (b, o) in o64.iter_mut().enumerate() {
            let mut acc = [_mm256_setzero_ps(); 8];
            for (t, &p) in scores.iter().enumerate() {
                let vt = head_at(v, t, stride, hs).unwrap_or(&[]);
                let Some(vb) = vt.as_chunks::<8>().0.as_chunks::<8>().0.get(b) else {
                    continue;
                };
                let pv = _mm256_set1_ps(p);
                for (a, c) in acc.iter_mut().zip(vb) {
                    *a = _mm256_fmadd_ps(load_f16(c), pv, *a);
                }
            }
            for (o, a) in o.iter_mut().zip(acc) {
                store_f32(o, a);
            }
        }
        let c0 = 8 * o64.len();
        if o8r.is_empty() && ot.is_empty() {
            return;
        }
        for (t, &p) in scores.iter().enumerate() {
            let Some(vt) = head_at(v, t, stride, hs) else {
                continue;
            };
            let pv = _mm256_set1_ps(p);
            let vc = vt.as_chunks::<8>().0.get(c0..).unwrap_or(&[]);
            for (o, a) in o8r.iter_mut().zip(vc) {
                store_f32(o, _mm256_fmadd_ps(load_f16(a), pv, load_f32(o)));
            }
            for (o, &a) in ot.iter_mut().zip(vt.get(t8..).unwrap_or(&[])) {
                *o += p * f16_to_f32(a);
            }
        }
    }
}

#[cfg(all(target_arch = "aarch64", target_feature = "neon"))]
mod neon {
    use super::head_at;
    use crate::arch::aarch64::{blocks8, f16_to_f32, load_f16, load_f32, store_f32};
    use core::arch::aarch64::*;
    use half::f16;

    #[target_feature(enable = "neon")]
    pub fn attention_f16(
        out: &mut [f32],
        q: &[f32],
        k: &[f16],
        v: &[f16],
        stride: usize,
        n_pos: usize,
        scores: &mut [f32],
    ) {
        let hs = q.len();
        let scale = 1.0 / libm::sqrtf(hs as f32);
        let n = n_pos.min(scores.len());
        let scores = &mut scores[..n];
        let q8 = blocks8(q);
        let t8 = q8.len() * 8;
        for (t, s) in scores.iter_mut().enumerate() {
            let Some(kt) = head_at(k, t, stride, hs) else {
                *s = 0.0;
                continue;
            };
            let (mut al, mut ah) = (vdupq_n_f32(0.0), vdupq_n_f32(0.0));
            for ([ql, qh], [kl, kh]) in q8.iter().zip(blocks8(kt)) {
                al = vfmaq_f32(al, load_f16(kl), load_f32(ql));
                ah = vfmaq_f32(ah, load_f16(kh), load_f32(qh));
            }
            let tail: f32 = kt[t8..]
                .iter()
                .zip(&q[t8..])
                .map(|(&a, b)| f16_to_f32(a) * b)
                .sum();
            *s = (vaddvq_f32(vaddq_f32(al, ah)) + tail) * scale;
        }
        crate::softmax(scores);
        out.fill(0.0);
        let n_out = out.len().min(hs);
        let (o4, ot) = out[..n_out].as_chunks_mut::<4>();
        let t4 = o4.len() * 4;
        for (t, &p) in scores.iter().enumerate() {
            let Some(vt) = head_at(v, t, stride, hs) else {
                continue;
            };
            for (o, a) in o4.iter_mut().zip(vt.as_chunks::<4>().0) {
                store_f32(o, vfmaq_n_f32(load_f32(o), load_f16(a), p));
            }
            for (o, &a) in ot.iter_mut().zip(&vt[t4..]) {
                *o += p * f16_to_f32(a);
            }
        }
    }
}
