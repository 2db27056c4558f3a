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
