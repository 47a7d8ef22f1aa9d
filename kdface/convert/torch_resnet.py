"""Convert a torchvision-named ResNet-18/50 checkpoint to kdface weights (spec ``igkd_scn_fer.md`` §C1).

Command (needs ``torch`` for ``.pth`` files; ``torch`` is a development dependency only)::

    python -m kdface.convert resnet --depth 18 --checkpoint resnet18_msceleb.pth \\
        --out models/pretrained/resnet18_msceleb.npz

then ``build_resnet(18, weights="models/pretrained/resnet18_msceleb.npz")``. It prints how many tensors
were matched and which head/bookkeeping tensors were dropped.

Inputs (the format is chosen from the suffix, or ``--format``):

* a ``torch.save`` checkpoint (``.pth``, ``.pt``, ``.pth.tar``, anything else): a dict with key
  ``state_dict`` or a bare state dict, read with ``torch.load(weights_only=True)``
  (:func:`kdface.io.safe_load.load_torch_checkpoint`), so it cannot run code. ``resnet18_msceleb.pth``
  (plain torchvision names) and ``ijba_res18_naive.pth.tar`` (``module.`` prefix) are both accepted;
* a pickled dict of NumPy arrays (``.pkl``/``.pickle``, the IGKD teacher format, e.g. VGGFace2
  ``resnet50_ft_weight.pkl``), read with :func:`kdface.io.safe_load.restricted_pickle_load`, which
  refuses any global other than NumPy array reconstruction;
* an ``.npz`` with the same torch names.

What it does:

* strips ``module.`` prefixes (``nn.DataParallel``);
* drops the heads and bookkeeping, and reports them: ``fc.*`` (ImageNet 1000 or VGGFace2 8631 classes),
  ``feature.*`` (the ijba 256-d embedding), ``*.num_batches_tracked``;
* maps every remaining tensor onto exactly one Keras variable: conv ``weight`` OIHW -> ``kernel`` HWIO
  (transpose 2, 3, 1, 0); BN ``weight``/``bias``/``running_mean``/``running_var`` ->
  ``gamma``/``beta``/``moving_mean``/``moving_variance`` (the Keras model uses torch's epsilon 1e-5);
* is strict, unlike the originals' ``load_state_dict(strict=False)``: any missing tensor, unexpected
  tensor or wrong shape is a :class:`kdface.errors.DataFormatError` naming the checkpoint and listing
  the names, and nothing is written. A ResNet-18 backbone has exactly 100 tensors (20 convs + 20
  BatchNorms × 4), a ResNet-50 265 (53 + 53 × 4); the count is asserted;
* writes an ``.npz`` keyed ``<Keras layer>/<variable>`` (e.g. ``layer2.0.downsample.0/kernel``)
  atomically (:mod:`kdface.io.atomic`); an ``--out`` ending in ``.weights.h5`` writes Keras weights
  instead.

VGGFace2 caveats (spec §A7.2), which renaming cannot fix: the VGGFace2 ResNet-50 was trained

* with the stride on the **1×1** conv of each bottleneck (Caffe v1), not torchvision's 3×3 (v1.5):
  convert with ``--stride-on 1x1`` and build with ``build_resnet(50, stride_on="1x1")`` to get the
  network it was trained as (the tensors have the same shapes either way, so nothing can detect a
  wrong choice);
* on BGR ``[0, 255]`` images minus the VGGFace2 mean (91.4953, 103.8827, 131.0912), not on
  ImageNet-normalised RGB. ``build_resnet`` always normalises with ImageNet mean/std, as IGKD does
  (IGKD ignores both caveats); fine-tuning absorbs it, but features from the frozen network differ
  from the original's.

Also, Python 2 pickles come back with ``bytes`` keys (the safe unpickler uses ``encoding="bytes"``);
they are decoded as latin-1.
"""

from __future__ import annotations

import dataclasses
import os
import pickle
import zipfile
from pathlib import Path

import numpy as np

from kdface.backbones.resnet import (
    BN_VARIABLES,
    RESNET_DEPTHS,
    assign_arrays,
    build_resnet,
    mismatch_message,
    weight_layers,
)
from kdface.errors import DataFormatError, KdfaceError
from kdface.io.atomic import atomic_path
from kdface.io.safe_load import load_torch_checkpoint, restricted_pickle_load

FORMATS = ("auto", "torch", "pickle", "npz")
STRIP_PREFIXES = ("module.",)
DROPPED_PREFIXES = ("fc.", "feature.")
DROPPED_SUFFIXES = (".num_batches_tracked",)
_BN_TORCH = dict(zip(("weight", "bias", "running_mean", "running_var"), BN_VARIABLES, strict=True))


def expected_tensor_count(depth: int) -> int:
    """Backbone tensors of a torchvision ResNet (no head, no ``num_batches_tracked``): 100 / 265."""
    kind, blocks = RESNET_DEPTHS[depth]
    convs_per_block = 2 if kind == "basic" else 3
    # stem conv + block convs + one downsample conv per stage that changes shape (all four for
    # bottlenecks, whose layer1 goes 64 -> 256; layer2..4 for basic blocks)
    convs = 1 + convs_per_block * sum(blocks) + (3 if kind == "basic" else 4)
    return convs + 4 * convs


@dataclasses.dataclass
class ConversionReport:
    source: str
    matched: int
    dropped: list[str]
    out: str | None = None

    def summary(self) -> str:
        text = f"{self.source}: matched {self.matched} tensors"
        if self.dropped:
            text += f", dropped {len(self.dropped)}: {', '.join(self.dropped)}"
        if self.out:
            text += f"; wrote {self.out}"
        return text


def _detect_format(path: Path) -> str:
    name = path.name.lower()
    if name.endswith(".npz"):
        return "npz"
    if name.endswith((".pkl", ".pickle")):
        return "pickle"
    return "torch"


def _to_numpy(value):
    if isinstance(value, np.ndarray):
        return value
    if hasattr(value, "detach"):  # a torch tensor
        return value.detach().cpu().float().numpy() if value.is_floating_point() else value.cpu().numpy()
    return None


def _decode(key):
    return key.decode("latin-1") if isinstance(key, bytes) else key


def as_state_dict(obj, source) -> dict[str, np.ndarray]:
    """``obj`` (a loaded checkpoint: ``{"state_dict": sd}`` or ``sd``) as ``{name: ndarray}``."""
    if isinstance(obj, dict):
        obj = {_decode(k): v for k, v in obj.items()}
        if isinstance(obj.get("state_dict"), dict):
            obj = {_decode(k): v for k, v in obj["state_dict"].items()}
    if not isinstance(obj, dict) or not obj:
        raise DataFormatError(
            source, "a state dict (or a dict with key 'state_dict') of named tensors", got=type(obj).__name__
        )
    out, bad = {}, []
    for key, value in obj.items():
        array = _to_numpy(value)
        if not isinstance(key, str) or array is None:
            bad.append(f"{key!r} ({type(value).__name__})")
        else:
            out[key] = array
    if bad:
        raise DataFormatError(
            source, f"only named tensors in the state dict; not tensors: {', '.join(bad[:12])}"
        )
    return out


def read_state_dict(path, fmt: str = "auto") -> dict[str, np.ndarray]:
    """A checkpoint file's tensors as ``{torch name: ndarray}`` (see the module docstring)."""
    path = Path(path)
    if fmt not in FORMATS:
        raise ValueError(f"format must be one of {FORMATS}, got {fmt!r}")
    if not path.is_file():
        raise DataFormatError(path, "an existing checkpoint file")
    fmt = _detect_format(path) if fmt == "auto" else fmt
    try:
        if fmt == "npz":
            with np.load(path, allow_pickle=False) as data:
                obj = {k: data[k] for k in data.files}
        elif fmt == "pickle":
            obj = restricted_pickle_load(path)
        else:
            obj = load_torch_checkpoint(path)
    except (pickle.UnpicklingError, EOFError, ValueError, RuntimeError, zipfile.BadZipFile, OSError) as exc:
        if isinstance(exc, KdfaceError):  # e.g. UnsafeFileError from the safe loaders
            raise
        raise DataFormatError(
            path, f"a {fmt} checkpoint", got=f"{type(exc).__name__}: {str(exc)[:200]}"
        ) from None
    return as_state_dict(obj, path)


def split_state_dict(state_dict):
    """Strip ``module.`` prefixes and separate the head/bookkeeping tensors: ``(kept, dropped names)``."""
    kept, dropped = {}, []
    for key, value in state_dict.items():
        name = key
        while name.startswith(STRIP_PREFIXES):
            name = name[name.index(".") + 1 :]
        if name.startswith(DROPPED_PREFIXES) or name.endswith(DROPPED_SUFFIXES):
            dropped.append(key)
        elif name in kept:
            raise DataFormatError("<state dict>", f"one tensor per name; {key!r} duplicates {name!r}")
        else:
            kept[name] = value
    return kept, sorted(dropped)


def torch_names(model) -> dict[str, tuple[str, tuple]]:
    """``{torch name: (Keras key "<layer>/<variable>", Keras shape)}`` for every backbone variable."""
    out = {}
    for layer, variables in weight_layers(model).items():
        if [n for n, _ in variables] == ["kernel"]:
            out[f"{layer}.weight"] = (f"{layer}/kernel", tuple(variables[0][1].shape))
        else:
            shapes = dict((n, tuple(v.shape)) for n, v in variables)
            for torch_var, keras_var in _BN_TORCH.items():
                out[f"{layer}.{torch_var}"] = (f"{layer}/{keras_var}", shapes[keras_var])
    return out


def to_keras_arrays(model, state_dict, source="<state dict>"):
    """Map a torchvision state dict onto ``model``'s variables, strictly.

    Returns ``(arrays keyed "<layer>/<variable>", dropped torch names)``; raises
    :class:`DataFormatError` (naming ``source``) listing missing, unexpected and wrong-shape names.
    """
    state_dict = as_state_dict(state_dict, source)
    kept, dropped = split_state_dict(state_dict)
    targets = torch_names(model)
    arrays, wrong = {}, []
    for name in sorted(set(targets) & set(kept)):
        key, shape = targets[name]
        value = np.asarray(kept[name], dtype=np.float32)
        if key.endswith("/kernel"):
            value = value.transpose(2, 3, 1, 0) if value.ndim == 4 else value  # OIHW -> HWIO
        if value.shape != shape:
            needed = (shape[3], shape[2], shape[0], shape[1]) if len(shape) == 4 else shape  # as OIHW
            wrong.append(f"{name} {tuple(kept[name].shape)} != model {needed}")
            continue
        arrays[key] = np.ascontiguousarray(value)
    missing = sorted(set(targets) - set(kept))
    unexpected = sorted(set(kept) - set(targets))
    if missing or unexpected or wrong:
        what = f"the {len(targets)} backbone tensors of a torchvision {model.name} (after dropping heads)"
        raise DataFormatError(source, mismatch_message(what, missing, unexpected, wrong))
    return arrays, dropped


def load_into(model, state_dict, source="<state dict>") -> ConversionReport:
    """Load a torchvision-named state dict (torch tensors or NumPy arrays) into a
    :func:`~kdface.backbones.resnet.build_resnet` model in memory, strictly (all or nothing)."""
    arrays, dropped = to_keras_arrays(model, state_dict, source)
    matched = assign_arrays(model, arrays, source)
    return ConversionReport(str(source), matched, dropped)


def convert(checkpoint, depth: int, out, *, stride_on: str = "3x3", fmt: str = "auto") -> ConversionReport:
    """Read ``checkpoint``, check it against a ResNet-``depth`` backbone and write ``out``
    (``.npz``, or Keras ``.weights.h5``) atomically."""
    depth = int(depth)
    if depth not in RESNET_DEPTHS:
        raise ValueError(f"unknown ResNet depth {depth}; known: {sorted(RESNET_DEPTHS)}")
    state_dict = read_state_dict(checkpoint, fmt)
    model = build_resnet(depth, image_size=None, stride_on=stride_on)
    arrays, dropped = to_keras_arrays(model, state_dict, checkpoint)
    expected = expected_tensor_count(depth)
    if len(arrays) != expected:  # the Keras model and the torchvision layout disagree: a kdface bug
        raise AssertionError(f"ResNet-{depth}: mapped {len(arrays)} tensors, expected {expected}")
    out = Path(out)
    if out.name.endswith(".weights.h5"):
        assign_arrays(model, arrays, checkpoint)
        with atomic_path(out) as tmp:
            # Keras insists on the ".weights.h5" ending; the side file matches atomic's stale pattern
            side = tmp.with_name(tmp.name + ".weights.h5")
            try:
                model.save_weights(side)
                os.replace(side, tmp)
            finally:
                side.unlink(missing_ok=True)
    else:
        if out.suffix != ".npz":
            raise ValueError(f"--out must end in .npz or .weights.h5, got {out}")
        with atomic_path(out) as tmp:
            np.savez(tmp, **arrays)
    return ConversionReport(str(checkpoint), len(arrays), dropped, str(out))
