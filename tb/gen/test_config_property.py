"""Property: any configuration either is refused by Config with a one-line TypeError or
ValueError naming a field, or builds hardware: the components accept it and (for the
small designs drawn here) it elaborates into Verilog that passes the lint gate.

Three tests: every field drawn anywhere in and around its range, checked against the
components' constructors (fast, many examples); small designs generated and linted (a
few examples in the default set); and a wider sweep of those behind ``slow``.
"""

import dataclasses
import re
import warnings
from datetime import timedelta

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from intformer.hw.config import BASE, Config, preset

FIELDS = [f.name for f in dataclasses.fields(Config)]
#: Names an error may cite: a field, or a derived figure of the manifest.
NAMES = set(FIELDS) | set(BASE.derived())


def _value(name):
    """Any value for field ``name``: its default's neighbours, powers of 2 and their
    neighbours up to 2**48, negative numbers, and now and then the wrong type."""
    default = getattr(BASE, name)
    if isinstance(default, bool):
        return st.one_of(st.booleans(), st.booleans(), st.just(1), st.just("yes"))
    near = st.integers(default // 2, default * 2)
    powers = st.integers(0, 48).flatmap(
        lambda e: st.sampled_from([2 ** e - 1, 2 ** e, 2 ** e + 1]))
    return st.one_of(near, near, near, powers, st.integers(-3, 0), st.just(True),
                     st.just(8.0))


@st.composite
def any_settings(draw):
    """Changes to one to three fields of the default preset, anywhere in or around their
    range."""
    names = draw(st.lists(st.sampled_from(FIELDS), min_size=1, max_size=3, unique=True))
    return {name: draw(_value(name)) for name in names}


def _small(wide: bool):
    """Field strategies of small designs: arrays of at most 4 (8 with ``wide``) PEs a
    side, memories of a few KiB, most units left out so that one generates in seconds.
    Values next to the bounds (3-byte rows, 33-bit addresses, narrow accumulators) make
    some of them invalid."""
    side = [1, 2, 4, 3] + ([8, 6] if wide else [])
    rare = [False] * (2 if wide else 5) + [True]
    return dict(
        array_rows=st.sampled_from(side), array_cols=st.sampled_from(side),
        operand_width=st.sampled_from([8, 8, 4, 2, 16, 7]),
        acc_width=st.sampled_from([32, 32, 24, 20, 40, 48, 16]),
        dsp_packing=st.sampled_from(rare),
        requant_mult_width=st.sampled_from([16, 8, 12, 17]),
        axi_data_width=st.sampled_from([32, 64, 128] + ([256, 512] if wide else [])),
        axi_addr_width=st.sampled_from([32, 16, 20, 33]),
        axi_id_width=st.sampled_from([1, 2, 4]),
        axi_max_burst=st.sampled_from([1, 4, 8, 16, 32]),
        axi_max_outstanding=st.sampled_from([1, 2, 4]),
        csr_addr_width=st.sampled_from([8, 12, 16]),
        spad_bytes=st.sampled_from([1024, 2048, 4096, 3072, 1000]
                                   + ([16384, 65536] if wide else [])),
        spad_banks=st.sampled_from([2, 4]),
        acc_bytes=st.sampled_from([512, 1024, 2048, 4096, 1536]
                                  + ([16384, 32768] if wide else [])),
        acc_banks=st.sampled_from([1, 2, 4]),
        vector_lanes=st.sampled_from([2, 1, 4] + ([8] if wide else [])),
        vector_max_row=st.sampled_from([16, 32, 64, 12]),
        has_softmax=st.sampled_from(rare), has_gelu=st.sampled_from(rare),
        has_layernorm=st.sampled_from(rare), has_residual=st.sampled_from(rare),
        has_requant=st.sampled_from(rare), perf_counters=st.sampled_from(rare),
        cmd_queue_depth=st.sampled_from([0, 2, 4]),
        dep_queue_depth=st.sampled_from([1, 2]),
    )


def small_settings(wide: bool):
    """Changes to :func:`small_base`: each field of :func:`_small` or not."""
    return st.fixed_dictionaries({}, optional=_small(wide))


def small_base() -> Config:
    """The ``tiny`` preset without units or performance counters, which generates in a
    third of the time (the strategies put units back now and then)."""
    return preset("tiny").replace(has_softmax=False, has_gelu=False, has_layernorm=False,
                                  has_residual=False, has_requant=False, perf_counters=False)


def config_or_error(changes, base=BASE):
    """The Config of ``changes`` to ``base``, or None when Config refuses them as it
    should: a TypeError or ValueError of one line that names a field or a derived
    figure."""
    try:
        return base.replace(**changes)
    except (TypeError, ValueError) as e:
        message = str(e)
        assert message and "\n" not in message, message
        assert set(re.findall(r"[a-z0-9_]+", message)) & NAMES, message
        event("refused")
        return None


@settings(max_examples=200, deadline=timedelta(seconds=5), database=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(any_settings())
def test_any_config_is_refused_or_builds(changes):
    config = config_or_error(changes)
    if config is not None:
        from intformer.gen.top import top_component
        event("built")
        # The components check their parameters when built: none may refuse a Config.
        top_component(config)


def generates_lint_clean(config, tmp_path_factory):
    from intformer.gen.emit import generate
    from intformer.gen.lint import verilator_lint
    from intformer.gen.top import TOP_NAME
    event("generated")
    out = tmp_path_factory.mktemp("property")
    with warnings.catch_warnings():
        # Amaranth warns about unused elaboratables of units a design leaves out.
        warnings.simplefilter("ignore")
        files = generate(config, out)
    result = verilator_lint([files["verilog"]], top=TOP_NAME)
    assert result.ok, (config, result.output[-3000:])


@settings(max_examples=3, deadline=timedelta(seconds=120), database=None, derandomize=True,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(changes=small_settings(wide=False))
def test_small_config_is_refused_or_generates_lint_clean(changes, tmp_path_factory):
    config = config_or_error(changes, small_base())
    if config is not None:
        generates_lint_clean(config, tmp_path_factory)


@pytest.mark.slow
@settings(max_examples=60, deadline=timedelta(seconds=600), database=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(changes=small_settings(wide=True))
def test_config_sweep_is_refused_or_generates_lint_clean(changes, tmp_path_factory):
    config = config_or_error(changes, small_base())
    if config is not None:
        generates_lint_clean(config, tmp_path_factory)
