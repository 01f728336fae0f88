#!/usr/bin/env python3
"""Train the digits Vision Transformer and write ``sw/data/digits_vit.npz``.

Needs the optional ``train`` dependency (``pip install -e .[train]``: torch, CPU
is enough; the default run takes about a minute on one core). The model is the
one :func:`intformer.sw.model.vit.build_vit` describes, written here in torch
layer for layer; after training the weights are exported, the numpy float
reference and the integer model are run on the held-out split, and their
accuracies go into the JSON metadata beside the weights: the figures tests and
``intformer model eval`` reproduce without torch.

Usage: ``python scripts/train_digits.py [--epochs N] [--seed S] [--out PATH]``
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import numpy as np
import torch
from torch import nn

from intformer.sw.model.graph import run_float
from intformer.sw.model.vit import (
    DEFAULT_WEIGHTS,
    SPLIT_SEED,
    TEST_SIZE,
    ViTConfig,
    build_vit,
    digits_split,
    patchify,
    save_weights,
)


class Layer(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        d = cfg.dim
        self.ln1 = nn.LayerNorm(d, eps=cfg.eps)
        self.q, self.k, self.v, self.o = (nn.Linear(d, d) for _ in range(4))
        self.ln2 = nn.LayerNorm(d, eps=cfg.eps)
        self.f1 = nn.Linear(d, cfg.ffn)
        self.f2 = nn.Linear(cfg.ffn, d)

    def attn(self, x):
        b, t, d = x.shape
        h = self.cfg.heads
        dh = d // h

        def split(y):
            return y.view(b, t, h, dh).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        p = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(dh), dim=-1)
        return self.o((p @ v).transpose(1, 2).reshape(b, t, d))

    def ffn(self, x):
        return self.f2(nn.functional.gelu(self.f1(x)))

    def forward(self, x):
        if self.cfg.norm == "pre":
            x = x + self.attn(self.ln1(x))
            return x + self.ffn(self.ln2(x))
        x = self.ln1(x + self.attn(x))
        return self.ln2(x + self.ffn(x))


class ViT(nn.Module):
    def __init__(self, cfg: ViTConfig):
        super().__init__()
        self.cfg = cfg
        self.patch = nn.Linear(cfg.patch_len, cfg.dim)
        self.cls = nn.Parameter(0.02 * torch.randn(1, cfg.dim))
        self.pos = nn.Parameter(0.02 * torch.randn(cfg.tokens, cfg.dim))
        self.layers = nn.ModuleList(Layer(cfg) for _ in range(cfg.depth))
        self.norm = nn.LayerNorm(cfg.dim, eps=cfg.eps) if cfg.norm == "pre" else None
        self.head = nn.Linear(cfg.dim, 10)

    def forward(self, tokens):
        x = self.patch(tokens)
        x = torch.cat([self.cls.expand(x.shape[0], 1, -1), x], dim=1) + self.pos
        for layer in self.layers:
            x = layer(x)
        x = x[:, 0]
        if self.norm is not None:
            x = self.norm(x)
        return self.head(x)

    def export(self) -> dict[str, np.ndarray]:
        def t(p):
            return p.detach().cpu().numpy().astype(np.float64)
        w = {"patch.w": t(self.patch.weight).T, "patch.b": t(self.patch.bias),
             "cls": t(self.cls), "pos": t(self.pos),
             "head.w": t(self.head.weight).T, "head.b": t(self.head.bias)}
        if self.norm is not None:
            w["norm.gamma"], w["norm.beta"] = t(self.norm.weight), t(self.norm.bias)
        for i, layer in enumerate(self.layers):
            p = f"layers.{i}"
            for name, lin in (("attn.q", layer.q), ("attn.k", layer.k), ("attn.v", layer.v),
                              ("attn.o", layer.o), ("ffn.1", layer.f1), ("ffn.2", layer.f2)):
                w[f"{p}.{name}.w"], w[f"{p}.{name}.b"] = t(lin.weight).T, t(lin.bias)
            for name, ln in (("ln1", layer.ln1), ("ln2", layer.ln2)):
                w[f"{p}.{name}.gamma"], w[f"{p}.{name}.beta"] = t(ln.weight), t(ln.bias)
        return w


def shift_augment(images: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Shift each 8x8 image by up to one pixel in each direction (zero fill)."""
    b = images.shape[0]
    padded = nn.functional.pad(images.view(b, 1, 8, 8), (1, 1, 1, 1))
    dy = torch.randint(0, 3, (b,), generator=gen)
    dx = torch.randint(0, 3, (b,), generator=gen)
    rows = (dy[:, None] + torch.arange(8))[:, :, None]
    cols = (dx[:, None] + torch.arange(8))[:, None, :]
    return padded[torch.arange(b)[:, None, None], 0, rows, cols].reshape(b, 64)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--epochs", type=int, default=300)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--lr", type=float, default=3e-3)
    ap.add_argument("--out", default=str(DEFAULT_WEIGHTS))
    for f in ("patch", "dim", "heads", "ffn", "depth"):
        ap.add_argument(f"--{f}", type=int, default=getattr(ViTConfig(), f))
    ap.add_argument("--norm", default="pre", choices=["pre", "post"])
    args = ap.parse_args()

    torch.manual_seed(args.seed)
    torch.set_num_threads(1)
    gen = torch.Generator().manual_seed(args.seed)
    cfg = ViTConfig(patch=args.patch, dim=args.dim, heads=args.heads, ffn=args.ffn,
                    depth=args.depth, norm=args.norm)
    x_train, x_test, y_train, y_test = digits_split()
    xtr = torch.tensor(x_train / 16.0, dtype=torch.float32)
    ytr = torch.tensor(y_train)
    xte = torch.tensor(patchify(x_test / 16.0, cfg.patch), dtype=torch.float32)

    model = ViT(cfg)
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=0.05)
    batch = 64
    steps = args.epochs * math.ceil(len(xtr) / batch)
    sched = torch.optim.lr_scheduler.OneCycleLR(opt, max_lr=args.lr, total_steps=steps,
                                                pct_start=0.1)
    t0 = time.time()
    for epoch in range(args.epochs):
        model.train()
        perm = torch.randperm(len(xtr), generator=gen)
        for i in range(0, len(xtr), batch):
            idx = perm[i:i + batch]
            imgs = shift_augment(xtr[idx], gen)
            toks = torch.tensor(patchify(imgs.numpy(), cfg.patch))
            loss = nn.functional.cross_entropy(model(toks), ytr[idx], label_smoothing=0.1)
            opt.zero_grad()
            loss.backward()
            opt.step()
            sched.step()
        if (epoch + 1) % 20 == 0 or epoch == args.epochs - 1:
            model.eval()
            with torch.no_grad():
                acc = (model(xte).argmax(1).numpy() == y_test).mean()
            print(f"epoch {epoch + 1:4d} loss {loss.item():.4f} test acc {acc:.4f} "
                  f"({time.time() - t0:.0f} s)", flush=True)

    model.eval()
    with torch.no_grad():
        torch_acc = float((model(xte).argmax(1).numpy() == y_test).mean())
    weights = model.export()
    logits = run_float(build_vit(cfg), weights, patchify(x_test / 16.0, cfg.patch))["logits"]
    numpy_acc = float((logits[:, 0].argmax(1) == y_test).mean())
    print(f"torch float accuracy {torch_acc:.4f}, numpy float reference {numpy_acc:.4f}")
    params = sum(int(np.prod(w.shape)) for w in weights.values())
    save_weights(args.out, cfg, weights, info={
        "parameters": params,
        "split": {"dataset": "sklearn.datasets.load_digits", "test_size": TEST_SIZE,
                  "random_state": SPLIT_SEED, "stratify": True,
                  "train": len(y_train), "test": len(y_test)},
        "training": {"epochs": args.epochs, "seed": args.seed, "lr": args.lr,
                     "optimizer": "AdamW(weight_decay=0.05), one-cycle", "batch": batch,
                     "augment": "random shift by up to 1 pixel", "label_smoothing": 0.1,
                     "torch": torch.__version__},
        "float_accuracy_torch": torch_acc,
        "float_accuracy_numpy": numpy_acc,
    })
    print(f"wrote {args.out} ({params} parameters)")
    from intformer.sw.model.evaluate import evaluate
    r = evaluate(args.out)
    meta_path = Path(args.out).with_suffix(".json")
    meta = json.loads(meta_path.read_text())
    meta.update({"integer_accuracy": r["integer_accuracy"], "agreement": r["agreement"]})
    meta_path.write_text(json.dumps(meta, indent=2) + "\n")
    print(f"held-out: float {r['float_accuracy']:.4f}, integer {r['integer_accuracy']:.4f}, "
          f"agreement {r['agreement']:.4f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
