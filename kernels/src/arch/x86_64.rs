//! x86-64 AVX2 + FMA + F16C primitives, and the check that selects the AVX2 kernels.
//!
//! Besides loads and F16C conversions: the exact reduction of 8 groups' i32 partial sums
//! ([`quad`], [`halves`]) and the driver of the integer-dot matvecs ([`rows4`]: the row value
//! in the order defined in [`crate::quantize_act`]).
//!
//! [`enabled`] is a constant `true` when the crate is built with all three features
//! (`-C target-cpu=x86-64-v3`). Otherwise, with the `std` feature, the CPU is asked once
//! (`std::is_x86_feature_detected!`) and the answer cached in an atomic, so a baseline
//! build runs the AVX2 kernels on capable CPUs at the cost of one relaxed load per kernel
//! call. Without `std` a baseline build never uses them (compile-time dispatch).
//!
//! The helpers are safe `#[target_feature]` functions: callable without `unsafe` from
//! the AVX2 kernels (which enable the same features) and inlined into them.
use crate::quantize_act::rows::activations;
use crate::quantize_act::Shape;
use core::arch::x86_64::*;
use half::f16;

/// Whether the AVX2 + FMA + F16C kernels may run on this CPU.
#[inline(always)]
pub fn enabled() -> bool {
    #[cfg(all(
        target_feature = "avx2",
        target_feature = "fma",
        target_feature = "f16c"
    ))]
    {
        true
    }
    #[cfg(all(
        feature = "std",
        not(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ))
    ))]
    {
        detected()
    }
    #[cfg(all(
        not(feature = "std"),
        not(all(
            target_feature = "avx2",
            target_feature = "fma",
            target_feature = "f16c"
        ))
    ))]
    {
        false
    }
}

/// Run-time detection, done once: 0 = not asked yet, 1 = absent, 2 = present.
#[cfg(feature = "std")]
#[inline]
fn detected() -> bool {
    use core::sync::atomic::{AtomicU8, Ordering};
    static STATE: AtomicU8 = AtomicU8::new(0);
    match STATE.load(Ordering::Relaxed) {
        1 => false,
        2 => true,
        _ => {
            let yes = std::is_x86_feature_detected!("avx2")
                && std::is_x86_feature_detected!("fma")
                && std::is_x86_feature_detected!("f16c");
            STATE.store(if yes { 2 } else { 1 }, Ordering::Relaxed);
            yes
        }
    }
}

/// 8 f32 from an array.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_f32(a: &[f32; 8]) -> __m256 {
    // SAFETY: `a` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_ps(a.as_ptr()) }
}

/// Store 8 f32 into an array.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn store_f32(a: &mut [f32; 8], v: __m256) {
    // SAFETY: `a` is 32 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm256_storeu_ps(a.as_mut_ptr(), v) }
}

/// 8 f16 widened to 8 f32 (F16C `vcvtph2ps`, exact).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_f16(a: &[f16; 8]) -> __m256 {
    // SAFETY: `a` is 16 readable bytes (f16 is a `repr(transparent)` u16).
    let h = unsafe { _mm_loadu_si128(a.as_ptr().cast::<__m128i>()) };
    _mm256_cvtph_ps(h)
}

/// 8 f32 rounded (to nearest even) to 8 f16 (F16C `vcvtps2ph`).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn store_f16(a: &mut [f16; 8], v: __m256) {
    let h = _mm256_cvtps_ph::<_MM_FROUND_TO_NEAREST_INT>(v);
    // SAFETY: `a` is 16 writable bytes; `storeu` has no alignment requirement.
    unsafe { _mm_storeu_si128(a.as_mut_ptr().cast::<__m128i>(), h) }
}

/// One f16 widened to f32.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn f16_to_f32(h: f16) -> f32 {
    _mm_cvtss_f32(_mm_cvtph_ps(_mm_cvtsi32_si128(i32::from(h.to_bits()))))
}

/// 32 i8 in one register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_i8x32(a: &[i8; 32]) -> __m256i {
    // SAFETY: `a` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// 32 u8 in one register.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_u8x32(a: &[u8; 32]) -> __m256i {
    // SAFETY: `a` is 32 readable bytes; `loadu` has no alignment requirement.
    unsafe { _mm256_loadu_si256(a.as_ptr().cast()) }
}

/// 16 u8 in the low half of a register, the high half zero.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_u8x16(a: &[u8; 16]) -> __m256i {
    // SAFETY: `a` is 16 readable bytes; `loadu` has no alignment requirement.
    _mm256_zextsi128_si256(unsafe { _mm_loadu_si128(a.as_ptr().cast()) })
}

/// Exact sums of 4 groups for 4 rows, half-reduced: `d[j][k]` holds 8 i32 partial
/// sums of group `j` of row `k`; lanes 0-3 of the result's row `k` are groups 0-3 over
/// their lanes 0-3, lanes 4-7 the same over lanes 4-7 (`vphaddd` twice). [`halves`]
/// finishes two of them.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn quad(d: [[__m256i; 4]; 4]) -> [__m256i; 4] {
    let mut h = [_mm256_setzero_si256(); 4];
    for k in 0..4 {
        h[k] = _mm256_hadd_epi32(
            _mm256_hadd_epi32(d[0][k], d[1][k]),
            _mm256_hadd_epi32(d[2][k], d[3][k]),
        );
    }
    h
}

/// The group sums of 8 groups for 4 rows from the [`quad`]s of groups 0-3 and 4-7: lane
/// `j` = group `j`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn halves(lo: [__m256i; 4], hi: [__m256i; 4]) -> [__m256i; 4] {
    let mut out = [_mm256_setzero_si256(); 4];
    for k in 0..4 {
        out[k] = _mm256_add_epi32(
            _mm256_blend_epi32::<0xf0>(lo[k], hi[k]),
            _mm256_permute2x128_si256::<0x21>(lo[k], hi[k]),
        );
    }
    out
}

/// Up to 8 f16 widened to f32, zero past `s.len()` (4 at a time packed in a `u64`: no
/// variable-length copy).
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_f16_tail(s: &[f16]) -> __m256 {
    // Four at once (one 8-byte load) when there are four.
    let four = |h: &[f16; 4]| h.map(f16::to_bits);
    let pack = |s: &[f16]| match s.first_chunk::<4>() {
        Some(h) => bytemuck::cast::<[u16; 4], u64>(four(h)),
        None => s
            .iter()
            .enumerate()
            .fold(0u64, |a, (i, h)| a | u64::from(h.to_bits()) << (16 * i)),
    };
    let (lo, hi) = match s.split_first_chunk::<4>() {
        Some((lo, hi)) => (pack(lo), pack(hi)),
        None => (pack(s), 0),
    };
    _mm256_cvtph_ps(_mm_set_epi64x(hi as i64, lo as i64))
}

/// Up to 8 f32, zero past `s.len()`.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn load_f32_tail(s: &[f32]) -> __m256 {
    let mut p = [0.0f32; 8];
    for (p, v) in p.iter_mut().zip(s) {
        *p = *v;
    }
    load_f32(&p)
}

/// One block of the row value: `acc + f32(isum) * (f32(scales) * xs)`, two roundings,
/// never fused.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
fn fold8(acc: __m256, isum: __m256i, scales: __m256, xs: __m256) -> __m256 {
    _mm256_add_ps(
        acc,
        _mm256_mul_ps(_mm256_cvtepi32_ps(isum), _mm256_mul_ps(scales, xs)),
    )
}

/// The integer-dot matvecs' driver: rows in fours, each over blocks of 8 groups; the row
/// value follows the order of [`crate::quantize_act`], one 8-lane accumulator a row
/// ended by [`hsum`]. `q` holds the rows' codes (groups of `B` elements), `scales` their
/// weight scales, `xq`, `xs` the activations, with the shapes of
/// [`crate::quantize_act`]. `full` gives the exact group sums of 4 rows over
/// 8 groups (lane `j` = group `j`), `half` over 4 groups and `part` over 1 to 3 (lanes
/// past them zero). The last block of a row, when shorter than 8 groups, is `half` on
/// its first 4 groups (if it has 4) and `part` on the rest. A last pass of 1 to 3 rows
/// repeats its last row.
///
/// The rows are reached through pointers checked once against [`Shape`], not through
/// slices re-split every pass: at the 384-column shapes a pass is only 12 groups, and the
/// slicing cost as much as the tail's arithmetic.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
#[allow(clippy::too_many_arguments)]
pub fn rows4<T, const B: usize>(
    out: &mut [f32],
    q: &[T],
    scales: &[f16],
    xq: &[i8],
    xs: &[f32],
    mut full: impl FnMut([&[[T; B]; 8]; 4], &[[i8; 32]; 8]) -> [__m256i; 4],
    mut half: impl FnMut([&[[T; B]; 4]; 4], &[[i8; 32]; 4]) -> [__m256i; 4],
    mut part: impl FnMut([&[[T; B]]; 4], &[[i8; 32]]) -> [__m256i; 4],
) {
    // Codes a group (32 columns) per stored element of `q`: B of them.
    let Some(sh) = Shape::new(out, q.len(), scales.len(), xq.len(), xs.len(), 32 / B) else {
        return;
    };
    let (xg, xs) = activations(&sh, xq, xs);
    let (row_len, row_scales, groups) = (sh.row_bytes, sh.row_scales, xg.len());
    let out = out.get_mut(..sh.rows).unwrap_or(&mut []);
    if out.is_empty() || groups * B > row_len || groups > row_scales {
        return;
    }
    let (xb, xt) = xg.as_chunks::<8>();
    let (sb, st) = xs.as_chunks::<8>();
    let n0 = 8 * xb.len();
    // The last block: its first 4 groups (if it has 4), and the rest zero-padded to 4.
    let (x4, xr) = match xt.split_first_chunk::<4>() {
        Some((x4, xr)) => (Some(x4), xr),
        None => (None, xt),
    };
    let rest = n0 + if x4.is_some() { 4 } else { 0 };
    let xs_tail = load_f32_tail(st);
    let last = out.len() - 1;
    for (r0, o) in (0..).step_by(4).zip(out.chunks_mut(4)) {
        // Row `r <= last < sh.rows` starts at `r * row_len` of `q` and `r * row_scales`
        // of `scales`; `Shape` gives `sh.rows * row_len <= q.len()` and
        // `sh.rows * row_scales <= scales.len()`, and a row holds `groups * B <= row_len`
        // codes and `groups <= row_scales` scales (checked above), so every block read
        // below lies inside its row.
        let row = |k: usize| {
            let r = (r0 + k).min(last);
            // SAFETY: the row start is inside `q` and `scales` (see above).
            unsafe {
                (
                    q.as_ptr().add(r * row_len),
                    scales.as_ptr().add(r * row_scales),
                )
            }
        };
        let rows = [row(0), row(1), row(2), row(3)];
        // SAFETY: see `row`: `n` groups from group `g` lie inside the row.
        let code = |k: usize, g: usize, n: usize| unsafe {
            core::slice::from_raw_parts(rows[k].0.add(g * B).cast::<[T; B]>(), n)
        };
        let codes =
            |g: usize, n: usize| [code(0, g, n), code(1, g, n), code(2, g, n), code(3, g, n)];
        // SAFETY: see `row`.
        let scale = |k: usize, g: usize, n: usize| unsafe {
            core::slice::from_raw_parts(rows[k].1.add(g), n)
        };
        let scales_at = |g: usize, n: usize| {
            [
                scale(0, g, n),
                scale(1, g, n),
                scale(2, g, n),
                scale(3, g, n),
            ]
        };
        let mut acc = [_mm256_setzero_ps(); 4];
        for (b, (x, s)) in xb.iter().zip(sb).enumerate() {
            let w = codes(8 * b, 8);
            let d = scales_at(8 * b, 8);
            let (Some(w0), Some(w1), Some(w2), Some(w3)) = (
                w[0].first_chunk::<8>(),
                w[1].first_chunk::<8>(),
                w[2].first_chunk::<8>(),
                w[3].first_chunk::<8>(),
            ) else {
                break;
            };
            let isum = full([w0, w1, w2, w3], x);
            let xv = load_f32(s);
            for k in 0..4 {
                let dk = d[k]
                    .first_chunk::<8>()
                    .map_or(_mm256_setzero_ps(), |d| load_f16(d));
                acc[k] = fold8(acc[k], isum[k], dk, xv);
            }
        }
        if !xt.is_empty() {
            let mut isum = [_mm256_setzero_si256(); 4];
            if let Some(x4) = x4 {
                let w = codes(n0, 4);
                if let (Some(a), Some(b), Some(c), Some(e)) = (
                    w[0].first_chunk::<4>(),
                    w[1].first_chunk::<4>(),
                    w[2].first_chunk::<4>(),
                    w[3].first_chunk::<4>(),
                ) {
                    isum = half([a, b, c, e], x4);
                }
            }
            if !xr.is_empty() {
                let r = part(codes(rest, xr.len()), xr);
                for k in 0..4 {
                    isum[k] = if x4.is_some() {
                        // Groups 4.. of the block: move to lanes 4-7.
                        _mm256_add_epi32(isum[k], _mm256_permute2x128_si256::<0x08>(r[k], r[k]))
                    } else {
                        r[k]
                    };
                }
            }
            let d = scales_at(n0, groups - n0);
            for k in 0..4 {
                acc[k] = fold8(acc[k], isum[k], load_f16_tail(d[k]), xs_tail);
            }
        }
        for (o, a) in o.iter_mut().zip(acc) {
            *o = hsum(a);
        }
    }
}

/// Sum of the 8 lanes: `((v0 + v4) + (v2 + v6)) + ((v1 + v5) + (v3 + v7))`, the final
/// reduction of the integer-dot matvecs' row value.
#[inline]
#[target_feature(enable = "avx2,fma,f16c")]
pub fn hsum(v: __m256) -> f32 {
    let s = _mm_add_ps(_mm256_castps256_ps128(v), _mm256_extractf128_ps::<1>(v));
    let s = _mm_add_ps(s, _mm_movehl_ps(s, s));
    let s = _mm_add_ss(s, _mm_shuffle_ps::<0b01>(s, s));
    _mm_cvtss_f32(s)
}

/// `s` as blocks of 2 x 8 elements (16 columns a step); the tail is left out.
#[inline(always)]
pub fn blocks16<T>(s: &[T]) -> &[[[T; 8]; 2]] {
    s.as_chunks::<8>().0.as_chunks::<2>().0
}
