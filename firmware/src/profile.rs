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
    let (mut xq, mut xsc) = ([0i8; 4 * C], [0.0f32; 4 * C / 32]);
    time(b"quantize_act 256: ", &mut || {
        k::quantize_act(&mut xq, &mut xsc, &x)
    });
    let (xq, xsc) = (&xq, &xsc);
    let (xq1, xs1) = (&xq[..C], &xsc[..C / 32]);
    let xs = &x[..C];
    time(b"matvec_q8 256x64: ", &mut || {
        k::matvec_q8(&mut y, &q[..], &s[..], xq1, xs1)
    });
    time(b"scalar::matvec_q8 256x64: ", &mut || {
        k::matvec_q8::scalar::matvec_q8(&mut y, &q[..], &s[..], xq1, xs1)
    });
    time(b"matvec_q8 64x256: ", &mut || {
        k::matvec_q8(&mut y[..C], &q[..], &s[..], xq, xsc)
    });
    time(b"matvec_q4 256x64: ", &mut || {
        k::matvec_q4(&mut y, &q4[..4 * C * C / 2], &s[..], xq1, xs1)
    });
    time(b"scalar::matvec_q4 256x64: ", &mut || {
        k::matvec_q4::scalar::matvec_q4(&mut y, &q4[..4 * C * C / 2], &s[..], xq1, xs1)
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
