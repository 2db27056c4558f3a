//! Scalar math helpers (no std) and the `exp` used by softmax, attention and GELU.
//!
//! [`exp_f32x8`] and its scalar twin [`exp`]: Cephes `expf`. `x = n ln2 + r` with `n =
//! round_ties_even(x log2 e)` (by adding and subtracting `1.5 * 2^23`) and `|r| <= ln2 /
//! 2` (`ln2` split in two constants, `C1` with 9 significant bits so `n * C1` is exact),
//! then `e^r ~ (P(r) r^2 + r) + 1` with Cephes' degree-5 minimax `P` by Horner's rule,
//! and `2^n` built in the exponent bits. Every step is one IEEE multiply or add (never
//! fused), in the same order in both, so they give the same bits on every target: the
//! SIMD lanes on the hosts and the scalar loop on Cortex-M. Max relative error against
//! f64 `exp`, measured by the `exp_f32x8_error` test in `tests/props.rs` over 2^20
//! points of `[-87, 88]`: 8.0e-8 (about 1.4 ulp); the test asserts <= 2e-7. Inputs below
//! `ln(f32::MIN_POSITIVE)` ~ -87.34 give `+0` (no subnormals), above 88.37 `+inf` (true
//! result > 2.4e38), NaN gives NaN.
use wide::{f32x8, i32x8};

const LOG2E: f32 = core::f32::consts::LOG2_E;
const C1: f32 = 0.693_359_4; // ln 2, high part (exact in 9 bits)
const C2: f32 = -2.121_944_4e-4; // ln 2 - C1
const LO: f32 = -87.336_55; // ln(f32::MIN_POSITIVE)
const HI: f32 = 88.376_26; // 127.5 ln 2
/// `1.5 * 2^23`: adding and subtracting it rounds to an integer (ties to even).
const ROUND: f32 = 12_582_912.0;
/// Cephes' `P`, highest degree first.
const P: [f32; 6] = [
    1.987_569_1e-4,
    1.398_199_9e-3,
    8.333_452e-3,
    4.166_579_6e-2,
    1.666_666_5e-1,
    0.5,
];

/// e^x (libm).
#[inline]
pub fn expf(x: f32) -> f32 {
    libm::expf(x)
}

/// e^x, the scalar twin of [`exp_f32x8`]: the same operations, the same bits.
#[inline]
pub fn exp(x: f32) -> f32 {
    if x.is_nan() {
        return x;
    }
    if x < LO {
        return 0.0;
    }
    if x > HI {
        return f32::INFINITY;
    }
    let n = (x * LOG2E + ROUND) - ROUND;
    let r = (x - n * C1) - n * C2;
    let p = ((((P[0] * r + P[1]) * r + P[2]) * r + P[3]) * r + P[4]) * r + P[5];
    let er = (p * (r * r) + r) + 1.0;
    er * f32::from_bits(((n as i32 + 127) << 23) as u32)
}

/// e^x on 8 lanes (see the module header for the method and its error).
#[inline(always)]
pub fn exp_f32x8(x: f32x8) -> f32x8 {
    let xc = x.fast_max(f32x8::splat(LO)).fast_min(f32x8::splat(HI));
    let round = f32x8::splat(ROUND);
    let n = (xc * f32x8::splat(LOG2E) + round) - round;
    let r = (xc - n * f32x8::splat(C1)) - n * f32x8::splat(C2);
    let c = |k: usize| f32x8::splat(P[k]);
    let p = ((((c(0) * r + c(1)) * r + c(2)) * r + c(3)) * r + c(4)) * r + c(5);
    let er = (p * (r * r) + r) + f32x8::splat(1.0);
    let bits = (n.fast_round_int() + i32x8::splat(127)) << 23;
    let y = er * bytemuck::cast::<i32x8, f32x8>(bits);
    let y = x.simd_lt(f32x8::splat(LO)).select(f32x8::ZERO, y);
    let y = x
        .simd_gt(f32x8::splat(HI))
        .select(f32x8::splat(f32::INFINITY), y);
    x.is_nan().select(x, y)
}

/// Applies `f` to `x` 8 lanes at a time; the tail is padded with `pad` and computed by
/// the same vector code, so every element sees the same approximation.
#[inline(always)]
pub(crate) fn map8(x: &mut [f32], pad: f32, mut f: impl FnMut(f32x8) -> f32x8) {
    let (body, tail) = x.as_chunks_mut::<8>();
    for c in body {
        *c = f(f32x8::from(*c)).to_array();
    }
    if !tail.is_empty() {
        let mut t = [pad; 8];
        t[..tail.len()].copy_from_slice(tail);
        let r = f(f32x8::from(t)).to_array();
        tail.copy_from_slice(&r[..tail.len()]);
    }
}

/// The largest element of `x` (NaN ignored, as `f32::max`; `-inf` for none): a `wide` max
/// over 8 lanes, then the lanes and the tail.
#[inline(always)]
pub(crate) fn max8(x: &[f32]) -> f32 {
    let (body, tail) = x.as_chunks::<8>();
    let mut mv = f32x8::splat(f32::NEG_INFINITY);
    for c in body {
        mv = mv.max(f32x8::from(*c));
    }
    let lanes = mv.to_array().into_iter().chain(tail.iter().copied());
    lanes.fold(f32::NEG_INFINITY, f32::max)
}
