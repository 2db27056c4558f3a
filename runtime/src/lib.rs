//! folio-runtime: a `#![no_std]`, allocation-free runtime for folio's character-level GPT.
//!
//! The crate reads top to bottom in data-flow order, one file per stage:
//! [`header`] (bytes → tensor entries and metadata strings) → [`config`] (the `folio.*`
//! keys → a validated [`Config`]) → [`weights`] (zero-copy typed views, tensor roles from
//! [`names`]) → [`kv_cache`] → [`model`] (`forward(token, pos) -> &[f32]`) → [`sampler`]
//! → [`tokenizer`] → [`generate`]; [`error`] beside them. The file format is
//! docs/FORMAT.md; every malformed file is its own [`Error`] and no input panics.
//!
//! ```no_run
//! # fn run(bytes: &[u8]) -> Result<(), folio_runtime::Error> {
//! use folio_runtime::{Generator, Model, Sampler, SamplerConfig};
//! let model = Model::from_bytes(bytes)?; // tensor data 4-byte aligned (mmap, aligned include_bytes!)
//! let mut mem = [0u8; 1 << 16]; // at least model.session_bytes()
//! let session = model.session(&mut mem)?;
//! let sampler = Sampler::new(SamplerConfig { temperature: 0.8, top_k: 40, top_p: 0.95, seed: 1 })?;
//! let mut gen = Generator::new(session, sampler);
//! let mut prompt = [0u32; 8];
//! let n = model.tokenizer().encode("ROMEO:", &mut prompt)?;
//! gen.prompt(&prompt[..n])?;
//! for _ in 0..100 {
//!     let c = model.tokenizer().decode(gen.next()?)?;
//!     # let _ = c;
//! }
//! # Ok(()) }
//! ```
//!
//! # Fixed capacities
//!
//! | constant | value | what |
//! |---|---|---|
//! | [`MAX_TENSORS`] | 512 | tensors in a header (used or not) |
//! | [`MAX_LAYERS`] | 16 | `n_layer` |
//! | [`MAX_VOCAB`] | 256 | `vocab_size` (the tokenizer is a `[char; 256]`) |
//! | [`names::MAX_NAME`] | 96 | bytes of a tensor name that is compared (longer: ignored tensor) |
//! | [`header::MAX_METADATA`] | 64 | `__metadata__` keys |
//! | [`header::MAX_KEY`] | 256 | bytes of a tensor name or metadata key |
//!
//! Sizes (`block_size`, `n_embd`, ...) must fit `u32`. `size_of::<Model>()` is 4,008 bytes
//! on thumbv7em and 6,984 on x86-64 (`Session`: 108 and 216 bytes); loading also uses
//! about 4 KB (64-bit: 8 KB) of stack for the table of weight views.
//!
//! # Session memory
//!
//! [`Model::session_bytes`] is exact: `3` bytes of alignment slack, then f32
//! `x, xn, y, tmp (C) + qkv (3C) + hb (4C) + scores (T) + logits (V) + probs (V) + xs
//! (4C / 32)`, u32 `idx (V) + history (T)`, the f16 KV cache `(n_layer, 2, T, C)`, and
//! i8 `xq (4C)` (`xq`, `xs`: the int8 activations of the q8_0 and q4_0 matvecs).
//!
//! # Features
//!
//! `std` (default): [`file::MappedModel`] (memmap2), [`cli`] (what the `folio` and
//! `exporter` command lines share) and the `folio` CLI.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(feature = "std"), forbid(unsafe_code))]
#![cfg_attr(feature = "std", deny(unsafe_code))]
#![deny(missing_docs)]
#![cfg_attr(
    not(test),
    deny(
        clippy::unwrap_used,
        clippy::expect_used,
        clippy::panic,
        clippy::indexing_slicing
    )
)]

#[cfg(all(feature = "std", not(test)))]
extern crate std;

#[cfg(feature = "std")]
pub mod cli;
pub mod config;
pub mod error;
#[cfg(feature = "std")]
pub mod file;
pub mod generate;
pub mod header;
pub mod kv_cache;
pub mod model;
pub mod names;
pub mod sampler;
pub mod tokenizer;
pub mod weights;

pub use config::{Config, MAX_CHUNK, MAX_LAYERS, MAX_VOCAB};
pub use error::{Error, SamplerParam, TensorProblem};
pub use generate::{ContextMode, Generator};
pub use header::{unescape, Header, TensorInfo, MAX_TENSORS};
pub use model::{Model, Session};
pub use names::{Dtype, MetaKey, TensorId, TensorKind};
pub use sampler::{Rng, Sampler, SamplerConfig};
pub use tokenizer::Tokenizer;
pub use weights::{Encoding, Matrix, Vector};
