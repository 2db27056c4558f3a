//! folio's exporter: trains the character-level GPT with tch (as nanoGPT) and writes
//! folio model files (docs/FORMAT.md), f32 or quantised, checked by the runtime itself.
//!
//! Data flow: `data` (text → vocab, splits, batches) → `model` (tch GPT with the runtime's
//! tensor names and `Config`) → `hyper` (presets, schedule) and `optim` (AdamW) → `train`
//! (loop, `estimate_loss`, log) with `checkpoint` → `quantize` (f32 → encodings, kernels'
//! block definitions) → `export` (atomic format 2 files; reads formats 1 and 2) →
//! `report` (val loss of each encoding, computed by folio-runtime).
//! `validate` checks every input (hyper-parameters, output paths, the run lock) before any
//! of it starts; `input` opens the files it reads (regular, bounded).
#![deny(missing_docs)]

pub mod checkpoint;
pub mod data;
pub mod export;
pub mod hyper;
pub mod input;
pub mod model;
pub mod optim;
pub mod quantize;
pub mod report;
pub mod train;
pub mod validate;
