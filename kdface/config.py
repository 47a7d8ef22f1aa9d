"""One experiment = one config dataclass (big_vision's rule), described once.

Every field is declared with :func:`option`: its default, its help text, and optionally its choices
and the training roles it belongs to. The CLI (:mod:`kdface.cli`) turns the fields into flags, the
run directory records them, and a resumed run must match them. A field whose default is ``None``
takes the ``--preset``'s value (``PRESETS`` on the class: ``paper`` for the original's sizes, ``demo``
for a CPU); a preset may hold ``<role>_<field>`` for a value that differs between a method's teacher
and student (KD-Loss' epochs).
"""

from __future__ import annotations

import dataclasses
from typing import Any, ClassVar

from kdface.errors import ConfigError
from kdface.registry import unknown_name_message


def option(
    default: Any = None,
    help: str = "",
    *,
    choices=None,
    roles=None,
    required: bool = False,  # noqa: A002
    backbone: bool = False,
    flags: tuple[str, ...] = (),
):
    """A config field with its CLI description.

    ``choices``: the values a flag takes; ``roles``: the training roles (``"teacher"``, ``"student"``)
    whose CLI shows the flag (all when ``None``); ``required``: the flag must be given; ``backbone``:
    the value names a registered backbone (:func:`kdface.backbones.backbone_names`); ``flags``: the
    flag names when they differ from ``--<field-name>`` (the first is the one shown; the others are
    accepted aliases, e.g. an older name).
    """
    metadata = {"help": help, "choices": tuple(choices) if choices else None,
                "roles": tuple(roles) if roles else None, "required": required, "backbone": backbone,
                "flags": tuple(flags)}  # fmt: skip
    return dataclasses.field(default=default, metadata=metadata)


def field_help(field: dataclasses.Field) -> str:
    return field.metadata.get("help", "")


def fields_for_role(config_cls, role: str | None) -> list[dataclasses.Field]:
    """The fields a role's CLI shows."""
    return [f for f in dataclasses.fields(config_cls) if role is None or not f.metadata.get("roles")
            or role in f.metadata["roles"]]  # fmt: skip


@dataclasses.dataclass
class ExperimentConfig:
    """What every training run has: data, preset, size, schedule, seed. Methods subclass it."""

    PRESETS: ClassVar[dict[str, dict]] = {}

    dataset: str = option("synthface", "dataset name (synthface is generated here)")
    data_dir: str | None = option(
        None, "raw dataset folder (SynthFaces: generated there; default datasets/synthfaces/demo)"
    )
    tfds_dir: str = option("datasets/tfds", "where prepared TFDS records are kept")
    preset: str = option(
        "demo", "paper: the original's sizes and schedule (for GPUs); demo: small and quick (CPU)"
    )
    image_size: int | None = option(None, "square input size of the face crop")
    batch_size: int | None = option(None, "global batch size")
    epochs: int | None = option(None, "training epochs")
    learning_rate: float | None = option(None, "base learning rate")
    val_fraction: float = option(0.1, "fraction of the training split held out for best-epoch selection")
    seed: int = option(0, "random seed (data order, augmentation, initialisation)")
    steps_per_epoch: int | None = option(None, "steps per epoch (default: one pass over the training split)")

    def resolved(self, role: str | None = None):
        """A copy with every ``None`` field filled from the preset (``<role>_<field>`` first), validated."""
        if self.preset not in self.PRESETS:
            raise ConfigError(f"unknown preset {self.preset!r}; known: {sorted(self.PRESETS)}")
        preset = self.PRESETS[self.preset]
        values = {}
        for f in dataclasses.fields(self):
            value = getattr(self, f.name)
            if value is None:
                value = preset.get(f"{role}_{f.name}", preset.get(f.name)) if role else preset.get(f.name)
            values[f.name] = value
        config = dataclasses.replace(self, **values)
        config.validate()
        return config

    def validate(self) -> None:
        """Raise :class:`ConfigError` for values out of range; subclasses extend it."""
        if not 0 <= self.val_fraction < 1:
            raise ConfigError(f"val_fraction must be in [0, 1), got {self.val_fraction}")
        if self.learning_rate is not None and not self.learning_rate > 0:
            raise ConfigError(f"learning_rate must be positive, got {self.learning_rate}")
        for name in ("image_size", "batch_size", "epochs", "steps_per_epoch"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ConfigError(f"{name} must be at least 1, got {value}")
        for f in dataclasses.fields(self):
            choices = f.metadata.get("choices")
            value = getattr(self, f.name)
            if choices and value is not None and value not in choices:
                raise ConfigError(f"{f.name} must be one of {', '.join(map(str, choices))}; got {value!r}")
            if f.metadata.get("backbone") and value is not None:
                from kdface.backbones import backbone_names

                if value not in backbone_names():
                    raise ConfigError(
                        unknown_name_message(f"--{f.name.replace('_', '-')}", value, backbone_names())
                    )

    def check_inputs(self) -> None:
        """Check the files, folders and names this (resolved) config refers to, reading only: the
        trainer calls it before it creates the run directory, so a mistake costs a second and leaves
        nothing behind. Each failure is one kdface error naming the flag. Task configs add the dataset
        (name, split, ``--data-dir``), methods their weight and teacher files."""
        from kdface.io.paths import check_can_create

        check_can_create(self.tfds_dir, "--tfds-dir")

    def splits(self, base: str = "train") -> tuple[str, str | None]:
        """The training slice and the validation slice held out of ``base`` (``val_fraction``)."""
        if self.val_fraction == 0:
            return base, None
        cut = int(round(100 * (1 - self.val_fraction)))
        return f"{base}[:{cut}%]", f"{base}[{cut}%:]"
