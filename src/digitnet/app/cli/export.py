"""``digitnet export``: a model file in another format (ONNX), for other runtimes."""

from __future__ import annotations

import json
from pathlib import Path

from ...errors import DigitnetError
from .common import add_command, load_model, positive_int

EXAMPLES = """\
  digitnet export digitnet-best.npz --format onnx --out digitnet-best.onnx
  digitnet export digitnet-best.npz                  the same (ONNX, named after the model)
  digitnet export model.npz --opset 18 --out model.onnx
"""

DESCRIPTION = """\
Write a model as an ONNX file, which onnxruntime and other ONNX runtimes run
without digitnet or Python. The graph is one Gemm per layer with its
activation (Sigmoid, Tanh, Relu, Softmax; nothing for identity) and a
dynamic batch dimension: input 'input' (batch, 784) of pixels scaled as the
model was trained (unit: pixel/255; symmetric: pixel/255*2-1), outputs
'output' (batch, classes), the output layer's activations (probabilities for
softmax), and 'label' (batch,), the class index. The scaling, input shape and
class names are in the model's metadata_props (digitnet.input_scale,
digitnet.input_shape, digitnet.classes). The file is checked with onnx's
full checker before it is written, and written atomically.
Needs the onnx package: pip install "digitnet[onnx]".
"""

FORMATS = ("onnx",)


def add_parser(subparsers):
    p = add_command(subparsers, "export", help="write a model as ONNX for other runtimes",
                    description=DESCRIPTION, examples=EXAMPLES, run=run)
    p.add_argument("model", metavar="MODEL", help="a model (or checkpoint) file")
    p.add_argument("--format", choices=FORMATS, default="onnx", help="the format (default: onnx)")
    p.add_argument("--out", metavar="FILE", help="where to write it (default: MODEL with .onnx)")
    p.add_argument("--opset", type=positive_int, metavar="N",
                   help="the ONNX opset to target, 17 or newer (default: 17)")
    return p


def _default_out(model: str) -> Path:
    path = Path(model)
    name = path.name
    for suffix in (".ckpt.npz", ".npz"):
        if name.endswith(suffix):
            return path.with_name(name[: -len(suffix)] + ".onnx")
    return path.with_name(name + ".onnx")


def run(args) -> int:
    from ...files.onnx_export import DEFAULT_OPSET, to_onnx, write_onnx

    network = load_model(args.model)     # one-line ModelFileError for anything wrong
    out = Path(args.out) if args.out else _default_out(args.model)
    if out.resolve() == Path(args.model).resolve():
        raise DigitnetError(f"--out {out} would overwrite the model itself: choose another name")
    opset = args.opset or DEFAULT_OPSET
    model = to_onnx(network, opset=opset)
    import onnx

    try:
        onnx.checker.check_model(model, full_check=True)
    except onnx.checker.ValidationError as exc:   # a defect of the exporter, said in one line
        raise DigitnetError(f"the ONNX graph failed onnx's checker ({' '.join(str(exc).split())[:300]}); "
                            "please report this") from None
    write_onnx(model, out)
    props = {p.key: p.value for p in model.metadata_props}
    classes = json.loads(props["digitnet.classes"])
    dtype = network.dtype.name
    print(f"wrote {out}: ONNX opset {opset}, {' → '.join(map(str, network.sizes))} "
          f"({', '.join(a.name for a in network.activations)})")
    print(f"input 'input' {dtype} (batch, {network.sizes[0]}): {props['digitnet.input_transform']}")
    print(f"outputs 'output' {dtype} (batch, {network.sizes[-1]}) and 'label' int64 (batch,); "
          f"classes {' '.join(classes)}")
    return 0
