//! Scalar math helpers (no std) and the vector `exp` used by softmax, attention and GELU.
//!
//! [`exp_f32x8`]: Cephes `expf` on 8 lanes. `x = n ln2 + r` with `n = floor(x log2 e +
//! 1/2)` and `|r| <= ln2 / 2` (`ln2` split in two constants so `r` is exact to f32), then
//! `e^r ~ 1 + r + r^2 P(r)` with Cephes' degree-5 minimax `P`, and `2^n` built in the
//! exponent bits. Max relative error against f64 `exp`, measured by the
//! `exp_f32x8_error` test in `tests/props.rs` over 2^20 points of `[-87, 88]`: 7.96e-8
//! on x86-64 baseline (SSE2, mul + add), 8.08e-8 with FMA (x86-64-v3, and NEON under
//! qemu), i.e. about 1.4 ulp; the test asserts <= 2e-7. Inputs below `ln(f32::MIN_POSITIVE)` ~
//! -87.34 give `+0` (no subnormals), above 88.37 `+inf` (true result > 2.4e38), NaN gives
//! NaN.
use wide::{f32x8, i32x8};

/// e^x.
#[inline]
pub fn expf(x: f32) -> f32 {
    libm::expf(x)
}

/// e^x on 8 lanes (see the module header for the method and its error).
#[inline(always)]
pub fn exp_f32x8(x: f32x8) -> f32x8 {
    const LOG2E: f32 = core::f32::consts::LOG2_E;
    const C1: f32 = 0.693_359_4; // ln 2, high part (exact in 9 bits)
    const C2: f32 = -2.121_944_4e-4; // ln 2 - C1
    const LO: f32 = -87.336_55; // ln(f32::MIN_POSITIVE)
    const HI: f32 = 88.376_26; // 127.5 ln 2: n <= 127
    let xc = x.fast_max(f32x8::splat(LO)).fast_min(f32x8::splat(HI));
    let n = xc.mul_add(f32x8::splat(LOG2E), f32x8::splat(0.5)).floor();
    let r = n.mul_neg_add(f32x8::splat(C1), xc);
    let r = n.mul_neg_add(f32x8::splat(C2), r);
    let mut p = f32x8::splat(1.987_569_1e-4);
    p = p.mul_add(r, f32x8::splat(1.398_199_9e-3));
    p = p.mul_add(r, f32x8::splat(8.333_452e-3));
    p = p.mul_add(r, f32x8::splat(4.166_579_6e-2));
    p = p.mul_add(r, f32x8::splat(1.666_666_5e-1));
    p = p.mul_add(r, f32x8::splat(0.5));
    let er = p.mul_add(r * r, r) + f32x8::splat(1.0);
    let bits = (n.fast_trunc_int() + i32x8::splat(127)) << 23;
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
