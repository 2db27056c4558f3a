//! Shared helpers for folio's cross-crate test suite.
//!
//! - [`fixture`]: random-weight model files in every encoding, via the `safetensors` crate.
//! - [`handwritten`]: a second writer, raw bytes, another layout (order, padding, escapes),
//!   and [`handwritten::RawFile`] for the byte-level attack tests.
//! - [`reference`]: an independent f64 GPT-2 forward pass that shares no code with the
//!   runtime or the kernels.
//! - [`fuzz`]: the fuzz targets' harness (`fuzz/`), replayed on stable by `tests/fuzz_corpus.rs`.
//! - [`process`]: running the binaries with a deadline (CLI suites).
//! - [`AlignedBytes`]: file bytes placed so the tensor data is 8-byte aligned (as the
//!   `folio` CLI places them).
#![deny(missing_docs)]

pub mod fixture;
pub mod fuzz;
pub mod handwritten;
pub mod process;
pub mod reference;
pub mod rng;

pub use fixture::{Config, Encoding, Fixture, FixtureSpec, Plan, Vectors};

/// Bytes stored in a `Vec<u64>` at a chosen alignment (the runtime views tensors in place
/// and needs the data section, at `8 + header length`, 4-byte aligned).
#[derive(Clone, Debug)]
pub struct AlignedBytes {
    words: Vec<u64>,
    offset: usize,
    len: usize,
}

impl AlignedBytes {
    /// Copy a file so that its data section starts 8-byte aligned (the file start when
    /// the length prefix is unreadable).
    pub fn new(bytes: &[u8]) -> Self {
        let data_start = bytes
            .first_chunk::<8>()
            .map_or(0, |n| u64::from_le_bytes(*n).wrapping_add(8) % 8)
            as usize;
        Self::with_offset(bytes, (8 - data_start) % 8)
    }

    /// Copy `bytes` so that they start `offset` bytes (0..8) past an 8-byte boundary.
    pub fn with_offset(bytes: &[u8], offset: usize) -> Self {
        assert!(offset < 8);
        let mut words = vec![0u64; (bytes.len() + offset).div_ceil(8)];
        let view: &mut [u8] = bytemuck::cast_slice_mut(&mut words);
        view[offset..offset + bytes.len()].copy_from_slice(bytes);
        AlignedBytes {
            words,
            offset,
            len: bytes.len(),
        }
    }

    /// The stored bytes.
    pub fn bytes(&self) -> &[u8] {
        let all: &[u8] = bytemuck::cast_slice(&self.words);
        &all[self.offset..self.offset + self.len]
    }
}

/// Max |a - b| / max |b| over two equally long slices (`b` is the reference).
pub fn rel_diff(a: &[f32], b: &[f64]) -> f64 {
    assert_eq!(a.len(), b.len(), "length mismatch");
    let scale = b.iter().fold(0.0f64, |m, v| m.max(v.abs())).max(1e-30);
    let diff = a
        .iter()
        .zip(b)
        .fold(0.0f64, |m, (&x, &y)| m.max((x as f64 - y).abs()));
    diff / scale
}

/// Run the runtime over `tokens` at positions `0..tokens.len()` and collect the logits:
/// `(tokens.len(), vocab_size)`. `file`'s data section must be 4-byte aligned (see
/// [`AlignedBytes`]).
pub fn runtime_logits(file: &[u8], tokens: &[u32]) -> Result<Vec<Vec<f32>>, folio_runtime::Error> {
    let model = folio_runtime::Model::from_bytes(file)?;
    let mut mem = vec![0u8; model.session_bytes()];
    let mut session = model.session(&mut mem)?;
    tokens
        .iter()
        .enumerate()
        .map(|(pos, &t)| session.forward(t, pos).map(<[f32]>::to_vec))
        .collect()
}

/// A seeded pseudo-random token sequence of length `n` over `vocab_size` tokens.
pub fn token_sequence(n: usize, vocab_size: usize, seed: u64) -> Vec<u32> {
    let mut rng = rng::Rng::new(seed);
    (0..n).map(|_| rng.below(vocab_size) as u32).collect()
}

/// How many positions the parity suites run on the big lab shapes: `FOLIO_PARITY_POSITIONS`
/// if set, else 64 on x86-64 and 12 elsewhere (aarch64 runs under qemu-user).
pub fn big_shape_positions() -> usize {
    if let Some(n) = std::env::var("FOLIO_PARITY_POSITIONS")
        .ok()
        .and_then(|v| v.parse().ok())
    {
        return n;
    }
    if cfg!(target_arch = "x86_64") {
        64
    } else {
        12
    }
}
