"""The pictures and the page of a sweep (``digitnet sweep`` draws them when it ends).

:func:`results_by_field` draws the ranked accuracy of every trial against each
swept field; :func:`sweep_curves` every trial's learning curves;
:func:`write_sweep_report` both, plus an ``index.html`` in the style of
``digitnet report``'s page: what was swept, the best trial, the pictures, and
the table of every trial with a link to its model.  They read a
:class:`~digitnet.train.sweep.SweepResult` or a sweep folder's
``results.json``; the figures follow :mod:`digitnet.app.plots` (matplotlib's
object interface, fixed sizes, atomic PNG writes).
"""

from __future__ import annotations

import datetime as _dt
import html
import math
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import DigitnetError
from ..train.sweep import SweepResult, load_results, show_value
from . import plots

__all__ = ["results_by_field", "sweep_curves", "write_sweep_report", "read_sweep"]

#: Width of the pictures, and the height of one row of panels, in pixels.
WIDTH, ROW_HEIGHT = 1100, 430
#: Lines are drawn per group of trials (those differing only in seed) up to this many groups.
MAX_GROUPS = 10

_METRIC_TEXT = {"val_accuracy": "validation accuracy", "test_accuracy": "test accuracy"}


def read_sweep(source) -> SweepResult:
    """A :class:`SweepResult` as it is, or read from a sweep folder's ``results.json``."""
    if isinstance(source, SweepResult):
        return source
    folder = Path(source)
    data = load_results(folder)
    if data is None:
        raise DigitnetError(f"{folder} holds no sweep results (results.json): run 'digitnet sweep "
                            f"--out {folder}' first")
    return SweepResult(list(data["trials"]), list(data.get("fields") or []), folder,
                       int(data.get("trials_planned") or len(data["trials"])),
                       plan=data.get("plan") or {}, backend=str(data.get("backend", "local")))


def _float(value) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def _figure(rows: int):
    matplotlib = plots._matplotlib()
    height = ROW_HEIGHT * rows + 60
    return matplotlib.figure.Figure(figsize=(WIDTH / plots.DPI, height / plots.DPI), dpi=plots.DPI,
                                    layout="constrained")


def _groups(result: SweepResult, fields) -> dict:
    """Trials by the values of ``fields`` (in plan order): {values tuple: [rows]}."""
    out: dict = {}
    for row in result.rows:
        out.setdefault(tuple(show_value(row.get(f)) for f in fields), []).append(row)
    return out


def _numeric(values) -> bool:
    return all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)


def _group_label(fields, values) -> str:
    return ", ".join(f"{f} {v}" for f, v in zip(fields, values)) or "all trials"


def _colours(n):
    if n <= 10:
        tab = plots._colormap("tab10")
        return [tab(i) for i in range(n)]
    ramp = plots._colormap("viridis")
    return [ramp(0.05 + 0.85 * i / max(1, n - 1)) for i in range(n)]


def results_by_field(source, out=None, *, title: str | None = None):
    """The ranked accuracy of every trial against each swept field, one panel per field.

    Each dot is a trial; trials that differ only in the other *grid* fields
    are joined by a line through their mean over seeds (when there are at
    most :data:`MAX_GROUPS` such lines).  A diverged trial is a red ✕ at the
    foot of the panel.  Numeric fields spanning a factor of 20 or more are
    drawn on a log scale.
    """
    result = read_sweep(source)
    fields = list(result.varied) or ["seed"]
    metric = result.ranked_by
    n = len(fields)
    cols = min(n, 2)
    rows = math.ceil(n / cols)
    fig = _figure(rows)
    axes = np.atleast_1d(fig.subplots(rows, cols, squeeze=False)).ravel()
    random_fields = set((result.plan.get("ranges") or {}))
    for ax, name in zip(axes, fields):
        values = [row.get(name) for row in result.rows]
        numeric = _numeric(values)
        if numeric:
            order = sorted(set(values))
            position = {v: float(v) for v in order}
        else:
            order = list(dict.fromkeys(show_value(v) for v in values))
            position = {v: float(i) for i, v in enumerate(order)}

        def x_of(row):
            value = row.get(name)
            return position[value if numeric else show_value(value)]

        others = [f for f in fields if f != name and f not in random_fields and f != "seed"]
        groups = _groups(result, others)
        lines = name not in random_fields and len(groups) <= MAX_GROUPS
        colours = _colours(len(groups))
        for colour, (key, members) in zip(colours, groups.items()):
            good = [r for r in members if r["status"] == "ok" and r.get(metric) is not None]
            label = _group_label(others, key) if lines and others else None
            if good:
                ax.plot([x_of(r) for r in good], [100 * r[metric] for r in good], "o",
                        color=colour if lines else "tab:blue", alpha=0.55, markersize=5,
                        label=None if lines else ("trial" if colour == colours[0] else None))
            if lines and good:
                xs = sorted({x_of(r) for r in good})
                means = [100 * np.mean([r[metric] for r in good if x_of(r) == x]) for x in xs]
                ax.plot(xs, means, "-", color=colour, linewidth=1.8,
                        label=(label or "mean over seeds") if len(result.plan.get("seeds") or [0]) > 1
                        or label else None)
        diverged = [r for r in result.rows if r["status"] == "diverged"]
        if diverged:
            # A band below the lowest accuracy for the trials that have none.
            low, high = ax.get_ylim()
            ax.set_ylim(low - 0.15 * (high - low), high)
            ax.plot([x_of(r) for r in diverged], [0.05] * len(diverged), "X", color="tab:red",
                    markersize=11, markeredgecolor="black", transform=ax.get_xaxis_transform(),
                    clip_on=False, linestyle="none", label="diverged")
        if numeric:
            positive = [v for v in order if v > 0]
            if positive and len(positive) == len(order) and max(order) / min(order) >= 20:
                ax.set_xscale("log")
                ax.set_xticks(order if len(order) <= 12 else ax.get_xticks())
                if len(order) <= 12:
                    ax.set_xticklabels([show_value(v) for v in order])
            elif len(order) <= 12:
                ax.set_xticks(order)
                ax.set_xticklabels([show_value(v) for v in order])
        else:
            ax.set_xticks(range(len(order)))
            ax.set_xticklabels(order, rotation=0 if len(order) <= 6 else 30)
            ax.set_xlim(-0.5, len(order) - 0.5)
        ax.set_xlabel(name + (" (drawn at random)" if name in random_fields else ""))
        ax.set_ylabel(f"{_METRIC_TEXT.get(metric, metric)} (%)")
        ax.grid(alpha=0.3)
        handles, labels = ax.get_legend_handles_labels()
        if labels:
            several = len(result.plan.get("seeds") or [0]) > 1
            ax.legend(fontsize=9, loc="best", title="lines: mean over the seeds" if several else None,
                      title_fontsize=9)
        ax.set_title(f"against {name}", fontsize=11)
    for ax in axes[len(fields):]:
        ax.set_visible(False)
    if title is None:
        preset = result.plan.get("preset", "?")
        epochs = result.plan.get("epochs")
        title = (f"Sweep of the {preset} preset: {_METRIC_TEXT.get(metric, metric)} of "
                 f"{len(result)} trial{'s' if len(result) != 1 else ''}"
                 f"{f', {epochs} epochs each' if epochs else ''} (higher is better)")
    fig.suptitle(title, fontsize=13)
    return plots._finish(fig, out)


def sweep_curves(source, out=None, *, title: str | None = None):
    """Every trial's learning curves: training loss (log scale) and validation accuracy per epoch.

    Trials that differ only in their seed share a colour.  A diverged trial
    is drawn up to its last good epoch and marked ✕ at the epoch it diverged in.
    """
    result = read_sweep(source)
    fields = list(result.varied)
    groups = _groups(result, fields)
    colours = dict(zip(groups, _colours(len(groups))))
    fig = _figure(1)
    ax_loss, ax_acc = fig.subplots(1, 2)
    has_val = any(rec.get("val_accuracy") is not None for row in result.rows
                  for rec in row.get("history") or [])
    acc_key = "val_accuracy" if has_val else "accuracy"
    labelled = set()
    drawn = 0
    for row in result.rows:
        records = row.get("history") or []
        key = tuple(show_value(row.get(f)) for f in fields)
        colour = colours[key]
        label = None
        if len(groups) <= MAX_GROUPS and key not in labelled:
            label = _group_label(fields, key)
            labelled.add(key)
        style = "--" if row["status"] == "diverged" else "-"
        epochs = [int(r.get("epoch", i + 1)) for i, r in enumerate(records)]
        loss = [_float(r.get("loss")) for r in records]
        loss = [v if math.isfinite(v) and v > 0 else math.nan for v in loss]
        acc = [100 * _float(r.get(acc_key)) for r in records]
        few = len(records) <= 40
        if records:
            ax_loss.plot(epochs, loss, style, marker="o" if few else None, markersize=3,
                         color=colour, linewidth=1.3, alpha=0.85, label=label)
            ax_acc.plot(epochs, acc, style, marker="o" if few else None, markersize=3,
                        color=colour, linewidth=1.3, alpha=0.85, label=label)
            drawn += 1
        if row["status"] == "diverged":
            at = (row.get("last_good_epoch") or 0) + 1
            for ax in (ax_loss, ax_acc):
                ax.plot([at], [0.96], "X", color=colour, markersize=10, markeredgecolor="black",
                        transform=ax.get_xaxis_transform(), clip_on=False)
    ax_loss.set_yscale("log")
    ax_loss.set_title("training loss (lower is better)", fontsize=11)
    ax_acc.set_title(f"{'validation' if has_val else 'training'} accuracy (higher is better)", fontsize=11)
    for ax, ylabel in ((ax_loss, "training loss (average over the epoch)"),
                       (ax_acc, f"{'validation' if has_val else 'training'} accuracy (%)")):
        ax.set_xlabel("epoch")
        ax.set_ylabel(ylabel)
        ax.xaxis.get_major_locator().set_params(integer=True)
        ax.grid(alpha=0.3, which="both")
    finite = [v for line in ax_loss.get_lines() for v in np.asarray(line.get_ydata(), dtype=float)
              if math.isfinite(v) and v > 0]
    if finite and max(finite) / min(finite) < 100:
        # Few decades: label the in-between ticks too, as plain numbers (0.3, not 3×10⁻¹).
        from matplotlib.ticker import FuncFormatter

        plain = FuncFormatter(lambda value, _: f"{value:g}")
        ax_loss.yaxis.set_major_formatter(plain)
        ax_loss.yaxis.set_minor_formatter(plain)
    if labelled:
        ax_acc.legend(fontsize=8, loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0)
    if title is None:
        title = (f"Learning curves of every trial ({drawn} of {len(result)} with at least one epoch)"
                 + ("" if len(groups) <= MAX_GROUPS else f"; {len(groups)} settings, one colour each"))
    fig.suptitle(title, fontsize=13)
    return plots._finish(fig, out)


# -- the page ----------------------------------------------------------------------------------


_CAPTIONS = {
    "results": ("Results against each swept field",
                "Each dot is a trial, placed at its value of the field; the lines join trials that differ "
                "only in the other swept fields' values, through their mean over seeds. A red ✕ marks a "
                "trial that diverged (its loss became NaN or infinite)."),
    "curves": ("Learning curves",
               "Every trial's training loss and accuracy after each epoch. A dashed line is a trial that "
               "diverged, drawn up to its last good epoch; ✕ marks the epoch it diverged in."),
}


def write_sweep_report(source, out_dir=None) -> Path:
    """Draw ``results.png`` and ``curves.png`` and write ``index.html`` into the sweep's folder.

    ``source`` is a :class:`SweepResult` or a sweep folder.  Without
    matplotlib the page is still written, saying how to get the pictures.
    Returns the page's path (written last).
    """
    from ..files.fileio import atomic_write

    result = read_sweep(source)
    out_dir = Path(out_dir) if out_dir is not None else result.out
    out_dir.mkdir(parents=True, exist_ok=True)
    figures = {}
    for name, draw in (("results", results_by_field), ("curves", sweep_curves)):
        try:
            draw(result, out_dir / f"{name}.png")
            figures[name] = None
        except DigitnetError as exc:
            figures[name] = str(exc)
    page = _page(result, figures, out_dir)
    path = out_dir / "index.html"
    atomic_write(path, lambda f: f.write(page.encode("utf-8")), "sweep page")
    return path


def _pct(value) -> str:
    number = _float(value)
    return "—" if not math.isfinite(number) else f"{100 * number:.2f}%"


def _cell(value) -> str:
    if value is None or value == "":
        return "—"
    if isinstance(value, float):
        return f"{value:.4g}"
    return html.escape(str(value))


def _key_values(pairs) -> str:
    return "<table>" + "".join(f"<tr><td class='key'>{html.escape(k)}</td><td class='text'>{v}</td></tr>"
                               for k, v in pairs) + "</table>"


def _link(path, out_dir, text=None) -> str:
    if not path:
        return "—"
    return f"<a href='{html.escape(str(path))}'>{html.escape(text or Path(str(path)).name)}</a>"


def _trial_table(result: SweepResult, out_dir) -> str:
    metric = result.ranked_by
    ranked = sorted(result.rows, key=lambda r: (r["status"] != "ok", -_nan_low(r.get(metric)),
                                                r["trial"]))
    head = (["#"] + list(result.fields) + ["seed", "status", "validation", "test", "training loss",
                                            "epochs", "seconds", "model"])
    body = []
    for row in ranked:
        status = row["status"]
        if status == "diverged":
            status = f"diverged in epoch {(row.get('last_good_epoch') or 0) + 1}"
        elif status == "failed":
            status = f"failed: {row.get('error') or ''}"
        cells = ([str(row["trial"])] + [html.escape(show_value(row.get(f))) for f in result.fields]
                 + [str(row.get("seed")), f"<span class='text'>{html.escape(status)}</span>",
                    _pct(row.get("val_accuracy")), _pct(row.get("test_accuracy")),
                    _cell(row.get("train_loss")), _cell(row.get("epochs_done")),
                    "—" if row.get("wall_seconds") is None else f"{row['wall_seconds']:.1f}",
                    _link(row.get("model"), out_dir)])
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join(body) + "</table>")


def _nan_low(value) -> float:
    number = _float(value)
    return number if math.isfinite(number) else -1.0


def _config_table(result: SweepResult) -> str:
    rows = result.by_config()
    head = list(result.fields) + ["trials", "ok", "diverged", "mean", "spread (sd)", "lowest", "highest"]
    body = []
    for row in sorted(rows, key=lambda r: -(r["mean"] if r["mean"] is not None else -1)):
        cells = ([html.escape(show_value(row[f])) for f in result.fields]
                 + [str(row["trials"]), str(row["ok"]), str(row["diverged"]), _pct(row["mean"]),
                    "—" if row["std"] is None else f"{100 * row['std']:.2f}", _pct(row["min"]),
                    _pct(row["max"])])
        body.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    return ("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for h in head) + "</tr>"
            + "".join(body) + "</table>")


def _page(result: SweepResult, figures: dict, out_dir: Path) -> str:
    from .report import page_head

    plan = result.plan
    metric_text = _METRIC_TEXT.get(result.ranked_by, result.ranked_by)
    swept = []
    changed = [f"{name} {show_value(plan['grid'][name][0])}" for name in result.fields
               if name not in result.varied and name in (plan.get("grid") or {})]
    for name in result.varied:
        if name in (plan.get("grid") or {}):
            swept.append(f"{name}: {', '.join(show_value(v) for v in plan['grid'][name])}")
        elif name in (plan.get("ranges") or {}):
            swept.append(f"{name}: {plan['ranges'][name]} ({plan.get('random')} random draws, "
                         f"sample seed {plan.get('sample_seed')})")
    counts = ", ".join(f"{result.count(s)} {s}" for s in ("ok", "diverged", "failed") if result.count(s))
    seeds = plan.get("seeds") or []
    overview = _key_values([
        ("preset", html.escape(str(plan.get("preset", "?")))),
        ("swept", "<br>".join(html.escape(s) for s in swept) or "only the seed"),
        ("changed in every trial", html.escape(", ".join(changed) or "nothing")),
        ("seeds", html.escape(", ".join(map(str, seeds)) or "—")),
        ("epochs", html.escape(str(plan.get("epochs") or "the preset's"))),
        ("subset", html.escape(f"first {plan['subset']:,} training images" if plan.get("subset")
                               else "all training images")),
        ("data", html.escape(str(plan.get("data", "?")))),
        ("trials", html.escape(f"{len(result)} of {result.total} finished: {counts or 'none'}")),
        ("ran on", html.escape(result.backend)),
        ("files", f"{_link('results.csv', out_dir)}, {_link('results.json', out_dir)}"),
    ])
    best = result.best
    if best is None:
        best_html = "<p class='missing'>No trial trained to the end.</p>"
    else:
        best_html = _key_values(
            [(f, html.escape(show_value(best[f]))) for f in result.fields]
            + [("seed", str(best["seed"])), ("trial", str(best["trial"])),
               ("validation accuracy", _pct(best.get("val_accuracy"))),
               ("test accuracy", _pct(best.get("test_accuracy"))),
               ("training loss", _cell(best.get("train_loss"))),
               ("model", f"{_link('best.npz', out_dir)} (a copy of {_link(best['model'], out_dir)})")])
    sections = []
    for name, problem in figures.items():
        heading, caption = _CAPTIONS[name]
        if problem is None:
            body = (f"<figure><img src='{name}.png' alt='{html.escape(heading)}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        else:
            body = f"<p class='missing'>Not drawn: {html.escape(problem)}</p>"
        sections.append(f"<section id='{name}'><h2>{html.escape(heading)}</h2>{body}</section>")
    if len(seeds) > 1:
        sections.append("<section id='configs'><h2>By setting, over the seeds</h2>"
                        f"<p>The {html.escape(metric_text)} of the trials that differ only in their "
                        f"seed.</p>{_config_table(result)}</section>")
    sections.append(f"<section id='trials'><h2>Every trial</h2><p>Ranked by {html.escape(metric_text)}; "
                    "each model file opens with <code>digitnet info</code>, <code>evaluate</code> or "
                    f"<code>report</code>.</p>{_trial_table(result, out_dir)}</section>")
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    title = f"digitnet sweep: {out_dir.name}"
    nav = " ".join(f"<a href='#{name}'>{html.escape(_CAPTIONS[name][0])}</a>" for name in figures)
    nav += " <a href='#trials'>Every trial</a>"
    return f"""{page_head(title)}
<p class="meta">Written {when} by digitnet {html.escape(__version__)}; trials are ranked by their
{html.escape(metric_text)}{'' if result.ranked_by == 'test_accuracy' else ' (the test set is kept for the final figure)'}.</p>
<div class="overview">
<div><h3>The sweep</h3>{overview}</div>
<div><h3>Best trial</h3>{best_html}</div>
</div>
<nav>{nav}</nav>
{''.join(sections)}
</body>
</html>
"""
