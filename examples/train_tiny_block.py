"""Swap the attention of a tiny pre-norm transformer block for gka.nn.GatedKalmaNet and train a few steps on CPU.

    pip install .  &&  python examples/train_tiny_block.py

Task: a toy associative recall; each sequence lists (key, value) token pairs and the model must reproduce the
value after each key. The attention-based block is built first, then its attention is replaced by a GKA layer.
"""
import argparse

import torch
from torch import nn

import gka


class Block(nn.Module):
    def __init__(self, d, heads):
        super().__init__()
        self.norm1, self.norm2 = nn.LayerNorm(d), nn.LayerNorm(d)
        self.attn = nn.MultiheadAttention(d, heads, batch_first=True)
        self.mlp = nn.Sequential(nn.Linear(d, 4 * d), nn.GELU(), nn.Linear(4 * d, d))

    def mix(self, h):
        if isinstance(self.attn, gka.nn.GatedKalmaNet):
            return self.attn(h)[0]
        T = h.shape[1]
        mask = torch.triu(torch.ones(T, T, dtype=torch.bool, device=h.device), 1)
        return self.attn(h, h, h, attn_mask=mask, need_weights=False)[0]

    def forward(self, x):
        x = x + self.mix(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class TinyLM(nn.Module):
    def __init__(self, vocab, d, heads):
        super().__init__()
        self.emb = nn.Embedding(vocab, d)
        self.block = Block(d, heads)
        self.head = nn.Linear(d, vocab)

    def forward(self, tokens):
        return self.head(self.block(self.emb(tokens)))


def recall_batch(batch, pairs, vocab, gen):
    keys = torch.randint(0, vocab // 2, (batch, pairs), generator=gen)
    vals = torch.randint(vocab // 2, vocab, (batch, pairs), generator=gen)
    seq = torch.stack([keys, vals], -1).reshape(batch, 2 * pairs)
    return seq[:, :-1], seq[:, 1:]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=60)
    ap.add_argument("--d", type=int, default=64)
    args = ap.parse_args()
    torch.manual_seed(0)
    vocab, heads = 32, 4
    model = TinyLM(vocab, args.d, heads)
    # The swap: same width, GKA heads of dim d / heads, everything else as the paper's defaults.
    cfg = gka.nn.GatedKalmaNetConfig(hidden_size=args.d, num_heads=heads, head_dim=args.d // heads, num_iter=10,
                                     chunk_size=32)
    model.block.attn = gka.nn.GatedKalmaNet(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=3e-3)
    gen = torch.Generator().manual_seed(1)
    for step in range(args.steps):
        x, y = recall_batch(16, 16, vocab, gen)
        loss = nn.functional.cross_entropy(model(x).reshape(-1, vocab), y.reshape(-1))
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 10 == 0 or step == args.steps - 1:
            print(f"step {step:3d}  loss {loss.item():.4f}")


if __name__ == "__main__":
    main()
