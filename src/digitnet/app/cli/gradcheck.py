"""``digitnet gradcheck``: backpropagation against finite differences on real samples."""

from __future__ import annotations

import numpy as np

from ...errors import DataError, DigitnetError
from ...files.modelfile import input_scale
from .common import (
    add_command,
    load_model,
    nonnegative_int,
    positive_float,
    positive_int,
)

EXAMPLES = """\
  digitnet gradcheck                        the default preset's untrained network
  digitnet gradcheck --preset nielsen-ce    another preset (its L2 term included)
  digitnet gradcheck digitnet-best.npz      a trained model
"""

DESCRIPTION = """\
Check a network's gradients: for a few real training samples, compare every
checked weight's backpropagated gradient with the central difference
(L(θ+ε) − L(θ−ε))/2ε, in float64. Prints the worst error per weight and bias
array, relative to the array's largest gradient, and PASS or FAIL (exit
status 1) against the tolerance. A correct implementation gives about 1e-9.
Large arrays are sampled (--checks entries each) to keep it quick.
"""


def add_parser(subparsers):
    p = add_command(subparsers, "gradcheck", help="check backpropagation numerically",
                    description=DESCRIPTION, examples=EXAMPLES, run=run)
    p.add_argument("model", nargs="?", metavar="MODEL", help="a model file (default: a preset)")
    p.add_argument("--preset", metavar="NAME", help="check this preset's untrained network "
                                                    "(default: best)")
    p.add_argument("--samples", type=positive_int, default=8, metavar="N",
                   help="training samples to use (default 8)")
    p.add_argument("--checks", type=positive_int, default=25, metavar="K",
                   help="entries checked per array at most (default 25)")
    p.add_argument("--tolerance", type=positive_float, default=1e-6, metavar="TOL",
                   help="largest relative error that passes (default 1e-6)")
    p.add_argument("--seed", type=nonnegative_int, default=0, metavar="N",
                   help="seeds the network (presets) and the choice of entries")
    p.add_argument("--data", metavar="SOURCE",
                   help="where the samples come from: mnist, fashion-mnist, kmnist, a folder of "
                        "IDX files or a labelled .csv (default: the model's or preset's data)")
    return p


def run(args) -> int:
    from ...nn.gradcheck import check_gradients
    from ...train.recipes import DEFAULT_PRESET, get_preset, load_data

    if args.model and args.preset:
        raise DigitnetError("give a MODEL or --preset, not both")
    l2 = 0.0
    if args.model:
        network = load_model(args.model)
        preprocessing = network.metadata.get("preprocessing") or {}
        recipe = network.metadata.get("recipe") or {}
        source = recipe.get("data") or preprocessing.get("dataset") or "mnist"
        scale = input_scale(network)
        l2 = float(recipe.get("l2") or 0.0)
        what = args.model
    else:
        preset = get_preset(args.preset or DEFAULT_PRESET)
        network = preset.build_network(args.seed)
        source, scale, l2 = preset.data, preset.scale, preset.l2
        what = f"preset {preset.name} (untrained, seed {args.seed})"
    if args.data:
        source = args.data
    try:
        dataset = load_data(source, scale=scale)
    except DataError as exc:
        if args.data:
            raise
        raise DataError(f"cannot load {source}, the data of {what} ({exc}); give "
                        "samples with --data DIR (a folder of IDX files), --data FILE.csv or "
                        "--data NAME") from None
    X, y = dataset.X_train[: args.samples], dataset.y_train[: args.samples]
    if X.shape[1] != network.sizes[0]:
        raise DigitnetError(f"{source} has {X.shape[1]} values per sample but the network takes "
                            f"{network.sizes[0]} inputs")
    # λ/n with n = the samples checked: the same L2 term the training loss carries per sample.
    report = check_gradients(network, X, y, l2=l2, max_checks_per_array=args.checks,
                             seed=args.seed)
    print(f"gradient check of {what}: {len(X)} samples of {source}, float64, at most "
          f"{args.checks} entries per array" + (f", L2 λ={l2:g}" if l2 else ""))
    worst = 0.0
    for name, error in report.items():
        shape = _shape_of(network, name)
        print(f"  {name:<4} {shape:>12}  worst relative error {error:.2e}")
        worst = max(worst, error)
    passed = bool(np.isfinite(worst)) and worst <= args.tolerance
    print(f"{'PASS' if passed else 'FAIL'}: worst {worst:.2e} "
          f"{'≤' if passed else '>'} tolerance {args.tolerance:g}")
    return 0 if passed else 1


def _shape_of(network, name: str) -> str:
    layer = int(name[1:]) - 1
    array = network.weights[layer] if name[0] == "W" else network.biases[layer]
    return "x".join(str(s) for s in array.shape)
