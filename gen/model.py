"""``intformer model eval``: float vs integer-only digits ViT on the held-out split.

Prints the float and integer accuracies, how often the two agree, and for every
integer intermediate tensor its error against the float one in real units
(``--json`` prints the same as JSON). Needs numpy and scikit-learn only.
"""

from __future__ import annotations

import json

from .cli import path_arg

__all__ = ["add_arguments", "run"]


def add_arguments(parser) -> None:
    sub = parser.add_subparsers(dest="model_command", required=True)
    p = sub.add_parser("eval", help="float and integer accuracy, agreement, per-layer errors")
    p.add_argument("--json", action="store_true", help="print JSON")
    p.add_argument("--limit", type=int, default=None, metavar="N",
                   help="evaluate only the first N held-out images")
    p.add_argument("--weights", type=path_arg, default=None, metavar="FILE",
                   help="weights file (default: the bundled digits_vit.npz)")
    p.add_argument("--percentile", type=float, default=None, metavar="P",
                   help="calibrate activation ranges at this percentile instead of the maximum")
    p.add_argument("--all-layers", action="store_true",
                   help="in the table, also list each attention head's tensors")


def run(args) -> int:
    from intformer.sw.model.evaluate import evaluate
    from intformer.sw.model.vit import DEFAULT_WEIGHTS

    r = evaluate(args.weights or DEFAULT_WEIGHTS, limit=args.limit, percentile=args.percentile)
    if args.json:
        print(json.dumps(r, indent=2))
        return 0
    c = r["config"]
    print(f"digits ViT: {c['tokens']} tokens, dim {c['dim']}, {c['heads']} heads, "
          f"FFN {c['ffn']}, {c['depth']} {c['norm']}-norm layers; {r['ops']} integer ops")
    print(f"held-out images   {r['images']}")
    print(f"float accuracy    {r['float_accuracy']:.4f}")
    print(f"integer accuracy  {r['integer_accuracy']:.4f}")
    print(f"agreement         {r['agreement']:.4f}")
    print()
    print(f"{'tensor':<26} {'op':<12} {'max|err|':>9} {'mean|err|':>9} {'cosine':>8} "
          f"{'max|float|':>10}")
    for row in r["layers"]:
        if not args.all_layers and ".attn.h" in row["tensor"]:
            continue
        print(f"{row['tensor']:<26} {row['op']:<12} {row['max_abs']:>9.4f} "
              f"{row['mean_abs']:>9.4f} {row['cosine']:>8.5f} {row['float_max']:>10.3f}")
    print(f"({r['seconds']:.1f} s)")
    return 0
