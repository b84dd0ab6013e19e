"""docs/guide.md stays true: its snippets run, and its links point at the right lines.

The guide ties each equation of the seed texts to the digitnet function that
computes it, with links such as
``[`Network.backprop`](../src/digitnet/nn/network.py#L140-L173)``.  Two kinds of
check keep it from going stale:

* every ```` ```python ```` block runs, each in a fresh namespace, and its
  asserts compare the seed's formula with digitnet's numbers;
* every link into ``src/digitnet/…py#Lstart-Lend`` must name, in backticks,
  the object found there (``Network.backprop``, ``Quadratic.value``, ``fit``),
  and the range must be that object's lines as ``inspect.getsourcelines``
  reports them (decorators included).  The module is derived from the path
  (``src/digitnet/a/b.py`` → ``digitnet.a.b``), so moved files need only
  their links updated, never this test.

When lines move, the failure message prints the range to write instead.
"""

from __future__ import annotations

import importlib
import inspect
import re
import warnings
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
GUIDE = ROOT / "docs" / "guide.md"
SRC = ROOT / "src"

#: The seed systems; each must have a ``##`` section whose heading contains the key.
SEED_SECTIONS = ("Nielsen", "Raschka", "lecture", "Zhang", "XOR")

_FENCE = re.compile(r"^```(\w*)[ \t]*$")
# [`Name.attr`](../src/digitnet/path.py#L12-L34); the text may end in "()".
_LINK = re.compile(r"\[(?P<text>[^\]]+)\]\((?P<path>\.\./src/digitnet/[^)#\s]+\.py)"
                   r"#L(?P<start>\d+)(?:-L(?P<end>\d+))?\)")
_OBJECT_TEXT = re.compile(r"^`(?P<name>[A-Za-z_][\w.]*?)(?:\(\))?`$")


def _guide_text() -> str:
    return GUIDE.read_text(encoding="utf-8")


def _python_blocks(text: str) -> list[tuple[int, str]]:
    """``(first line number of the code, code)`` for every ```python block."""
    blocks, lines, i = [], text.splitlines(), 0
    while i < len(lines):
        m = _FENCE.match(lines[i])
        if m is None:
            i += 1
            continue
        lang, start, i = m.group(1), i + 1, i + 1
        while i < len(lines) and not lines[i].startswith("```"):
            i += 1
        if i == len(lines):
            raise AssertionError(f"docs/guide.md: the code block opened on line {start} is never closed")
        if lang == "python":
            blocks.append((start + 1, "\n".join(lines[start:i]) + "\n"))
        i += 1
    return blocks


def _sections(text: str) -> list[tuple[str, str]]:
    """``(heading, body)`` for every ``## `` section (deeper headings stay in the body)."""
    parts = re.split(r"^## +(.+)$", text, flags=re.MULTILINE)
    return list(zip(parts[1::2], parts[2::2]))


def _links(text: str):
    for m in _LINK.finditer(text):
        start = int(m.group("start"))
        end = int(m.group("end") or start)
        line = text.count("\n", 0, m.start()) + 1
        yield m.group("text"), m.group("path"), (start, end), line


def module_name(path: str) -> str:
    """``../src/digitnet/a/b.py`` → ``digitnet.a.b`` (a package's ``__init__.py`` → the package)."""
    parts = list(Path(path.split("src/", 1)[1]).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def resolve(path: str, dotted: str):
    """The object ``dotted`` (``Network.backprop``) of the module at ``path``."""
    obj = importlib.import_module(module_name(path))
    for attr in dotted.split("."):
        obj = inspect.getattr_static(obj, attr)
        if isinstance(obj, (staticmethod, classmethod)):
            obj = obj.__func__
        elif isinstance(obj, property):
            obj = obj.fget
    return obj


def actual_range(path: str, dotted: str) -> tuple[int, int]:
    """First and last line of ``dotted``'s source in ``path`` (1-based, inclusive)."""
    obj = resolve(path, dotted)
    source_file = inspect.getsourcefile(obj)
    linked = (GUIDE.parent / path).resolve()
    if source_file is None or Path(source_file).resolve() != linked:
        raise AssertionError(f"`{dotted}` is defined in {source_file}, not in {path}: link that file")
    lines, first = inspect.getsourcelines(obj)
    return first, first + len(lines) - 1


BLOCKS = _python_blocks(_guide_text()) if GUIDE.exists() else []


def _block_id(index: int, code: str) -> str:
    first = next((ln.strip() for ln in code.splitlines() if ln.strip()), "")
    first = re.sub(r"[^\w.()=,:+-]+", "_", first.lstrip("# "))[:60].strip("_")
    return f"{index}-{first}"


@pytest.mark.parametrize(("first_line", "code"),
                         [pytest.param(line, code, id=_block_id(i, code))
                          for i, (line, code) in enumerate(BLOCKS)])
def test_snippet_runs(first_line, code):
    # Padding puts the code on its own line numbers: a traceback points into docs/guide.md.
    compiled = compile("\n" * (first_line - 1) + code, str(GUIDE), "exec")
    with warnings.catch_warnings():
        warnings.simplefilter("error")      # a snippet that overflows or divides by zero reads poorly
        exec(compiled, {"__name__": "__guide__"})


def test_guide_has_snippets():
    assert GUIDE.exists(), "docs/guide.md is missing"
    assert len(BLOCKS) >= len(SEED_SECTIONS)


def test_links_name_their_lines():
    text = _guide_text()
    links = list(_links(text))
    assert links, "the guide links no source lines"
    wrong = []
    for link_text, path, (start, end), line in links:
        m = _OBJECT_TEXT.match(link_text.strip())
        if m is None:
            wrong.append(f"guide line {line}: [{link_text}]({path}#L{start}-L{end}) links a line range "
                         "but its text is not a `Python.name`, so nothing can check it")
            continue
        name = m.group("name")
        if not (GUIDE.parent / path).resolve().is_file():
            wrong.append(f"guide line {line}: {path} does not exist (moved?)")
            continue
        try:
            first, last = actual_range(path, name)
        except (ImportError, AttributeError, TypeError, OSError, AssertionError) as exc:
            wrong.append(f"guide line {line}: cannot find `{name}` in {path}: {type(exc).__name__}: {exc}")
            continue
        if (start, end) != (first, last):
            wrong.append(f"guide line {line}: `{name}` is {path}#L{first}-L{last}, "
                         f"the guide says #L{start}-L{end}")
    assert not wrong, "stale links in docs/guide.md:\n" + "\n".join(wrong)


def test_every_seed_section_links_code_and_runs_it():
    sections = _sections(_guide_text())
    problems = []
    for key in SEED_SECTIONS:
        found = [(h, body) for h, body in sections if key.lower() in h.lower()]
        if len(found) != 1:
            problems.append(f"{key}: expected one '## …{key}…' section, found {len(found)}")
            continue
        heading, body = found[0]
        if not any(_OBJECT_TEXT.match(t.strip()) for t, *_ in _links(body)):
            problems.append(f"'{heading}': no link to the code that computes its equations")
        if not _python_blocks(body):
            problems.append(f"'{heading}': no ```python snippet")
    assert not problems, "\n".join(problems)


def _slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    return re.sub(r"[^\w\- ]", "", heading.strip().lower()).replace(" ", "-")


def test_anchors_exist():
    text = _guide_text()
    prose = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    anchors = {_slug(h) for h in re.findall(r"^#+ +(.+)$", prose, flags=re.MULTILINE)}
    missing = [a for a in re.findall(r"\]\(#([^)]+)\)", text) if a not in anchors]
    assert not missing, f"links to headings that do not exist: {missing}; headings: {sorted(anchors)}"


def test_module_name_from_path():
    assert module_name("../src/digitnet/nn/network.py") == "digitnet.nn.network"
    assert module_name("../src/digitnet/nn/network.py") == "digitnet.nn.network"
    assert module_name("../src/digitnet/train/__init__.py") == "digitnet.train"
