//! Stage 4: the key/value cache, `(n_layer, 2, block_size, n_embd)` f16, in caller memory.
//!
//! Layer `l`'s keys are the `(block_size, n_embd)` plane `2l`, its values plane `2l + 1`;
//! head `h` of position `t` is `plane[t * n_embd + h * hs ..][..hs]`, the layout
//! `folio_kernels::attention_f16` reads with `stride = n_embd`.
use folio_kernels::f16;

/// The KV cache of one session.
#[derive(Debug)]
pub struct KvCache<'s> {
    /// (n_layer, 2, block_size, n_embd)
    data: &'s mut [f16],
    /// `block_size * n_embd`: one plane.
    plane: usize,
    /// `n_embd`.
    n_embd: usize,
}

impl<'s> KvCache<'s> {
    /// Wrap `data` (`n_layer * 2 * block_size * n_embd` elements).
    pub fn new(data: &'s mut [f16], block_size: usize, n_embd: usize) -> Self {
        KvCache {
            data,
            plane: block_size.saturating_mul(n_embd),
            n_embd,
        }
    }

    /// Store position `pos`'s key `k (C)` and value `v (C)` of layer `layer`, rounded to f16.
    pub fn store(&mut self, layer: usize, pos: usize, k: &[f32], v: &[f32]) {
        let c = self.n_embd;
        let at = |plane: usize| {
            plane
                .checked_mul(self.plane)?
                .checked_add(pos.checked_mul(c)?)
        };
        for (plane, src) in [(2 * layer, k), (2 * layer + 1, v)] {
            if let Some(dst) = at(plane).and_then(|a| self.data.get_mut(a..a.checked_add(c)?)) {
                folio_kernels::f32_to_f16(dst, src);
            }
        }
    }

    /// Layer `layer`'s key and value planes, `(block_size, n_embd)` each (empty if out of range).
    pub fn layer(&self, layer: usize) -> (&[f16], &[f16]) {
        let plane = |p: usize| {
            p.checked_mul(self.plane)
                .and_then(|a| self.data.get(a..a.checked_add(self.plane)?))
                .unwrap_or(&[])
        };
        (plane(2 * layer), plane(2 * layer + 1))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn planes_do_not_alias() {
        let mut mem = [f16::ZERO; 2 * 2 * 3 * 4]; // (2, 2, 3, 4)
        let mut kv = KvCache::new(&mut mem, 3, 4);
        kv.store(1, 2, &[1.0, 2.0, 3.0, 4.0], &[-1.0, -2.0, -3.0, -4.0]);
        kv.store(0, 0, &[9.0; 4], &[8.0; 4]);
        kv.store(2, 0, &[5.0; 4], &[5.0; 4]); // out of range: ignored
        let (k1, v1) = kv.layer(1);
        assert_eq!(
            k1[8..12]
                .iter()
                .map(|h| h.to_f32())
                .collect::<std::vec::Vec<_>>(),
            [1.0, 2.0, 3.0, 4.0]
        );
        assert_eq!(v1[8].to_f32(), -1.0);
        assert!(k1[..8].iter().all(|h| h.to_f32() == 0.0));
        let (k0, v0) = kv.layer(0);
        assert_eq!(
            (k0[0].to_f32(), v0[0].to_f32(), k0[4].to_f32()),
            (9.0, 8.0, 0.0)
        );
        assert!(kv.layer(2).0.is_empty());
    }
}
