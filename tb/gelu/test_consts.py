"""The constants ports of the vector units hold every value the golden *_params
functions produce, field for field (names and widths), for random realistic scales."""

import dataclasses

import numpy as np

from intformer.sw.golden import gelu_params, layernorm_params, residual_params, softmax_params


def fits(members: dict, values: dict):
    from amaranth.hdl import Shape

    assert set(members) == set(values), (set(members), set(values))
    for name, value in values.items():
        shape = Shape.cast(members[name])
        lo = -(1 << (shape.width - 1)) if shape.signed else 0
        hi = (1 << (shape.width - (1 if shape.signed else 0))) - 1
        assert lo <= value <= hi, f"{name} = {value} does not fit {shape}"


def logu(g, lo, hi):
    return float(np.exp(g.uniform(np.log(lo), np.log(hi))))


def test_consts_hold_params():
    from intformer.hw.gelu import GeluConsts
    from intformer.hw.layernorm import GammaBetaLayout, LayerNormConsts
    from intformer.hw.residual import ResidualConsts
    from intformer.hw.softmax import SoftmaxConsts

    g = np.random.default_rng(10)
    for _ in range(300):
        fits(GeluConsts().members, dataclasses.asdict(gelu_params(logu(g, 1e-7, 1.0),
                                                          logu(g, 1e-4, 1.0))))
        fits(SoftmaxConsts().members, dataclasses.asdict(softmax_params(logu(g, 1e-9, 2.5))))
        fits(ResidualConsts().members, dataclasses.asdict(residual_params(
            logu(g, 1e-3, 1.0), logu(g, 1e-3, 1.0), logu(g, 1e-3, 1.0))))
        n = int(g.integers(1, 300))
        p = layernorm_params(logu(g, 1e-3, 1.0), g.normal(1, logu(g, 0.01, 3), n),
                             g.normal(0, logu(g, 0.01, 3), n), logu(g, 1e-3, 1.0),
                             float(g.choice([0.0, 1e-6, 1e-5, 1e-3])))
        fits(LayerNormConsts().members, {"eps_q": p.eps_q, "shift": p.shift})
        elems = {name: field.shape.elem_shape for name, field in GammaBetaLayout(1)}
        for gamma, beta in zip(p.gamma_q, p.beta_q, strict=True):
            fits(elems, {"gamma": gamma, "beta": beta})
