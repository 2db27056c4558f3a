"""Seconds per training step of PyTorch's own nanoGPT-style GPT, the reference the exporter's tch
training step is measured against (scripts/train-step-compare.sh).

The same shape and step as `exporter train`: pre-norm blocks, GELU (tanh), tied embeddings,
dropout, cross-entropy, global-norm clipping at 1.0 and torch.optim.AdamW (weight decay 0.1 on
2-D parameters, betas 0.9/0.99), on random batches of a 65-character vocabulary (the step's
cost does not depend on the text). Attention is nanoGPT's `F.scaled_dot_product_attention`.

    .venv/bin/python benches/py/torch_train_step.py --batch 32 --block 64 --embd 128 --head 4 \
        --layer 4 [--dropout 0] [--steps 60] [--warmup 10] [--threads 0] [--device cpu]
Prints one JSON object: the per-step seconds after warm-up, their median and mean.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Block(nn.Module):
    def __init__(self, c, h, dropout):
        super().__init__()
        self.h, self.dropout = h, dropout
        self.ln_1, self.ln_2 = nn.LayerNorm(c), nn.LayerNorm(c)
        self.c_attn, self.attn_proj = nn.Linear(c, 3 * c), nn.Linear(c, c)
        self.c_fc, self.mlp_proj = nn.Linear(c, 4 * c), nn.Linear(4 * c, c)
        self.drop = nn.Dropout(dropout)

    def forward(self, x):
        b, t, c = x.shape
        q, k, v = self.c_attn(self.ln_1(x)).split(c, dim=2)
        heads = lambda z: z.view(b, t, self.h, c // self.h).transpose(1, 2)
        y = F.scaled_dot_product_attention(
            heads(q), heads(k), heads(v), is_causal=True,
            dropout_p=self.dropout if self.training else 0.0)
        x = x + self.drop(self.attn_proj(y.transpose(1, 2).contiguous().view(b, t, c)))
        return x + self.drop(self.mlp_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh")))


class Gpt(nn.Module):
    def __init__(self, v, t, c, h, n_layer, dropout):
        super().__init__()
        self.wte, self.wpe = nn.Embedding(v, c), nn.Embedding(t, c)
        self.blocks = nn.ModuleList(Block(c, h, dropout) for _ in range(n_layer))
        self.ln_f, self.drop = nn.LayerNorm(c), nn.Dropout(dropout)

    def forward(self, idx, targets):
        pos = torch.arange(idx.shape[1], device=idx.device)
        x = self.drop(self.wte(idx) + self.wpe(pos))
        for blk in self.blocks:
            x = blk(x)
        logits = self.ln_f(x) @ self.wte.weight.t()
        return F.cross_entropy(logits.view(-1, logits.shape[-1]), targets.view(-1))


def main():
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    for name in ("batch", "block", "embd", "head", "layer"):
        p.add_argument(f"--{name}", type=int, required=True)
    p.add_argument("--dropout", type=float, default=0.0)
    p.add_argument("--steps", type=int, default=60)
    p.add_argument("--warmup", type=int, default=10)
    p.add_argument("--threads", type=int, default=0)
    p.add_argument("--device", default="cpu")
    a = p.parse_args()
    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(1337)
    dev = torch.device(a.device)
    vocab = 65
    model = Gpt(vocab, a.block, a.embd, a.head, a.layer, a.dropout).to(dev)
    decay = [q for q in model.parameters() if q.dim() >= 2]
    rest = [q for q in model.parameters() if q.dim() < 2]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": 0.1}, {"params": rest, "weight_decay": 0.0}],
        lr=1e-3, betas=(0.9, 0.99), eps=1e-8)
    model.train()
    times = []
    for i in range(a.warmup + a.steps):
        x = torch.randint(vocab, (a.batch, a.block), device=dev)
        y = torch.randint(vocab, (a.batch, a.block), device=dev)
        if dev.type == "cuda":
            torch.cuda.synchronize()
        t0 = time.perf_counter()
        loss = model(x, y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        loss.item()  # the exporter reads the loss every step too
        if dev.type == "cuda":
            torch.cuda.synchronize()
        if i >= a.warmup:
            times.append(time.perf_counter() - t0)
    print(json.dumps({"torch": torch.__version__, "threads": torch.get_num_threads(),
                      "median": statistics.median(times), "mean": statistics.mean(times),
                      "step_times": times}))


if __name__ == "__main__":
    main()
