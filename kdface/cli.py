"""Shared plumbing of the three CLIs: dispatch through the method registry, flags from a config.

A method's config dataclass is the single source of its flags (:mod:`kdface.config`): every field
becomes ``--field-name`` with its help and default in ``--help``; fields whose default is ``None``
take the ``--preset``'s value, listed in the help text.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import difflib
import os
import sys
import tempfile
import typing


def quiet_tensorflow(argv=None) -> bool:
    """Import TensorFlow without its console noise, unless ``--verbose`` is in ``argv``.

    TensorFlow writes C++ log lines while it loads and probes devices (oneDNN notes, "Could not find
    cuda drivers", and an error-level "failed call to cuInit" on every machine without a GPU), many of
    them before its log level is read, so the level alone cannot hide them. They are caught at the file
    descriptor while TensorFlow loads and finds its devices, and shown if that fails. Returns whether
    the run is verbose.
    """
    argv = sys.argv[1:] if argv is None else argv
    if "--verbose" in argv:
        return True
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    with _stderr_to_file() as captured:
        try:
            import tensorflow as tf

            # probes the devices (CUDA's cuInit) without creating the eager context, which multi-worker
            # strategies must configure first
            tf.config.list_physical_devices()
        except BaseException:
            captured.flush()
            captured.seek(0)
            sys.__stderr__.write(captured.read().decode(errors="replace"))
            raise
    tf.get_logger().setLevel("ERROR")
    if not sys.stdout.isatty():  # progress bars would leave escape sequences in a log file
        import tensorflow_datasets as tfds

        tfds.disable_progress_bar()
    return False


@contextlib.contextmanager
def _stderr_to_file():
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)


def add_verbose_argument(parser) -> None:
    parser.add_argument("--verbose", action="store_true",
                        help="show TensorFlow's log lines (device set-up, oneDNN, CUDA probing)")  # fmt: skip


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Shows every default, except ``None`` (those flags say where their default comes from)."""

    def _get_help_string(self, action):
        if action.default is None or action.default is argparse.SUPPRESS:
            return action.help
        return super()._get_help_string(action)


class ArgumentParser(argparse.ArgumentParser):
    """argparse for kdface's CLIs: an invalid choice lists the choices and suggests the closest
    (``did you mean 'synthface'?``), and every error ends in one ``error: ...`` line after the usage
    (no program-name prefix), exit status 2. Subparsers are of this class too."""

    def _check_value(self, action, value):
        choices = action.choices
        if choices is not None and value not in choices:
            known = [str(c) for c in choices]
            close = difflib.get_close_matches(str(value), known, n=1)
            hint = f" (did you mean {close[0]!r}?)" if close else ""
            raise argparse.ArgumentError(
                action, f"invalid choice {value!r}; choose from {', '.join(known)}{hint}"
            )

    def parse_args(self, args=None, namespace=None):
        parsed, extras = self.parse_known_args(args, namespace)
        if extras:  # argparse's own message, plus the flags the misspelt ones were meant to be
            options = _option_strings(self)
            guesses = {flag: close[0] for flag in (a.split("=")[0] for a in extras if a.startswith("--"))
                       if (close := difflib.get_close_matches(flag, options, n=1))}  # fmt: skip
            hint = ", ".join(
                guess if len(guesses) == 1 else f"{guess} for {flag}" for flag, guess in guesses.items()
            )
            self.error(
                f"unrecognized arguments: {' '.join(extras)}" + (f" (did you mean {hint}?)" if hint else "")
            )
        return parsed

    def error(self, message):
        self.print_usage(sys.stderr)
        self.exit(2, f"error: {message}\n")


def _option_strings(parser) -> list[str]:
    """Every ``--flag`` of ``parser`` and of its subcommands."""
    names = {name for name in parser._option_string_actions if name.startswith("--")}
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                names.update(_option_strings(sub))
    return sorted(names)


def _flag(name: str) -> str:
    return "--" + name.replace("_", "-")


def _preset_help(name: str, presets: dict, role: str | None) -> str:
    shown = []
    for preset_name, values in presets.items():
        if role and f"{role}_{name}" in values:
            shown.append(f"{preset_name}: {values[f'{role}_{name}']}")
        elif name in values:
            shown.append(f"{preset_name}: {values[name]}")
    return f" (default from --preset: {'; '.join(shown)})" if shown else ""


def add_config_arguments(parser, config_cls, role: str | None = None, dataset_choices=None) -> None:
    """One flag per field of ``config_cls`` shown to ``role`` (:func:`kdface.config.fields_for_role`)."""
    from kdface.config import field_help, fields_for_role

    hints = typing.get_type_hints(config_cls)
    group = parser.add_argument_group("experiment config")
    for field in fields_for_role(config_cls, role):
        default, hint = field.default, hints[field.name]
        kind = next((t for t in typing.get_args(hint) if t is not type(None)), hint)
        help_text = field_help(field)
        if default is None:
            help_text += _preset_help(field.name, config_cls.PRESETS, role)
        choices = field.metadata.get("choices")
        if field.name == "preset":
            choices = sorted(config_cls.PRESETS)
        elif field.name == "dataset" and dataset_choices and not choices:  # a config may narrow its task's
            choices = sorted(dataset_choices)
        elif field.metadata.get("backbone"):
            from kdface.backbones import backbone_names

            choices = backbone_names()
        kwargs = dict(default=default, help=help_text.strip(), required=field.metadata.get("required", False),
                      dest=field.name)  # fmt: skip
        flags = field.metadata.get("flags") or (_flag(field.name),)
        if kind is bool and field.name.startswith("no_"):  # a negative switch (--no-kd): on or absent
            group.add_argument(*flags, action="store_true", **kwargs)
        elif kind is bool:
            group.add_argument(*flags, action=argparse.BooleanOptionalAction, **kwargs)
        else:
            group.add_argument(*flags, type=kind, choices=choices, **kwargs)


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
    """The body of train_teacher.py / train_student.py: parse -> the method's config -> train -> save.

    ``--method`` is parsed first; the rest of the flags come from that method's config for ``role``."""
    quiet_tensorflow(argv)
    from kdface.methods import default_method, get_method, method_names
    from kdface.tasks import get_task
    from kdface.training import add_run_arguments, run_options_from_args

    names, default = method_names(), default_method()
    pre = ArgumentParser(add_help=False)
    pre.add_argument("--method", default=default, choices=names)
    known, _ = pre.parse_known_args(argv)
    method = get_method(known.method)
    parser = ArgumentParser(
        description=f"{description}\n\n--method {method.name} ({method.task}): {method.summary}. "
        f"`--method NAME --help` shows another method's flags.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--method", default=default, choices=names, help="which method")
    if role not in method.roles:
        run_cli(method.role, role)  # one clear line: what to run instead
    spec = method.roles[role]
    folder = "models/teachers" if role == "teacher" else "models/students"
    parser.add_argument(
        "--out", help=f"where the trained {role} goes (default {folder}/<dataset>_<name>.keras)"
    )
    parser.add_argument("--run-dir", help="run directory: logs, TensorBoard, best/last models, resumable backup "
                        f"(default runs/{method.name}/...)")  # fmt: skip
    add_config_arguments(parser, spec.config, role, dataset_choices=get_task(method.task).datasets())
    add_run_arguments(parser)
    add_verbose_argument(parser)
    args = parser.parse_args(argv)

    def train():
        spec.train(config_from_args(spec.config, args), out=args.out, run_dir=args.run_dir,
                   options=run_options_from_args(args))  # fmt: skip

    run_cli(train)
