//! folio on a Cortex-M under QEMU: load the embedded model, generate text greedily and
//! with seeded sampling, print it over semihosting with the instruction counts and the
//! RAM used, and exit 0 through `SYS_EXIT_EXTENDED`.
//!
//! Build: `FOLIO_MODEL=/abs/path/model.safetensors cargo build --release` in this folder
//! (`--target thumbv7m-none-eabi` for the lm3s6965evb); `cargo run --release` runs it under
//! QEMU. `FOLIO_PROMPT` (build time, default `ROMEO:`) sets the prompt. The generation path
//! is the runtime's [`Generator`] in its default context-shift mode, as `folio generate`.
//!
//! Output (each text is exactly what `folio generate` prints on stdout):
//! ```text
//! folio firmware: mps2-an386
//! model bytes: 162864
//! session bytes: 6703 of 8192
//! prompt: ROMEO:
//! greedy text, 206 bytes:
//! ROMEO:<200 generated characters>
//! instructions per token: N
//! sampled (seed 1, temperature 0.8, top-k 40, top-p 1) text, 206 bytes:
//! ...
//! instructions per forward: N
//! ```
//! `instructions per token` covers the generation loop (forward passes, context shifts,
//! sampling, decoding; not the prompt) divided by the characters generated; `instructions per
//! forward` is one forward pass averaged over the positions of a fresh window.
//! Exit codes: 0 success, 2 no semihosting, 3 no peripherals, 4 model rejected, 5 session
//! buffer too small, 6 prompt not encodable, 7 generation error, 8 kernel check mismatch
//! (`--features kernel-check`: compares the kernels' target paths with their scalar
//! references and exits, see `src/kernel_check.rs`), 101 panic, 102 HardFault.
#![no_std]
#![no_main]
// The kernel check exits before the generation code.
#![cfg_attr(feature = "kernel-check", allow(unreachable_code, unused_variables))]

mod board;
#[cfg(feature = "kernel-check")]
mod kernel_check;
#[cfg(feature = "profile")]
mod profile;

use cortex_m_rt::{entry, exception, ExceptionFrame};
use folio_firmware::LineBuf;
use folio_runtime::{Generator, Model, Sampler, SamplerConfig};

/// Aligns `include_bytes!` data: the runtime views f32/f16 tensors in place.
#[repr(C, align(16))]
struct Aligned<T: ?Sized>(T);

/// The model file, embedded at build time from `$FOLIO_MODEL`.
static MODEL: &Aligned<[u8]> = &Aligned(*include_bytes!(env!("FOLIO_MODEL")));

/// The prompt, from `$FOLIO_PROMPT` at build time.
const PROMPT: &str = match option_env!("FOLIO_PROMPT") {
    Some(p) => p,
    None => "ROMEO:",
};
/// Longest prompt in tokens.
const MAX_PROMPT: usize = 64;
/// Characters generated per run (the host comparison needs at least 100).
const N_GEN: usize = 200;
/// Session memory: the KV cache and activations, sized for the lab's `model1` (block 4,
/// embd 64, 3 layers: 6.7 KB). A larger model is refused with exit code 5.
const SESSION_BYTES: usize = 8 * 1024;
/// The sampled run's settings; scripts/firmware.sh passes the same to `folio generate`.
const SAMPLED: SamplerConfig = SamplerConfig {
    temperature: 0.8,
    top_k: 40,
    top_p: 1.0,
    seed: 1,
};

/// Session memory, 16-byte aligned so the runtime uses no alignment slack.
static mut SESSION_MEM: Aligned<[u8; SESSION_BYTES]> = Aligned([0; SESSION_BYTES]);

#[entry]
fn main() -> ! {
    board::paint_stack();
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        board::exit(3)
    };
    let mut ticks = board::Ticks::start(&mut cp.SYST);
    let stdout = board::stdout();
    let mut out = LineBuf::<128, _>::new(|b: &[u8]| {
        let mut s = stdout;
        if s.write_all(b).is_err() {
            board::exit(2);
        }
    });
    let cal = board::calibrate(&mut ticks);
    #[cfg(feature = "kernel-check")]
    board::exit(kernel_check::run(&mut out));
    let to_instr = |t: u64| board::ticks_to_instructions(t, cal);

    out.put(b"folio firmware: ");
    out.put(if cfg!(board = "lm3s6965evb") {
        b"lm3s6965evb\n"
    } else {
        b"mps2-an386\n"
    });
    // black_box: the model's bytes are data to the compiler, so code size does not depend
    // on what is embedded (a tiny file gives the runtime's size).
    let bytes: &[u8] = core::hint::black_box(&MODEL.0);
    out.line_u64(b"model bytes: ", bytes.len() as u64);

    let t0 = ticks.lap();
    let Ok(model) = Model::from_bytes(bytes) else {
        fail(&mut out, b"error: model rejected\n", 4)
    };
    out.line_u64(b"instructions to load: ", to_instr(ticks.lap() - t0));
    let need = model.session_bytes();
    out.put(b"session bytes: ");
    out.put_u64(need as u64);
    out.line_u64(b" of ", SESSION_BYTES as u64);
    // SAFETY: the only reference ever made to SESSION_MEM (main runs once, no interrupts use it).
    let mem: &'static mut [u8] = unsafe { &mut (*core::ptr::addr_of_mut!(SESSION_MEM)).0 };
    if need > mem.len() {
        fail(&mut out, b"error: session buffer too small\n", 5)
    }

    let mut prompt = [0u32; MAX_PROMPT];
    let Ok(n_prompt) = model.tokenizer().encode(PROMPT, &mut prompt) else {
        fail(&mut out, b"error: prompt not encodable\n", 6)
    };
    let prompt = &prompt[..n_prompt];
    out.put(b"prompt: ");
    out.put(PROMPT.as_bytes());
    out.put(b"\n");

    // The prompt, then the generated characters (UTF-8): what `folio generate` prints.
    let mut text = [0u8; 4 * (MAX_PROMPT + N_GEN)];
    let n_head = PROMPT.len();
    let Some(head) = text.get_mut(..n_head) else {
        fail(&mut out, b"error: prompt too long\n", 6)
    };
    head.copy_from_slice(PROMPT.as_bytes());
    for (sampler, label, per_token) in [
        (
            SamplerConfig::greedy(),
            &b"greedy"[..],
            &b"instructions per token: "[..],
        ),
        (
            SAMPLED,
            b"sampled (seed 1, temperature 0.8, top-k 40, top-p 1)",
            b"instructions per token (sampled): ",
        ),
    ] {
        let Ok(s) = model.session(mem) else {
            fail(&mut out, b"error: session\n", 5)
        };
        let Ok(sampler) = Sampler::new(sampler) else {
            fail(&mut out, b"error: sampler\n", 7)
        };
        let gen = Generator::new(s, sampler);
        let Some((len, spent)) = generate(&model, gen, prompt, &mut text[n_head..], &mut ticks)
        else {
            fail(&mut out, b"error: generation\n", 7)
        };
        // `<label> text, <n> bytes:\n<n bytes>\n`: the length makes the text unambiguous.
        out.put(label);
        out.put(b" text, ");
        out.put_u64((n_head + len) as u64);
        out.put(b" bytes:\n");
        out.put(&text[..n_head + len]);
        out.put(b"\n");
        out.line_u64(per_token, to_instr(spent) / N_GEN as u64);
    }

    // One forward pass at each position of a fresh window: the cost without context shifts.
    if let Ok(mut s) = model.session(mem) {
        let t0 = ticks.lap();
        let block = model.config().block_size;
        for pos in 0..block {
            if s.forward(prompt[pos % prompt.len()], pos).is_err() {
                fail(&mut out, b"error: forward\n", 7)
            }
        }
        out.line_u64(
            b"instructions per forward: ",
            to_instr(ticks.lap() - t0) / block as u64,
        );
    }
    #[cfg(feature = "profile")]
    profile::run(&mut out, &mut ticks, cal);
    out.line_u64(b"systick instructions per 1000 ticks: ", to_instr(1000));
    out.line_u64(b"ram static bytes: ", board::static_ram() as u64);
    out.line_u64(
        b"ram stack high-water bytes: ",
        board::stack_high_water() as u64,
    );
    out.flush();
    board::exit(0)
}

/// Feeds the prompt, then generates [`N_GEN`] characters into `text` (UTF-8); returns
/// their length and the SysTick ticks the generation loop took (the prompt not counted).
fn generate(
    model: &Model<'_>,
    mut gen: Generator<'_, '_>,
    prompt: &[u32],
    text: &mut [u8],
    ticks: &mut board::Ticks,
) -> Option<(usize, u64)> {
    gen.prompt(prompt).ok()?;
    let t0 = ticks.lap();
    let mut len = 0;
    for _ in 0..N_GEN {
        let c = model.tokenizer().decode(gen.next().ok()?).ok()?;
        len += c.encode_utf8(text.get_mut(len..len + c.len_utf8())?).len();
        // Keeps each SysTick lap under its 2^24-tick period.
        ticks.lap();
    }
    Some((len, ticks.lap() - t0))
}

/// Prints `msg` and exits with `code`.
fn fail<F: FnMut(&[u8])>(out: &mut LineBuf<128, F>, msg: &[u8], code: u32) -> ! {
    out.put(msg);
    out.flush();
    board::exit(code)
}

#[panic_handler]
fn panic(_: &core::panic::PanicInfo) -> ! {
    board::exit(101)
}

#[exception]
unsafe fn HardFault(_: &ExceptionFrame) -> ! {
    board::exit(102)
}
