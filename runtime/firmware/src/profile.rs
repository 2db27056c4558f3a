//! `--features profile`: instructions of each kernel at the lab `model1` shapes
//! (C = 64, T = 4, V = 65), and of the same call through the always-compiled scalar
//! reference, so a slow path on this target shows at once. Inputs are fixed patterns:
//! the kernels' instruction counts do not depend on the values (no data-dependent
//! branches beyond `exp`'s range clamps).
use crate::board::Ticks;
use folio_firmware::LineBuf;
use folio_kernels::{self as k, f16};

const C: usize = 64;
const T: usize = 4;

static mut Q: [i8; 4 * C * C] = [0; 4 * C * C];
static mut S: [f16; 4 * C * C / 32] = [f16::ZERO; 4 * C * C / 32];
static mut KV: [f16; T * C] = [f16::ZERO; T * C];

/// Prints `profile <name>: <instructions>` for each kernel call.
pub fn run<F: FnMut(&[u8])>(out: &mut LineBuf<128, F>, ticks: &mut Ticks, cal: u64) {
    // SAFETY: only this function touches these statics, once, with no interrupts.
    let (q, s, kv) = unsafe {
        (
            &mut *core::ptr::addr_of_mut!(Q),
            &mut *core::ptr::addr_of_mut!(S),
            &mut *core::ptr::addr_of_mut!(KV),
        )
    };
    for (i, v) in q.iter_mut().enumerate() {
        *v = (i as i32 * 37 % 255 - 127) as i8;
    }
    s.fill(f16::from_f32(0.01));
    for (i, v) in kv.iter_mut().enumerate() {
        *v = f16::from_f32((i % 17) as f32 * 0.1 - 0.8);
    }
    let mut x = [0.0f32; 4 * C];
    for (i, v) in x.iter_mut().enumerate() {
        *v = (i % 13) as f32 * 0.25 - 1.5;
    }
    let mut y = [0.0f32; 4 * C];
    let mut scores = [0.0f32; T];
    let w = [1.0f32; C];
    let b = [0.5f32; C];
    let q4: &[u8] = bytemuck_u8(q);

    let mut time = |name: &[u8], f: &mut dyn FnMut()| {
        let t0 = ticks.lap();
        f();
        let n = crate::board::ticks_to_instructions(ticks.lap() - t0, cal);
        out.put(b"profile ");
        out.line_u64(name, n);
    };
    let (xs, xl) = (&x[..C], &x[..]);
    time(b"matvec_q8 256x64: ", &mut || {
        k::matvec_q8(&mut y, &q[..], &s[..], xs)
    });
    time(b"scalar::matvec_q8 256x64: ", &mut || {
        k::matvec_q8::scalar::matvec_q8(&mut y, &q[..], &s[..], xs)
    });
    time(b"matvec_q8 64x256: ", &mut || {
        k::matvec_q8(&mut y[..C], &q[..], &s[..], xl)
    });
    time(b"matvec_q4 256x64: ", &mut || {
        k::matvec_q4(&mut y, &q4[..4 * C * C / 2], &s[..], xs)
    });
    time(b"scalar::matvec_q4 256x64: ", &mut || {
        k::matvec_q4::scalar::matvec_q4(&mut y, &q4[..4 * C * C / 2], &s[..], xs)
    });
    time(b"gelu_tanh 256: ", &mut || k::gelu_tanh(&mut y));
    time(b"scalar::gelu_tanh 256: ", &mut || {
        k::gelu::scalar::gelu_tanh(&mut y)
    });
    time(b"layernorm_f32 64: ", &mut || {
        k::layernorm_f32(&mut y[..C], xs, &w, &b, 1e-5)
    });
    time(b"softmax 65: ", &mut || k::softmax(&mut y[..65]));
    time(b"attention_f16 hs16 pos4: ", &mut || {
        k::attention_f16(&mut y[..16], &x[..16], &kv[..], &kv[..], C, T, &mut scores)
    });
    time(b"scalar::attention_f16 hs16 pos4: ", &mut || {
        k::attention::scalar::attention_f16(
            &mut y[..16],
            &x[..16],
            &kv[..],
            &kv[..],
            C,
            T,
            &mut scores,
        )
    });
    time(b"argmax 65: ", &mut || {
        core::hint::black_box(k::argmax(&y[..65]));
    });
    time(b"f16 to_f32 x64: ", &mut || {
        for (o, h) in y.iter_mut().zip(&kv[..C]) {
            *o = h.to_f32();
        }
    });
}

fn bytemuck_u8(q: &[i8]) -> &[u8] {
    // SAFETY: i8 and u8 have the same size, alignment and validity.
    unsafe { core::slice::from_raw_parts(q.as_ptr().cast(), q.len()) }
}

/// A prototype of an ARMv7E-M DSP q8_0 matvec, timed against the kernels' paths: `x`
/// quantised once to i16 with one scale (`max|x| / 32767`), each group's integer dot
/// product by `SMLAD` (two 8x16-bit products a cycle after `SXTB16` sign-extends bytes
/// 0/2 and 1/3 of a weight word), then `sum_g scale_g * dot_g * x_scale` in f32.
/// `xq` holds `x` as (x0, x2), (x1, x3) halfword pairs for every 4 columns.
#[cfg(target_arch = "arm")]
pub fn matvec_q8_dsp(out: &mut [f32], q: &[i8], scales: &[f16], x: &[f32], xq: &mut [u32]) {
    let cols = x.len();
    let groups = cols / 32;
    if groups == 0 {
        return;
    }
    let amax = x.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let xs = if amax > 0.0 { amax / 32767.0 } else { 1.0 };
    let inv = 1.0 / xs;
    let h = |v: f32| {
        let r = v * inv;
        (if r >= 0.0 { r + 0.5 } else { r - 0.5 }) as i32 as u16 as u32
    };
    for (c4, w) in x.chunks_exact(4).zip(xq.chunks_exact_mut(2)) {
        w[0] = h(c4[0]) | h(c4[2]) << 16;
        w[1] = h(c4[1]) | h(c4[3]) << 16;
    }
    let xq = &xq[..cols / 2];
    for ((o, row), srow) in out
        .iter_mut()
        .zip(q.chunks_exact(cols))
        .zip(scales.chunks_exact(groups))
    {
        let mut acc = 0.0f32;
        for ((qg, xg), s) in row.chunks_exact(32).zip(xq.chunks_exact(16)).zip(srow) {
            // SAFETY: `qg` is 32 bytes; ARMv7-M loads words from any address.
            let qw = unsafe { core::ptr::read_unaligned(qg.as_ptr().cast::<[u32; 8]>()) };
            let mut isum = 0;
            // Unrolled by hand: opt-level "s" keeps an 8-trip loop rolled.
            isum = dot4(qw[0], xg[0], xg[1], isum);
            isum = dot4(qw[1], xg[2], xg[3], isum);
            isum = dot4(qw[2], xg[4], xg[5], isum);
            isum = dot4(qw[3], xg[6], xg[7], isum);
            isum = dot4(qw[4], xg[8], xg[9], isum);
            isum = dot4(qw[5], xg[10], xg[11], isum);
            isum = dot4(qw[6], xg[12], xg[13], isum);
            isum = dot4(qw[7], xg[14], xg[15], isum);
            // f16 -> f32 by bit arithmetic (normal scales; a zero scale comes with a zero
            // group, whose dot product is 0 anyway; subnormal scales would be off).
            let hb = u32::from(s.to_bits());
            let sf = f32::from_bits(((hb & 0x8000) << 16) | (((hb & 0x7fff) << 13) + 0x3800_0000));
            acc += isum as f32 * sf;
        }
        *o = acc * xs;
    }
}

/// `acc + w0*x0 + w1*x1 + w2*x2 + w3*x3` for the 4 i8 weights of `w` and the i16 pairs
/// `x02 = (x0, x2)`, `x13 = (x1, x3)`: `SXTB16` twice, `SMLAD` twice.
#[cfg(target_arch = "arm")]
#[inline(always)]
fn dot4(w: u32, x02: u32, x13: u32, acc: i32) -> i32 {
    let mut acc = acc;
    // SAFETY: register-only DSP arithmetic (ARMv7E-M).
    unsafe {
        core::arch::asm!(
            "sxtb16 {a}, {w}",
            "sxtb16 {b}, {w}, ror #8",
            "smlad {acc}, {a}, {x0}, {acc}",
            "smlad {acc}, {b}, {x1}, {acc}",
            w = in(reg) w,
            x0 = in(reg) x02,
            x1 = in(reg) x13,
            a = out(reg) _,
            b = out(reg) _,
            acc = inout(reg) acc,
            options(pure, nomem, nostack),
        );
    }
    acc
}

/// Times [`matvec_q8_dsp`] and checks it against the scalar reference.
#[cfg(target_arch = "arm")]
pub fn run_dsp<F: FnMut(&[u8])>(out: &mut LineBuf<128, F>, ticks: &mut Ticks, cal: u64) {
    // SAFETY: as in `run`, after it.
    let (q, s) = unsafe { (&*core::ptr::addr_of!(Q), &*core::ptr::addr_of!(S)) };
    let mut x = [0.0f32; C];
    for (i, v) in x.iter_mut().enumerate() {
        *v = (i % 13) as f32 * 0.25 - 1.5;
    }
    let mut y = [0.0f32; 4 * C];
    let mut r = [0.0f32; 4 * C];
    let mut xq = [0u32; 4 * C / 2];
    let t0 = ticks.lap();
    matvec_q8_dsp(&mut y, &q[..], &s[..], &x, &mut xq);
    let n = crate::board::ticks_to_instructions(ticks.lap() - t0, cal);
    out.line_u64(b"profile prototype dsp matvec_q8 256x64: ", n);
    k::matvec_q8::scalar::matvec_q8(&mut r, &q[..], &s[..], &x);
    let err = y
        .iter()
        .zip(&r)
        .fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    let mag = r.iter().fold(0.0f32, |m, b| m.max(b.abs()));
    out.line_u64(
        b"profile prototype dsp max abs error vs scalar x 1e6 / max|y|: ",
        (err / mag * 1e6) as u64,
    );
}
