"""A digitnet network as an ONNX model, for runtimes outside Python and NumPy.

:func:`to_onnx` builds the graph with ``onnx.helper``: one ``Gemm`` per layer
(``z = a·Wᵀ + b``, the weights as they are, ``transB=1``), then the layer's
activation node (``Sigmoid``, ``Tanh``, ``Relu``, ``Softmax`` on the last
axis; none for the identity), and a ``label`` output (``ArgMax``, or ``> 0.5``
for a single output).  The batch dimension is dynamic.  The model's
``metadata_props`` say how to prepare its inputs and what its outputs mean:

* ``digitnet.input_scale``: ``unit`` (x = pixel / 255) or ``symmetric``
  (x = pixel / 255 · 2 − 1), and ``digitnet.input_transform``, that formula in words;
* ``digitnet.input_shape``: the image shape as JSON, e.g. ``[28, 28]`` (rows of 784 values);
* ``digitnet.classes``: the class names in output order, as a JSON list;
* ``digitnet.layers``, ``digitnet.activations``, ``digitnet.loss``: the architecture;
* ``digitnet.version``: the digitnet that exported it.

:func:`save_onnx` writes the file atomically.  The ``onnx`` package is
imported only here, when called (``pip install "digitnet[onnx]"``).
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from .. import __version__
from ..errors import DigitnetError
from ..nn.network import Network
from .fileio import atomic_write
from .modelfile import class_names, input_scale

__all__ = ["DEFAULT_OPSET", "INPUT_NAME", "LABEL_NAME", "MIN_OPSET", "OUTPUT_NAME", "save_onnx",
           "to_onnx", "write_onnx"]

#: The opset written unless another is asked for (Softmax on one axis needs ≥ 13; 17 is widely run).
DEFAULT_OPSET = 17
MIN_OPSET = 17
INPUT_NAME, OUTPUT_NAME, LABEL_NAME = "input", "output", "label"

#: digitnet's activations as ONNX operators (identity: no node at all)
_OPERATORS = {"sigmoid": "Sigmoid", "tanh": "Tanh", "relu": "Relu", "softmax": "Softmax",
              "identity": None}
_TRANSFORMS = {"unit": "x = pixel / 255 (grey levels 0..255 to [0, 1])",
               "symmetric": "x = pixel / 255 * 2 - 1 (grey levels 0..255 to [-1, 1])"}


def _onnx():
    try:
        import onnx
    except ImportError:
        raise DigitnetError('ONNX export needs the onnx package: pip install "digitnet[onnx]"') from None
    return onnx


def to_onnx(network: Network, *, opset: int = DEFAULT_OPSET, classes=None, scale: str | None = None,
            input_shape=None, name: str = "digitnet"):
    """``network`` as an ``onnx.ModelProto`` computing its outputs for a batch of inputs.

    Input ``input`` ``(batch, n_inputs)`` of the network's dtype (float32 or
    float64), already scaled as the network was trained (see
    ``metadata_props``); outputs ``output`` ``(batch, n_outputs)``, the output
    layer's activations (class probabilities for softmax), and ``label``
    ``(batch,)`` int64, the class index (argmax; ``output > 0.5`` for one output).

    ``classes``, ``scale`` (``"unit"``/``"symmetric"``) and ``input_shape``
    default to what a loaded model file's header says (digits and ``unit``
    otherwise).  ``opset`` ≥ 17.
    """
    onnx = _onnx()
    from onnx import TensorProto, helper, numpy_helper

    if not isinstance(network, Network):
        raise DigitnetError(f"to_onnx takes a digitnet Network, got {type(network).__name__}")
    latest = onnx.defs.onnx_opset_version()
    if isinstance(opset, bool) or not isinstance(opset, (int, np.integer)) or not MIN_OPSET <= opset <= latest:
        raise DigitnetError(f"opset must be a whole number from {MIN_OPSET} to {latest} (this onnx "
                            f"package's newest), got {opset!r}")
    acts = [a.name for a in network.activations]
    unknown = [a for a in acts if a not in _OPERATORS]
    if unknown or any(type(a).__module__ != "digitnet.nn.activations" for a in network.activations):
        raise DigitnetError(f"cannot export the activation {(unknown or acts)[0]!r} to ONNX: only "
                            f"{', '.join(_OPERATORS)} have an ONNX operator here")
    scale = scale if scale is not None else input_scale(network)
    if scale not in _TRANSFORMS:
        raise DigitnetError(f"scale must be 'unit' or 'symmetric', got {scale!r}")
    classes = [str(c) for c in (classes if classes is not None else class_names(network))]
    if len(classes) != max(network.sizes[-1], 2):
        raise DigitnetError(f"{len(classes)} class names for a network with {network.sizes[-1]} "
                            f"output{'s' if network.sizes[-1] != 1 else ''}")
    if input_shape is None:
        pre = network.metadata.get("preprocessing") if isinstance(network.metadata, dict) else None
        input_shape = (pre or {}).get("input_shape") or [network.sizes[0]]
    input_shape = [int(s) for s in input_shape]
    if int(np.prod(input_shape)) != network.sizes[0]:
        raise DigitnetError(f"input_shape {input_shape} does not hold the network's "
                            f"{network.sizes[0]} inputs")

    elem = TensorProto.DOUBLE if network.dtype == np.float64 else TensorProto.FLOAT
    nodes, initializers = [], []
    a = INPUT_NAME
    for l, (W, b, act) in enumerate(zip(network.weights, network.biases, acts), start=1):
        last = l == network.n_layers
        initializers += [numpy_helper.from_array(np.array(W), f"W{l}"),
                         numpy_helper.from_array(np.array(b), f"b{l}")]
        z = f"z{l}" if (_OPERATORS[act] or not last) else OUTPUT_NAME
        # z_l = a_{l−1} · W_lᵀ + b_l, with W_l (n_out, n_in) as digitnet keeps it
        nodes.append(helper.make_node("Gemm", [a, f"W{l}", f"b{l}"], [z], name=f"layer{l}",
                                      transB=1))
        a = z
        op = _OPERATORS[act]
        if op is not None:
            out = OUTPUT_NAME if last else f"a{l}"
            extra = {"axis": -1} if op == "Softmax" else {}
            nodes.append(helper.make_node(op, [z], [out], name=f"{act}{l}", **extra))
            a = out
        elif not last:
            a = z          # the identity: the next layer reads z_l itself
    if network.sizes[-1] == 1:   # one output: class 1 when it exceeds 0.5
        initializers += [numpy_helper.from_array(np.array(0.5, dtype=network.dtype), "half"),
                         numpy_helper.from_array(np.array([1], dtype=np.int64), "axis1")]
        nodes += [helper.make_node("Greater", [OUTPUT_NAME, "half"], ["above"], name="threshold"),
                  helper.make_node("Squeeze", ["above", "axis1"], ["above_flat"], name="flatten"),
                  helper.make_node("Cast", ["above_flat"], [LABEL_NAME], name="to_label",
                                   to=TensorProto.INT64)]
    else:
        nodes.append(helper.make_node("ArgMax", [OUTPUT_NAME], [LABEL_NAME], name="argmax",
                                      axis=1, keepdims=0))

    batch = "batch"
    graph = helper.make_graph(
        nodes, name,
        [helper.make_tensor_value_info(INPUT_NAME, elem, [batch, network.sizes[0]])],
        [helper.make_tensor_value_info(OUTPUT_NAME, elem, [batch, network.sizes[-1]]),
         helper.make_tensor_value_info(LABEL_NAME, TensorProto.INT64, [batch])],
        initializer=initializers)
    opsets = [helper.make_opsetid("", int(opset))]
    model = helper.make_model(graph, opset_imports=opsets, producer_name="digitnet",
                              producer_version=__version__,
                              ir_version=helper.find_min_ir_version_for(opsets),
                              doc_string=f"digitnet network {' → '.join(map(str, network.sizes))} "
                                         f"({', '.join(acts)}); inputs: {_TRANSFORMS[scale]}")
    helper.set_model_props(model, {
        "digitnet.version": __version__,
        "digitnet.input_scale": scale,
        "digitnet.input_transform": _TRANSFORMS[scale],
        "digitnet.input_shape": json.dumps(input_shape),
        "digitnet.classes": json.dumps(classes),
        "digitnet.layers": json.dumps(list(network.sizes)),
        "digitnet.activations": json.dumps(acts),
        "digitnet.loss": network.loss.name,
    })
    return model


def save_onnx(network: Network, path, **options) -> Path:
    """Write :func:`to_onnx` ``(network, **options)`` to ``path`` atomically; returns the path."""
    return write_onnx(to_onnx(network, **options), path)


def write_onnx(model, path) -> Path:
    """Write an ``onnx.ModelProto`` to ``path`` atomically (a temporary file renamed into place)."""
    path = Path(path)
    if path.is_dir():
        raise DigitnetError(f"cannot write {path}: it is a folder; give a file name such as "
                            f"{path / 'model.onnx'}")
    data = model.SerializeToString()
    return atomic_write(path, lambda f: f.write(data), "ONNX model")
