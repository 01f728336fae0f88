"""A small Vision Transformer for scikit-learn's bundled 8x8 handwritten digits.

The image (pixel values 0..16, scaled to [0, 1]) is cut into ``patch x patch``
patches, each flattened row-major into a token; a linear patch embedding maps
tokens to ``dim``; a learned class token is put in front (row 0) and a learned
position embedding added; ``depth`` encoder layers follow; for pre-norm a final
LayerNorm; the head is a linear layer on the class token's row.

The held-out split is fixed: :func:`digits_split` uses
``train_test_split(test_size=0.2, random_state=0, stratify=y)`` on
``load_digits()`` (1437 training, 360 test images).
"""

from __future__ import annotations

import json
import zipfile
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np

from .encoder import NORMS, encoder_layer, encoder_weight_shapes
from .graph import Graph

__all__ = ["ViTConfig", "build_vit", "vit_weight_shapes", "patchify", "digits_split",
           "load_weights", "save_weights", "DEFAULT_WEIGHTS", "SPLIT_SEED", "TEST_SIZE"]

#: The trained model kept in the repository.
DEFAULT_WEIGHTS = Path(__file__).resolve().parent.parent / "data" / "digits_vit.npz"
#: ``random_state`` and ``test_size`` of the fixed, stratified held-out split.
SPLIT_SEED = 0
TEST_SIZE = 0.2
IMAGE = 8
CLASSES = 10


@dataclass(frozen=True)
class ViTConfig:
    """Shape of the digits ViT.

    Parameters
    ----------
    patch : int
        Patch side in pixels; divides 8.
    dim, heads, ffn, depth : int
        Embedding width, attention heads (``dim % heads == 0``), FFN hidden width,
        encoder layers.
    norm : str
        ``"pre"`` or ``"post"``.
    eps : float
        LayerNorm epsilon.
    """

    patch: int = 2
    dim: int = 32
    heads: int = 4
    ffn: int = 64
    depth: int = 2
    norm: str = "pre"
    eps: float = 1e-5

    def __post_init__(self):
        if not isinstance(self.patch, int) or self.patch <= 0 or IMAGE % self.patch:
            raise ValueError(f"Patch size must divide {IMAGE}, not {self.patch!r}")
        for what, v in (("dim", self.dim), ("heads", self.heads), ("ffn", self.ffn),
                        ("depth", self.depth)):
            if not isinstance(v, int) or v <= 0:
                raise ValueError(f"ViT {what} must be a positive integer, not {v!r}")
        if self.dim % self.heads:
            raise ValueError(f"ViT dim {self.dim} is not a multiple of heads {self.heads}")
        if self.norm not in NORMS:
            raise ValueError(f"ViT norm {self.norm!r} is not one of {', '.join(NORMS)}")

    @property
    def patches(self) -> int:
        return (IMAGE // self.patch) ** 2

    @property
    def patch_len(self) -> int:
        return self.patch * self.patch

    @property
    def tokens(self) -> int:
        """Sequence length: the patches plus the class token."""
        return self.patches + 1


def patchify(images, patch: int):
    """(batch, 64) or (batch, 8, 8) images -> (batch, patches, patch*patch) tokens."""
    x = np.asarray(images).reshape(-1, IMAGE, IMAGE)
    n = IMAGE // patch
    x = x.reshape(-1, n, patch, n, patch).transpose(0, 1, 3, 2, 4)
    return x.reshape(-1, n * n, patch * patch)


def digits_split():
    """The fixed held-out split: ``(x_train, x_test, y_train, y_test)``, pixels 0..16."""
    from sklearn.datasets import load_digits
    from sklearn.model_selection import train_test_split
    d = load_digits()
    return train_test_split(d.data, d.target, test_size=TEST_SIZE, random_state=SPLIT_SEED,
                            stratify=d.target)


def vit_weight_shapes(cfg: ViTConfig) -> dict[str, tuple[int, ...]]:
    """The name and shape of every weight the ViT reads."""
    shapes = {"patch.w": (cfg.patch_len, cfg.dim), "patch.b": (cfg.dim,),
              "cls": (1, cfg.dim), "pos": (cfg.tokens, cfg.dim)}
    for i in range(cfg.depth):
        shapes.update(encoder_weight_shapes(f"layers.{i}", dim=cfg.dim, ffn=cfg.ffn))
    if cfg.norm == "pre":
        shapes.update({"norm.gamma": (cfg.dim,), "norm.beta": (cfg.dim,)})
    shapes.update({"head.w": (cfg.dim, CLASSES), "head.b": (CLASSES,)})
    return shapes


def build_vit(cfg: ViTConfig) -> Graph:
    """The ViT as a graph; its input ``image`` is the patchified image in [0, 1]."""
    g = Graph()
    x = g.add("input", "image", shape=(cfg.patches, cfg.patch_len))
    x = g.add("linear", "patch", [x], weight="patch.w", bias="patch.b", out_features=cfg.dim)
    cls = g.add("param", "cls", shape=(1, cfg.dim), key="cls")
    x = g.add("concat", "tokens", [cls, x], axis=0)
    pos = g.add("param", "pos", shape=(cfg.tokens, cfg.dim), key="pos")
    x = g.add("add", "embed", [x, pos])
    for i in range(cfg.depth):
        x = encoder_layer(g, x, f"layers.{i}", dim=cfg.dim, heads=cfg.heads, ffn=cfg.ffn,
                          norm=cfg.norm, eps=cfg.eps)
    x = g.add("slice", "cls_out", [x], axis=0, start=0, stop=1)
    if cfg.norm == "pre":
        x = g.add("layernorm", "norm", [x], gamma="norm.gamma", beta="norm.beta", eps=cfg.eps)
    g.add("linear", "logits", [x], weight="head.w", bias="head.b", out_features=CLASSES)
    return g


def save_weights(path, cfg: ViTConfig, weights: dict, info: dict | None = None) -> None:
    """Write ``weights`` (float32) and ``cfg`` into one npz; ``info`` goes into a
    JSON file of the same stem for people to read."""
    path = Path(path)
    shapes = vit_weight_shapes(cfg)
    arrays = {k: np.asarray(weights[k], np.float32).reshape(shapes[k]) for k in shapes}
    np.savez_compressed(path, meta=np.array(json.dumps({"config": asdict(cfg)})), **arrays)
    if info is not None:
        path.with_suffix(".json").write_text(
            json.dumps({"config": asdict(cfg), **info}, indent=2) + "\n")


def load_weights(path=DEFAULT_WEIGHTS) -> tuple[ViTConfig, dict[str, np.ndarray]]:
    """Read a weights file written by :func:`save_weights`.

    Raises
    ------
    ValueError
        If the file is not an npz, has no readable configuration, lacks a tensor
        or holds one of the wrong shape; the message names the file and tensor.
    """
    path = Path(path)
    if not path.is_file():
        raise ValueError(f"Weights file {str(path)!r} does not exist")
    if not zipfile.is_zipfile(path):
        raise ValueError(f"Weights file {str(path)!r} is not an npz file")
    try:
        npz = np.load(path, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as e:
        raise ValueError(f"Weights file {str(path)!r} is not a readable npz file: {e}") from e
    with npz:
        if "meta" not in npz.files:
            raise ValueError(f"Weights file {str(path)!r} lacks tensor 'meta'")
        try:
            cfg = ViTConfig(**json.loads(str(npz["meta"]))["config"])
        except (KeyError, TypeError, json.JSONDecodeError) as e:
            raise ValueError(f"Weights file {str(path)!r} has a malformed 'meta': {e}") from e
        weights = {}
        for name, shape in vit_weight_shapes(cfg).items():
            if name not in npz.files:
                raise ValueError(f"Weights file {str(path)!r} lacks tensor {name!r}")
            w = npz[name]
            if w.shape != shape:
                raise ValueError(f"Weights file {str(path)!r}: tensor {name!r} has shape "
                                 f"{w.shape}, not {shape}")
            if not np.all(np.isfinite(w)):
                raise ValueError(f"Weights file {str(path)!r}: tensor {name!r} is not finite")
            weights[name] = w.astype(np.float64)
    return cfg, weights
