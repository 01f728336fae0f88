"""A small PyTorch Vision Transformer for the importer's tests (needs torch; imported
only by tests that skip without it). Saved whole with ``torch.save``, it is loaded back
by class name, so it lives in an importable module."""

import torch
from torch import nn

__all__ = ["TinyViT"]


class TinyViT(nn.Module):
    """Patch embedding, class token, position embedding, one pre-norm block with
    ``nn.MultiheadAttention`` and a GELU FFN, final LayerNorm, a classifier on the
    class token. Takes (batch, patches, patch_len)."""

    def __init__(self, patches=8, patch_len=4, dim=16, heads=2, ffn=32, classes=3):
        super().__init__()
        self.embed = nn.Linear(patch_len, dim)
        self.cls = nn.Parameter(torch.randn(1, 1, dim))
        self.pos = nn.Parameter(torch.randn(1, patches + 1, dim))
        self.ln1 = nn.LayerNorm(dim)
        self.attn = nn.MultiheadAttention(dim, heads, batch_first=True)
        self.ln2 = nn.LayerNorm(dim)
        self.ffn = nn.Sequential(nn.Linear(dim, ffn), nn.GELU(), nn.Linear(ffn, dim))
        self.norm = nn.LayerNorm(dim)
        self.head = nn.Linear(dim, classes)

    def forward(self, x):
        x = self.embed(x)
        x = torch.cat([self.cls.expand(x.shape[0], -1, -1), x], dim=1) + self.pos
        h = self.ln1(x)
        x = x + self.attn(h, h, h, need_weights=False)[0]
        x = x + self.ffn(self.ln2(x))
        return self.head(self.norm(x[:, 0]))
