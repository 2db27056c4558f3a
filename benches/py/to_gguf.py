"""Write a folio model as a GGUF file that llama.cpp runs with its `gpt2` architecture.

Every tensor keeps its encoding and its exact values: f32/f16 matrices as they are, q8_0 as
GGUF Q8_0 blocks (f16 scale + 32 int8) and q4_0 as GGUF Q4_0 blocks (f16 scale + 16 bytes,
column j low / j+16 high), repacking format 1's nibbles. 1-D tensors are widened to F32.
There is no tokenizer (`tokenizer.ggml.model = "none"`): token ids are folio's, as they are.
After writing, every quantised tensor is decoded with gguf's own dequantiser and must equal
folio's dequantisation exactly.

    .venv/bin/python benches/py/to_gguf.py MODEL.safetensors OUT.gguf
"""
import argparse
import sys

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

from folio_file import GROUP, FolioFile

FILE_TYPES = {
    "f32": gguf.LlamaFileType.ALL_F32,
    "f16": gguf.LlamaFileType.MOSTLY_F16,
    "q8_0": gguf.LlamaFileType.MOSTLY_Q8_0,
    "q4_0": gguf.LlamaFileType.MOSTLY_Q4_0,
}
LAYER_NAMES = {
    "ln_1": "attn_norm",
    "attn.c_attn": "attn_qkv",
    "attn.c_proj": "attn_output",
    "ln_2": "ffn_norm",
    "mlp.c_fc": "ffn_up",
    "mlp.c_proj": "ffn_down",
}


def gguf_name(name):
    """llama.cpp's gpt2 tensor name for a folio tensor name, or None (not a model tensor)."""
    fixed = {"wte.weight": "token_embd.weight", "wpe.weight": "position_embd.weight",
             "ln_f.weight": "output_norm.weight", "ln_f.bias": "output_norm.bias",
             "lm_head.weight": "output.weight"}
    if name in fixed:
        return fixed[name]
    parts = name.split(".")
    if parts[0] != "h" or len(parts) < 4 or parts[-1] not in ("weight", "bias"):
        return None
    inner = ".".join(parts[2:-1])
    if inner not in LAYER_NAMES:
        return None
    return f"blk.{parts[1]}.{LAYER_NAMES[inner]}.{parts[-1]}"


def blocks(f, name):
    """(raw uint8 (rows, bytes per row), GGML type) of a q8_0 or q4_0 tensor."""
    enc = f.encoding(name)
    rows = f.arrays[name].shape[0]
    d = f.arrays[name + "_scale"].astype("<f2").reshape(rows, -1, 1).view(np.uint8)  # (rows, groups, 2)
    if enc == "q8_0":
        qs = f.arrays[name].reshape(rows, -1, GROUP).view(np.uint8)
        kind = Q.Q8_0
    else:
        n = f.q4_nibbles(name).reshape(rows, -1, GROUP)
        qs = n[:, :, : GROUP // 2] | (n[:, :, GROUP // 2 :] << 4)
        kind = Q.Q4_0
    return np.concatenate([d, qs], axis=-1).reshape(rows, -1), kind


def convert(path, out):
    f = FolioFile(path)
    c = f.cfg
    if c["activation"] != "gelu_tanh":
        raise ValueError(f"{path}: activation {c['activation']!r}; llama.cpp's gpt2 uses gelu_tanh")
    w = gguf.GGUFWriter(out, "gpt2")
    w.add_name(f"folio {c['block_size']}/{c['n_embd']}/{c['n_head']}/{c['n_layer']}")
    w.add_context_length(c["block_size"])
    w.add_embedding_length(c["n_embd"])
    w.add_feed_forward_length(4 * c["n_embd"])
    w.add_block_count(c["n_layer"])
    w.add_head_count(c["n_head"])
    w.add_layer_norm_eps(c["layer_norm_eps"])
    w.add_vocab_size(c["vocab_size"])
    w.add_tokenizer_model("none")
    label = f.meta.get("folio.dtype", "")
    if label in FILE_TYPES:
        w.add_file_type(FILE_TYPES[label])
    checked = 0
    for name in sorted(f.arrays):
        target = gguf_name(name)
        if target is None or (name == "lm_head.weight" and c["tied_embeddings"]):
            continue
        a = f.arrays[name]
        enc = f.encoding(name)
        if a.ndim == 1:
            w.add_tensor(target, a.astype(np.float32))
        elif enc in ("f32", "f16"):
            w.add_tensor(target, a)
        else:
            raw, kind = blocks(f, name)
            back = gguf.quants.dequantize(raw, kind)
            if not np.array_equal(back, f.f32(name)):
                raise AssertionError(f"{name}: {kind.name} blocks do not decode to folio's values")
            checked += 1
            w.add_tensor(target, raw, raw_dtype=kind)
    w.write_header_to_file()
    w.write_kv_data_to_file()
    w.write_tensors_to_file()
    w.close()
    return f, checked


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("out")
    args = ap.parse_args()
    f, checked = convert(args.model, args.out)
    print(f"{args.out}: gpt2, format {f.format} {f.meta.get('folio.dtype', '?')}, "
          f"{checked} quantised tensors decode to folio's values exactly", file=sys.stderr)


if __name__ == "__main__":
    sys.exit(main())
