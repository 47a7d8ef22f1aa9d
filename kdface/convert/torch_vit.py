"""Convert a PyTorch ViT checkpoint (Hugging Face ``ViTModel`` / ``ViTForImageClassification`` names, or
timm ``VisionTransformer`` names) to the ``.npz`` a kdface ViT (:mod:`kdface.backbones.vit`) loads
(spec ``vitse_doe_fer.md`` §1: ViT-SE's original loads ``google/vit-base-patch16-224-in21k``).

Commands (``torch`` is needed for ``.bin``/``.pth`` files only)::

    python -m kdface.convert vit --variant vit_b16 \\
        --checkpoint vit-base-patch16-224-in21k/pytorch_model.bin --out models/pretrained/vit_b16_in21k.npz
    python -m kdface.convert vit --variant vit_b16 --checkpoint vit_base_patch16_224.pth \\
        --out models/pretrained/vit_b16_timm.npz [--image-size 112] [--drop-pooler]

then ``create_backbone("vit_b16", image_size=224, weights=..., pooler=True)`` (the report prints the
exact call).

Inputs: read by :func:`kdface.convert.torch_resnet.read_state_dict`, so a ``torch.save`` file is opened
with ``torch.load(weights_only=True)`` and a pickle by the restricted unpickler (neither can run code);
an ``.npz`` holds the same names. A dict with key ``state_dict`` or ``model`` (timm / DeiT training
checkpoints) is unwrapped; ``module.`` prefixes are stripped. ``model.safetensors`` is not read (no
``safetensors`` here): take the repository's ``pytorch_model.bin``.

Layouts (``--layout auto`` picks one from the names; a mix of both, or neither, is an error):

* ``hf``: ``[vit.]embeddings.cls_token`` ``(1, 1, D)``, ``embeddings.position_embeddings``
  ``(1, 1 + n*n, D)``, ``embeddings.patch_embeddings.projection`` (Conv2d ``P x P`` / ``P``),
  ``encoder.layer.{i}.layernorm_before`` / ``.attention.attention.query|key|value`` /
  ``.attention.output.dense`` / ``.layernorm_after`` / ``.intermediate.dense`` / ``.output.dense``,
  ``layernorm``, and ``pooler.dense`` when the checkpoint has one (``ViTModel``; the in21k checkpoint
  ships a trained pooler). The ``vit.`` prefix (``ViTForImageClassification``) is optional; ``classifier.*``
  is dropped and reported. kdface's layer names are these module names.
* ``timm``: ``cls_token``, ``pos_embed``, ``patch_embed.proj``, ``blocks.{i}.norm1``,
  ``blocks.{i}.attn.qkv`` (one fused Linear ``(3D, D)``, split into query, key and value: rows
  ``[0, D)``, ``[D, 2D)``, ``[2D, 3D)``, as timm's ``reshape(B, N, 3, heads, head_dim)``),
  ``blocks.{i}.attn.proj``, ``blocks.{i}.norm2``, ``blocks.{i}.mlp.fc1`` / ``.fc2``, ``norm``;
  ``head.*`` is dropped and reported. Old timm in21k checkpoints (``representation_size`` 768) carry
  ``pre_logits.fc`` (Linear + tanh on the final-LN CLS token: the computation of HF's pooler; HF's own
  timm converter maps it onto ``pooler.dense``): it becomes ``pooler.dense``. Without it the ``.npz``
  marks ``pooler.dense`` as left out (:data:`~kdface.backbones.weights.DROPPED_KEY`), as
  :func:`~kdface.backbones.vit.arrays_from_keras_hub` does: a ``pooler=True`` model then keeps an
  initialised pooler (the loader says so).

Other timm ViT flavours (a distillation token, LayerScale ``ls1``/``ls2``, ``norm_pre``, ``fc_norm``,
no qkv bias) are a different network: their tensors come out as unexpected or missing, never
silently.

What it does:

* infers the patch size, depth, width and MLP width from the shapes and checks them against
  ``--variant`` (a mismatch is one error naming each differing value, and the variant that fits if
  one does). The number of heads is not in a state dict (the query kernel is ``(D, D)`` whatever it is):
  the variant's is taken (12 for ViT-B/16, as both HF's config and timm's use);
* maps every tensor onto kdface's layout: Linear ``weight`` ``(out, in)`` -> ``kernel`` ``(in, out)``;
  the patch conv OIHW -> HWIO; query/key/value ``(D, D)`` -> MultiHeadAttention's ``(D, heads,
  head_dim)`` (transpose, then split the output axis head-major, as HF's ``view(B, N, heads,
  head_dim)`` and timm's reshape do), their biases ``(D,)`` -> ``(heads, head_dim)``; the attention
  output ``(D, D)`` -> ``(heads, head_dim, D)`` (transpose, then split the input axis), its bias kept
  ``(D,)``; the CLS token ``(1, 1, D)`` -> the ``(1, D)`` Embedding table; the position embeddings
  ``(1, 1 + n*n, D)`` -> ``(1 + n*n, D)``; LayerNorm ``weight``/``bias`` -> ``gamma``/``beta``;
* ``--image-size S``: the position table is the checkpoint's grid (14 x 14 at 224 px for patch 16);
  when ``S / P`` differs, the patch rows are resampled bicubically as a ``n x n`` map (row-major, as the
  patches are flattened) to ``S/P x S/P``, the CLS row kept: ``torch.nn.functional.interpolate(...,
  mode="bicubic", align_corners=False)``, HF's ``interpolate_pos_encoding`` (timm's
  ``resample_abs_pos_embed`` adds ``antialias=True``, a slightly different kernel); the report says so.
  Without ``--image-size``, the checkpoint's own size;
* is strict: every checkpoint tensor is used or listed as dropped (``classifier.*``, ``head.*``, and the
  pooler with ``--drop-pooler``); a missing tensor, an unexpected one or a wrong shape is a
  :class:`~kdface.errors.DataFormatError` naming the checkpoint and each key with its expected shape
  (in the checkpoint's own layout), and nothing is written;
* checks the result against the kdface model it is for (every ``<layer>/<variable>`` and shape), then
  writes the ``.npz`` atomically (:mod:`kdface.io.atomic`).

LayerNorm epsilon: HF ViT uses 1e-12 (kdface's default), timm 1e-6. The ``.npz`` holds weights only;
build a timm checkpoint's model with ``layer_norm_epsilon=1e-6`` for timm's exact network. Keeping
1e-12 changes each LayerNorm's output by a relative ``1e-6 / (2 var)``, ``var`` the variance over the
width of that LayerNorm's input (5e-5 at ``var`` = 0.01; trained ViTs' residual streams are larger).

``--drop-pooler`` leaves a checkpoint's pooler out (reported, marked as left out in the ``.npz``), for
a model built without one (``pooler=False``, ViT-SE's variant B): a kdface ``.npz`` loads strictly, so a
pooler in the file needs a model with one.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable
from pathlib import Path

import numpy as np

from kdface.backbones.vit import VIT_VARIANTS, ViTArchitecture, build_vit
from kdface.backbones.weights import DROPPED_KEY, mismatch_message, weight_layers
from kdface.errors import ConfigError, DataFormatError
from kdface.io.atomic import atomic_path

LAYOUTS = ("auto", "hf", "timm")
WRAPPERS = ("state_dict", "model")  # a timm / DeiT training checkpoint holds its weights under "model"
STRIP_PREFIXES = ("module.",)
HF_PREFIX = "vit."
DROPPED_PREFIXES = {"hf": ("classifier.",), "timm": ("head.",)}
POOLER = "pooler.dense"
POOLER_NAMES = {"hf": "pooler.dense", "timm": "pre_logits.fc"}
LAYER_NORM_EPSILON = {"hf": 1e-12, "timm": 1e-6}
LAYOUT_TITLES = {"hf": "Hugging Face ViTModel names", "timm": "timm VisionTransformer names"}
BICUBIC_A = -0.75  # torch's bicubic (interpolate, align_corners=False, no antialias)


@dataclasses.dataclass(frozen=True)
class _Tensor:
    """One checkpoint tensor the converter expects: its shape (checkpoint layout) and how it becomes
    kdface arrays (``{"<layer>/<variable>": array}``)."""

    shape: tuple
    convert: Callable[[np.ndarray], dict]
    shown: str = ""  # the expected shape as messages say it (default: ``shape``)

    def expected(self) -> str:
        return self.shown or str(self.shape)


@dataclasses.dataclass
class ViTConversionReport:
    source: str
    layout: str
    variant: str
    matched: int  # checkpoint tensors used
    arrays: int  # kdface arrays written (timm's fused qkv gives three)
    dropped: list[str]  # checkpoint tensors left out (heads, --drop-pooler)
    left_out: list[str]  # kdface layers the .npz marks as left out (the pooler)
    image_size: int
    checkpoint_grid: int
    grid: int
    pooler_from: str | None  # the checkpoint tensor the pooler came from (None: left out)
    out: str | None = None

    @property
    def resampled(self) -> bool:
        return self.grid != self.checkpoint_grid

    @property
    def dropped_pooler(self) -> bool:
        """The checkpoint had a pooler and it was dropped (``--drop-pooler``)."""
        names = POOLER_NAMES[self.layout] + "."
        return any(_strip(n).removeprefix(HF_PREFIX).startswith(names) for n in self.dropped)

    @property
    def layer_norm_epsilon(self) -> float:
        return LAYER_NORM_EPSILON[self.layout]

    def build_call(self) -> str:
        options = ", pooler=True" if POOLER not in self.left_out else ""
        if self.layout == "timm":
            options += ", layer_norm_epsilon=1e-6"
        return f"create_backbone({self.variant!r}, image_size={self.image_size}, weights=...{options})"


def _strip(name: str) -> str:
    while name.startswith(STRIP_PREFIXES):
        name = name[name.index(".") + 1 :]
    return name


def detect_layout(names, source="<state dict>") -> str:
    """``"hf"`` or ``"timm"`` from the (``module.``-stripped) names; both or neither is an error."""
    names = [_strip(n) for n in names]
    timm = any(n in ("cls_token", "pos_embed") or n.startswith(("patch_embed.", "blocks.")) for n in names)
    hf = any(n.removeprefix(HF_PREFIX).startswith(("embeddings.", "encoder.layer.")) for n in names)
    if timm == hf:
        got = "names of both" if timm else f"neither (e.g. {', '.join(sorted(names)[:3]) or 'no tensors'})"
        raise DataFormatError(
            source,
            "a ViT state dict with Hugging Face names (embeddings.*, encoder.layer.*) or timm names "
            f"(cls_token, pos_embed, patch_embed.*, blocks.*), not both; got {got} (--layout)",
        )
    return "timm" if timm else "hf"


def _canonical(state_dict, layout, source):
    """``({name in the layout without prefixes: array}, {that name: the checkpoint's key})``."""
    kept, original = {}, {}
    for key, value in state_dict.items():
        name = _strip(key)
        if layout == "hf":
            name = name.removeprefix(HF_PREFIX)
        if name in kept:
            raise DataFormatError(source, f"one tensor per name; {key!r} duplicates {original[name]!r}")
        kept[name], original[name] = value, key
    return kept, original


@dataclasses.dataclass(frozen=True)
class _Found:
    """The architecture the shapes show (``None``: not shown, e.g. the tensor is missing)."""

    patch: int | None
    depth: int | None
    width: int | None
    mlp: int | None

    def differences(self, arch: ViTArchitecture) -> list[str]:
        return [
            f"{what} {found} (the variant's {wanted})"
            for what, found, wanted in (
                ("patch", self.patch, arch.patch_size),
                ("depth", self.depth, arch.depth),
                ("width", self.width, arch.width),
                ("MLP width", self.mlp, arch.mlp_width),
            )
            if found is not None and found != wanted
        ]


_NAMES = {
    "hf": {
        "cls": "embeddings.cls_token",
        "pos": "embeddings.position_embeddings",
        "patch": "embeddings.patch_embeddings.projection",
        "block": re.compile(r"encoder\.layer\.(\d+)\."),
        "fc1": "encoder.layer.0.intermediate.dense.weight",
    },
    "timm": {
        "cls": "cls_token",
        "pos": "pos_embed",
        "patch": "patch_embed.proj",
        "block": re.compile(r"blocks\.(\d+)\."),
        "fc1": "blocks.0.mlp.fc1.weight",
    },
}


def infer_architecture(tensors, layout) -> _Found:
    """Patch size, depth, width and MLP width as the (canonical-named) tensors' shapes show them."""
    names = _NAMES[layout]
    shape = {n: tuple(np.shape(v)) for n, v in tensors.items()}
    conv = shape.get(f"{names['patch']}.weight", ())
    cls = shape.get(names["cls"], ())
    blocks = [int(m[1]) for n in tensors if (m := names["block"].match(n))]
    fc1 = shape.get(names["fc1"], ())
    return _Found(
        patch=conv[3] if len(conv) == 4 and conv[2] == conv[3] else None,
        depth=max(blocks) + 1 if blocks else None,
        width=cls[-1] if len(cls) == 3 else (conv[0] if len(conv) == 4 else None),
        mlp=fc1[0] if len(fc1) == 2 else None,
    )


def _checkpoint_grid(tensors, layout, width) -> int | None:
    """``n`` when the position embeddings are ``(1, 1 + n*n, width)``, else ``None``."""
    shape = tuple(np.shape(tensors.get(_NAMES[layout]["pos"], ())))
    if len(shape) == 3 and shape[0] == 1 and shape[2] == width and shape[1] > 1:
        n = math.isqrt(shape[1] - 1)
        if n * n == shape[1] - 1:
            return n
    return None


def _cubic(x: float) -> float:
    a, x = BICUBIC_A, abs(x)
    if x <= 1:
        return ((a + 2) * x - (a + 3)) * x * x + 1
    if x < 2:
        return ((a * x - 5 * a) * x + 8 * a) * x - 4 * a
    return 0.0


def bicubic_matrix(size_in: int, size_out: int) -> np.ndarray:
    """``(size_out, size_in)`` weights of torch's 1-D bicubic resampling (``align_corners=False``,
    ``A = -0.75``, source indices clamped at the border)."""
    weights = np.zeros((size_out, size_in))
    scale = size_in / size_out
    for i in range(size_out):
        source = (i + 0.5) * scale - 0.5
        base = math.floor(source)
        t = source - base
        for offset, w in zip(
            range(-1, 3), (_cubic(t + 1), _cubic(t), _cubic(1 - t), _cubic(2 - t)), strict=True
        ):
            weights[i, min(max(base + offset, 0), size_in - 1)] += w
    return weights


def resample_position_embeddings(table: np.ndarray, grid: int) -> np.ndarray:
    """A ``(1 + n*n, D)`` position table (CLS row first, then the patches row-major) for a ``grid x
    grid`` patch grid: the CLS row kept, the ``n x n`` patch rows resampled bicubically as torch's
    ``interpolate(mode="bicubic", align_corners=False)`` does (HF's ``interpolate_pos_encoding``)."""
    table = np.asarray(table)
    n = math.isqrt(table.shape[0] - 1)
    if n * n != table.shape[0] - 1:
        raise ValueError(f"position table of {table.shape[0]} rows is not CLS + a square grid")
    if n == grid:
        return table
    patches = table[1:].astype(np.float64).reshape(n, n, -1)
    rows, cols = bicubic_matrix(n, grid), bicubic_matrix(n, grid)
    resampled = np.einsum("ih,jw,hwd->ijd", rows, cols, patches).reshape(grid * grid, -1)
    return np.concatenate([table[:1], resampled.astype(table.dtype)], axis=0)


def _expected_tensors(layout, arch: ViTArchitecture, ckpt_grid: int | None, grid: int, pooler: bool):
    """``{canonical checkpoint name: _Tensor}`` for ``arch`` (``ckpt_grid``: the checkpoint's patch grid,
    ``None`` when its position table is missing or malformed; ``grid``: the kdface model's)."""
    d, heads, m, p = arch.width, arch.heads, arch.mlp_width, arch.patch_size
    hd = d // heads
    out: dict[str, _Tensor] = {}

    def linear(name, layer, n_in, n_out):
        out[f"{name}.weight"] = _Tensor((n_out, n_in), lambda w: {f"{layer}/kernel": w.T})
        out[f"{name}.bias"] = _Tensor((n_out,), lambda b: {f"{layer}/bias": b})

    def norm(name, layer):
        out[f"{name}.weight"] = _Tensor((d,), lambda w: {f"{layer}/gamma": w})
        out[f"{name}.bias"] = _Tensor((d,), lambda b: {f"{layer}/beta": b})

    def heads_kernel(w):  # (D_out, D_in) -> (D_in, heads, head_dim)
        return w.T.reshape(d, heads, hd)

    names = _NAMES[layout]
    out[names["cls"]] = _Tensor((1, 1, d), lambda w: {"embeddings.cls_token/embeddings": w.reshape(1, d)})
    out[names["pos"]] = _Tensor(
        (1, 1 + (ckpt_grid or 0) ** 2, d),
        lambda w: {"embeddings.position_embeddings/embeddings": resample_position_embeddings(w[0], grid)},
        shown="" if ckpt_grid else f"(1, 1 + n*n, {d}) (CLS + an n x n grid of patches)",
    )
    conv = names["patch"]
    layer = "embeddings.patch_embeddings.projection"
    out[f"{conv}.weight"] = _Tensor(
        (d, 3, p, p), lambda w, layer=layer: {f"{layer}/kernel": w.transpose(2, 3, 1, 0)}
    )
    out[f"{conv}.bias"] = _Tensor((d,), lambda b, layer=layer: {f"{layer}/bias": b})
    for i in range(arch.depth):
        ours = f"encoder.layer.{i}"
        att = f"{ours}.attention"
        if layout == "hf":
            norm(f"{ours}.layernorm_before", f"{ours}.layernorm_before")
            for part in ("query", "key", "value"):
                name = f"{ours}.attention.attention.{part}"
                out[f"{name}.weight"] = _Tensor(
                    (d, d), lambda w, part=part, att=att: {f"{att}/{part}/kernel": heads_kernel(w)}
                )
                out[f"{name}.bias"] = _Tensor(
                    (d,), lambda b, part=part, att=att: {f"{att}/{part}/bias": b.reshape(heads, hd)}
                )
            output = f"{ours}.attention.output.dense"
            norm(f"{ours}.layernorm_after", f"{ours}.layernorm_after")
            linear(f"{ours}.intermediate.dense", f"{ours}.intermediate.dense", d, m)
            linear(f"{ours}.output.dense", f"{ours}.output.dense", m, d)
        else:
            block = f"blocks.{i}"
            norm(f"{block}.norm1", f"{ours}.layernorm_before")
            out[f"{block}.attn.qkv.weight"] = _Tensor(
                (3 * d, d),
                lambda w, att=att: {
                    f"{att}/{part}/kernel": heads_kernel(chunk)
                    for part, chunk in zip(("query", "key", "value"), np.split(w, 3), strict=True)
                },
            )
            out[f"{block}.attn.qkv.bias"] = _Tensor(
                (3 * d,),
                lambda b, att=att: {
                    f"{att}/{part}/bias": chunk.reshape(heads, hd)
                    for part, chunk in zip(("query", "key", "value"), np.split(b, 3), strict=True)
                },
            )
            output = f"{block}.attn.proj"
            norm(f"{block}.norm2", f"{ours}.layernorm_after")
            linear(f"{block}.mlp.fc1", f"{ours}.intermediate.dense", d, m)
            linear(f"{block}.mlp.fc2", f"{ours}.output.dense", m, d)
        out[f"{output}.weight"] = _Tensor(
            (d, d), lambda w, att=att: {f"{att}/attention_output/kernel": w.T.reshape(heads, hd, d)}
        )
        out[f"{output}.bias"] = _Tensor((d,), lambda b, att=att: {f"{att}/attention_output/bias": b})
    norm("layernorm" if layout == "hf" else "norm", "layernorm")
    if pooler:
        linear(POOLER_NAMES[layout], POOLER, d, d)
    return out


def to_keras_arrays(state_dict, variant: str, *, image_size: int | None = None, layout: str = "auto",
                    drop_pooler: bool = False, source="<state dict>"):  # fmt: skip
    """Map a ViT state dict (``{name: array}``) onto a kdface ``variant``'s arrays, strictly.

    Returns ``(arrays keyed "<layer>/<variable>" (with DROPPED_KEY when the pooler is left out), report)``
    (``report.out`` unset); raises :class:`DataFormatError` naming ``source`` on any mismatch."""
    if variant not in VIT_VARIANTS:
        raise ConfigError(f"unknown ViT variant {variant!r}; known: {sorted(VIT_VARIANTS)}")
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    arch = VIT_VARIANTS[variant]
    if image_size is not None and (int(image_size) < arch.patch_size or int(image_size) % arch.patch_size):
        raise ConfigError(
            f"--image-size {image_size} is not a positive multiple of {variant}'s patch size {arch.patch_size}"
        )
    layout = detect_layout(state_dict, source) if layout == "auto" else layout
    tensors, original = _canonical(state_dict, layout, source)
    found = infer_architecture(tensors, layout)
    if differences := found.differences(arch):
        fits = [k for k, a in VIT_VARIANTS.items() if not found.differences(a) and k != variant]
        hint = f"; --variant {fits[0]} fits" if fits else "; no kdface variant fits"
        raise DataFormatError(
            source,
            f"a {variant} checkpoint (patch {arch.patch_size}, depth {arch.depth}, width {arch.width}, "
            f"MLP width {arch.mlp_width}); its shapes show {', '.join(differences)}{hint}",
        )
    ckpt_grid = _checkpoint_grid(tensors, layout, arch.width)
    if image_size is None:  # the checkpoint's (0 when its position table is unusable: an error below)
        image_size = (ckpt_grid or 0) * arch.patch_size
    grid = int(image_size) // arch.patch_size

    dropped_prefixes = DROPPED_PREFIXES[layout] + ((POOLER_NAMES[layout] + ".",) if drop_pooler else ())
    dropped = sorted(original[n] for n in tensors if n.startswith(dropped_prefixes))
    tensors = {n: v for n, v in tensors.items() if not n.startswith(dropped_prefixes)}
    pooler = any(n.startswith(POOLER_NAMES[layout] + ".") for n in tensors)
    expected = _expected_tensors(layout, arch, ckpt_grid, grid, pooler)

    # the prefix the checkpoint's names carry (vit., module.), for the names it lacks
    prefix = next((original[n][: -len(n)] for n in sorted(set(expected) & set(tensors))), "")
    missing = sorted(f"{prefix}{n} {expected[n].expected()}" for n in set(expected) - set(tensors))
    unexpected = sorted(original[n] for n in set(tensors) - set(expected))
    wrong = []
    arrays = {}
    for name in sorted(set(expected) & set(tensors)):
        spec, value = expected[name], np.asarray(tensors[name])
        if value.shape != spec.shape:
            wrong.append(f"{original[name]} {value.shape} != expected {spec.expected()}")
            continue
        arrays.update(spec.convert(value.astype(np.float32)))
    if missing or unexpected or wrong:
        what = (
            f"the {len(expected)} tensors of a {variant} ViT in {LAYOUT_TITLES[layout]} "
            f"(after dropping {', '.join(p + '*' for p in dropped_prefixes)})"
        )
        raise DataFormatError(source, mismatch_message(what, missing, unexpected, wrong))
    arrays = {k: np.ascontiguousarray(v, dtype=np.float32) for k, v in arrays.items()}
    left_out = [] if pooler else [POOLER]
    report = ViTConversionReport(
        source=str(source),
        layout=layout,
        variant=variant,
        matched=len(expected),
        arrays=len(arrays),
        dropped=dropped,
        left_out=left_out,
        image_size=int(image_size),
        checkpoint_grid=ckpt_grid,
        grid=grid,
        pooler_from=original[POOLER_NAMES[layout] + ".weight"] if pooler else None,
    )
    if left_out:
        arrays[DROPPED_KEY] = np.asarray(left_out)
    return arrays, report


def check_model_arrays(model, arrays) -> None:
    """``arrays`` (a converter result) hold exactly ``model``'s variables, less the layers marked as left
    out, each with its shape: else an ``AssertionError`` (the mapping above and the kdface ViT disagree,
    a kdface bug, not a checkpoint's)."""
    left_out = [str(n) for n in arrays.get(DROPPED_KEY, ())]
    targets = {
        f"{layer}/{var}": tuple(v.shape)
        for layer, variables in weight_layers(model).items()
        if layer not in left_out
        for var, v in variables
    }
    got = {k: tuple(v.shape) for k, v in arrays.items() if k != DROPPED_KEY}
    if got != targets:
        diff = sorted(set(got.items()) ^ set(targets.items()))[:6]
        raise AssertionError(f"{model.name}: converted arrays and model variables differ: {diff}")


def check_vit_out(out) -> Path:
    """``out`` as a ``Path`` if :func:`convert` can write it (an ``.npz``; reads only)."""
    from kdface.convert.torch_resnet import check_out

    out = Path(out)
    if out.name.endswith(".weights.h5"):
        raise ConfigError(
            f"--out {out}: the vit converter writes an .npz (it can record a pooler left out; "
            ".weights.h5 cannot)"
        )
    return check_out(out)


def convert(checkpoint, variant: str, out, *, image_size: int | None = None, fmt: str = "auto",
            layout: str = "auto", drop_pooler: bool = False) -> ViTConversionReport:  # fmt: skip
    """Read ``checkpoint``, map it onto a kdface ``variant`` ViT for ``image_size`` px (``None``: the
    checkpoint's), check the result against that model and write ``out`` (``.npz``) atomically."""
    from kdface.convert.torch_resnet import read_state_dict

    out = check_vit_out(out)
    state_dict = read_state_dict(checkpoint, fmt, wrappers=WRAPPERS)
    arrays, report = to_keras_arrays(state_dict, variant, image_size=image_size, layout=layout,
                                     drop_pooler=drop_pooler, source=checkpoint)  # fmt: skip
    model = build_vit(variant, image_size=report.image_size, pooler=not report.left_out)
    check_model_arrays(model, arrays)
    with atomic_path(out) as tmp:
        np.savez(tmp, **arrays)
    report.out = str(out)
    return report
