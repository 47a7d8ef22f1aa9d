"""Convert a torchvision-named ResNet-18/50 or an insightface IResNet checkpoint to kdface weights
(spec ``igkd_scn_fer.md`` §B1, §C1).

Commands (need ``torch`` for ``.pth`` files; ``torch`` is a development dependency only)::

    python -m kdface.convert resnet --depth 18 --checkpoint resnet18_msceleb.pth \\
        --out models/pretrained/resnet18_msceleb.npz
    python -m kdface.convert iresnet --depth 18 --checkpoint ms1mv3_arcface_r18/backbone.pth \\
        --out models/pretrained/iresnet18_arcface.npz [--image-size 112 | --drop-fc]

then ``create_backbone("resnet18", image_size=..., weights=...)`` (or ``build_resnet(18, weights=...)`` /
``build_iresnet(18, weights=...)``). It prints how many
tensors were matched and which head/bookkeeping tensors were dropped.

IResNet specifics: insightface's ``fc`` (Linear 512 * 7 * 7 -> 512 for 112 px input) and ``features``
(BatchNorm1d) are the embedding head, part of the backbone, so they are kept; the fc's width depends
on the input size, so ``--image-size`` must be the size the model will be built for, or
``--drop-fc`` leaves it out (recorded in the ``.npz``; it then keeps its initialisation, as SCN's
third-party code does for 224 px input). PReLU ``weight`` (C,) -> ``alpha`` (1, 1, C); Linear
``weight`` (out, in) -> ``kernel`` (in, out). ``features.weight`` is frozen at 1 in insightface and
fixed at 1 here (``scale=False``): the checkpoint's must be all ones.

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

from kdface.backbones.iresnet import IRESNET_DEPTHS, build_iresnet
from kdface.backbones.resnet import RESNET_DEPTHS, build_resnet
from kdface.backbones.weights import BN_VARIABLES, DROPPED_KEY, assign_arrays, mismatch_message, weight_layers
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


def split_state_dict(state_dict, dropped_prefixes=DROPPED_PREFIXES):
    """Strip ``module.`` prefixes and separate the head/bookkeeping tensors: ``(kept, dropped names)``."""
    kept, dropped = {}, []
    for key, value in state_dict.items():
        name = key
        while name.startswith(STRIP_PREFIXES):
            name = name[name.index(".") + 1 :]
        if name.startswith(tuple(dropped_prefixes)) or name.endswith(DROPPED_SUFFIXES):
            dropped.append(key)
        elif name in kept:
            raise DataFormatError("<state dict>", f"one tensor per name; {key!r} duplicates {name!r}")
        else:
            kept[name] = value
    return kept, sorted(dropped)


def torch_names(model, skip_layers=()) -> dict[str, tuple[str, tuple, str]]:
    """``{torch name: (Keras key "<layer>/<variable>", Keras shape, kind)}`` for every backbone
    variable; ``kind`` says how the torch tensor is laid out (``conv``, ``linear``, ``prelu``, ``plain``)."""
    out = {}
    for layer, variables in weight_layers(model).items():
        if layer in skip_layers:
            continue
        names = [n for n, _ in variables]
        shapes = {n: tuple(v.shape) for n, v in variables}
        if "moving_mean" in names:  # BatchNormalization
            for torch_var, keras_var in _BN_TORCH.items():
                if keras_var in shapes:
                    out[f"{layer}.{torch_var}"] = (f"{layer}/{keras_var}", shapes[keras_var], "plain")
        elif names == ["alpha"]:  # PReLU
            out[f"{layer}.weight"] = (f"{layer}/alpha", shapes["alpha"], "prelu")
        elif names[0] == "kernel" and set(names) <= {"kernel", "bias"}:  # Conv2D or Dense
            kind = "conv" if len(shapes["kernel"]) == 4 else "linear"
            out[f"{layer}.weight"] = (f"{layer}/kernel", shapes["kernel"], kind)
            if "bias" in shapes:
                out[f"{layer}.bias"] = (f"{layer}/bias", shapes["bias"], "plain")
        else:
            raise TypeError(f"{model.name}: no torch layout for layer {layer} (variables {names})")
    return out


def fixed_gammas(model) -> list[str]:
    """Torch names of BatchNorm weights the Keras model fixes at 1 (``scale=False``, e.g. insightface's
    ``features`` BatchNorm1d, whose weight is frozen at 1): the checkpoint's must be all ones."""
    return [f"{layer}.weight" for layer, variables in weight_layers(model).items()
            if "moving_mean" in dict(variables) and "gamma" not in dict(variables)]  # fmt: skip


def _to_keras_layout(value, kind, shape):
    if kind == "conv" and value.ndim == 4:
        return value.transpose(2, 3, 1, 0)  # OIHW -> HWIO
    if kind == "linear" and value.ndim == 2:
        return value.T  # (out, in) -> (in, out)
    if kind == "prelu" and value.size == int(np.prod(shape)):
        return value.reshape(shape)  # (C,) -> (1, 1, C)
    return value


def _as_torch_shape(shape, kind):
    if kind == "conv" and len(shape) == 4:
        return (shape[3], shape[2], shape[0], shape[1])
    if kind == "linear" and len(shape) == 2:
        return (shape[1], shape[0])
    if kind == "prelu":
        return (shape[-1],)
    return shape


def to_keras_arrays(
    model, state_dict, source="<state dict>", dropped_prefixes=DROPPED_PREFIXES, skip_layers=()
):
    """Map a torch state dict onto ``model``'s variables, strictly (``skip_layers``: Keras layers left
    out on purpose, e.g. the IResNet ``fc`` with ``--drop-fc``).

    Returns ``(arrays keyed "<layer>/<variable>", dropped torch names)``; raises
    :class:`DataFormatError` (naming ``source``) listing missing, unexpected and wrong-shape names.
    """
    state_dict = as_state_dict(state_dict, source)
    kept, dropped = split_state_dict(state_dict, dropped_prefixes)
    targets = torch_names(model, skip_layers)
    arrays, wrong = {}, []
    for name in fixed_gammas(model):
        if name in kept:
            value = np.asarray(kept.pop(name))
            if not np.allclose(value, 1.0):
                wrong.append(
                    f"{name} must be all ones (the model fixes it at 1), got mean {value.mean():.4g}"
                )
            else:
                dropped.append(name)
    for name in sorted(set(targets) & set(kept)):
        key, shape, kind = targets[name]
        value = _to_keras_layout(np.asarray(kept[name], dtype=np.float32), kind, shape)
        if value.shape != shape:
            wrong.append(f"{name} {tuple(kept[name].shape)} != model {_as_torch_shape(shape, kind)}")
            continue
        arrays[key] = np.ascontiguousarray(value)
    missing = sorted(set(targets) - set(kept))
    unexpected = sorted(set(kept) - set(targets))
    if missing or unexpected or wrong:
        what = f"the {len(targets)} backbone tensors of {model.name} (after dropping heads)"
        raise DataFormatError(source, mismatch_message(what, missing, unexpected, wrong))
    return arrays, sorted(dropped)


def load_into(
    model, state_dict, source="<state dict>", dropped_prefixes=DROPPED_PREFIXES
) -> ConversionReport:
    """Load a torch state dict (tensors or NumPy arrays) into a kdface ResNet/IResNet in memory,
    strictly (all or nothing)."""
    arrays, dropped = to_keras_arrays(model, state_dict, source, dropped_prefixes)
    matched = assign_arrays(model, arrays, source)
    return ConversionReport(str(source), matched, dropped)


def iresnet_tensor_count(depth: int, drop_fc: bool = False) -> int:
    """Backbone tensors of an insightface IResNet (``num_batches_tracked`` and the fixed
    ``features.weight`` not counted): IResNet-18 has 155 (153 with ``--drop-fc``)."""
    blocks = sum(IRESNET_DEPTHS[depth])
    convs = 1 + 2 * blocks + 4  # stem, two per block, one downsample per stage (all stride 2)
    batchnorms = 1 + 3 * blocks + 4 + 1  # stem, three per block, downsamples, bn2
    prelus = 1 + blocks
    return 1 * convs + 4 * batchnorms + prelus + (0 if drop_fc else 2) + 3  # features: beta, mean, var


def check_out(out, drop_fc: bool = False) -> Path:
    """``out`` as a ``Path`` if :func:`convert` can write it: ``.npz`` or ``.weights.h5`` (``.npz`` with
    ``drop_fc``), in a folder that exists or can be created; else :class:`~kdface.errors.ConfigError`
    or :class:`~kdface.errors.RunError`. Reads only."""
    from kdface.errors import ConfigError
    from kdface.io.paths import check_can_create

    out = Path(out)
    if out.name.endswith(".weights.h5"):
        if drop_fc:
            raise ConfigError(
                f"--out {out}: --drop-fc writes an .npz (the .weights.h5 format cannot record the dropped layer)"
            )
    elif out.suffix != ".npz":
        raise ConfigError(f"--out must end in .npz or .weights.h5, got {out}")
    if out.is_dir():
        raise ConfigError(f"--out {out} is a folder; name the weights file, e.g. {out / 'backbone.npz'}")
    check_can_create(out.parent, "--out", given=out)
    return out


def convert(checkpoint, depth: int, out, *, stride_on: str = "3x3", fmt: str = "auto", arch: str = "resnet",
            image_size: int = 112, drop_fc: bool = False) -> ConversionReport:  # fmt: skip
    """Read ``checkpoint``, check it against a ResNet-``depth`` (torchvision) or IResNet-``depth``
    (insightface, ``arch="iresnet"``) backbone and write ``out`` (``.npz``, or Keras ``.weights.h5``)
    atomically. For an IResNet, ``image_size`` fixes the embedding fc's width (112: 512 x 7 x 7);
    ``drop_fc`` leaves the fc out (recorded in the file), for use at another input size."""
    depth = int(depth)
    out = check_out(out, drop_fc)
    if arch == "resnet":
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"unknown ResNet depth {depth}; known: {sorted(RESNET_DEPTHS)}")
        model = build_resnet(depth, image_size=None, stride_on=stride_on)
        prefixes, expected, dropped_layers = DROPPED_PREFIXES, expected_tensor_count(depth), []
    elif arch == "iresnet":
        if depth not in IRESNET_DEPTHS:
            raise ValueError(f"unknown IResNet depth {depth}; known: {sorted(IRESNET_DEPTHS)}")
        model = build_iresnet(depth, image_size=image_size)
        # insightface's fc is the embedding layer, part of the backbone: kept unless --drop-fc
        prefixes = ("fc.",) if drop_fc else ()
        expected, dropped_layers = iresnet_tensor_count(depth, drop_fc), (["fc"] if drop_fc else [])
    else:
        raise ValueError(f"arch must be 'resnet' or 'iresnet', got {arch!r}")
    state_dict = read_state_dict(checkpoint, fmt)
    arrays, dropped = to_keras_arrays(model, state_dict, checkpoint, prefixes, dropped_layers)
    if len(arrays) != expected:  # the Keras model and the torch layout disagree: a kdface bug
        raise AssertionError(f"{model.name}: mapped {len(arrays)} tensors, expected {expected}")
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
        extra = {DROPPED_KEY: np.array(dropped_layers)} if dropped_layers else {}
        with atomic_path(out) as tmp:
            np.savez(tmp, **arrays, **extra)
    return ConversionReport(str(checkpoint), len(arrays), dropped, str(out))
