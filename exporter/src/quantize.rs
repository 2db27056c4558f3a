//! Pure tensor encoders: `&[f32]` (row-major `[rows, cols]`) → the bytes of one of
//! docs/FORMAT.md's encodings. Q8_0/Q4_0 groups come from `folio_kernels::quant`, the one
//! definition shared with the runtime's kernels and the test fixtures.
use anyhow::{bail, Result};
use folio_kernels::quant::{quantize_row_q4, quantize_row_q8};
use folio_kernels::QK;
pub use folio_runtime::Encoding;
use half::f16;
use safetensors::Dtype;

/// The next more precise encoding (`q4_0 → q8_0 → f16 → f32`).
pub fn promote(enc: Encoding) -> Encoding {
    match enc {
        Encoding::Q4_0 => Encoding::Q8_0,
        Encoding::Q8_0 => Encoding::F16,
        Encoding::F16 | Encoding::F32 => Encoding::F32,
    }
}

/// Parse a `--dtype` value: an [`Encoding`] name, or `q8`/`q4`.
pub fn parse_encoding(s: &str) -> Result<Encoding, String> {
    let name = match s {
        "q8" => "q8_0",
        "q4" => "q4_0",
        s => s,
    };
    Encoding::from_name(name).ok_or(format!(
        "unknown dtype {s:?} (expected f32, f16, q8_0 or q4_0)"
    ))
}

/// One tensor ready to be written: name, dtype, shape and little-endian bytes.
#[derive(Clone, Debug, PartialEq)]
pub struct Stored {
    /// Tensor name in the file.
    pub name: String,
    /// Element type.
    pub dtype: Dtype,
    /// Shape.
    pub shape: Vec<usize>,
    /// Little-endian data.
    pub bytes: Vec<u8>,
}

/// True when a `[rows, cols]` matrix can be block-quantised (`cols % 32 == 0`).
pub fn quantisable(shape: &[usize]) -> bool {
    shape.len() == 2 && shape[1].is_multiple_of(QK) && shape[1] > 0
}

/// Encodes tensor `name` (`shape`, data `x`) as `enc`: one [`Stored`] for f32/f16, the
/// values and `NAME_scale` for q8_0/q4_0. 1-D tensors must be f32 or f16.
pub fn encode(name: &str, shape: &[usize], x: &[f32], enc: Encoding) -> Result<Vec<Stored>> {
    let n: usize = shape.iter().product();
    if n != x.len() {
        bail!(
            "{name}: shape {shape:?} has {n} elements, data has {}",
            x.len()
        );
    }
    let one = |dtype, bytes| Stored {
        name: name.to_string(),
        dtype,
        shape: shape.to_vec(),
        bytes,
    };
    Ok(match enc {
        Encoding::F32 => vec![one(
            Dtype::F32,
            x.iter().flat_map(|v| v.to_le_bytes()).collect(),
        )],
        Encoding::F16 => {
            vec![one(
                Dtype::F16,
                x.iter()
                    .flat_map(|&v| f16::from_f32(v).to_le_bytes())
                    .collect(),
            )]
        }
        Encoding::Q8_0 | Encoding::Q4_0 => {
            if !quantisable(shape) {
                bail!("{name}: shape {shape:?} cannot be stored as {enc} (needs 2-D, cols % {QK} == 0)");
            }
            let (rows, cols) = (shape[0], shape[1]);
            let mut scales = vec![f16::ZERO; rows * cols / QK]; // (rows, cols/32)
            let (dtype, vshape, values) = if enc == Encoding::Q8_0 {
                let mut q = vec![0i8; rows * cols]; // (rows, cols)
                for ((qr, sr), xr) in q
                    .chunks_exact_mut(cols)
                    .zip(scales.chunks_exact_mut(cols / QK))
                    .zip(x.chunks_exact(cols))
                {
                    quantize_row_q8(qr, sr, xr);
                }
                (
                    Dtype::I8,
                    vec![rows, cols],
                    q.iter().map(|&v| v as u8).collect(),
                )
            } else {
                let mut q = vec![0u8; rows * cols / 2]; // (rows, cols/2)
                for ((qr, sr), xr) in q
                    .chunks_exact_mut(cols / 2)
                    .zip(scales.chunks_exact_mut(cols / QK))
                    .zip(x.chunks_exact(cols))
                {
                    quantize_row_q4(qr, sr, xr);
                }
                (Dtype::U8, vec![rows, cols / 2], q)
            };
            vec![
                Stored {
                    name: name.to_string(),
                    dtype,
                    shape: vshape,
                    bytes: values,
                },
                Stored {
                    name: format!("{name}_scale"),
                    dtype: Dtype::F16,
                    shape: vec![rows, cols / QK],
                    bytes: scales.iter().flat_map(|s| s.to_le_bytes()).collect(),
                },
            ]
        }
    })
}

/// The default encoding of tensor `name` (`shape`) in a file of dtype `target`: 1-D
/// tensors F32; `wpe.weight` F16 in quantised files; matrices whose columns are not a
/// multiple of 32 F16 instead of quantised; everything else `target`.
pub fn default_encoding(name: &str, shape: &[usize], target: Encoding) -> Encoding {
    if shape.len() < 2 {
        return Encoding::F32;
    }
    if target.is_quantised() && (name == "wpe.weight" || !quantisable(shape)) {
        return Encoding::F16;
    }
    target
}

#[cfg(test)]
mod tests {
    use super::*;
    use folio_kernels::quant::{dequantize_row_q4, dequantize_row_q8};

    fn ramp(n: usize) -> Vec<f32> {
        (0..n)
            .map(|i| ((i * 37 % 101) as f32 - 50.0) / 17.0)
            .collect()
    }

    #[test]
    fn q8_and_q4_round_trip_within_their_step() {
        let (rows, cols) = (3, 64);
        let x = ramp(rows * cols);
        for enc in [Encoding::Q8_0, Encoding::Q4_0] {
            let s = encode("w", &[rows, cols], &x, enc).unwrap();
            assert_eq!(s.len(), 2);
            assert_eq!(s[1].name, "w_scale");
            assert_eq!(s[1].shape, vec![rows, 2]);
            let scales: Vec<f16> = s[1]
                .bytes
                .chunks_exact(2)
                .map(|b| f16::from_le_bytes([b[0], b[1]]))
                .collect();
            let mut out = vec![0f32; rows * cols];
            for r in 0..rows {
                let o = &mut out[r * cols..(r + 1) * cols];
                let sc = &scales[r * 2..r * 2 + 2];
                if enc == Encoding::Q8_0 {
                    assert_eq!(s[0].shape, vec![rows, cols]);
                    let q: Vec<i8> = s[0].bytes[r * cols..(r + 1) * cols]
                        .iter()
                        .map(|&b| b as i8)
                        .collect();
                    dequantize_row_q8(o, &q, sc);
                } else {
                    assert_eq!(s[0].shape, vec![rows, cols / 2]);
                    dequantize_row_q4(o, &s[0].bytes[r * cols / 2..(r + 1) * cols / 2], sc);
                }
            }
            for (i, (a, b)) in x.iter().zip(&out).enumerate() {
                // Half a step, except q4_0's clamp at code 15: values of the sign opposite
                // to the group's extreme can be a whole step off (as llama.cpp's q4_0).
                let d = scales[i / 32].to_f32().abs();
                let bound = if enc == Encoding::Q8_0 { 0.5 } else { 1.0 };
                assert!(
                    (a - b).abs() <= bound * d + 1e-6,
                    "{enc} [{i}] {a} vs {b} (step {d})"
                );
            }
        }
    }

    #[test]
    fn shapes_are_checked() {
        assert!(encode("w", &[2, 3], &[0.0; 5], Encoding::F32).is_err());
        assert!(encode("w", &[2, 48], &[0.0; 96], Encoding::Q8_0).is_err());
        assert!(encode("b", &[64], &[0.0; 64], Encoding::Q4_0).is_err());
        let f = encode("b", &[2], &[1.5, -2.0], Encoding::F32).unwrap();
        assert_eq!(
            f[0].bytes,
            [1.5f32.to_le_bytes(), (-2.0f32).to_le_bytes()].concat()
        );
    }

    #[test]
    fn default_encodings_follow_the_format_rules() {
        use Encoding::*;
        let cases: [(&str, &[usize], Encoding, Encoding); 5] = [
            ("ln_f.bias", &[64], Q4_0, F32),
            ("wpe.weight", &[8, 64], Q8_0, F16),
            ("wpe.weight", &[8, 64], F32, F32),
            ("wte.weight", &[65, 64], Q4_0, Q4_0),
            ("x", &[65, 48], Q8_0, F16),
        ];
        for (name, shape, target, want) in cases {
            assert_eq!(
                default_encoding(name, shape, target),
                want,
                "{name} {target}"
            );
        }
    }
}
