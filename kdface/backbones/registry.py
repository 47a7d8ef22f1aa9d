"""The backbone registry (timm-style): one name -> one builder, every builder one output contract.

::

    from kdface.backbones import create_backbone, embedding_size

    backbone = create_backbone("resnet18", image_size=224, weights="resnet18_msceleb.npz")
    outputs = backbone(images)          # {"feature_map", "embedding", "stage1", .., "stage4"}
    logits = linear_head(7)(outputs["embedding"])

Registering a backbone: a builder takes keyword arguments ``image_size``, ``weights`` (already checked:
``None``, ``"imagenet"`` only if registered with ``imagenet=True``, or an existing path),
``bn_momentum`` (``None``: the network's own) and ``name``, plus its own options, and returns a
Functional model following :mod:`kdface.backbones.contract` (checked when it is created)::

    @register_backbone("my_net", family="custom")
    def build_my_net(*, image_size, weights=None, bn_momentum=None, name=None, width=64): ...
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import inspect
from collections.abc import Callable

import keras

from kdface.backbones import applications, iresnet, resnet, vit
from kdface.backbones.contract import backbone_spec, set_bn_momentum
from kdface.backbones.weights import check_weights

_COMMON = ("image_size", "weights", "bn_momentum", "name")


@dataclasses.dataclass(frozen=True)
class BackboneEntry:
    name: str
    family: str
    builder: Callable[..., keras.Model]
    imagenet: bool = False  # accepts weights="imagenet"

    def options(self) -> list[str] | None:
        """The builder's own keyword options (``None``: it takes any, e.g. an application's)."""
        params = inspect.signature(self.builder).parameters.values()
        if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params):
            return None
        return [
            p.name
            for p in params
            if p.name not in _COMMON
            and p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
        ]


_REGISTRY: dict[str, BackboneEntry] = {}


def register_backbone(name: str, *, family: str, builder=None, imagenet: bool = False, replace: bool = False):
    """Register ``builder`` under ``name``; without ``builder``, a decorator. A name already taken is a
    ``ValueError`` unless ``replace``."""

    def register(fn):
        if name in _REGISTRY and not replace:
            raise ValueError(f"backbone {name!r} is already registered (family {_REGISTRY[name].family})")
        _REGISTRY[name] = BackboneEntry(name, family, fn, imagenet)
        return fn

    return register if builder is None else register(builder)


def backbone_names(family: str | None = None) -> list[str]:
    """Registered backbone names, sorted (only ``family``'s if given)."""
    return sorted(n for n, e in _REGISTRY.items() if family is None or e.family == family)


def imagenet_backbones() -> list[str]:
    """The backbones that take ``weights="imagenet"``."""
    return sorted(n for n, e in _REGISTRY.items() if e.imagenet)


def backbone_entry(name: str) -> BackboneEntry:
    """The registry entry of ``name``; an unknown name is a ``ValueError`` listing the known ones."""
    try:
        return _REGISTRY[name]
    except (KeyError, TypeError):
        known = backbone_names()
        close = difflib.get_close_matches(str(name), known, n=1)
        hint = f"; did you mean {close[0]!r}?" if close else ""
        raise ValueError(f"unknown backbone {name!r}; known: {known}{hint}") from None


def check_backbone_weights(weights, backbone: str, flag: str | None = None):
    """:func:`~kdface.backbones.weights.check_weights` for the registered ``backbone`` (whether it takes
    ``"imagenet"``), naming ``flag``; reads only, so configs call it before a run writes anything."""
    return check_weights(weights, backbone, backbone_entry(backbone).imagenet, flag)


def create_backbone(
    backbone: str, /, *, image_size, weights=None, bn_momentum=None, name: str | None = None, **kwargs
) -> keras.Model:
    """Build the registered backbone ``backbone``: a Functional model taking ``(B, S, S, 3)`` RGB in
    ``[0, 1]`` whose output is the dict :data:`~kdface.backbones.BACKBONE_OUTPUTS`.

    ``weights``: ``None`` (from scratch), ``"imagenet"`` (keras.applications backbones only), or a path
    (``.npz`` from ``python -m kdface.convert``, a kdface ``.keras`` model holding the same backbone, a
    ``.weights.h5``/``.h5``); a missing path is a ``FileNotFoundError``. ``bn_momentum`` sets every
    BatchNormalization's momentum (``None``: the network's own). ``name`` names the model (default
    ``backbone``). ``kwargs`` are the backbone's options (``stride_on`` for ResNets; ``head``,
    ``dropout``, ``normalization``, ``attention``, ``features_scale`` for IResNets; ``pooler``,
    ``dropout``, ``attention_dropout``, ``layer_norm_epsilon`` for ViTs; list them with
    ``backbone_entry(name).options()``).
    """
    entry = backbone_entry(backbone)
    options = entry.options()
    if options is not None and (unknown := sorted(set(kwargs) - set(options))):
        raise TypeError(f"backbone {backbone!r} has no option(s) {unknown}; its options: {options}")
    weights = check_weights(weights, backbone, entry.imagenet)
    model = entry.builder(image_size=image_size, weights=weights, bn_momentum=bn_momentum,
                          name=name or backbone, **kwargs)  # fmt: skip
    set_bn_momentum(model, bn_momentum)  # every BatchNormalization, whatever the builder did
    backbone_spec(model)  # the output contract, checked for every builder
    return model


for _depth in resnet.RESNET_DEPTHS:
    register_backbone(
        f"resnet{_depth}", family="resnet", builder=functools.partial(resnet.build_resnet, _depth)
    )
for _depth in iresnet.IRESNET_DEPTHS:
    register_backbone(
        f"iresnet{_depth}", family="iresnet", builder=functools.partial(iresnet.build_iresnet, _depth)
    )
for _kind in applications.backbones():
    register_backbone(
        _kind,
        family="keras_applications",
        builder=functools.partial(applications.build_application, _kind),
        imagenet=True,
    )
for _kind in vit.backbones():
    register_backbone(_kind, family="vit", builder=functools.partial(vit.build_vit, _kind))
