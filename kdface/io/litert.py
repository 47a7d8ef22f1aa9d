"""Exported LiteRT (``.tflite``) models behind the small part of the Keras model interface that the task
evaluations use, so ``test.py --model x.tflite`` evaluates an exported model like its ``.keras``.

:class:`LiteRTModel` runs the file with ``ai_edge_litert.interpreter.Interpreter`` (the LiteRT runtime;
``tf.lite.Interpreter`` is deprecated) and offers ``predict_on_batch``, ``predict``, ``input_shape``,
``output_shape`` and ``layers`` / ``get_layer`` / ``with_output`` for the per-image outputs that
``python -m kdface.export`` exported beside the main one (SCN's ``importance``). Inputs are float
crops in ``[0, 1]`` and outputs float, as for the Keras model, also when the file has integer I/O
(``--uint8-io``): the adapter quantises and dequantises with the file's own scales.

A file that needs TensorFlow ops (Flex) is refused: phones' LiteRT runtimes do not have them, and
kdface exports builtin ops only.
"""

from __future__ import annotations

import contextlib
import copy
import os
import sys
import tempfile
import types
from pathlib import Path

import numpy as np

from kdface.errors import DataFormatError, RunError

# pip requirement of the LiteRT runtime (also in requirements.txt and pyproject's "export" extra)
LITERT_REQUIREMENT = "ai-edge-litert==2.3.0"
# The signature output of the model's own (first) output in files kdface exports; other outputs are named
# after the layer they come from.
MAIN_OUTPUT = "output_0"
TFLITE_IDENTIFIER = b"TFL3"


def interpreter_class():
    """``ai_edge_litert.interpreter.Interpreter``, or a :class:`RunError` saying how to install it."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        raise RunError(
            f"running a .tflite model needs the LiteRT runtime: pip install {LITERT_REQUIREMENT} "
            "(or pip install 'kdface[export]')"
        ) from None
    return Interpreter


def operators(content: bytes) -> list[str]:
    """The operator codes of a ``.tflite`` flatbuffer: builtin names (``CONV_2D``), custom ops by their
    custom code (``FlexErf`` for a TensorFlow op run by the Flex delegate)."""
    interpreter_class()  # the schema comes with the runtime
    from ai_edge_litert import schema_py_generated as schema

    names = {code: name for name, code in vars(schema.BuiltinOperator).items() if not name.startswith("_")}
    model = schema.Model.GetRootAsModel(content, 0)
    found = set()
    for i in range(model.OperatorCodesLength()):
        code = model.OperatorCodes(i)
        builtin = max(code.BuiltinCode(), code.DeprecatedBuiltinCode())
        custom = code.CustomCode()
        found.add(custom.decode() if custom else names.get(builtin, f"BUILTIN_{builtin}"))
    return sorted(found)


def flex_operators(content: bytes) -> list[str]:
    """The TensorFlow (Flex) ops a ``.tflite`` needs; empty for a builtin-ops-only model."""
    return [name for name in operators(content) if name.startswith("Flex")]


@contextlib.contextmanager
def _without_delegate_notice():
    """LiteRT writes "INFO: Created TensorFlow Lite XNNPACK delegate for CPU." to the process' stderr when
    it first allocates tensors; drop that line, keep anything else it writes."""
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            lines = captured.read().decode(errors="replace").splitlines(keepends=True)
            kept = [line for line in lines if not line.startswith("INFO: Created TensorFlow Lite XNNPACK")]
            if kept:
                sys.stderr.write("".join(kept))


def _quantize(x, details):
    scale, zero_point = details["quantization"]
    info = np.iinfo(details["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(details["dtype"])


def _dequantize(y, details):
    if not np.issubdtype(details["dtype"], np.integer):
        return np.asarray(y, np.float32)
    scale, zero_point = details["quantization"]
    return ((y.astype(np.float32) - zero_point) * scale).astype(np.float32)


class LiteRTModel:
    """A ``.tflite`` file as a model the task evaluations can call (see the module docstring).

    ``num_threads``: the interpreter's CPU threads (``None``: LiteRT's default).
    """

    def __init__(self, path, num_threads: int | None = None):
        path = Path(path)
        if not path.is_file():
            raise FileNotFoundError(f"{path}: no such model file")
        content = path.read_bytes()
        if content[4:8] != TFLITE_IDENTIFIER:
            raise DataFormatError(path, "a LiteRT model (a .tflite flatbuffer, identifier TFL3)")
        flex = flex_operators(content)
        if flex:
            raise RunError(
                f"{path}: needs TensorFlow ops through the Flex delegate ({', '.join(flex)}), which the LiteRT "
                "runtime (and phones without the Flex delegate) lack; export with builtin ops only"
            )
        self.path = path
        self.name = path.stem
        self.num_threads = num_threads
        self.operators = operators(content)
        self._interpreter = interpreter_class()(model_content=content, num_threads=num_threads)
        signatures = self._interpreter.get_signature_list()
        if len(signatures) == 1:
            runner = self._interpreter.get_signature_runner(next(iter(signatures)))
            inputs, outputs = runner.get_input_details(), runner.get_output_details()
        else:  # a file without (or with several) signatures: tensors by position
            inputs = {d["name"]: d for d in self._interpreter.get_input_details()}
            outputs = {f"output_{i}": d for i, d in enumerate(self._interpreter.get_output_details())}
        if len(inputs) != 1:
            raise DataFormatError(path, "a model with one image input", got=f"inputs {sorted(inputs)}")
        self._input = next(iter(inputs.values()))
        self._outputs = dict(outputs)
        self.main_output = MAIN_OUTPUT if MAIN_OUTPUT in outputs else sorted(outputs)[0]
        self._returned = (self.main_output,)
        self._allocated = {"shape": None}  # shared by the views of with_output (one interpreter)

    # -- the Keras-like surface ------------------------------------------------------------------------------

    @property
    def input_shape(self) -> tuple:
        return (None, *(int(v) for v in self._input["shape_signature"][1:]))

    @property
    def output_shape(self) -> tuple:
        return (None, *(int(v) for v in self._outputs[self.main_output]["shape_signature"][1:]))

    @property
    def input_details(self) -> dict:
        """The interpreter's details of the image input (dtype, shape, quantization scale and zero point)."""
        return dict(self._input)

    def output_details(self, name: str | None = None) -> dict:
        return dict(self._outputs[name or self.main_output])

    @property
    def output_names(self) -> list[str]:
        return sorted(self._outputs)

    @property
    def layers(self) -> list:
        """Stand-ins for the layers whose outputs were exported beside the main one (by name only)."""
        return [types.SimpleNamespace(name=name) for name in self.output_names if name != self.main_output]

    def get_layer(self, name: str):
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"{self.path} has no exported output {name!r}; it has {self.output_names}")

    def with_output(self, name: str) -> LiteRTModel:
        """The same interpreter returning ``[main output, output name]`` from ``predict_on_batch``, like
        ``keras.Model(model.input, [model.output, model.get_layer(name).output])``."""
        self.get_layer(name)
        other = copy.copy(self)
        other._returned = (self.main_output, name)
        return other

    def predict_on_batch(self, images):
        """``images`` ``(B, S, S, 3)`` (a pair model's ``(B, 2, S, S, 3)``) float in ``[0, 1]`` -> the main
        output (or a list, :meth:`with_output`)."""
        images = np.asarray(images, np.float32)
        if self._input["shape_signature"][0] == -1:
            results = [self._run(images)]
        else:  # a fixed batch size in the file: one run per slice, the last one padded
            fixed = int(self._input["shape"][0])
            results = []
            for i in range(0, len(images), fixed):
                part = images[i : i + fixed]
                padded = np.concatenate([part, np.zeros((fixed - len(part), *part.shape[1:]), np.float32)])
                results.append({k: v[: len(part)] for k, v in self._run(padded).items()})
        outputs = [np.concatenate([r[name] for r in results]) for name in self._returned]
        return outputs[0] if len(outputs) == 1 else outputs

    def predict(self, images, batch_size: int = 32, verbose=0):
        images = np.asarray(images, np.float32)
        parts = [self.predict_on_batch(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        if not parts:
            return np.zeros((0, *self.output_shape[1:]), np.float32)
        if len(self._returned) == 1:
            return np.concatenate(parts)
        return [np.concatenate([p[k] for p in parts]) for k in range(len(self._returned))]

    __call__ = predict_on_batch

    # -- running -------------------------------------------------------------------------------------------

    def _run(self, images) -> dict:
        index = self._input["index"]
        if self._allocated["shape"] != images.shape:
            if self._input["shape_signature"][0] == -1:
                self._interpreter.resize_tensor_input(index, images.shape)
            with _without_delegate_notice():
                self._interpreter.allocate_tensors()
            self._allocated["shape"] = images.shape
        x = _quantize(images, self._input) if np.issubdtype(self._input["dtype"], np.integer) else images
        self._interpreter.set_tensor(index, x)
        self._interpreter.invoke()
        return {name: _dequantize(self._interpreter.get_tensor(self._outputs[name]["index"]), self._outputs[name])
                for name in self._returned}  # fmt: skip
