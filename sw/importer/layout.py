"""Where every element of an imported activation lives among the float graph's tensors.

An imported model moves data with N-D reshapes, transposes and gathers (heads split
out of the feature axis and back), while :class:`~intformer.sw.model.graph.Graph`
tensors are 2-D. :class:`Layout` gives every element of every graph tensor one
integer id (tensor ``t`` of ``rows x cols`` owns ``base[t] .. base[t] + rows*cols``,
row-major), so an N-D activation is an int64 array of ids and every data movement
is the same numpy call on those ids. An operation that computes
(:meth:`Layout.resolve`) turns a 2-D block of ids back into one graph tensor: the
tensor itself, a ``slice`` of it (rows or columns), or a ``concat`` of such blocks.
"""

from __future__ import annotations

import numpy as np

from intformer.sw.model.graph import Graph

__all__ = ["Layout", "Act", "LayoutError"]


class LayoutError(ValueError):
    """A data movement the graph cannot express (no slice or concatenation gives it)."""


class Act:
    """An activation: ``ids`` (int64, any shape) times a pending constant ``scale``
    (a multiplication by a constant not yet folded into a matmul)."""

    def __init__(self, ids: np.ndarray, scale: float = 1.0):
        self.ids = np.asarray(ids, dtype=np.int64)
        self.scale = float(scale)

    @property
    def shape(self) -> tuple[int, ...]:
        return self.ids.shape


class Layout:
    """The float graph being built and the ids of its tensors' elements.

    Parameters
    ----------
    graph : Graph
        The graph nodes are appended to.
    weights : dict
        Receives the constant tensors (weights, biases, parameters) by key.
    """

    def __init__(self, graph: Graph, weights: dict):
        self.graph = graph
        self.weights = weights
        self._bases: list[int] = []
        self._names: list[str] = []
        self._next = 0
        self._cache: dict = {}
        #: Tensor name -> the id of the import step that produced it.
        self.origin: dict[str, object] = {}

    def unique(self, hint: str) -> str:
        """A name not used yet in the graph or the weights, derived from ``hint``."""
        base = hint.strip("/").replace("/", ".") or "t"
        name, k = base, 2
        while name in self.graph.shapes or name in self.weights:
            name, k = f"{base}_{k}", k + 1
        return name

    def add(self, kind: str, hint: str, inputs=(), *, shape=None, origin=None,
            **attrs) -> np.ndarray:
        """Append a node (named after ``hint``) and return the ids of its output."""
        name = self.graph.add(kind, self.unique(hint), list(inputs), shape=shape, **attrs)
        self.origin[name] = origin
        return self.ids(name, new=True)

    def ids(self, name: str, *, new: bool = False) -> np.ndarray:
        """The (rows, cols) ids of graph tensor ``name``."""
        rows, cols = self.graph.shapes[name]
        if new:
            self._bases.append(self._next)
            self._names.append(name)
            self._next += rows * cols
        base = self._bases[self._names.index(name)]
        return np.arange(base, base + rows * cols, dtype=np.int64).reshape(rows, cols)

    def const(self, value, hint: str) -> np.ndarray:
        """A ``param`` node holding ``value`` (flattened to 2-D over its last axis);
        its ids in ``value``'s shape."""
        value = np.asarray(value, dtype=np.float64)
        if value.ndim == 0:
            value = value.reshape(1, 1)
        flat = value.reshape(-1, value.shape[-1])
        key = self.unique(hint)
        self.weights[key] = flat
        return self.add("param", key, shape=flat.shape, key=key).reshape(value.shape)

    def owner(self, ids: np.ndarray) -> np.ndarray:
        """Index of the tensor owning each id."""
        return np.searchsorted(np.asarray(self._bases), ids, side="right") - 1

    def name_of(self, index: int) -> str:
        return self._names[index]

    def _block(self, ids: np.ndarray):
        """``(name, r0, c0)`` if 2-D ``ids`` is one rectangle of one tensor, else None."""
        own = self.owner(ids)
        if not np.all(own == own.flat[0]):
            return None
        t = int(own.flat[0])
        rows, cols = self.graph.shapes[self._names[t]]
        local = ids - self._bases[t]
        r, c = local // cols, local % cols
        m, n = ids.shape
        r0, c0 = int(r[0, 0]), int(c[0, 0])
        if (np.array_equal(r, np.broadcast_to(r0 + np.arange(m)[:, None], (m, n)))
                and np.array_equal(c, np.broadcast_to(c0 + np.arange(n)[None, :], (m, n)))):
            return self._names[t], r0, c0
        return None

    def is_block(self, ids: np.ndarray) -> bool:
        return self._block(ids) is not None

    def whole(self, ids: np.ndarray) -> str | None:
        """The tensor whose every element ``ids`` (2-D) is, in order; else None."""
        b = self._block(ids)
        if b is None or b[1:] != (0, 0) or self.graph.shapes[b[0]] != ids.shape:
            return None
        return b[0]

    def _runs(self, ids: np.ndarray, axis: int) -> list[tuple[int, int]]:
        """Split ``ids`` along ``axis`` where it stops being one rectangle."""
        runs, start = [], 0
        for i in range(1, ids.shape[axis] + 1):
            if i < ids.shape[axis]:
                sl = [slice(None), slice(None)]
                sl[axis] = slice(start, i + 1)
                if self.is_block(ids[tuple(sl)]):
                    continue
            runs.append((start, i))
            start = i
        return runs

    def resolve(self, ids: np.ndarray, hint: str) -> str:
        """The graph tensor holding exactly the 2-D block ``ids``: the tensor, a slice,
        or a concatenation of blocks (created once, then reused).

        Raises
        ------
        LayoutError
            If no slices and concatenations give the block.
        """
        ids = np.asarray(ids, dtype=np.int64)
        assert ids.ndim == 2
        key = (ids.shape, ids.tobytes())
        if key in self._cache:
            return self._cache[key]
        b = self._block(ids)
        if b is not None:
            name, r0, c0 = b
            rows, cols = self.graph.shapes[name]
            m, n = ids.shape
            if n != cols:
                name = self._slice(name, 1, c0, c0 + n)
            if m != rows:
                name = self._slice(name, 0, r0, r0 + m)
        else:
            name = None
            for axis in (1, 0):
                runs = self._runs(ids, axis)
                if len(runs) > 1 and all(self._block(self._cut(ids, axis, r)) is not None
                                         for r in runs):
                    parts = [self.resolve(self._cut(ids, axis, r), hint) for r in runs]
                    ckey = ("concat", axis, *parts)
                    if ckey not in self._cache:
                        out = self.graph.add("concat", self.unique(f"{hint}.concat"), parts,
                                             axis=axis)
                        self.ids(out, new=True)
                        self._cache[ckey] = out
                    name = self._cache[ckey]
                    break
            if name is None:
                raise LayoutError(f"{hint}: the data movement before it gives a "
                                  f"{ids.shape[0]}x{ids.shape[1]} operand that is no row or "
                                  f"column slice or concatenation of earlier tensors")
        self._cache[key] = name
        return name

    def resolve_transposed(self, ids: np.ndarray, hint: str) -> tuple[str, bool]:
        """``(name, transposed)``: ``ids`` itself, or its transpose, as a graph tensor."""
        try:
            return self.resolve(ids, hint), False
        except LayoutError:
            return self.resolve(ids.T, hint), True

    @staticmethod
    def _cut(ids, axis, run):
        sl = [slice(None), slice(None)]
        sl[axis] = slice(*run)
        return ids[tuple(sl)]

    def _slice(self, name: str, axis: int, start: int, stop: int) -> str:
        key = ("slice", name, axis, start, stop)
        if key not in self._cache:
            which = "rows" if axis == 0 else "cols"
            out = self.graph.add("slice", self.unique(f"{name}.{which}{start}_{stop}"),
                                 [name], axis=axis, start=start, stop=stop)
            self.ids(out, new=True)
            self._cache[key] = out
        return self._cache[key]
