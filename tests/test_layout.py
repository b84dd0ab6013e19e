"""The layout holds its direction: nn ← train ← app, and ``import digitnet`` stays light.

``digitnet.nn`` is the math and needs NumPy only; ``digitnet.train`` uses it
(and the data loaders and model files); the applications (``digitnet.app``:
the command, the web page, pictures) sit on top.  These tests read every
import statement of the package, so a shortcut the wrong way fails here,
whether it sits at the top of a module or inside a function.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "digitnet"

#: what each layer may not import (besides itself, every layer may use digitnet.errors)
FORBIDDEN = {
    "nn": ("digitnet.train", "digitnet.app", "digitnet.data", "digitnet.files"),
    "train": ("digitnet.app",),
    "data": ("digitnet.nn", "digitnet.train", "digitnet.app"),
    "files": ("digitnet.train", "digitnet.app"),
}
#: the one door from the math to the loop: ``Network.fit`` is a shortcut for
#: ``digitnet.train.fit(network, …)``, imported when called
ALLOWED = {("nn/network.py", "digitnet.train.loop")}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _imports(path: Path):
    """Absolute names of the modules ``path`` imports (relative imports resolved)."""
    module = _module_name(path)
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            yield from (alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module
            yield target
            for alias in node.names:                  # `from . import x` imports module x
                yield f"{target}.{alias.name}"


def _layer_files(layer):
    return sorted((PACKAGE / layer).rglob("*.py"))


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_downwards(layer):
    files = _layer_files(layer)
    assert files, f"digitnet/{layer} has no modules"
    wrong = []
    for path in files:
        rel = str(path.relative_to(PACKAGE))
        for name in _imports(path):
            allowed = any(rel == file and (name == door or name.startswith(door + "."))
                          for file, door in ALLOWED)
            if name.startswith(FORBIDDEN[layer]) and not allowed:
                wrong.append(f"{rel} imports {name}")
    assert not wrong, "imports against the layering:\n" + "\n".join(wrong)


def test_the_math_needs_numpy_only():
    """Outside the standard library, digitnet.nn imports NumPy and nothing else."""
    stdlib = set(sys.stdlib_module_names)
    foreign = set()
    for path in _layer_files("nn"):
        for name in _imports(path):
            top = name.split(".")[0]
            if top not in stdlib and top not in ("numpy", "digitnet", "__future__"):
                foreign.add(f"{path.name}: {name}")
    assert not foreign, foreign


def test_the_checker_sees_a_wrong_import(tmp_path, monkeypatch):
    """The test above can fail: a module of nn that imports the app layer is caught."""
    fake = tmp_path / "digitnet" / "nn"
    fake.mkdir(parents=True)
    (fake / "bad.py").write_text("def f():\n    from ..app import plots\n")
    monkeypatch.setattr(sys.modules[__name__], "PACKAGE", tmp_path / "digitnet")
    with pytest.raises(AssertionError, match="nn/bad.py imports digitnet.app"):
        test_each_layer_imports_only_downwards("nn")


def test_import_digitnet_stays_light():
    """``import digitnet`` (and using a network) loads no matplotlib, FastAPI, Pillow, SciPy,
    scikit-learn, ONNX or tqdm (the extras are imported where they are used)."""
    code = ("import sys, digitnet, numpy as np\n"
            "net = digitnet.Network([4, 3, 2], seed=0)\n"
            "net.fit(np.eye(4), [0, 1, 0, 1], epochs=1, batch_size=2)\n"
            "heavy = sorted(m for m in sys.modules if m.split('.')[0] in "
            "('matplotlib', 'fastapi', 'starlette', 'uvicorn', 'PIL', 'scipy', 'torch', 'sklearn', "
            "'onnx', 'onnxruntime', 'tqdm', 'ipywidgets', 'IPython', 'pandas'))\n"
            "apps = sorted(m for m in sys.modules if m.startswith('digitnet.app'))\n"
            "print(heavy, apps)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[] []", out.stdout + out.stderr
