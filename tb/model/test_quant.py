"""Quantization helpers: per-channel weight scales, calibration, integer constants."""

import dataclasses

import numpy as np
import pytest

from intformer.sw.golden.requant import MAX_SHIFT, MULT_WIDTH
from intformer.sw.model.encoder import encoder_layer, random_encoder_weights
from intformer.sw.model.graph import Graph, run_float
from intformer.sw.model.integer import OP_KINDS, quantize_values
from intformer.sw.quant import (
    activation_scale,
    calibrate,
    quantize,
    quantize_multipliers,
    quantize_weight,
    weight_scales,
)


def small_encoder(rng, norm="pre"):
    g = Graph()
    x = g.add("input", "x", shape=(9, 16))
    encoder_layer(g, x, "l0", dim=16, heads=2, ffn=32, norm=norm)
    return g, random_encoder_weights("l0", dim=16, ffn=32, rng=rng)


def test_weight_scales_per_output_channel():
    w = np.array([[1.0, -0.5, 0.0], [-2.54, 0.25, 0.0]])
    s = weight_scales(w)
    np.testing.assert_allclose(s, [2.54 / 127, 0.5 / 127, 1.0])
    q, s2 = quantize_weight(w)
    np.testing.assert_array_equal(s, s2)
    assert q.dtype == np.int64
    np.testing.assert_array_equal(q[:, 0], [50, -127])
    np.testing.assert_array_equal(q[:, 1], [-127, 64])  # 63.5 rounds away from zero
    np.testing.assert_array_equal(q[:, 2], [0, 0])


def test_quantize_weight_error_within_half_step():
    rng = np.random.default_rng(1)
    w = rng.standard_normal((24, 40)) * rng.uniform(0.01, 3, size=40)
    q, s = quantize_weight(w)
    assert np.all(np.abs(q) <= 127)
    assert np.all(np.abs(q).max(axis=0) == 127)  # each channel uses its full range
    assert np.all(np.abs(q * s - w) <= s / 2 + 1e-12)


def test_quantize_values_rounding_and_saturation():
    np.testing.assert_array_equal(quantize_values([0.5, -0.5, 1.5, -2.5, 0.49, 200, -200], 1.0),
                                  [1, -1, 2, -3, 0, 127, -128])


def test_weight_scale_errors():
    with pytest.raises(ValueError, match=r"Weight matrix must be 2-D \(in, out\), "
                                         r"not shape \(3,\)"):
        weight_scales(np.ones(3))
    with pytest.raises(ValueError, match="Weight matrix must be finite"):
        weight_scales(np.array([[np.nan]]))
    with pytest.raises(ValueError, match="Calibrated range must be non-negative and "
                                         "finite, not -1"):
        activation_scale(-1.0)
    assert activation_scale(0.0) == 1.0
    assert activation_scale(12.7) == pytest.approx(0.1)


def test_quantize_multipliers_match_scales():
    scales = np.array([0.3, 1e-3, 0.75, 2.5e-5])
    m, s = quantize_multipliers(scales)
    assert np.all((m >= 1 << (MULT_WIDTH - 1)) & (m < 1 << MULT_WIDTH))
    assert np.all((s >= 0) & (s <= MAX_SHIFT))
    np.testing.assert_allclose(m * 2.0 ** -s, scales, rtol=2.0 ** -MULT_WIDTH)


def test_calibrate_max_and_percentile():
    rng = np.random.default_rng(2)
    g, w = small_encoder(rng)
    x = rng.standard_normal((20, 9, 16))
    amax = calibrate(g, w, x, batch=7)  # batches must not change the result
    env = run_float(g, w, x)
    for name, v in env.items():
        assert amax[name] == pytest.approx(np.abs(v).max())
    p = calibrate(g, w, x, percentile=99.0)
    assert all(p[n] <= amax[n] for n in amax)
    assert p["x"] == pytest.approx(np.percentile(np.abs(x), 99.0))
    with pytest.raises(ValueError, match=r"Calibration percentile must be in \(0, 100\], not 0"):
        calibrate(g, w, x, percentile=0)
    with pytest.raises(ValueError, match=r"Calibration inputs must be a non-empty batch"):
        calibrate(g, w, x[:0])


def _ints_only(value, where):
    """Every constant of an integer op is an integer (no float reaches the kernels)."""
    if dataclasses.is_dataclass(value):
        for f in dataclasses.fields(value):
            _ints_only(getattr(value, f.name), f"{where}.{f.name}")
    elif isinstance(value, dict):
        for k, v in value.items():
            _ints_only(v, f"{where}.{k}")
    elif isinstance(value, (tuple, list)):
        for i, v in enumerate(value):
            _ints_only(v, f"{where}[{i}]")
    elif isinstance(value, np.ndarray):
        assert np.issubdtype(value.dtype, np.integer), where
    else:
        assert isinstance(value, (bool, int, np.integer)), f"{where} = {value!r}"


@pytest.mark.parametrize("norm", ["pre", "post"])
def test_integer_model_constants_are_integers(norm):
    rng = np.random.default_rng(3)
    g, w = small_encoder(rng, norm)
    model = quantize(g, w, rng.standard_normal((16, 9, 16)))
    assert [op.kind for op in model.ops if op.kind != "slice"].count("softmax") == 2
    for op in model.ops:
        assert op.kind in OP_KINDS
        _ints_only(op.consts, op.output)
        if op.kind == "gemm" and "multiplier" in op.consts:
            m = op.consts["multiplier"]
            assert m.shape == op.consts["shift"].shape == (model.tensors[op.output].shape[1],)
            assert np.all((m > 0) & (m < 1 << MULT_WIDTH))
    for t in model.tensors.values():
        if t.is_const:
            assert np.issubdtype(t.data.dtype, np.integer)
            lo, hi = (-128, 127) if t.dtype == "int8" else (-(1 << 31), (1 << 31) - 1)
            assert t.data.min() >= lo and t.data.max() <= hi, t.name
    # Per-output-channel weights, per-tensor activations, INT32 attention scores.
    assert np.ndim(model.tensors["l0.attn.q.w"].scale) == 1
    assert np.ndim(model.tensors["l0.attn.q"].scale) == 0
    assert model.tensors["l0.attn.h0.scores"].dtype == "int32"
    assert model.tensors["l0.attn.h0.probs"].scale == 1 / 128


def test_concat_inputs_take_the_concat_scale():
    rng = np.random.default_rng(4)
    g, w = small_encoder(rng)
    model = quantize(g, w, rng.standard_normal((8, 9, 16)))
    ctx = model.tensors["l0.attn.ctx"].scale
    assert model.tensors["l0.attn.h0.ctx"].scale == ctx
    assert model.tensors["l0.attn.h1.ctx"].scale == ctx


def test_concat_of_a_slice_is_rejected():
    g = Graph()
    x = g.add("input", "x", shape=(4, 8))
    a = g.add("slice", "a", [x], axis=1, start=0, stop=4)
    g.add("concat", "c", [a, a], axis=0)
    with pytest.raises(ValueError, match=r"Concatenation 'c' cannot set the scale of 'a' "
                                         r"\(a slice\)"):
        quantize(g, {}, np.ones((2, 4, 8)))
