"""``digitnet presets``: the recipes, as a table or one in full."""

from __future__ import annotations

import textwrap

from .common import add_command

EXAMPLES = """\
  digitnet presets              the table
  digitnet presets nielsen      one recipe in full, with its source and notes
"""

DESCRIPTION = """\
List the training recipes that 'digitnet train --preset NAME' reproduces: the
seed material's networks (Nielsen, Raschka, Zhang, the lecture's softmax with
a quadratic loss, XOR) and digitnet's own 'best'.
"""


def add_parser(subparsers):
    p = add_command(subparsers, "presets", help="list the training recipes",
                    description=DESCRIPTION, examples=EXAMPLES, run=run)
    p.add_argument("name", nargs="?", metavar="NAME", help="show this preset in full")
    return p


def table(presets) -> str:
    """One row per preset."""
    rows = [("name", "layers", "activations", "loss", "init", "optimizer", "lr", "batch", "epochs",
             "published")]
    for p in presets:
        rows.append((p.name, ",".join(map(str, p.sizes)), "/".join(p.activations), p.loss, p.init,
                     p.optimizer, f"{p.lr:g}", "full" if p.batch_size is None else str(p.batch_size),
                     str(p.epochs), p.published))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]) - 1)]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)) + "  " + r[-1]
                     for r in rows)


def describe(p) -> str:
    """A preset in full."""
    batch = "full batch" if p.batch_size is None else str(p.batch_size)
    fields = [
        ("source", p.source),
        ("published", p.published + ("" if p.reported_on == "test" else
                                     f" (reported on the {p.reported_on} set)")),
        ("layers", " → ".join(map(str, p.sizes))),
        ("activations", ", ".join(p.activations)),
        ("loss", p.loss), ("init", p.init),
        ("optimizer", p.optimizer + "".join(f", {k} {v:g}" for k, v in p.optimizer_options.items())),
        ("lr", f"{p.lr:g}"),
        ("batch size", batch), ("epochs", str(p.epochs)), ("l2", f"{p.l2:g}"),
        ("schedule", p.schedule or "constant"), ("pixels", p.scale),
        ("shifts", f"random, up to {p.shift} px each way, every epoch" if p.shift else "none"),
        ("distortions", ", ".join(filter(None, (
            f"elastic α {p.elastic:g}, σ {p.elastic_sigma:g}" if p.elastic else "",
            f"rotations ≤ {p.rotate:g}°" if p.rotate else "", f"zoom ≤ ±{p.zoom:g}" if p.zoom else "",
            f"shear ≤ {p.shear:g}" if p.shear else "",
            f"fading to none over the last {p.fade} epochs" if p.fade and p.distorts else ""))) or "none"),
        ("dropout", f"{p.dropout:g} on every hidden layer" if p.dropout else "none"),
        ("split", p.split),
        ("data", p.data), ("command", p.command),
    ]
    lines = [p.name] + [f"  {k + ':':<12} {v}" for k, v in fields]
    lines.append(textwrap.fill(p.notes, width=88, initial_indent="  notes:       ",
                               subsequent_indent=" " * 15))
    return "\n".join(lines)


def run(args) -> int:
    from ...train.recipes import DEFAULT_PRESET, PRESETS, get_preset

    if args.name:
        print(describe(get_preset(args.name)))
        return 0
    print(table(PRESETS.values()))
    print(f"\ndefault: {DEFAULT_PRESET}.  'digitnet presets NAME' shows one in full; "
          "'digitnet train --preset NAME' trains it.")
    return 0
