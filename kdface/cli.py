"""Shared plumbing of the three CLIs: the method registry lookup and flags generated from a config.

Each method's config dataclass is the single source of its flags: every field becomes
``--field-name`` with its default in ``--help``; fields whose default is ``None`` take the
``--preset``'s value, listed in the help text.
"""

from __future__ import annotations

import argparse
import dataclasses
import importlib
import os
import sys
import typing

METHODS = {
    "kdloss": "kdface.methods.kdloss",
    "fer": "kdface.methods.fer",
    "igkd": "kdface.methods.igkd",
    "scn": "kdface.methods.scn",
}
# What each CLI trains, for methods that lack one of the roles.
ROLE_HINTS = {
    (
        "fer",
        "student",
    ): "the plain expression classifier has no teacher: python train_teacher.py --method fer",
    ("scn", "student"): "SCN has no teacher and no student: python train_teacher.py --method scn",
    (
        "igkd",
        "teacher",
    ): "IGKD trains its teacher jointly with the student: python train_student.py --method igkd "
    "(initialise the teacher with --t-checkpoint)",
}
DEFAULT_METHOD = "kdloss"


def quiet_tensorflow() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")


def method_module(name: str):
    if name not in METHODS:
        raise SystemExit(f"unknown --method {name!r}; known: {sorted(METHODS)}")
    return importlib.import_module(METHODS[name])


def parser_for(description: str, argv=None):
    """A parser whose method-specific flags depend on ``--method`` (parsed first)."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS))
    known, _ = pre.parse_known_args(argv)
    parser = argparse.ArgumentParser(description=description, formatter_class=HelpFormatter)
    parser.add_argument("--method", default=DEFAULT_METHOD, choices=sorted(METHODS), help="which method")
    return parser, method_module(known.method)


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default, except ``None`` (those flags say where their default comes from)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def add_config_arguments(parser, config_cls, presets: dict, skip=(), help_texts=None) -> None:
    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group("experiment config")
    for field in dataclasses.fields(config_cls):
        if field.name in skip:
            continue
        default = field.default
        hint = hints[field.name]
        kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        help_text = (help_texts or {}).get(field.name, "")
        if default is None:
            shown = []
            for preset_name, values in presets.items():
                if field.name in values:
                    shown.append(f"{preset_name}: {values[field.name]}")
                elif any(key.endswith(f"_{field.name}") for key in values):  # e.g. teacher_/student_epochs
                    per_role = ", ".join(f"{k.removesuffix('_' + field.name)} {v}" for k, v in values.items()
                                         if k.endswith(f"_{field.name}"))  # fmt: skip
                    shown.append(f"{preset_name}: {per_role}")
            if shown:
                help_text = f"{help_text} (default from --preset: {'; '.join(shown)})".strip()
        if kind is bool:
            group.add_argument(_flag(field.name), default=default, action=argparse.BooleanOptionalAction,
                               help=help_text)  # fmt: skip
        elif field.name == "preset":
            group.add_argument(_flag(field.name), default=default, choices=sorted(presets), help=help_text)
        else:
            group.add_argument(_flag(field.name), type=kind, default=default, help=help_text)


def config_from_args(config_cls, args):
    names = {f.name for f in dataclasses.fields(config_cls)}
    return config_cls(**{k: v for k, v in vars(args).items() if k in names})


def run_cli(main, *args) -> None:
    """Run a CLI body; kdface's documented errors end it with one clear line and exit status 2
    (3 when the loss became NaN/Inf), not a traceback."""
    from kdface.errors import KdfaceError, NonFiniteLossError

    try:
        main(*args)
    except KdfaceError as exc:
        print(f"error: {exc}", file=sys.stderr)
        raise SystemExit(3 if isinstance(exc, NonFiniteLossError) else 2) from None


def training_main(role: str, description: str, argv=None) -> None:
    """The body of train_teacher.py / train_student.py: parse -> the method's config -> train -> save."""
    from kdface.training import add_run_arguments

    quiet_tensorflow()
    parser, method = parser_for(description, argv)
    folder = "models/teachers" if role == "teacher" else "models/students"
    parser.add_argument(
        "--out", help=f"where the trained {role} goes (default {folder}/<dataset>_<name>.keras)"
    )
    parser.add_argument(
        "--run-dir",
        help="run directory: logs, TensorBoard, best/last models, resumable backup "
        "(default runs/<method>/...)",
    )
    method_name = next(name for name, module in METHODS.items() if module == method.__name__)
    if not hasattr(method, f"add_{role}_arguments"):
        raise SystemExit(f"--method {method_name} has no {role} to train: {ROLE_HINTS[(method_name, role)]}")
    getattr(method, f"add_{role}_arguments")(parser)
    add_run_arguments(parser)
    args = parser.parse_args(argv)
    run_cli(getattr(method, f"{role}_main"), args)
