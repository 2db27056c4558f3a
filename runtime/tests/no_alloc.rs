//! After loading and creating a session in caller memory, the token loop allocates nothing:
//! a counting global allocator (per thread, so the test harness's own threads do not
//! interfere) sees 0 allocations over 100+ generated tokens, Shift mode past the window
//! included.
use folio_runtime::{ContextMode, Generator, Model, Sampler, SamplerConfig};
use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan};
use folio_tests::AlignedBytes;
use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;

struct Counting;

thread_local! {
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn bump() {
    let _ = ALLOCS.try_with(|c| c.set(c.get() + 1));
}

// SAFETY: forwards every call to `System` unchanged; only counts.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        bump();
        // SAFETY: same contract as the caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as the caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

fn allocs() -> u64 {
    ALLOCS.with(Cell::get)
}

/// Generate `n` tokens in `mode` and return (allocations during generation, tokens).
fn generate(file: &[u8], mode: ContextMode, cfg: SamplerConfig, n: usize) -> (u64, Vec<u32>) {
    let model = Model::from_bytes(file).expect("load");
    let mut mem = vec![0u8; model.session_bytes()];
    let mut out = vec![0u32; n];
    let mut text = vec!['\0'; n];
    let mut prompt = [0u32; 4];
    let session = model.session(&mut mem).expect("session");
    let sampler = Sampler::new(cfg).expect("sampler");

    let before = allocs();
    let mut g = Generator::with_mode(session, sampler, mode);
    let np = model
        .tokenizer()
        .encode("the ", &mut prompt)
        .expect("encode");
    g.prompt(&prompt[..np]).expect("prompt");
    for (o, ch) in out.iter_mut().zip(text.iter_mut()) {
        *o = g.next().expect("next");
        *ch = model.tokenizer().decode(*o).expect("decode");
    }
    let used = allocs() - before;
    (used, out)
}

#[test]
fn the_counter_counts() {
    let before = allocs();
    let v: Vec<u64> = Vec::with_capacity(16);
    std::hint::black_box(&v);
    assert!(allocs() > before, "a Vec allocation must move the counter");
    let mid = allocs();
    let mut w = vec![1u8];
    w.extend_from_slice(&[0; 1000]);
    assert!(
        allocs() >= mid + 2,
        "allocation and growth are both counted"
    );
}

#[test]
fn token_loop_allocates_nothing() {
    let sampled = SamplerConfig {
        temperature: 0.9,
        top_k: 5,
        top_p: 0.9,
        seed: 42,
    };
    let plain = SamplerConfig {
        temperature: 1.0,
        top_k: 0,
        top_p: 1.0,
        seed: 7,
    };
    let cases = [
        (
            FixtureSpec::new(Config::TINY[0], Plan::Mixed, 1),
            ContextMode::Shift,
            sampled,
            150,
        ),
        (
            FixtureSpec::new(Config::TINY[1], Plan::All(Encoding::Q4_0), 2),
            ContextMode::Shift,
            plain,
            120,
        ),
        (
            FixtureSpec::new(Config::TINY[0], Plan::All(Encoding::F16), 3),
            ContextMode::Exact,
            SamplerConfig::greedy(),
            100,
        ),
        (
            FixtureSpec::new(Config::LAB[0], Plan::All(Encoding::Q8_0), 4),
            ContextMode::Shift,
            sampled,
            128,
        ),
    ];
    for (spec, mode, cfg, n) in cases {
        let file = AlignedBytes::new(&spec.to_bytes());
        assert!(
            n > 2 * spec.config.block_size,
            "the run must pass the context window"
        );
        let (used, tokens) = generate(file.bytes(), mode, cfg, n);
        assert_eq!(tokens.len(), n);
        assert_eq!(
            used,
            0,
            "{} {:?}: {used} allocations while generating",
            spec.config.label(),
            mode
        );
    }
}
