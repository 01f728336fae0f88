"""``intformer compile MODEL --calib DATA.npz --out DIR``: a user's model as a program.

Imports ``MODEL`` (``.onnx``, or ``.pt``/``.pth`` with torch installed), quantizes it
with the calibration inputs (npz array ``x``, shape (N, tokens, dim)), compiles it for
the configuration's accelerator and writes into ``DIR``:

``stream.bin``    the command stream
``image.bin``     the memory image (inputs, constants, room for every result), loaded
                  at the DMA window's base
``program.json``  the input, the output and every tensor: byte offset in the image,
                  rows, columns, row stride, type and scale; the ops; the sizes
``manifest.json`` the design's manifest, which the host driver reads

The input slot holds the first array of ``--inputs`` if given, else zeros; a host
writes each quantized input (``round(x / scale)``, saturated to INT8) there.
"""

from __future__ import annotations

import json

from .cli import add_config_args, config_from_args, path_arg

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    parser.add_argument("model", type=path_arg, metavar="MODEL",
                        help="the model: .onnx, or .pt/.pth (a whole torch module)")
    parser.add_argument("--calib", type=path_arg, required=True, metavar="DATA.npz",
                        help="calibration inputs: array x of shape (N, tokens, dim)")
    parser.add_argument("--inputs", type=path_arg, default=None, metavar="DATA.npz",
                        help="put the first of these inputs (array x) into the image")
    parser.add_argument("--out", type=path_arg, required=True, metavar="DIR",
                        help="output folder")
    parser.add_argument("--percentile", type=float, default=None, metavar="P",
                        help="calibrate activation ranges at this percentile instead of "
                             "the maximum")
    parser.add_argument("--json", action="store_true", help="print the summary as JSON")
    add_config_args(parser)


def run(args) -> int:
    import numpy as np

    from .usermodel import UserModel, design_manifest, program_json

    config = config_from_args(args)
    um = UserModel(args.model, args.calib, args.inputs, images=1 if args.inputs else None,
                   percentile=args.percentile)
    man = design_manifest(config)
    if not um.xs:
        um.xs = [np.zeros((1, *um.model.tensors[um.model.input].shape), np.int64)]
    um.compile(man)
    prog, tensors = um.progs[0]
    desc = program_json(um, prog, tensors, man)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "stream.bin").write_bytes(prog.assemble())
    (args.out / "image.bin").write_bytes(bytes(prog.image))
    (args.out / "program.json").write_text(json.dumps(desc, indent=1) + "\n")
    (args.out / "manifest.json").write_text(json.dumps(man, indent=1) + "\n")
    summary = {"model": um.name, "ops": len(um.model.ops), "commands": desc["commands"],
               "stream_bytes": desc["stream_bytes"], "image_bytes": desc["image_bytes"],
               "input": desc["input"], "output": desc["output"], "out": str(args.out)}
    if args.json:
        print(json.dumps(summary, indent=1))
        return 0
    i, o = desc["input"], desc["output"]
    print(f"{um.name}: {len(um.model.ops)} integer ops, {desc['commands']} commands")
    print(f"input   {i['name']} {i['rows']}x{i['cols']} int8 at {i['offset']:#x}, "
          f"scale {i['scale']:.6g}")
    print(f"output  {o['name']} {o['rows']}x{o['cols']} {o['dtype']} at {o['offset']:#x}, "
          f"scale {o['scale']:.6g}")
    for f in ("stream.bin", "image.bin", "program.json", "manifest.json"):
        print(f"wrote   {args.out / f} ({(args.out / f).stat().st_size} bytes)")
    return 0
