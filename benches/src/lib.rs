//! folio benchmarks: helpers shared by the criterion benches in `benches/benches/`.
//!
//! `decode` (benches/benches/decode.rs) measures per-token decode latency of the runtime on
//! random-weight fixtures of the lab's three shapes in each of the four encodings; the
//! fixtures are built in memory by `folio-tests`' writer (no files).
#![deny(missing_docs)]

use folio_tests::fixture::{Config, Encoding, FixtureSpec, Plan};
use folio_tests::AlignedBytes;

/// One decode benchmark: a shape, an encoding and the model file bytes (8-byte aligned).
pub struct DecodeCase {
    /// Model shape.
    pub config: Config,
    /// Encoding of every matrix.
    pub encoding: Encoding,
    /// The safetensors file, aligned as mmap would give it.
    pub file: AlignedBytes,
}

impl DecodeCase {
    /// Build the fixture for `config` with every matrix in `encoding` (seed 1).
    pub fn new(config: Config, encoding: Encoding) -> Self {
        let bytes = FixtureSpec::new(config, Plan::All(encoding), 1).to_bytes();
        DecodeCase {
            config,
            encoding,
            file: AlignedBytes::new(&bytes),
        }
    }

    /// `"128/384/6/4"`: block/embd/heads/layers.
    pub fn shape(&self) -> String {
        let c = self.config;
        format!("{}/{}/{}/{}", c.block_size, c.n_embd, c.n_head, c.n_layer)
    }
}

/// The lab shapes x the four encodings, in that order.
pub fn decode_cases() -> impl Iterator<Item = DecodeCase> {
    Config::LAB.into_iter().flat_map(|c| {
        Encoding::ALL
            .into_iter()
            .map(move |e| DecodeCase::new(c, e))
    })
}

/// Single-core read bandwidth over a buffer of `bytes`, in bytes/s: one value per sample.
///
/// The buffer is read once untimed (so a cache-sized one is resident), then each sample
/// times enough whole passes over it to read at least 32 MiB. A buffer that fits in a cache
/// level is read at that level's rate, so `bytes / rate` is the least time one pass over
/// that many weight bytes can take on this core.
pub fn read_bandwidth(bytes: usize, samples: usize) -> Vec<f64> {
    let words = vec![1u64; (bytes / 8).max(64)];
    let passes = ((32usize << 20) / (words.len() * 8)).max(1);
    sum_words(&words);
    (0..samples)
        .map(|_| {
            let t = std::time::Instant::now();
            for _ in 0..passes {
                sum_words(&words);
            }
            (passes * words.len() * 8) as f64 / t.elapsed().as_secs_f64()
        })
        .collect()
}

/// Sum of `words` with eight independent accumulators, so the loop is bound by loads (the
/// compiler turns it into vector adds), not by one add chain.
#[inline(never)]
fn sum_words(words: &[u64]) -> u64 {
    let mut acc = [0u64; 8];
    let mut chunks = words.chunks_exact(8);
    for c in &mut chunks {
        for (a, w) in acc.iter_mut().zip(c) {
            *a = a.wrapping_add(*w);
        }
    }
    let tail = chunks
        .remainder()
        .iter()
        .fold(0u64, |s, w| s.wrapping_add(*w));
    std::hint::black_box(acc.iter().fold(tail, |s, a| s.wrapping_add(*a)))
}
