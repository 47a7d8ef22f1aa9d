"""Convert a torchvision-named ResNet-18/50 or an insightface IResNet checkpoint to kdface weights
(spec ``igkd_scn_fer.md`` §B1, §C1).

Commands (need ``torch`` for ``.pth`` files; ``torch`` is a development dependency only)::

    python -m kdface.convert resnet --depth 18 --checkpoint resnet18_msceleb.pth \\
        --out models/pretrained/resnet18_msceleb.npz
    python -m kdface.convert iresnet --depth 18 --checkpoint ms1mv3_arcface_r18/backbone.pth \\
        --out models/pretrained/iresnet18_arcface.npz [--image-size 112 | --drop-fc]
    python -m kdface.convert iresnet --depth 50 --attention cbam_fskd --head pool \\
        --checkpoint fskd_teacher/last_net.ckpt --out models/pretrained/fskd_cbam_r50.npz
    python -m kdface.convert iresnet --depth 50 --attention cbam_askd \\
        --checkpoint askd_teacher/last_net.ckpt --out models/pretrained/askd_cbam_r50.npz

then ``create_backbone("resnet18", image_size=..., weights=...)`` (or ``build_resnet(18, weights=...)`` /
``build_iresnet(18, weights=...)``). It prints how many
tensors were matched and which head/bookkeeping tensors were dropped.

IResNet specifics: insightface's ``fc`` (Linear 512 * 7 * 7 -> 512 for 112 px input) and ``features``
(BatchNorm1d) are the embedding head, part of the backbone, so they are kept; the fc's width depends
on the input size, so ``--image-size`` must be the size the model will be built for, or
``--drop-fc`` leaves it out (recorded in the ``.npz``; it then keeps its initialisation, as SCN's
third-party code does for 224 px input). PReLU ``weight`` (C,) -> ``alpha`` (1, 1, C); Linear
``weight`` (out, in) -> ``kernel`` (in, out). ``features.weight`` is frozen at 1 in insightface and
fixed at 1 here (``scale=False``): the checkpoint's must be all ones (A-SKD trains it: ``--features-scale``,
the default for its layout, keeps it and the model is built with ``features_scale=True``).

F-SKD / A-SKD backbones (spec ``fskd_lowres_fr.md`` §1; ``--attention`` must be the one the model is
built with, ``--head`` too: F-SKD v1's ``pool`` head has no weights):

* F-SKD (gist-ailab/feature-similarity-KD ``backbone/iresnet.py``): insightface's module names, plus with
  ``--mode cbam`` (``--attention cbam_fskd``) each block's ``attention`` CBAM:
  ``layer1.0.attention.ChannelGate.mlp.1`` / ``.mlp.3`` (Linear, weight and bias),
  ``layer1.0.attention.SpatialGate.spatial.conv`` (7x7, no bias) and ``.spatial.bn`` (BatchNorm); the Keras
  layers have these names. Later F-SKD students' ``hint_layer1..4`` and QualNet's ``conv_bridge`` are not
  part of the backbone: dropped and reported;
* A-SKD (gist-ailab/teaching-where-to-look ``model/backbone.py`` ``CBAMResNet``, ``--attention cbam_askd``)
  and Face_Pytorch (``backbone/cbam.py`` ``CBAMResNet_IR``, whose CBAM sits inside ``res_layer`` as
  ``res_layer.6`` / ``res_layer.7``) use another layout, renamed by :func:`face_pytorch_name`:
  ``input_layer.0/1/2`` -> ``conv1``/``bn1``/``prelu``; ``layer1.0.res_layer.0..5`` ->
  ``bn1``/``conv1``/``bn2``/``prelu``/``conv2``/``bn3``; ``shortcut_layer.0/1`` -> ``downsample.0/1``;
  ``res_layer.6.shared_mlp.*`` -> ``channel_layer.shared_mlp.*`` and ``res_layer.7.conv`` ->
  ``spatial_layer.conv`` (A-SKD's own names, kept); ``output_layer.0/3/4`` -> ``bn2``/``fc``/``features``.
  ``--layout auto`` picks it when a name starts with ``input_layer.`` or holds ``.res_layer.``.

How the names were checked: the torch modules were read from the originals (feature-similarity-KD
``backbone/iresnet.py`` at 6732259 and ``face_recognition/backbone/iresnet.py`` at b55561a;
teaching-where-to-look ``model/backbone.py`` at 2227f30; Face_Pytorch ``backbone/cbam.py`` at 00e1da2),
rebuilt in ``tests/test_iresnet_cbam.py`` with those module names and random weights, and their
``state_dict()`` converted and compared output by output (embedding, stages, every map). F-SKD's
``backbone/attention.py`` was not available to read: its names are those of the CBAM it is (Jongchan
Park's ``MODELS/cbam.py``: ``ChannelGate.mlp`` = Flatten, Linear, ReLU, Linear; ``SpatialGate.spatial`` =
``BasicConv`` with ``conv`` and ``bn`` momentum 0.01, the spec's description), held as ``attention`` by
``IBasicBlock``. A real checkpoint whose names differ fails with the list of names, never silently.
No released checkpoint was converted (F-SKD lists none; A-SKD's are on OneDrive, out of reach here).

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
import re
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
# not backbone tensors in F-SKD checkpoints: later students' hint layers, QualNet's bridge conv
IRESNET_DROPPED_PREFIXES = ("hint_layer", "conv_bridge.")
LAYOUTS = ("auto", "insightface", "face_pytorch")
_FP_STEM = {"0": "conv1", "1": "bn1", "2": "prelu"}
_FP_RES = {"0": "bn1", "1": "conv1", "2": "bn2", "3": "prelu", "4": "conv2", "5": "bn3"}
_FP_OUT = {"0": "bn2", "3": "fc", "4": "features"}
_FP_PATTERNS = (
    (re.compile(r"input_layer\.([012])\.(.+)"), lambda m: f"{_FP_STEM[m[1]]}.{m[2]}"),
    (re.compile(r"(layer\d+\.\d+)\.res_layer\.([0-5])\.(.+)"), lambda m: f"{m[1]}.{_FP_RES[m[2]]}.{m[3]}"),
    (
        re.compile(r"(layer\d+\.\d+)\.res_layer\.6\.(shared_mlp\..+)"),
        lambda m: f"{m[1]}.channel_layer.{m[2]}",
    ),
    (re.compile(r"(layer\d+\.\d+)\.res_layer\.7\.(conv\..+)"), lambda m: f"{m[1]}.spatial_layer.{m[2]}"),
    (
        re.compile(r"(layer\d+\.\d+)\.shortcut_layer\.([01])\.(.+)"),
        lambda m: f"{m[1]}.downsample.{m[2]}.{m[3]}",
    ),
    (re.compile(r"output_layer\.([034])\.(.+)"), lambda m: f"{_FP_OUT[m[1]]}.{m[2]}"),
)
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
    features_scale: bool | None = None  # IResNet fc head: the BatchNorm1d gamma kept (trainable)

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


def as_state_dict(obj, source, wrappers=("state_dict",)) -> dict[str, np.ndarray]:
    """``obj`` (a loaded checkpoint: ``{"state_dict": sd}`` or ``sd``; ``wrappers``: the keys that may
    hold the state dict, tried in order) as ``{name: ndarray}``."""
    if isinstance(obj, dict):
        obj = {_decode(k): v for k, v in obj.items()}
        for wrapper in wrappers:
            if isinstance(obj.get(wrapper), dict):
                obj = {_decode(k): v for k, v in obj[wrapper].items()}
                break
    if not isinstance(obj, dict) or not obj:
        keys = " or ".join(repr(w) for w in wrappers)
        raise DataFormatError(
            source, f"a state dict (or a dict with key {keys}) of named tensors", got=type(obj).__name__
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


def read_state_dict(path, fmt: str = "auto", wrappers=("state_dict",)) -> dict[str, np.ndarray]:
    """A checkpoint file's tensors as ``{torch name: ndarray}`` (see the module docstring; ``wrappers``:
    :func:`as_state_dict`'s)."""
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
    return as_state_dict(obj, path, wrappers)


def face_pytorch_name(name: str) -> str:
    """A Face_Pytorch / A-SKD ``CBAMResNet`` tensor name as kdface's (insightface's) IResNet name, e.g.
    ``layer2.0.res_layer.4.weight`` -> ``layer2.0.conv2.weight``; names of no known module come back
    unchanged (the strict check then lists them)."""
    for pattern, rename in _FP_PATTERNS:
        if m := pattern.fullmatch(name):
            return rename(m)
    return name


def detect_layout(names) -> str:
    """``"face_pytorch"`` when a (``module.``-stripped) name is Face_Pytorch's, else ``"insightface"``."""
    for name in names:
        while name.startswith(STRIP_PREFIXES):
            name = name[name.index(".") + 1 :]
        if name.startswith("input_layer.") or ".res_layer." in name:
            return "face_pytorch"
    return "insightface"


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
    model, state_dict, source="<state dict>", dropped_prefixes=DROPPED_PREFIXES, skip_layers=(), rename=None
):
    """Map a torch state dict onto ``model``'s variables, strictly (``skip_layers``: Keras layers left
    out on purpose, e.g. the IResNet ``fc`` with ``--drop-fc``; ``rename``: a function from the
    checkpoint's names to the model's torch names, e.g. :func:`face_pytorch_name`).

    Returns ``(arrays keyed "<layer>/<variable>", dropped torch names)``; raises
    :class:`DataFormatError` (naming ``source``) listing missing, unexpected and wrong-shape names
    (an unexpected renamed tensor is shown with its checkpoint name).
    """
    state_dict = as_state_dict(state_dict, source)
    kept, dropped = split_state_dict(state_dict, dropped_prefixes)
    original = {name: name for name in kept}
    if rename is not None:
        renamed = {}
        for name, value in kept.items():
            new = rename(name)
            if new in renamed:
                raise DataFormatError(
                    source, f"one tensor per name; {name!r} and {original[new]!r} both map to {new!r}"
                )
            renamed[new], original[new] = value, name
        kept = renamed
    targets = torch_names(model, skip_layers)
    arrays, wrong = {}, []
    for name in fixed_gammas(model):
        if name in kept:
            value = np.asarray(kept.pop(name))
            if not np.allclose(value, 1.0):
                wrong.append(
                    f"{name} must be all ones (the model fixes it at 1), got mean {value.mean():.4g} "
                    "(a trainable BatchNorm1d, as A-SKD's: convert with --features-scale and build with "
                    "features_scale=True)"
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
    unexpected = sorted(
        n if original[n] == n else f"{original[n]} (as {n})" for n in set(kept) - set(targets)
    )
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


# tensors of one block's CBAM: F-SKD 2 Linears (weight, bias) + conv + BatchNorm; A-SKD three convs
_CBAM_TENSORS = {"none": 0, "cbam_fskd": 2 * 2 + 1 + 4, "cbam_askd": 3}


def iresnet_tensor_count(
    depth: int, drop_fc: bool = False, attention: str = "none", head: str = "fc", features_scale: bool = False
) -> int:
    """Backbone tensors of an insightface IResNet (``num_batches_tracked`` and a fixed
    ``features.weight`` not counted): IResNet-18 has 155 (153 with ``--drop-fc``); IResNet-50 with
    F-SKD's CBAM and pool head 602 (386 + 24 blocks x 9, no head)."""
    blocks = sum(IRESNET_DEPTHS[depth])
    convs = 1 + 2 * blocks + 4  # stem, two per block, one downsample per stage (all stride 2)
    batchnorms = 1 + 3 * blocks + 4  # stem, three per block, downsamples
    prelus = 1 + blocks
    count = convs + 4 * batchnorms + prelus + blocks * _CBAM_TENSORS[attention]
    if head == "fc":  # bn2, fc (weight, bias), features (beta, mean, var; gamma when trainable)
        count += 4 + (0 if drop_fc else 2) + (4 if features_scale else 3)
    return count


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
            image_size: int = 112, drop_fc: bool = False, attention: str = "none", head: str = "fc",
            features_scale: bool | None = None, layout: str = "auto") -> ConversionReport:  # fmt: skip
    """Read ``checkpoint``, check it against a ResNet-``depth`` (torchvision) or IResNet-``depth``
    (insightface, ``arch="iresnet"``) backbone and write ``out`` (``.npz``, or Keras ``.weights.h5``)
    atomically. For an IResNet, ``image_size`` fixes the embedding fc's width (112: 512 x 7 x 7);
    ``drop_fc`` leaves the fc out (recorded in the file), for use at another input size; ``attention``
    and ``head`` are :func:`~kdface.backbones.iresnet.build_iresnet`'s (the model the weights are for);
    ``layout`` the checkpoint's names (``"auto"``: see :func:`detect_layout`); ``features_scale``
    ``None``: trainable for the Face_Pytorch (A-SKD) layout, fixed at 1 otherwise."""
    depth = int(depth)
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    if arch == "iresnet" and drop_fc and head != "fc":
        from kdface.errors import ConfigError

        raise ConfigError(f"--drop-fc applies to --head fc only (head {head!r} has no fc)")
    out = check_out(out, drop_fc)
    if arch == "resnet":
        if depth not in RESNET_DEPTHS:
            raise ValueError(f"unknown ResNet depth {depth}; known: {sorted(RESNET_DEPTHS)}")
        model = build_resnet(depth, image_size=None, stride_on=stride_on)
        prefixes, expected, dropped_layers = DROPPED_PREFIXES, expected_tensor_count(depth), []
        state_dict, rename = read_state_dict(checkpoint, fmt), None
    elif arch == "iresnet":
        if depth not in IRESNET_DEPTHS:
            raise ValueError(f"unknown IResNet depth {depth}; known: {sorted(IRESNET_DEPTHS)}")
        state_dict = read_state_dict(checkpoint, fmt)
        layout = detect_layout(state_dict) if layout == "auto" else layout
        if layout == "face_pytorch" and attention == "cbam_fskd":
            raise DataFormatError(checkpoint, "F-SKD's CBAM names for --attention cbam_fskd",
                                  got="Face_Pytorch / A-SKD names (input_layer, res_layer): --attention cbam_askd")  # fmt: skip
        rename = face_pytorch_name if layout == "face_pytorch" else None
        features_scale = (layout == "face_pytorch") if features_scale is None else bool(features_scale)
        model = build_iresnet(depth, image_size=image_size, head=head, attention=attention,
                              features_scale=features_scale)  # fmt: skip
        # insightface's fc is the embedding layer, part of the backbone: kept unless --drop-fc
        prefixes = IRESNET_DROPPED_PREFIXES + (("fc.", "output_layer.3.") if drop_fc else ())
        expected = iresnet_tensor_count(depth, drop_fc, attention, head, features_scale)
        dropped_layers = ["fc"] if drop_fc else []
    else:
        raise ValueError(f"arch must be 'resnet' or 'iresnet', got {arch!r}")
    arrays, dropped = to_keras_arrays(model, state_dict, checkpoint, prefixes, dropped_layers, rename)
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
    scale = features_scale if arch == "iresnet" and head == "fc" else None
    return ConversionReport(str(checkpoint), len(arrays), dropped, str(out), scale)
