"""``intformer bench dma``: the benchmark runs, checks its data, reaches the
bandwidth target on a short transfer, and rejects sizes it cannot move."""

import json

import pytest


@pytest.mark.icarus_only
def test_bench_dma_measures(sim):
    from intformer.gen.bench.dma import measure
    from intformer.hw.config import preset

    row = measure(preset("default"), nbytes=8192, sim=sim)
    assert row["peak_bytes_per_cycle"] == 8
    for kind in ("read", "write", "read_concurrent", "write_concurrent"):
        assert row[kind]["cycles"] >= 8192 // 8
        assert row[kind]["efficiency"] >= 0.9, row


def test_bench_dma_rejects_bad_size():
    from intformer.gen.bench.dma import measure
    from intformer.hw.config import preset

    with pytest.raises(ValueError, match=r"Benchmark size must be a positive multiple of 8 "
                                         r"bytes \(the bus width\), not 12"):
        measure(preset("default"), nbytes=12)


def test_bench_dma_cli_errors(capsys):
    from intformer.gen.cli import main

    assert main(["bench", "dma", "--widths", "wide"]) == 2
    assert "--widths takes bus widths or 'config', not 'wide'" in capsys.readouterr().err
    assert main(["bench", "dma", "--widths", "48"]) == 2
    assert "axi_data_width 48 is not one of" in capsys.readouterr().err


@pytest.mark.icarus_only
def test_bench_dma_json_shape(sim, capsys):
    from intformer.gen.cli import main

    assert main(["bench", "dma", "--preset", "tiny", "--widths", "config", "--bytes", "2048",
                 "--json", "--sim", sim]) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["data_width"] for r in rows] == [32]
    assert rows[0]["read"]["efficiency"] > 0.5
