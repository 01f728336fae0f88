"""The ``intformer`` command line.

Every user error (bad configuration, unknown preset, malformed file, missing
tool) ends as one line on stderr and exit status 2, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
from pathlib import Path

from intformer.hw.config import PRESETS, Config, preset

__all__ = ["main", "config_from_args", "add_config_args", "UserError", "name_arg", "path_arg",
           "setting_arg"]


class UserError(Exception):
    """An error in what the user asked for; printed as one line."""


class _Parser(argparse.ArgumentParser):
    """An argument parser whose errors are one line on stderr and exit status 2."""

    def error(self, message):
        self.exit(2, f"intformer: error: {message} (see `{self.prog} --help`)\n")


def name_arg(text: str) -> str:
    """An argument that names something: not empty, no surrounding blanks."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must not be empty")
    if text != text.strip():
        raise argparse.ArgumentTypeError(f"has blanks around it: {text!r}")
    return text


def path_arg(text: str) -> Path:
    """A file or folder argument: not empty (``Path("")`` would be the current folder)."""
    if not text.strip():
        raise argparse.ArgumentTypeError("must be a path, not empty")
    return Path(text)


def setting_arg(text: str) -> tuple[str, str]:
    """A ``--set KEY=VALUE`` argument, as ``(KEY, VALUE)``."""
    key, sep, value = text.partition("=")
    if not sep or not key.strip() or not value.strip():
        raise argparse.ArgumentTypeError(f"takes KEY=VALUE, not {text!r}")
    return key.strip(), value


def add_config_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("configuration")
    group.add_argument("--preset", type=name_arg, default=None,
                       help="start from this preset (default: default)")
    group.add_argument("--config", type=path_arg, default=None, metavar="FILE",
                       help="TOML configuration file (its `preset` key picks the base)")
    group.add_argument("--set", type=setting_arg, action="append", default=[],
                       metavar="KEY=VALUE", help="change one field; repeatable")


def config_from_args(args) -> Config:
    if args.config is not None and args.preset is not None:
        raise UserError("Give --preset or --config, not both")
    if args.config is not None:
        from .configfile import load
        config = load(args.config)
    else:
        config = preset("default" if args.preset is None else args.preset)
    settings = dict(args.set)
    return config.with_settings(settings) if settings else config


def cmd_presets(args) -> int:
    rows = []
    for name, (config, description) in PRESETS.items():
        rows.append({"name": name, "array": f"{config.array_rows}x{config.array_cols}",
                     "macs_per_cycle": config.macs_per_cycle, "bus_bits": config.axi_data_width,
                     "spad_kib": config.spad_bytes // 1024, "acc_kib": config.acc_bytes // 1024,
                     "lanes": config.vector_lanes, "units": ",".join(config.units),
                     "description": description})
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'preset':<12} {'array':>6} {'MAC/cyc':>7} {'bus':>4} {'spad':>7} {'acc':>7} "
          f"{'lanes':>5}  description")
    for r in rows:
        print(f"{r['name']:<12} {r['array']:>6} {r['macs_per_cycle']:>7} {r['bus_bits']:>4} "
              f"{r['spad_kib']:>5}Ki {r['acc_kib']:>5}Ki {r['lanes']:>5}  {r['description']}")
    return 0


def cmd_generate(args) -> int:
    from .emit import generate
    config = config_from_args(args)
    files = generate(config, args.out)
    if args.save_config:
        from .configfile import save
        save(config, args.out / "config.toml")
    for kind, path in files.items():
        print(f"{kind:<9} {path}")
    return 0


#: Subcommands provided by other modules: name -> (module, help). Each module has
#: ``add_arguments(parser)`` and ``run(args) -> int``.
PLUGINS = {
    "synth": ("intformer.gen.synth", "synthesize for an FPGA family and report resources/Fmax"),
    "bench": ("intformer.gen.bench", "run a benchmark in simulation"),
    "model": ("intformer.gen.model", "evaluate the digits transformer (float vs integer)"),
    "run": ("intformer.gen.run", "run the digits transformer on the generated RTL"),
    "compile": ("intformer.gen.compilecmd", "compile your ONNX or PyTorch encoder into a "
                "command stream and memory image"),
    "board": ("intformer.gen.board", "build, program and run a board (icebreaker, ulx3s, "
                                     "arty_a7)"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="intformer", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)

    p = sub.add_parser("presets", help="list the presets with their key figures")
    p.add_argument("--json", action="store_true")
    p.set_defaults(func=cmd_presets)

    p = sub.add_parser("generate", help="emit Verilog, manifest.json and intformer.h")
    add_config_args(p)
    p.add_argument("--out", type=path_arg, default=Path("build/generated"), help="output folder")
    p.add_argument("--save-config", action="store_true", help="also write config.toml")
    p.set_defaults(func=cmd_generate)

    for name, (module, help_text) in PLUGINS.items():
        try:
            mod = importlib.import_module(module)
        except ModuleNotFoundError as e:
            if e.name == module:
                continue
            raise
        p = sub.add_parser(name, help=help_text)
        mod.add_arguments(p)
        p.set_defaults(func=mod.run)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    try:
        return args.func(args)
    except (UserError, ValueError, TypeError) as e:
        print(f"intformer: error: {e}", file=sys.stderr)
        return 2
    except OSError as e:
        # An output folder that is a file, a full disk, no permission: not a bug.
        where = f": {e.filename}" if e.filename else ""
        print(f"intformer: error: {e.strerror or e}{where}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("intformer: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    # Under `python -m`, this file is `__main__`, a second copy of the module whose
    # UserError plug-ins do not raise; run the one they import.
    from intformer.gen.cli import main as _main
    sys.exit(_main())
