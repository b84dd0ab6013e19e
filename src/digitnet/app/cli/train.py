"""``digitnet train``: run a preset (optionally changed by flags), show it learn, save the model."""

from __future__ import annotations

import dataclasses
import math
import re
import signal
import sys
from pathlib import Path

from ...data.datasets import SPLITS
from ...errors import DigitnetError, TrainingDiverged
from ...nn.activations import ACTIVATIONS, get_activation
from ...nn.initializers import INITIALIZERS, resolve_initializer
from ...nn.losses import LOSSES, get_loss
from ...nn.optimizers import OPTIMIZERS, all_hyperparameters, get_optimizer
from ...nn.schedules import SCHEDULES
from .common import (
    FULL_BATCH,
    add_command,
    affine_spec,
    batch_size,
    dropout_rate,
    elastic_spec,
    layer_sizes,
    names_help,
    nonnegative_float,
    nonnegative_int,
    percent,
    positive_float,
    positive_int,
    registry_name,
    shift_pixels,
)

EXAMPLES = """\
  digitnet train                                  the 'best' preset: 98.9-99.0% on the test set in under a minute
  digitnet train --preset nielsen --out nielsen.npz
  digitnet train --preset nielsen --lr 1.0 --epochs 10      change some of a preset's fields
  digitnet train --layers 784,100,10 --activation relu --optimizer momentum --lr 0.05
  digitnet train --preset zhang --data train.csv  Kaggle's train.csv instead of MNIST
  digitnet train --preset xor                     a two-second demo on the XOR table
  digitnet train --preset nielsen --subset 5000 --epochs 3  a quick look
  digitnet train --preset record                  distorted digits: ~99.5% in ~8 minutes on two cores
  digitnet train --elastic 34,5 --affine 15,0.15,0.15 --fade 5 --epochs 30
                                                  best, on distorted digits; the last 5 epochs fade them out
  digitnet train --resume digitnet-best.ckpt.npz --epochs 20    continue a run
  digitnet train --resume digitnet-best.ckpt.npz --lr 0.01      continue at a lower rate

Ctrl-C stops at once and keeps the last completed epoch: it is saved as the
model and as the checkpoint, which --resume continues (exit status 130).
"""

DESCRIPTION = """\
Train a network on MNIST (or another data set) with a preset recipe.

Every flag of the recipe group overrides that field of the preset
('digitnet presets' lists them). The same --seed gives the same weights.
A progress bar (on a terminal) and one line per epoch show the run; the test
accuracy is printed at the end and the model is saved, by default as
digitnet-PRESET.npz in the current folder. A checkpoint (weights, optimiser
state, history) is written after every epoch, by default next to the model
as NAME.ckpt.npz; --resume continues it and ends with the same weights an
uninterrupted run would have. If training diverges (the loss becomes NaN or
infinite) no model is written and the exit status is 2; the checkpoint keeps
the last completed epoch, and the message gives the command that continues
it at a lower rate (--resume CHECKPOINT --lr RATE).
"""

_RECIPE_FLAGS = ("layers", "activation", "output", "loss", "init", "optimizer", "lr", "batch_size",
                 "epochs", "l2", "schedule", "scale", "split", "shift", "elastic", "affine", "fade", "dropout")


def add_parser(subparsers):
    p = add_command(subparsers, "train", help="train a network (default preset: best)",
                    description=DESCRIPTION, examples=EXAMPLES, run=run)
    p.add_argument("--preset", metavar="NAME", help="recipe to start from (default: best)")
    r = p.add_argument_group("recipe (each overrides the preset's value)")
    r.add_argument("--layers", type=layer_sizes, metavar="SIZES",
                   help="units per layer, input first, e.g. 784,100,10")
    activation = registry_name("activation", get_activation)
    r.add_argument("--activation", metavar="NAME", type=activation,
                   help=names_help("hidden layers", ACTIVATIONS))
    r.add_argument("--output", metavar="NAME", type=activation,
                   help=names_help("output layer", ACTIVATIONS))
    r.add_argument("--loss", metavar="NAME", type=registry_name("loss", get_loss),
                   help=names_help("loss", LOSSES))
    r.add_argument("--init", metavar="NAME", type=registry_name("init", resolve_initializer),
                   help=names_help("initial weights", INITIALIZERS))
    r.add_argument("--optimizer", metavar="NAME", type=registry_name("optimizer", get_optimizer),
                   help=names_help("optimiser", OPTIMIZERS))
    for name, (text, takers) in all_hyperparameters().items():
        r.add_argument(f"--{name}", type=float, metavar="VALUE",
                       help=f"{text}; for {', '.join(takers)}")
    r.add_argument("--lr", type=positive_float, metavar="RATE", help="learning rate (> 0)")
    r.add_argument("--batch-size", type=batch_size, metavar="N",
                   help="samples per step, or 'full' for full-batch gradient descent")
    r.add_argument("--epochs", type=positive_int, metavar="N", help="passes over the training data")
    r.add_argument("--l2", type=nonnegative_float, metavar="LAMBDA",
                   help="L2 strength λ (Nielsen's: the loss gains (λ/2n)·Σw²)")
    r.add_argument("--schedule", choices=list(SCHEDULES), help="learning-rate schedule")
    r.add_argument("--scale", choices=("unit", "symmetric"),
                   help="pixels in [0, 1] (unit) or [-1, 1] (symmetric)")
    r.add_argument("--split", choices=list(SPLITS),
                   help="how the training images are split into training and validation")
    r.add_argument("--shift", type=shift_pixels, metavar="PIXELS",
                   help="move each training image by up to this many pixels, at random, "
                        "every epoch (0: off)")
    r.add_argument("--elastic", type=elastic_spec, metavar="ALPHA[,SIGMA]",
                   help="distort each training image elastically every epoch: a random field "
                        "smoothed over SIGMA pixels (default 4), scaled by ALPHA (e.g. 34; 0: off)")
    r.add_argument("--affine", type=affine_spec, metavar="DEG,ZOOM,SHEAR",
                   help="turn each training image by up to DEG degrees, scale it by up to ±ZOOM "
                        "and shear it by up to SHEAR, at random every epoch (e.g. 10,0.1,0.15; "
                        "0,0,0: off)")
    r.add_argument("--fade", type=nonnegative_int, metavar="N",
                   help="weaken the distortions (--elastic, --affine) over the last N epochs, "
                        "to none in the last one, so training ends on digits as they are "
                        "(0: off)")
    r.add_argument("--dropout", type=dropout_rate, metavar="P",
                   help="drop each hidden unit with probability P in every training step "
                        "(0: off; predictions never drop)")
    d = p.add_argument_group("data and reproducibility")
    d.add_argument("--data", metavar="SOURCE",
                   help="mnist (default), fashion-mnist, kmnist, a folder of IDX files, or a "
                        "labelled Kaggle-style FILE.csv")
    d.add_argument("--subset", type=positive_int, metavar="N",
                   help="train on only the first N training images (quick runs)")
    d.add_argument("--seed", type=nonnegative_int, metavar="N",
                   help="fixes the initial weights and the shuffling (default: 0)")
    f = p.add_argument_group("files")
    f.add_argument("--out", metavar="FILE",
                   help="where to save the model (default: digitnet-PRESET.npz here)")
    f.add_argument("--checkpoint", metavar="FILE",
                   help="checkpoint written after every epoch (default: OUT with .ckpt.npz)")
    f.add_argument("--no-checkpoint", action="store_true", help="write no checkpoint")
    f.add_argument("--resume", metavar="CHECKPOINT",
                   help="continue the run saved in CHECKPOINT (only --epochs and --lr may change)")
    return p


def _overrides(args) -> dict:
    overrides = {}
    for name in all_hyperparameters():
        if getattr(args, name) is not None:
            overrides[name] = getattr(args, name)
    for flag in _RECIPE_FLAGS:
        value = getattr(args, flag)
        if value is None or flag == "epochs":
            continue
        if flag == "layers":
            overrides["sizes"] = value
        elif flag == "batch_size":
            overrides["batch_size"] = None if value == FULL_BATCH else value
        elif flag == "schedule":
            overrides["schedule"] = None if value == "constant" else value
        elif flag == "elastic":
            overrides["elastic"] = value[0]
            if value[1] is not None:
                overrides["elastic_sigma"] = value[1]
        elif flag == "affine":
            overrides["rotate"], overrides["zoom"], overrides["shear"] = value
        else:
            overrides[flag] = value
    return overrides


def _default_out(args, preset_name: str) -> Path:
    if args.resume:
        name = Path(args.resume).name
        if name.endswith(".ckpt.npz"):
            return Path(args.resume).with_name(name[: -len(".ckpt.npz")] + ".npz")
    return Path(f"digitnet-{preset_name}.npz")


def _describe(preset, seed, data, subset) -> str:
    layers = " → ".join(str(s) for s in preset.sizes)
    acts = "/".join(preset.activations)
    batch = "full batch" if preset.batch_size is None else f"batch {preset.batch_size}"
    extras = []
    if preset.l2:
        extras.append(f"L2 λ={preset.l2:g}")
    if preset.schedule:
        extras.append(f"{preset.schedule} schedule")
    if preset.augmentation_text():
        extras.append(f"random {preset.augmentation_text()}")
    if preset.dropout:
        extras.append(f"dropout {preset.dropout:g}")
    if subset:
        extras.append(f"first {subset:,} training images")
    extra = (", " + ", ".join(extras)) if extras else ""
    return (f"preset {preset.name}: {layers}, {acts}, {preset.loss}, init {preset.init}; "
            f"{preset.optimizer} lr {preset.lr:g}, {batch}, {preset.epochs} epochs{extra}; "
            f"data {data}, split {preset.split}, seed {seed}")


def _diverged_message(exc: TrainingDiverged, preset, epochs: int | None = None) -> str:
    """The one line a diverged run ends with.

    The rule: no model is written; the checkpoint keeps the last completed
    epoch (train_recipe brings it up to date) and the line names it, with the
    command that continues it at a tenth of the recipe's base rate (--lr sets
    the base rate; under a schedule the rate at the divergence is lower, so
    the core's "try" figure is replaced by this one).  If that epoch's loss was
    already infinite, continuing it is pointless and the line says to start
    again.  Without a checkpoint of this run (divergence in the first epoch,
    --no-checkpoint) it says that nothing was written.  ``epochs`` (the
    --epochs of a resumed run, which its checkpoint may not record yet) goes
    into the command.
    """
    text = str(exc).split(" The weights of the last")[0].strip()
    text = re.sub(r"; lower the learning rate \(try [^)]*\)\.$", ".", text)
    lower = f"{preset.lr / 10:g}"
    again = f"start again with a lower rate (e.g. --lr {lower})"
    checkpoint = getattr(exc, "checkpoint", None)
    if checkpoint is None:
        return f"{text} No model or checkpoint was written: {again}."
    epoch = getattr(exc, "checkpoint_epoch", None)
    loss = getattr(exc, "checkpoint_loss", None)
    if isinstance(loss, (int, float)) and not math.isfinite(loss):
        return (f"{text} No model was written; the checkpoint {checkpoint} holds epoch {epoch}, "
                f"whose loss was already {loss}: {again}.")
    more = f" --epochs {epochs}" if epochs else ""
    held = f" (epoch {epoch}, training loss {loss:.3g})" if isinstance(loss, (int, float)) else \
        f" (epoch {epoch})"
    return (f"{text} No model was written; the checkpoint {checkpoint} keeps the last completed "
            f"epoch{held}: continue it at a lower rate with "
            f"'digitnet train --resume {checkpoint} --lr {lower}{more}', or {again}.")


def run(args) -> int:
    from ...files import paths
    from ...train.recipes import (
        DEFAULT_PRESET,
        Preset,
        TrainingInterrupted,
        checkpoint_path_for,
        get_preset,
        train_recipe,
    )
    from ..progress import ProgressBar

    overrides = _overrides(args)
    if args.resume:
        given = [f"--{name.replace('_', '-')}" for name in (*_RECIPE_FLAGS, "preset", "data", "subset",
                                                            "seed")
                 if getattr(args, name) is not None and name not in ("epochs", "lr")]
        if given:
            raise DigitnetError(f"--resume continues the checkpoint's own recipe: leave out "
                                f"{', '.join(given)} (only --epochs and --lr may change)")
        from ...files.modelfile import read_model_file

        header, _ = read_model_file(args.resume)
        if not isinstance(header.get("checkpoint"), dict):
            raise DigitnetError(f"{args.resume} is a model, not a checkpoint: resume from the "
                                ".ckpt.npz file written next to it during training")
        recipe = header.get("recipe") or {}
        preset = Preset.from_dict(recipe)
        if args.lr is not None:
            preset = dataclasses.replace(preset, lr=args.lr)
        seed, data, subset = recipe.get("seed", 0), recipe.get("data", preset.data), recipe.get("subset")
        headline = f"resuming {args.resume} after epoch {header['checkpoint'].get('epoch')}: "
    else:
        preset = get_preset(args.preset or DEFAULT_PRESET).with_overrides(overrides)
        if args.fade and not preset.distorts:      # a preset's own fade just has nothing to do
            raise DigitnetError(f"--fade {args.fade} weakens the distortions at the end of a run, but "
                                f"this recipe has none: add --elastic or --affine, or leave --fade out")
        seed = 0 if args.seed is None else args.seed
        data, subset = args.data or preset.data, args.subset
        headline = ""
    if args.epochs:
        preset = dataclasses.replace(preset, epochs=args.epochs)
    preset_name = preset.name
    out = Path(args.out) if args.out else _default_out(args, preset_name)
    if args.no_checkpoint:
        checkpoint = None
    elif args.checkpoint:
        checkpoint = Path(args.checkpoint)
    elif args.resume:
        checkpoint = Path(args.resume)
    else:
        checkpoint = checkpoint_path_for(out)
    if checkpoint is not None and checkpoint.resolve() == out.resolve():
        raise DigitnetError(f"the checkpoint and the model would both be {out}: choose another --out")

    progress = ProgressBar()
    print(headline + _describe(preset, seed, data, subset), flush=True)

    # Ctrl-C must raise KeyboardInterrupt even when the shell started us with SIGINT
    # ignored (background jobs): training handles it by saving the last epoch.
    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        result = train_recipe(None if args.resume else preset_name, data=args.data,
                              seed=None if args.resume else seed, epochs=args.epochs,
                              subset=args.subset, out=out, callbacks=[progress],
                              overrides=overrides or None, checkpoint=checkpoint,
                              resume=args.resume)
    except TrainingInterrupted as stop:
        res = stop.result
        if res is None or res.epochs_done == 0:
            print("digitnet: interrupted before the first epoch finished: nothing was saved",
                  file=sys.stderr)
            return 130
        where = f"saved it as {res.path}" if res.path else "nothing was saved"
        again = f"; continue with: digitnet train --resume {res.checkpoint}" if res.checkpoint else ""
        print(f"digitnet: interrupted: kept epoch {res.epochs_done} of {res.preset.epochs}, "
              f"{where}{again}", file=sys.stderr)
        if res.path:
            paths.remember_last_model(res.path)
        return 130
    except TrainingDiverged as exc:
        raise DigitnetError(_diverged_message(exc, preset, args.epochs if args.resume else None)) \
            from None
    finally:
        signal.signal(signal.SIGINT, previous)

    if result.test_accuracy is not None:
        print(f"test accuracy: {percent(result.test_accuracy)}", flush=True)
    if result.val_accuracy is not None:
        label = "dev" if result.preset.reported_on == "validation" else "validation"
        print(f"{label} accuracy: {percent(result.val_accuracy)}", flush=True)
    seconds = f"trained in {result.seconds:.1f}s"
    ckpt = f" (checkpoint: {result.checkpoint})" if result.checkpoint else ""
    print(f"{seconds}; saved the model to {result.path}{ckpt}", flush=True)
    paths.remember_last_model(result.path)
    return 0
