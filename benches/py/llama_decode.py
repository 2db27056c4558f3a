"""llama.cpp (llama-cpp-python's low-level API) on a GGUF written by to_gguf.py, one thread.

    llama_decode.py bench MODEL.gguf -n N   per-token decode and prompt timings, one JSON line
    llama_decode.py check MODEL.gguf --tokens 1,2,3 --greedy K
                                            logits after each token, then K greedy tokens

Timings are llama.cpp's own (llama_perf_context): `decode` feeds one token per llama_decode
from an empty cache and reads t_eval_ms for each token (median and mean are reported);
`pp` feeds N tokens as one batch and reports t_p_eval_ms / n_p_eval. `repacked` counts
the matrices llama.cpp rearranged at load for its CPU kernels (Q4_0 into 8-row blocks on AVX2).
"""
import argparse
import ctypes
import json
import statistics
import sys

import llama_cpp as L
import numpy as np

LOG = []


@L.llama_log_callback
def _log(level, text, user_data):
    LOG.append(text.decode("utf-8", "replace"))


class Llama:
    def __init__(self, path):
        L.llama_log_set(_log, None)
        L.llama_backend_init()
        mp = L.llama_model_default_params()
        mp.use_extra_bufts = True  # repacked CPU weights (Q4_0 8-row blocks on AVX2)
        self.model = L.llama_model_load_from_file(path.encode(), mp)
        if not self.model:
            sys.exit(f"llama_decode: cannot load {path}:\n{''.join(LOG[-20:])}")
        self.n_ctx = L.llama_model_n_ctx_train(self.model)
        self.n_vocab = L.llama_vocab_n_tokens(L.llama_model_get_vocab(self.model))
        cp = L.llama_context_default_params()
        cp.n_ctx = cp.n_batch = cp.n_ubatch = self.n_ctx
        cp.n_threads = cp.n_threads_batch = 1
        cp.no_perf = False  # llama.cpp times each decode (llama_perf_context)
        self.ctx = L.llama_init_from_model(self.model, cp)
        if not self.ctx:
            sys.exit(f"llama_decode: cannot create a context:\n{''.join(LOG[-20:])}")
        self.repacked = sum(line.startswith("repack: repack tensor") for line in LOG)

    def clear(self):
        L.llama_memory_clear(L.llama_get_memory(self.ctx), True)
        L.llama_perf_context_reset(self.ctx)

    def decode(self, tokens):
        """Feed TOKENS as one batch at the next positions; the last position's logits."""
        arr = (L.llama_token * len(tokens))(*tokens)
        rc = L.llama_decode(self.ctx, L.llama_batch_get_one(arr, len(tokens)))
        if rc != 0:
            sys.exit(f"llama_decode: llama_decode returned {rc}:\n{''.join(LOG[-20:])}")
        p = L.llama_get_logits_ith(self.ctx, -1)  # synchronises: the timing is complete
        return np.ctypeslib.as_array(p, shape=(self.n_vocab,)).copy()


def bench(m, n):
    tokens = [i % m.n_vocab for i in range(n)]
    m.clear()
    for t in tokens[:8]:  # warm-up: graph allocation, caches, first-touch of the weights
        m.decode([t])
    m.clear()
    m.decode(tokens)
    perf = L.llama_perf_context(m.ctx)
    pp_us = perf.t_p_eval_ms * 1e3 / perf.n_p_eval
    m.clear()
    times, token = [], 0
    for _ in range(n):
        L.llama_perf_context_reset(m.ctx)
        token = int(np.argmax(m.decode([token])))
        perf = L.llama_perf_context(m.ctx)
        if perf.t_p_eval_ms != 0 or perf.t_eval_ms <= 0:
            sys.exit("llama_decode: a single-token decode was not timed as one eval")
        times.append(perf.t_eval_ms * 1e3)
    return dict(decode_us=statistics.median(times), decode_mean_us=statistics.fmean(times),
                pp_us=pp_us, pp_tokens_per_s=1e6 / pp_us, n=n, repacked=m.repacked,
                llama_cpp_python=L.__version__)


def check(m, tokens, greedy):
    m.clear()
    logits = [m.decode([t]).tolist() for t in tokens]
    out, last = [], np.array(logits[-1])
    for _ in range(greedy):
        out.append(int(np.argmax(last)))
        last = m.decode([out[-1]])
    return dict(logits=logits, greedy=out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("mode", choices=["bench", "check"])
    ap.add_argument("model")
    ap.add_argument("-n", type=int, help="bench: tokens (default block_size - 8)")
    ap.add_argument("--tokens", help="check: comma-separated token ids")
    ap.add_argument("--greedy", type=int, default=0, help="check: greedy tokens after --tokens")
    args = ap.parse_args()
    m = Llama(args.model)
    if args.mode == "bench":
        out = bench(m, args.n or m.n_ctx - 8)
    else:
        out = check(m, [int(t) for t in args.tokens.split(",")], args.greedy)
    print(json.dumps(out))


if __name__ == "__main__":
    sys.exit(main())
