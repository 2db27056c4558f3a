//! Test-only: a tiny hand-written safetensors writer (the full fixture writer is in tests/).
use crate::Encoding;
use folio_kernels::f16;
use folio_kernels::quant::{quantize_row_q4, quantize_row_q8};
use std::string::String;
use std::vec::Vec;
use std::{format, vec};

/// Model shape and encoding of every 2-D weight.
#[derive(Clone, Copy)]
pub struct Spec {
    pub vocab: usize,
    pub block: usize,
    pub embd: usize,
    pub head: usize,
    pub layer: usize,
    pub tied: bool,
    pub enc: Encoding,
}

pub const VOCAB: &str = "\n !abcdefghijklmnopqrstuvwxyz";

/// Deterministic values in about [-0.5, 0.5].
fn values(n: usize, seed: u64) -> Vec<f32> {
    let mut s = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..n)
        .map(|_| {
            s ^= s << 13;
            s ^= s >> 7;
            s ^= s << 17;
            (s >> 40) as f32 / (1u64 << 24) as f32 - 0.5
        })
        .collect()
}

pub struct Writer {
    entries: Vec<(String, &'static str, Vec<usize>, Vec<u8>)>,
}

impl Writer {
    pub fn new() -> Self {
        Writer {
            entries: Vec::new(),
        }
    }
    pub fn raw(&mut self, name: &str, dtype: &'static str, shape: &[usize], bytes: Vec<u8>) {
        self.entries
            .push((name.into(), dtype, shape.to_vec(), bytes));
    }
    pub fn vector(&mut self, name: &str, v: &[f32]) {
        self.raw(name, "F32", &[v.len()], bytemuck::cast_slice(v).to_vec());
    }
    pub fn matrix(&mut self, name: &str, rows: usize, cols: usize, w: &[f32], enc: Encoding) {
        match enc {
            Encoding::F32 => self.raw(name, "F32", &[rows, cols], bytemuck::cast_slice(w).to_vec()),
            Encoding::F16 => {
                let h: Vec<f16> = w.iter().map(|&x| f16::from_f32(x)).collect();
                self.raw(
                    name,
                    "F16",
                    &[rows, cols],
                    bytemuck::cast_slice(&h).to_vec(),
                );
            }
            Encoding::Q8_0 | Encoding::Q4_0 => {
                let g = cols / 32;
                let mut s = vec![f16::ZERO; rows * g];
                let mut q8 = vec![0i8; rows * cols];
                let mut q4 = vec![0u8; rows * cols / 2];
                for r in 0..rows {
                    let x = &w[r * cols..][..cols];
                    if enc == Encoding::Q8_0 {
                        quantize_row_q8(&mut q8[r * cols..][..cols], &mut s[r * g..][..g], x);
                    } else {
                        quantize_row_q4(
                            &mut q4[r * cols / 2..][..cols / 2],
                            &mut s[r * g..][..g],
                            x,
                        );
                    }
                }
                if enc == Encoding::Q8_0 {
                    self.raw(
                        name,
                        "I8",
                        &[rows, cols],
                        bytemuck::cast_slice(&q8).to_vec(),
                    );
                } else {
                    self.raw(name, "U8", &[rows, cols / 2], q4);
                }
                self.raw(
                    &format!("{name}_scale"),
                    "F16",
                    &[rows, g],
                    bytemuck::cast_slice(&s).to_vec(),
                );
            }
        }
    }
    /// Header (metadata first, 8-byte padded) then data, each tensor 8-byte aligned.
    pub fn finish(&self, metadata: &[(&str, String)]) -> Vec<u8> {
        let esc = |s: &str| {
            s.replace('\\', "\\\\")
                .replace('"', "\\\"")
                .replace('\n', "\\n")
        };
        let mut h = String::from("{\"__metadata__\":{");
        let meta: Vec<String> = metadata
            .iter()
            .map(|(k, v)| format!("\"{k}\":\"{}\"", esc(v)))
            .collect();
        h += &meta.join(",");
        h += "}";
        let mut data = Vec::new();
        for (name, dtype, shape, bytes) in &self.entries {
            while data.len() % 8 != 0 {
                data.push(0);
            }
            let shape: Vec<String> = shape.iter().map(|d| d.to_string()).collect();
            h += &format!(
                ",\"{name}\":{{\"dtype\":\"{dtype}\",\"shape\":[{}],\"data_offsets\":[{},{}]}}",
                shape.join(","),
                data.len(),
                data.len() + bytes.len()
            );
            data.extend_from_slice(bytes);
        }
        h += "}";
        while (8 + h.len()) % 8 != 0 {
            h.push(' ');
        }
        let mut f = Vec::from((h.len() as u64).to_le_bytes());
        f.extend_from_slice(h.as_bytes());
        f.extend_from_slice(&data);
        f
    }
}

pub fn config_json(s: &Spec) -> String {
    format!(
        "{{\"vocab_size\": {}, \"block_size\": {}, \"n_embd\": {}, \"n_head\": {}, \"n_layer\": {}, \"layer_norm_eps\": 1e-5, \"activation\": \"gelu_tanh\", \"tied_embeddings\": {}}}",
        s.vocab, s.block, s.embd, s.head, s.layer, s.tied
    )
}

pub fn vocab_json(n: usize) -> String {
    let items: Vec<String> = VOCAB
        .chars()
        .take(n)
        .map(|c| format!("\"{}\"", c.escape_default()))
        .collect();
    format!("[{}]", items.join(", "))
}

/// A random-weight model file.
pub fn build(s: &Spec) -> Vec<u8> {
    let (v, t, c) = (s.vocab, s.block, s.embd);
    let mut w = Writer::new();
    let mut seed = 1;
    let mut next = |n: usize| {
        seed += 1;
        values(n, seed)
    };
    w.matrix("wte.weight", v, c, &next(v * c), s.enc);
    w.matrix("wpe.weight", t, c, &next(t * c), s.enc);
    for i in 0..s.layer {
        let p = format!("h.{i}.");
        let ones: Vec<f32> = next(c).iter().map(|x| 1.0 + x * 0.2).collect();
        w.vector(&format!("{p}ln_1.weight"), &ones);
        w.vector(&format!("{p}ln_1.bias"), &next(c));
        w.matrix(
            &format!("{p}attn.c_attn.weight"),
            3 * c,
            c,
            &next(3 * c * c),
            s.enc,
        );
        w.vector(&format!("{p}attn.c_attn.bias"), &next(3 * c));
        w.matrix(&format!("{p}attn.c_proj.weight"), c, c, &next(c * c), s.enc);
        w.vector(&format!("{p}attn.c_proj.bias"), &next(c));
        w.vector(&format!("{p}ln_2.weight"), &ones);
        w.vector(&format!("{p}ln_2.bias"), &next(c));
        w.matrix(
            &format!("{p}mlp.c_fc.weight"),
            4 * c,
            c,
            &next(4 * c * c),
            s.enc,
        );
        w.vector(&format!("{p}mlp.c_fc.bias"), &next(4 * c));
        w.matrix(
            &format!("{p}mlp.c_proj.weight"),
            c,
            4 * c,
            &next(4 * c * c),
            s.enc,
        );
        w.vector(&format!("{p}mlp.c_proj.bias"), &next(c));
    }
    w.vector("ln_f.weight", &vec![1.0; c]);
    w.vector("ln_f.bias", &next(c));
    if !s.tied {
        w.matrix("lm_head.weight", v, c, &next(v * c), s.enc);
    }
    w.finish(&[
        ("folio.format", "1".into()),
        ("folio.config", config_json(s)),
        ("folio.vocab", vocab_json(v)),
    ])
}

/// File bytes at an 8-byte aligned address.
pub struct Aligned(Vec<u64>, usize);

impl Aligned {
    pub fn new(b: &[u8]) -> Self {
        let mut words = vec![0u64; b.len().div_ceil(8)];
        bytemuck::cast_slice_mut::<u64, u8>(&mut words)[..b.len()].copy_from_slice(b);
        Aligned(words, b.len())
    }
    pub fn bytes(&self) -> &[u8] {
        &bytemuck::cast_slice(&self.0)[..self.1]
    }
}

pub const SMALL: Spec = Spec {
    vocab: 29,
    block: 8,
    embd: 32,
    head: 4,
    layer: 2,
    tied: true,
    enc: Encoding::F32,
};
