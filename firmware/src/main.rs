//! folio on a Cortex-M under QEMU: load the embedded model, generate text greedily and
//! with seeded sampling, print it over semihosting with the instruction counts and the
//! RAM used, and exit 0 through `SYS_EXIT_EXTENDED`.
//!
//! Build: `FOLIO_MODEL=/abs/path/model.safetensors cargo build --release` in this folder
//! (`--target thumbv7m-none-eabi` for the lm3s6965evb); `cargo run --release` runs it under
//! QEMU. `FOLIO_PROMPT` (build time, default `ROMEO:`) sets the prompt. The generation path
//! is the runtime's [`Generator`] in its default context-shift mode, as `folio generate`.
//!
//! Output: one `key=value` line per figure, for `while IFS='=' read -r key value` in
//! scripts/firmware-check.sh. Texts are hex (two digits a byte) of exactly what
//! `folio generate --prompt <prompt> -n <n_gen> <run>_args` prints on stdout:
//! ```text
//! board=mps2-an386
//! model_bytes=N
//! load_instructions=N
//! session_bytes=6703
//! session_capacity=8192
//! n_gen=200
//! greedy_args=--temperature 0
//! greedy_text_hex=524f4d454f3a...
//! greedy_instructions_per_token=N
//! sampled_args=--temperature 0.8 --top-k 40 --top-p 1 --seed 1
//! sampled_text_hex=...
//! sampled_instructions_per_token=N
//! instructions_per_forward=N
//! instructions_per_tick=40
//! ram_static_bytes=N
//! stack_high_water=N
//! ```
//! `<run>_instructions_per_token` covers the generation loop (forward passes, context
//! shifts, sampling, decoding; not the prompt) divided by the characters generated;
//! `instructions_per_forward` is one forward pass averaged over the positions of a fresh
//! window. On failure the last line is `error=<what>`.
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

/// Bytes of the embedded model file.
const MODEL_BYTES: usize = include_bytes!(env!("FOLIO_MODEL")).len();
/// The model file, embedded at build time from `$FOLIO_MODEL`, in a linker section of
/// its own (`.model`, placed after `.rodata` by `memory/*.x`), so that the section sizes
/// show the firmware's code and constants apart from the model.
#[link_section = ".model"]
static MODEL: Aligned<[u8; MODEL_BYTES]> = Aligned(*include_bytes!(env!("FOLIO_MODEL")));

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

/// One generation run: its sampler, the `folio generate` arguments (besides `--prompt`
/// and `-n`) that give the same text on the host, and its output keys.
struct Run {
    sampler: SamplerConfig,
    args: &'static [u8],
    args_key: &'static [u8],
    text_key: &'static [u8],
    per_token_key: &'static [u8],
}

/// Greedy, then seeded sampling.
const RUNS: [Run; 2] = [
    Run {
        sampler: SamplerConfig::greedy(),
        args: b"--temperature 0",
        args_key: b"greedy_args",
        text_key: b"greedy_text_hex",
        per_token_key: b"greedy_instructions_per_token",
    },
    Run {
        sampler: SamplerConfig {
            temperature: 0.8,
            top_k: 40,
            top_p: 1.0,
            seed: 1,
        },
        args: b"--temperature 0.8 --top-k 40 --top-p 1 --seed 1",
        args_key: b"sampled_args",
        text_key: b"sampled_text_hex",
        per_token_key: b"sampled_instructions_per_token",
    },
];

/// Session memory, 16-byte aligned so the runtime uses no alignment slack.
static mut SESSION_MEM: Aligned<[u8; SESSION_BYTES]> = Aligned([0; SESSION_BYTES]);

type Out<F> = LineBuf<128, F>;

#[entry]
fn main() -> ! {
    board::paint_stack();
    let Some(mut cp) = cortex_m::Peripherals::take() else {
        board::exit(3)
    };
    let mut ticks = board::Ticks::start(&mut cp.SYST);
    let stdout = board::stdout();
    let mut out = Out::new(|b: &[u8]| {
        let mut s = stdout;
        if s.write_all(b).is_err() {
            board::exit(2);
        }
    });
    let cal = board::calibrate(&mut ticks);
    #[cfg(feature = "kernel-check")]
    board::exit(kernel_check::run(&mut out));
    let per_tick = board::instructions_per_tick(cal);

    out.kv(
        b"board",
        if cfg!(board = "lm3s6965evb") {
            b"lm3s6965evb"
        } else {
            b"mps2-an386"
        },
    );
    // black_box: the model's bytes are data to the compiler, so code size does not depend
    // on what is embedded.
    let bytes: &[u8] = core::hint::black_box(&MODEL.0);
    out.kv_u64(b"model_bytes", bytes.len() as u64);

    let t0 = ticks.lap();
    let Ok(model) = Model::from_bytes(bytes) else {
        fail(&mut out, b"model rejected", 4)
    };
    out.kv_u64(
        b"load_instructions",
        folio_firmware::instructions_per(ticks.lap() - t0, per_tick, 1),
    );
    let need = model.session_bytes();
    out.kv_u64(b"session_bytes", need as u64);
    out.kv_u64(b"session_capacity", SESSION_BYTES as u64);
    // SAFETY: the only reference ever made to SESSION_MEM (main runs once, no interrupts use it).
    let mem: &'static mut [u8] = unsafe { &mut (*core::ptr::addr_of_mut!(SESSION_MEM)).0 };
    if need > mem.len() {
        fail(&mut out, b"session buffer too small", 5)
    }

    let mut prompt = [0u32; MAX_PROMPT];
    let Ok(n_prompt) = model.tokenizer().encode(PROMPT, &mut prompt) else {
        fail(&mut out, b"prompt not encodable", 6)
    };
    let prompt = &prompt[..n_prompt];

    out.kv_u64(b"n_gen", N_GEN as u64);
    let mut chars = ['\0'; N_GEN];
    for run in &RUNS {
        let Ok(s) = model.session(mem) else {
            fail(&mut out, b"session", 5)
        };
        let Ok(sampler) = Sampler::new(run.sampler) else {
            fail(&mut out, b"sampler", 7)
        };
        let gen = Generator::new(s, sampler);
        let Some(spent) = generate(&model, gen, prompt, &mut chars, &mut ticks) else {
            fail(&mut out, b"generation", 7)
        };
        out.kv(run.args_key, run.args);
        // The prompt, then the generated characters, in UTF-8: what `folio generate` prints.
        out.put(run.text_key);
        out.put(b"=");
        out.put_hex(PROMPT.as_bytes());
        for c in chars {
            out.put_hex(c.encode_utf8(&mut [0; 4]).as_bytes());
        }
        out.put(b"\n");
        out.kv_u64(
            run.per_token_key,
            folio_firmware::instructions_per(spent, per_tick, N_GEN as u32),
        );
    }

    // One forward pass at each position of a fresh window: the cost without context shifts.
    if let Ok(mut s) = model.session(mem) {
        let t0 = ticks.lap();
        let block = model.config().block_size;
        for pos in 0..block {
            if s.forward(prompt[pos % prompt.len()], pos).is_err() {
                fail(&mut out, b"forward", 7)
            }
        }
        out.kv_u64(
            b"instructions_per_forward",
            folio_firmware::instructions_per(ticks.lap() - t0, per_tick, block as u32),
        );
    }
    #[cfg(feature = "profile")]
    profile::run(&mut out, &mut ticks, cal);
    out.kv_u64(b"instructions_per_tick", u64::from(per_tick));
    out.kv_u64(b"ram_static_bytes", board::static_ram() as u64);
    out.kv_u64(b"stack_high_water", board::stack_high_water() as u64);
    out.flush();
    board::exit(0)
}

/// Feeds the prompt, then generates `chars.len()` characters into `chars`; returns the
/// SysTick ticks the generation loop took (the prompt not counted).
fn generate(
    model: &Model<'_>,
    mut gen: Generator<'_, '_>,
    prompt: &[u32],
    chars: &mut [char],
    ticks: &mut board::Ticks,
) -> Option<u64> {
    gen.prompt(prompt).ok()?;
    let t0 = ticks.lap();
    for c in chars.iter_mut() {
        *c = model.tokenizer().decode(gen.next().ok()?).ok()?;
        // Keeps each SysTick lap under its 2^24-tick period.
        ticks.lap();
    }
    Some(ticks.lap() - t0)
}

/// Prints `error=<what>` and exits with `code`.
fn fail<F: FnMut(&[u8])>(out: &mut Out<F>, what: &[u8], code: u32) -> ! {
    out.kv(b"error", what);
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
