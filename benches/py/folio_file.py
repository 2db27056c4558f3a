"""Read a folio safetensors file (docs/FORMAT.md), format 1 or 2, into numpy arrays.

Format 1 keeps the config as a JSON string in `folio.config` and packs q4_0 nibbles as
column 2j low / 2j+1 high of byte j. Format 2 keeps each config field in its own
`folio.*` key and packs q4_0 like llama.cpp's Q4_0: byte j of a 32-column group holds
column j in the low nibble and column j+16 in the high nibble.
"""
import json
import struct

import numpy as np

DTYPES = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "U8": np.uint8}
GROUP = 32


class FolioFile:
    def __init__(self, path):
        with open(path, "rb") as f:
            raw = f.read()
        (n,) = struct.unpack("<Q", raw[:8])
        header = json.loads(raw[8 : 8 + n])
        self.meta = header.pop("__metadata__", {})
        data = memoryview(raw)[8 + n :]
        self.arrays = {}
        for name, info in header.items():
            b, e = info["data_offsets"]
            a = np.frombuffer(data[b:e], dtype=DTYPES[info["dtype"]])
            self.arrays[name] = a.reshape(info["shape"])
        self.format = self.meta.get("folio.format")
        if self.format == "1":
            self.cfg = json.loads(self.meta["folio.config"])
            self.vocab = json.loads(self.meta["folio.vocab"])
        elif self.format == "2":
            m = lambda k: self.meta["folio." + k]
            self.cfg = {k: int(m(k)) for k in ("vocab_size", "block_size", "n_embd", "n_head", "n_layer")}
            self.cfg["layer_norm_eps"] = float(m("layer_norm_eps"))
            self.cfg["activation"] = m("activation")
            self.cfg["tied_embeddings"] = {"true": True, "false": False}[m("tied_embeddings")]
            self.vocab = list(m("vocab"))
        else:
            raise ValueError(f"{path}: folio.format {self.format!r} is not 1 or 2")

    def encoding(self, name):
        """f32, f16, q8_0 or q4_0: the encoding of tensor NAME (FORMAT.md, Encodings)."""
        dtype = self.arrays[name].dtype
        return {np.float32: "f32", np.float16: "f16", np.int8: "q8_0", np.uint8: "q4_0"}[dtype.type]

    def q4_nibbles(self, name):
        """(rows, cols) uint8 in 0..16: the unsigned nibble of every weight of a q4_0 tensor."""
        w = self.arrays[name]
        rows = w.shape[0]
        lo, hi = w & 0x0F, w >> 4
        if self.format == "1":
            return np.stack([lo, hi], axis=-1).reshape(rows, -1)
        lo = lo.reshape(rows, -1, GROUP // 2)
        hi = hi.reshape(rows, -1, GROUP // 2)
        return np.concatenate([lo, hi], axis=-1).reshape(rows, -1)

    def f32(self, name):
        """NAME as an f32 array, dequantised from whichever encoding the file holds."""
        enc = self.encoding(name)
        if enc in ("f32", "f16"):
            return self.arrays[name].astype(np.float32)
        if enc == "q8_0":
            q = self.arrays[name].astype(np.float32)
        else:
            q = self.q4_nibbles(name).astype(np.float32) - 8
        s = self.arrays[name + "_scale"].astype(np.float32)
        rows, cols = q.shape
        return (q.reshape(rows, cols // GROUP, GROUP) * s[:, :, None]).reshape(rows, cols)
