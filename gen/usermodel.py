"""A user's model as a workload for ``intformer compile`` and ``intformer run --model``.

:class:`UserModel` imports the model file (:mod:`intformer.sw.importer`), quantizes
it with the user's calibration inputs (:func:`intformer.sw.quant.quantize`), and
compiles each input for a design like :class:`intformer.gen.run.Digits` does for the
digits test images, so ``intformer run`` compares every tensor the same way.
:func:`program_json` describes one compiled program: where each tensor lies in the
memory image, its shape, type and scale.
"""

from __future__ import annotations

from pathlib import Path

from .cli import UserError
from .run import Digits

__all__ = ["UserModel", "design_manifest", "program_json", "float_agreement", "run_model"]


def design_manifest(config) -> dict:
    """The manifest of the accelerator for ``config`` (no Verilog is made)."""
    from ..hw.top import Accelerator
    from .emit import manifest
    from .run import _unused
    top = Accelerator(config)
    man = manifest(config, top)
    _unused(top)
    return man


class UserModel:
    """A model file quantized with calibration inputs, and the inputs to run.

    Parameters
    ----------
    model : path
        ``.onnx``, or ``.pt``/``.pth`` (a whole module saved with ``torch.save``).
    calib : path
        npz with ``x`` of shape (N, tokens, dim): the calibration inputs.
    inputs : path or None
        npz with ``x`` of shape (N, tokens, dim): the inputs to run; None runs none.
    images : int or None
        Run only the first ``images`` inputs.
    percentile : float or None
        Calibrate ranges at this percentile of magnitudes instead of the maximum.

    Raises
    ------
    UserError
        If a file is missing or malformed, the model uses something the importer
        does not support, or the inputs do not have the model's shape.
    """

    def __init__(self, model, calib, inputs=None, *, images: int | None = None,
                 percentile: float | None = None):
        import numpy as np

        from ..sw.importer import load_inputs, load_model
        from ..sw.quant import quantize
        self.path = Path(model)
        calib_x = load_inputs(calib, what="Calibration")
        self.imported = load_model(model, shape=calib_x.shape[1:])
        shape = tuple(self.imported.input_shape)
        self._check(calib_x, shape, "--calib", calib)
        self.model = quantize(self.imported.graph, self.imported.weights, calib_x,
                              percentile=percentile)
        self.float_inputs = np.zeros((0, *shape))
        if inputs is not None:
            x = load_inputs(inputs, what="Inputs")
            self._check(x, shape, "--inputs", inputs)
            if images is not None:
                if images < 1:
                    raise UserError(f"--images must be at least 1, not {images}")
                if images > len(x):
                    raise UserError(f"--images must be at most {len(x)} (the inputs in "
                                    f"{str(inputs)!r}), not {images}")
                x = x[:images]
            self.float_inputs = x
        self.xs = [self.model.quantize_input(self.float_inputs[k:k + 1])
                   for k in range(len(self.float_inputs))]
        #: No labels: the prediction compared is the integer model's own argmax.
        self.labels = [int(np.argmax(self.model.run(x)[self.model.output][0]))
                       for x in self.xs]
        self.progs: list = []

    @staticmethod
    def _check(x, shape, option, path) -> None:
        if tuple(x.shape[1:]) != shape:
            raise UserError(f"{option} {str(path)!r}: inputs of shape {tuple(x.shape[1:])}, "
                            f"but the model takes (tokens, dim) = {shape}")

    @property
    def name(self) -> str:
        return self.path.name

    # The same as for the digits workload (they read only model and progs).
    missing_units = Digits.missing_units
    jobs = Digits.jobs
    need_bytes = Digits.need_bytes

    def compile(self, manifest: dict) -> None:
        """Compile every input for the design ``manifest``."""
        from ..sw.compile import compile_model
        missing = self.missing_units(manifest)
        if missing:
            raise UserError(f"this configuration cannot run {self.name}: it has no unit "
                            f"for {', '.join(missing)} (the default preset has them all)")
        try:
            self.progs = [compile_model(manifest, self.model, x[0]) for x in self.xs]
        except ValueError as e:
            raise UserError(f"{self.name} does not fit this configuration: {e}") from e


def _scale(s):
    import numpy as np
    return float(s) if np.ndim(s) == 0 else [float(v) for v in np.asarray(s).reshape(-1)]


def program_json(um: UserModel, prog, tensors: dict, manifest: dict) -> dict:
    """A description of one compiled program of ``um`` for a host: the input and
    output, every tensor (byte offset in the image, rows, columns, row stride, type,
    scale: real value = integer x scale, per column for per-channel weights), the
    ops, and the sizes of the stream and image."""
    model = um.model

    def entry(name):
        t, it = tensors[name], model.tensors[name]
        return {"name": name, "offset": t.offset, "rows": t.rows, "cols": t.cols,
                "stride": t.stride, "dtype": str(t.dtype), "const": it.is_const,
                "scale": _scale(it.scale)}
    return {
        "model": um.name,
        "design": {"config": manifest["config"], "command_bytes":
                   manifest["commands"]["bytes"]},
        "input": entry(model.input), "output": entry(model.output),
        "commands": len(prog.commands), "stream_bytes": len(prog.assemble()),
        "image_bytes": len(prog.image),
        "ops": model.summary(),
        "tensors": [entry(n) for n in tensors if n in model.tensors],
    }


def float_agreement(um: UserModel) -> dict:
    """The integer model against the float graph on the run's inputs: the output's
    cosine similarity and largest error in real units, the lowest cosine over every
    tensor, and (for outputs of one row) how often the argmax agrees."""
    import numpy as np

    from ..sw.model.evaluate import layer_errors
    from ..sw.model.graph import run_float
    g, m = um.imported.graph, um.model
    fenv = run_float(g, um.imported.weights, um.float_inputs)
    ienv = m.run(np.concatenate(um.xs))
    rows = layer_errors(g, m, fenv, ienv)
    out = next(r for r in rows if r["tensor"] == m.output)
    worst = min(rows, key=lambda r: r["cosine"])
    f = fenv[g.output].reshape(len(um.xs), -1)
    q = ienv[m.output].reshape(len(um.xs), -1)
    return {"output_cosine": out["cosine"], "output_max_abs": out["max_abs"],
            "output_float_max": out["float_max"],
            "worst_cosine": worst["cosine"], "worst_tensor": worst["tensor"],
            "argmax_agreement": float((f.argmax(1) == q.argmax(1)).mean())}


def run_model(args) -> int:
    """``intformer run --model MODEL --calib DATA.npz --inputs DATA.npz``."""
    import json
    import time

    from ..hw.axi import FlatPorts
    from ..hw.simtop import SimTop
    from .cli import config_from_args
    from .emit import manifest as make_manifest
    from .run import (
        BASE,
        _mem_bytes,
        _unused,
        build_verilator,
        compare_images,
        run_images,
        run_images_icarus,
        summarize,
    )

    if args.calib is None or args.inputs is None:
        raise UserError("--model needs --calib DATA.npz and --inputs DATA.npz")
    config = config_from_args(args)
    if args.images < 1:
        raise UserError(f"--images must be at least 1, not {args.images}")
    # The first --images inputs, or all of them when there are fewer.
    um = UserModel(args.model, args.calib, args.inputs, percentile=None)
    um.float_inputs = um.float_inputs[:args.images]
    um.xs, um.labels = um.xs[:args.images], um.labels[:args.images]
    top = FlatPorts(SimTop(config, mem_bytes=min(1 << 20, 1 << config.axi_addr_width)),
                    flatten=("s_axil",))
    man = make_manifest(config, top)
    _unused(top)
    um.compile(man)
    mem_bytes = _mem_bytes(BASE + um.need_bytes)
    log = None if args.json else print
    if args.sim == "verilator":
        binary, man, build_s = build_verilator(config, mem_bytes=mem_bytes, log=log)
        results, sim = run_images(binary, man, um.jobs, work=binary.parent.parent / "work")
    else:
        t0 = time.monotonic()
        results, sim, man = run_images_icarus(config, um.jobs, mem_bytes=mem_bytes)
        build_s = time.monotonic() - t0 - sim["seconds"]
    per_image, totals = compare_images(um, results)
    figures = summarize(man, per_image, totals)
    for r in per_image:
        del r["label"]
    # The inputs have no labels: "accuracy" would only restate the argmax agreement.
    del figures["accuracy"], figures["golden_accuracy"]
    t = um.model.tensors
    report = {
        "model": um.name, "config": args.config and str(args.config) or (args.preset or
                                                                          "default"),
        "input": [t[um.model.input].name, *t[um.model.input].shape],
        "output": [t[um.model.output].name, *t[um.model.output].shape],
        "ops": len(um.model.ops), "commands": len(um.progs[0][0].commands),
        **figures, "float": float_agreement(um),
        "sim": args.sim, "sim_cycles": sim["cycles"], "sim_seconds": sim["seconds"],
        "build_seconds": round(build_s, 1), "per_image": per_image,
    }
    n = report["images"]
    if args.json:
        print(json.dumps(report, indent=1))
    else:
        f = report["float"]
        print(f"{um.name}: {n} inputs, {report['ops']} integer ops, {report['commands']} "
              f"commands, on {report['array']}, {args.sim}")
        print(f"bit-exact           {report['bit_exact']}/{n} (every tensor vs the integer "
              f"golden model)")
        print(f"cycles per image    {report['cycles_per_image']:.0f} "
              f"({report['macs_per_image']:.0f} MACs, utilization "
              f"{report['mac_utilization']:.3f} over the run, "
              f"{report['gemm_phase_utilization']:.3f} in GEMM phases)")
        print(f"integer vs float    output cosine {f['output_cosine']:.5f}, max |err| "
              f"{f['output_max_abs']:.4g} (of {f['output_float_max']:.4g}); lowest "
              f"cosine {f['worst_cosine']:.5f} ({f['worst_tensor']})")
        for r in per_image:
            if not r["bit_exact"]:
                print(f"input {r['index']}: mismatched {', '.join(r['mismatched'])}")
    return 0 if report["bit_exact"] == n else 1
