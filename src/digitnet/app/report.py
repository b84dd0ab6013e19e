"""From a model file to pictures: ``digitnet plot`` and ``digitnet report``.

:func:`render` draws one kind of picture for a loaded model the way the
command line does (it finds the test data, the class names, the recipe);
:func:`write_report` draws all of them into a folder together with an
``index.html`` that shows them next to the model's summary, recipe, final
accuracies and per-epoch table: one page with the whole story of a run.

The data comes from :func:`digitnet.data.load`, scaled as the model's
``preprocessing["scale"]`` says, from the model's ``recipe["data"]`` (or
``preprocessing["dataset"]``) unless another source is given.
"""

from __future__ import annotations

import datetime as _dt
import html
import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import DataError, DigitnetError
from ..files.modelfile import input_scale
from ..nn.network import Network
from . import plots

__all__ = ["KIND_TITLES", "render", "write_report", "load_data", "parse_lrs"]

#: What each kind of picture is called on the report page, with a sentence on how to read it.
KIND_TITLES = {
    "curves": ("Learning curves",
               "Loss and accuracy after every epoch. Training figures are averaged over the epoch as the "
               "weights changed; validation figures use the weights at the end of the epoch. A validation "
               "curve that turns up while the training curve keeps falling means overfitting."),
    "confusion": ("Confusion matrix",
                  "Rows are the true classes, columns the predictions; the diagonal (green) counts the digits "
                  "read correctly, red cells the mistakes, darker meaning more."),
    "mistakes": ("Mistakes",
                 "Test digits the network got wrong, those it was most confident about first."),
    "hidden": ("What the hidden units look for",
               "Every first-layer unit's 784 incoming weights drawn as a 28×28 image: red pixels excite the "
               "unit when there is ink on them, blue pixels inhibit it."),
    "activations": ("One digit through the network",
                    "A test digit, the activations it causes in every hidden layer, and the output."),
    "lr": ("Learning rate",
           "The model's architecture, optimiser and batch size trained briefly from the same initial weights "
           "at several constant learning rates (no schedule, no L2), on a random subset of the training "
           "data. The verdicts compare the runs with each other: the lowest final loss is 'best', one within "
           "10% of it 'about as good'."),
    "data": ("The data", "Examples of every class of the data set the model was trained on."),
}


@dataclass
class _Data:
    """A data set as the pictures use it; ``test_part`` says what X_test is ("test set" or "all rows")."""

    name: str
    X_train: np.ndarray
    y_train: np.ndarray
    X_test: np.ndarray
    y_test: np.ndarray
    classes: list | None
    test_part: str = "test set"


def _preprocessing(network: Network | None) -> dict:
    if network is None:
        return {}
    return network.metadata.get("preprocessing") or {}


def _trained_on(network: Network | None) -> str:
    """The model's data source: the recipe's (a path for folders and CSV files), else the data set's name."""
    if network is None:
        return "mnist"
    recipe = network.metadata.get("recipe") or {}
    source = recipe.get("data") if isinstance(recipe, dict) else None
    return str(source or _preprocessing(network).get("dataset") or "mnist")


def load_data(network: Network | None, data=None, *, limit: int | None = None) -> _Data:
    """The data set for a model: ``data``, else the model's ``recipe["data"]`` (where the
    model was trained on a folder or CSV file, its path), else its
    ``preprocessing["dataset"]`` (default MNIST).

    Images are scaled as the model expects (``preprocessing["scale"]``,
    default "unit").  A source without a test part (a CSV file) lends all
    its rows as the test set, as ``digitnet evaluate`` does.  ``limit``
    keeps only the first ``limit`` test samples.
    """
    from ..train.recipes import load_data as load_source

    prep = _preprocessing(network)
    source = data if data is not None else _trained_on(network)
    try:
        dataset = load_source(source, scale="unit" if network is None else input_scale(network))
    except DataError as exc:
        if data is not None:
            raise
        # The model's own data source (a folder or file since moved, say): say how to give it.
        raise DataError(f"cannot load {source}, the data this model was trained on ({exc}); "
                        "give the data with --data DIR (a folder of IDX files), --data FILE.csv "
                        "or --data NAME") from None
    X_test, y_test, part = dataset.X_test, dataset.y_test, "test set"
    if X_test is None:
        X_test, y_test, part = dataset.X_train, dataset.y_train, "all rows"
    if network is not None and X_test.shape[1] != network.sizes[0]:
        raise DataError(f"{source} has {X_test.shape[1]} values per sample but the model takes "
                        f"{network.sizes[0]} inputs: it was trained on other data")
    if limit is not None:
        X_test, y_test = X_test[:limit], y_test[:limit]
    classes = prep.get("classes") or dataset.classes
    return _Data(dataset.name, dataset.X_train, dataset.y_train, X_test, y_test, classes, part)


def parse_lrs(text) -> list[float] | None:
    """``"0.01,0.3,10"`` → ``[0.01, 0.3, 10.0]``; ``None`` stays ``None``."""
    if text is None or isinstance(text, (list, tuple)):
        return text
    try:
        lrs = [float(part) for part in str(text).split(",") if part.strip()]
    except ValueError:
        raise DigitnetError(f"--lrs must be comma-separated numbers like 0.01,0.3,10, got {text!r}") from None
    if not lrs or any(not (np.isfinite(lr) and lr > 0) for lr in lrs):
        raise DigitnetError(f"--lrs must be positive numbers like 0.01,0.3,10, got {text!r}")
    return lrs


def render(kind: str, network: Network | None, out=None, *, data=None, limit: int | None = None,
           index: int = 0, lrs=None, epochs: int = 3, subset: int = 5000, seed: int = 0,
           dataset: _Data | None = None):
    """Draw picture ``kind`` (one of :data:`digitnet.app.plots.KINDS`) for a loaded model.

    ``network`` may be ``None`` only for ``"data"``.  ``data`` names the
    data set (default: the model's), ``limit`` caps the test samples,
    ``index`` picks the test digit for ``"activations"``, and ``lrs``,
    ``epochs``, ``subset`` (training samples, drawn at random with
    ``seed``) set up ``"lr"``.  ``dataset`` passes already loaded data.
    Returns what the plotting function returns.
    """
    if kind not in plots.KINDS:
        raise DigitnetError(f"unknown picture {kind!r}: choose one of {', '.join(plots.KINDS)}")
    if network is None and kind != "data":
        raise DigitnetError(f"'{kind}' pictures a model: give a model file (digitnet plot {kind} MODEL --out FILE.png)")
    if kind == "curves":
        return plots.learning_curves(network, out)
    if kind == "hidden":
        return plots.hidden_units(network, out)
    if kind == "mistakes":   # check the shape before loading a data set for nothing
        plots._image_shape(network, None, "the mistakes grid")
    dataset = dataset or load_data(network, data, limit=limit)
    if kind == "data":
        if dataset.X_train[:1].size != 784:
            raise plots.NotDrawable(f"the data picture shows 28×28 images, but {dataset.name} has "
                                    f"{dataset.X_train[:1].size} values per sample")
        return plots.data_grid(dataset.X_train, dataset.y_train, out, classes=dataset.classes,
                               title=f"The data: {dataset.name}, the first 10 training images of every "
                                     f"class (of {len(dataset.X_train):,})")
    if kind == "lr":
        return _render_lr(network, dataset, out, lrs=lrs, epochs=epochs, subset=subset, seed=seed)
    X_test, y_test = dataset.X_test, dataset.y_test
    if kind == "confusion":
        return plots.confusion_matrix(network, X_test, y_test, out, classes=dataset.classes)
    if kind == "mistakes":
        return plots.mistakes(network, X_test, y_test, out, classes=dataset.classes)
    # activations
    index = _check_index(index, len(X_test))
    return plots.activations(network, X_test[index], out, label=int(y_test[index]), classes=dataset.classes,
                             title=_activation_title(network, dataset, index))


def _check_index(index, n_test: int) -> int:
    index = int(index)
    if not 0 <= index < n_test:
        raise DigitnetError(f"--index {index} is out of range: the test set has {n_test:,} samples "
                            f"(0 to {n_test - 1})")
    return index


def _activation_title(network, dataset, index):
    names = plots._class_names(network, max(network.sizes[-1], 2), dataset.classes)
    output = network.predict_proba(dataset.X_test[index:index + 1])
    pred, conf = plots._labels_and_confidence(network, output)
    pred, truth = int(pred[0]), int(dataset.y_test[index])
    strength = plots._prediction_text(network, output[0], pred, float(conf[0]))
    what = "Test sample" if dataset.test_part == "test set" else "Sample"
    return (f"{what} #{index} of {dataset.name} through the network: true class {names[truth]}, "
            f"predicted {names[pred]} ({strength}) — {'right' if pred == truth else 'wrong'}")


def _render_lr(network, dataset, out, *, lrs, epochs, subset, seed):
    subset = int(subset)
    if subset < 1:
        raise DigitnetError(f"--subset must be at least 1, got {subset}")
    n = len(dataset.X_train)
    # A seeded random subset, not the first rows: a data folder may be sorted by class.
    rows = np.sort(np.random.default_rng(seed).choice(n, size=min(subset, n), replace=False))
    return plots.learning_rates(network, dataset.X_train[rows], dataset.y_train[rows], out,
                                lrs=parse_lrs(lrs), epochs=epochs, seed=seed)


# -- the report page ---------------------------------------------------------------------------------
_STYLE = """
body { font-family: system-ui, -apple-system, "Segoe UI", sans-serif; margin: 2rem auto; max-width: 1150px;
       padding: 0 1rem; color: #222; line-height: 1.45; }
h1 { margin-bottom: 0.2rem; } h2 { margin-top: 2.2rem; border-bottom: 1px solid #ddd; }
h3 { margin-bottom: 0.3rem; } .meta { color: #666; margin-top: 0; }
.overview { display: flex; flex-wrap: wrap; gap: 0 2.5rem; align-items: flex-start; }
pre { background: #f6f6f6; padding: 0.8rem; overflow-x: auto; }
table { border-collapse: collapse; margin: 0.5rem 0 1rem; font-size: 0.95rem; }
th, td { border: 1px solid #ddd; padding: 0.2rem 0.6rem; text-align: right; vertical-align: top; }
th { background: #f0f0f0; } td.key { text-align: left; font-weight: 600; }
td.text { text-align: left; max-width: 22rem; overflow-wrap: anywhere; }
figure { margin: 1rem 0; } img { max-width: 100%; height: auto; border: 1px solid #eee; }
figcaption { color: #444; max-width: 60rem; }
.missing { color: #a33; font-style: italic; } nav a { margin-right: 0.8rem; }
"""


def _number(value, digits=4):
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:.{digits}g}" if np.isfinite(value) else str(value)
    return html.escape(str(value))


def _plain(value) -> str:
    """A header value as a person reads it: no JSON quotes, "—" for nothing."""
    if value is None or value == "":
        return "—"
    if isinstance(value, str):
        return value
    if isinstance(value, (list, tuple)) and all(isinstance(v, (str, int, float)) for v in value):
        return ", ".join(str(v) for v in value)
    if isinstance(value, dict):
        return json.dumps(value) if value else "—"
    return str(value)


def _key_value_table(mapping: dict) -> str:
    if not mapping:
        return "<p>(none recorded)</p>"
    rows = [f"<tr><td class='key'>{html.escape(str(key))}</td><td class='text'>{html.escape(_plain(value))}</td></tr>"
            for key, value in mapping.items()]
    return "<table>" + "".join(rows) + "</table>"


#: Longer histories are shown as this many evenly spaced epochs (always with the first and last).
MAX_TABLE_ROWS = 60


def _epoch_table(records: list) -> str:
    if not records:
        return "<p>This model has no training history.</p>"
    note = ""
    if len(records) > MAX_TABLE_ROWS:
        keep = np.unique(np.linspace(0, len(records) - 1, MAX_TABLE_ROWS).round().astype(int))
        note = f"<p>{len(keep)} of {len(records):,} epochs shown, evenly spaced.</p>"
        records = [records[i] for i in keep]
    columns = [("epoch", "epoch"), ("loss", "training loss"), ("accuracy", "training accuracy"),
               ("val_loss", "validation loss"), ("val_accuracy", "validation accuracy"),
               ("lr", "learning rate"), ("seconds", "seconds")]
    head = "".join(f"<th>{html.escape(title)}</th>" for _, title in columns)
    body = []
    for record in records:
        cells = []
        for key, _ in columns:
            value = record.get(key)
            if key.endswith("accuracy") and value is not None:
                cells.append(f"<td>{100 * value:.2f}%</td>")
            elif key == "seconds" and value is not None:
                cells.append(f"<td>{value:.1f}</td>")
            else:
                cells.append(f"<td>{_number(value)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"{note}<table><tr>{head}</tr>{''.join(body)}</table>"


def _accuracy_rows(network: Network, dataset: _Data) -> list[tuple[str, str]]:
    records = ((network.metadata.get("history") or {}).get("records")) or []
    rows = []
    if records:
        last = records[-1]
        rows.append((f"training (epoch {last.get('epoch')}, average over the epoch)",
                     plots._percent(last.get("accuracy"))))
        if last.get("val_accuracy") is not None:
            rows.append((f"validation (epoch {last.get('epoch')})", plots._percent(last["val_accuracy"])))
    correct = int(np.count_nonzero(network.predict(dataset.X_test) == dataset.y_test))
    rows.append((f"{dataset.name} {dataset.test_part} ({len(dataset.X_test):,} samples)",
                 plots._percent(correct / len(dataset.X_test))))
    return rows


def write_report(model, out_dir, *, data=None, limit: int | None = None, index: int = 0, lrs=None,
                 epochs: int = 3, subset: int = 5000, seed: int = 0, kinds=None) -> Path:
    """Write every picture of ``model`` (a path or a loaded Network) and an ``index.html`` into ``out_dir``.

    The folder is created if needed.  Pictures that cannot be drawn for this
    model (no history for the curves, inputs that are not 28×28 images) are
    replaced on the page by a sentence saying why; every other problem
    raises.  ``kinds`` limits the pictures (default: all of
    :data:`digitnet.app.plots.KINDS`).  The options are those of :func:`render`.
    Returns the path of ``index.html``, written last, so it never refers to
    a picture that is not there.
    """
    from ..files.fileio import atomic_write
    from ..files.modelfile import load_model

    source = None
    if isinstance(model, Network):
        network = model
    else:
        source = Path(model)
        network = load_model(source)
    out_dir = Path(out_dir)
    if out_dir.exists() and not out_dir.is_dir():
        raise DigitnetError(f"cannot write the report into {out_dir}: it is a file, not a folder")
    kinds = list(plots.KINDS if kinds is None else kinds)
    unknown = [kind for kind in kinds if kind not in plots.KINDS]
    if unknown:
        raise DigitnetError(f"unknown picture {unknown[0]!r}: choose from {', '.join(plots.KINDS)}")
    # Everything that can fail early does, before the folder exists: a bad --index
    # or data source leaves nothing behind.
    dataset = load_data(network, data, limit=limit)
    if "activations" in kinds:
        _check_index(index, len(dataset.X_test))
    lrs = parse_lrs(lrs)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise DigitnetError(f"cannot create the report folder {out_dir}: {exc.strerror}") from None

    figures = {}
    for kind in kinds:
        try:
            render(kind, network, out_dir / f"{kind}.png", index=index, lrs=lrs, epochs=epochs,
                   subset=subset, seed=seed, dataset=dataset)
        except plots.NotDrawable as exc:
            # "This model cannot have this picture" goes on the page; anything else is an error.
            figures[kind] = str(exc)
            continue
        figures[kind] = None

    name = source.name if source is not None else "model"
    page = _page(network, name, source, dataset, figures)
    index_path = out_dir / "index.html"

    atomic_write(index_path, lambda file: file.write(page.encode("utf-8")), "report page")
    return index_path


def page_head(title: str) -> str:
    """The start of a digitnet HTML page, through its <h1>: the report's and the sweep page's."""
    return f"""<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{html.escape(title)}</title>
<style>{_STYLE}</style>
</head>
<body>
<h1>{html.escape(title)}</h1>"""


def _page(network: Network, name: str, source, dataset: _Data, figures: dict) -> str:
    meta = network.metadata
    records = ((meta.get("history") or {}).get("records")) or []
    title = f"digitnet report: {name}"
    accuracy = "".join(f"<tr><td class='key'>{html.escape(k)}</td><td>{v}</td></tr>"
                       for k, v in _accuracy_rows(network, dataset))
    nav = " ".join(f"<a href='#{kind}'>{html.escape(KIND_TITLES[kind][0])}</a>" for kind in figures)
    sections = []
    for kind, problem in figures.items():
        heading, caption = KIND_TITLES[kind]
        if problem is None:
            body = (f"<figure><img src='{kind}.png' alt='{html.escape(heading)}'>"
                    f"<figcaption>{html.escape(caption)}</figcaption></figure>")
        else:
            body = f"<p class='missing'>Not drawn: {html.escape(problem)}</p>"
        if kind == "curves":   # the numbers behind the curves
            body += f"<h3>Epoch by epoch</h3>{_epoch_table(records)}"
        sections.append(f"<section id='{kind}'><h2>{html.escape(heading)}</h2>{body}</section>")
    when = _dt.datetime.now(_dt.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    where = f" from <code>{html.escape(str(source))}</code>" if source is not None else ""
    saved_by = str(meta.get("digitnet_version", "?"))
    return f"""{page_head(title)}
<p class="meta">Written {when} by digitnet {html.escape(__version__)}{where}; the model was saved
{html.escape(str(meta.get('created', 'at an unknown time')))} by digitnet {html.escape(saved_by)};
test data: {html.escape(dataset.name)} ({html.escape(dataset.test_part)}).</p>
<div class="overview">
<div><h3>The network</h3><pre>{html.escape(network.summary())}</pre>
<h3>Accuracy</h3><table>{accuracy}</table>
<h3>Preprocessing</h3>{_key_value_table(meta.get("preprocessing") or {})}</div>
<div><h3>Recipe</h3>{_key_value_table(meta.get("recipe") or {})}</div>
</div>
<nav>{nav}</nav>
{''.join(sections)}
</body>
</html>
"""
