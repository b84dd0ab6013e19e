"""``digitnet info``: what is in a model file."""

from __future__ import annotations

from .common import add_command, load_model, percent

EXAMPLES = """\
  digitnet info digitnet-best.npz
  digitnet info digitnet-best.ckpt.npz      a checkpoint: also the epoch it holds
"""

DESCRIPTION = """\
Describe a model (or checkpoint) file: its layers and parameter count, the
preprocessing its inputs need, the recipe it was trained with, and a summary
of its training record.
"""


def add_parser(subparsers):
    p = add_command(subparsers, "info", help="layers, recipe and training record of a model",
                    description=DESCRIPTION, examples=EXAMPLES, run=run)
    p.add_argument("model", metavar="MODEL", help="a model or checkpoint file")
    return p


def _recipe_lines(recipe: dict) -> list[str]:
    if not recipe:
        return ["recipe: (not recorded)"]
    batch = recipe.get("batch_size")
    lines = [f"recipe: preset {recipe.get('name', '?')}, seed {recipe.get('seed', '?')}, "
             f"data {recipe.get('data', '?')}"
             + (f", first {recipe['subset']:,} training images" if recipe.get("subset") else "")]
    lines.append(f"  optimizer {recipe.get('optimizer')}, lr {recipe.get('lr')}, "
                 f"batch {'full' if batch is None else batch}, {recipe.get('epochs')} epochs, "
                 f"l2 {recipe.get('l2')}, schedule {recipe.get('schedule') or 'constant'}, "
                 f"split {recipe.get('split')}"
                 + (f", random shifts ≤ {recipe['shift']} px" if recipe.get("shift") else ""))
    distortions = []
    if recipe.get("elastic"):
        distortions.append(f"elastic α {recipe['elastic']:g}, σ {recipe.get('elastic_sigma', 4.0):g}")
    if recipe.get("rotate") or recipe.get("zoom") or recipe.get("shear"):
        distortions.append(f"rotations ≤ {recipe.get('rotate') or 0:g}°, zoom ≤ ±{recipe.get('zoom') or 0:g}, "
                           f"shear ≤ {recipe.get('shear') or 0:g}")
    if distortions and recipe.get("fade"):
        distortions[-1] += f", fading to none over the last {recipe['fade']} epochs"
    if recipe.get("dropout"):
        distortions.append(f"dropout {recipe['dropout']:g}")
    if distortions:
        lines.append("  " + "; ".join(distortions))
    overrides = recipe.get("overrides") or {}
    if overrides:
        lines.append("  changed from the preset: "
                     + ", ".join(f"{k}={v}" for k, v in sorted(overrides.items())))
    if recipe.get("resumed_from"):
        lines.append(f"  resumed from {recipe['resumed_from']}")
    return lines


def _history_lines(history: dict) -> list[str]:
    # The model file's reader has checked every field's type (digitnet.files.modelfile.HEADER_SCHEMA):
    # the numbers here are numbers or None.
    records = history.get("records") or []
    if not records:
        return ["training record: (none)"]
    last = records[-1]
    seconds = sum(r.get("seconds") or 0 for r in records)
    loss = last.get("loss")
    lines = [f"training record: {len(records)} epochs, {seconds:.1f}s; last epoch: loss "
             f"{'-' if loss is None else f'{loss:.4f}'}, train accuracy {percent(last.get('accuracy'))}, "
             f"validation accuracy {percent(last.get('val_accuracy'))}"]
    vals = [r for r in records if r.get("val_accuracy") is not None]
    if vals:
        best = max(vals, key=lambda r: r["val_accuracy"])
        lines.append(f"  best validation accuracy {percent(best['val_accuracy'])} "
                     f"(epoch {best.get('epoch', '?')})")
    return lines


def run(args) -> int:
    network = load_model(args.model)    # checks every header field, raises ModelFileError
    header = network.metadata
    print(f"model: {args.model}")
    print(f"format {header.get('format_version')}, written by digitnet "
          f"{header.get('digitnet_version', '?')} on {header.get('created', '?')}")
    print(network.summary())
    pre = header.get("preprocessing") or {}
    if pre:
        shape = "x".join(str(s) for s in pre.get("input_shape", [])) or "?"
        print(f"preprocessing: pixels {pre.get('scale', 'unit')}, input {shape}, "
              f"dataset {pre.get('dataset', '?')}, classes {' '.join(pre.get('classes', []))}")
    for line in _recipe_lines(header.get("recipe") or {}):
        print(line)
    for line in _history_lines(header.get("history") or {}):
        print(line)
    evaluation = header.get("evaluation") or {}
    if evaluation:
        print(f"evaluation: test accuracy {percent(evaluation.get('test_accuracy'))}, "
              f"validation accuracy {percent(evaluation.get('val_accuracy'))}")
    if isinstance(header.get("checkpoint"), dict):
        c = header["checkpoint"]
        print(f"checkpoint: after epoch {c.get('epoch')} of {c.get('epochs')} "
              f"(continue with: digitnet train --resume {args.model})")
    if isinstance(header.get("interrupted"), dict):
        c = header["interrupted"]
        print(f"interrupted: saved after epoch {c.get('epoch')} of {c.get('epochs')}")
    return 0
