"""Per-token decode latency of a folio model in eager PyTorch, the baseline folio is measured against.

Reads a folio safetensors file (any encoding: q8_0/q4_0 are dequantised to f32, since eager
PyTorch on CPU has no int8/int4 GEMV), builds the same GPT with an f32 KV cache, and times
single-token decode steps on one thread, like `folio bench`.

    .venv/bin/python benches/py/pytorch_decode.py MODEL [-n N] [--threads 1] [--json]
"""
import argparse
import json
import math
import struct
import statistics
import sys
import time

import numpy as np
import torch


def load(path):
    with open(path, "rb") as f:
        raw = f.read()
    (n,) = struct.unpack("<Q", raw[:8])
    header = json.loads(raw[8 : 8 + n])
    meta = header.pop("__metadata__", {})
    data = memoryview(raw)[8 + n :]
    dtypes = {"F32": np.float32, "F16": np.float16, "I8": np.int8, "U8": np.uint8}
    arrays = {}
    for name, info in header.items():
        b, e = info["data_offsets"]
        arrays[name] = np.frombuffer(data[b:e], dtype=dtypes[info["dtype"]]).reshape(info["shape"])
    # Format 2 (docs/FORMAT.md): flat string metadata.
    cfg = {k: int(meta["folio." + k]) for k in ("vocab_size", "block_size", "n_embd", "n_head", "n_layer")}
    cfg["layer_norm_eps"] = float(meta["folio.layer_norm_eps"])
    cfg["tied_embeddings"] = meta["folio.tied_embeddings"] == "true"
    return cfg, arrays


def weight(arrays, name):
    """f32 matrix of NAME in whichever of the four encodings the file holds."""
    w = arrays[name]
    if w.dtype == np.float32 or w.dtype == np.float16:
        return torch.from_numpy(w.astype(np.float32))
    s = arrays[name + "_scale"].astype(np.float32)
    if w.dtype == np.int8:
        q = w.astype(np.float32)
    else:  # q4_0: byte j of a 32-column group holds column j (low nibble) and j + 16 (high)
        g = w.reshape(w.shape[0], -1, 16)
        lo = (g & 0x0F).astype(np.float32) - 8
        hi = (g >> 4).astype(np.float32) - 8
        q = np.concatenate([lo, hi], axis=-1).reshape(w.shape[0], w.shape[1] * 2)
    rows, cols = q.shape
    return torch.from_numpy((q.reshape(rows, cols // 32, 32) * s[:, :, None]).reshape(rows, cols))


class Gpt:
    def __init__(self, cfg, a):
        f = lambda n: torch.from_numpy(a[n].astype(np.float32))
        self.cfg = cfg
        self.wte = weight(a, "wte.weight")
        self.wpe = weight(a, "wpe.weight")
        self.head = self.wte if cfg["tied_embeddings"] else weight(a, "lm_head.weight")
        self.layers = []
        for i in range(cfg["n_layer"]):
            p = f"h.{i}."
            self.layers.append(
                dict(
                    ln1=(f(p + "ln_1.weight"), f(p + "ln_1.bias")),
                    attn=(weight(a, p + "attn.c_attn.weight"), f(p + "attn.c_attn.bias")),
                    proj=(weight(a, p + "attn.c_proj.weight"), f(p + "attn.c_proj.bias")),
                    ln2=(f(p + "ln_2.weight"), f(p + "ln_2.bias")),
                    fc=(weight(a, p + "mlp.c_fc.weight"), f(p + "mlp.c_fc.bias")),
                    fc2=(weight(a, p + "mlp.c_proj.weight"), f(p + "mlp.c_proj.bias")),
                )
            )
        self.lnf = (f("ln_f.weight"), f("ln_f.bias"))
        T, C = cfg["block_size"], cfg["n_embd"]
        self.k = torch.zeros(cfg["n_layer"], T, C)
        self.v = torch.zeros(cfg["n_layer"], T, C)

    @torch.inference_mode()
    def step(self, token, pos):
        cfg = self.cfg
        C, H = cfg["n_embd"], cfg["n_head"]
        hs = C // H
        eps = cfg["layer_norm_eps"]
        F = torch.nn.functional
        x = self.wte[token] + self.wpe[pos]
        for i, L in enumerate(self.layers):
            h = F.layer_norm(x, (C,), *L["ln1"], eps)
            q, k, v = F.linear(h, *L["attn"]).split(C)
            self.k[i, pos] = k
            self.v[i, pos] = v
            K = self.k[i, : pos + 1].view(pos + 1, H, hs).transpose(0, 1)  # (H, t, hs)
            V = self.v[i, : pos + 1].view(pos + 1, H, hs).transpose(0, 1)
            att = torch.softmax((K @ q.view(H, hs, 1)).squeeze(-1) / math.sqrt(hs), dim=-1)
            y = (att.unsqueeze(1) @ V).reshape(C)
            x = x + F.linear(y, *L["proj"])
            h = F.layer_norm(x, (C,), *L["ln2"], eps)
            x = x + F.linear(F.gelu(F.linear(h, *L["fc"]), approximate="tanh"), *L["fc2"])
        return F.linear(F.layer_norm(x, (C,), *self.lnf, eps), self.head)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("model")
    ap.add_argument("-n", type=int, default=256, help="decode steps to time")
    ap.add_argument("--threads", type=int, default=1)
    ap.add_argument("--json", action="store_true")
    args = ap.parse_args()
    torch.set_num_threads(args.threads)
    cfg, arrays = load(args.model)
    gpt = Gpt(cfg, arrays)
    T = cfg["block_size"]
    times = []
    token = 0
    for i in range(args.n + 8):
        pos = i % T
        t0 = time.perf_counter_ns()
        logits = gpt.step(token, pos)
        times.append((time.perf_counter_ns() - t0) / 1e3)
        token = int(torch.argmax(logits))
    times = sorted(times[8:])  # the first steps warm the allocator and caches
    q = lambda p: times[min(len(times) - 1, int(p * len(times)))]
    out = dict(p50_us=statistics.median(times), p90_us=q(0.9), p99_us=q(0.99), threads=args.threads,
               torch=torch.__version__, n=len(times))
    if args.json:
        print(json.dumps(out))
    else:
        print(f"pytorch {torch.__version__} eager, {args.threads} thread(s): "
              f"p50 {out['p50_us']:.1f} us/token, p90 {out['p90_us']:.1f}, p99 {out['p99_us']:.1f}")


if __name__ == "__main__":
    sys.exit(main())
