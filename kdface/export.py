"""``python -m kdface.export --model M.keras --format litert|saved_model``: a saved kdface model for phones.

Examples: python -m kdface.export --model models/students/synthface_kd.keras --format litert
          python -m kdface.export --model models/students/synthface_kd.keras --format litert --quantize int8
          python -m kdface.export --model models/teachers/raf-db_fer_resnet18.keras --format litert \\
              --quantize int8 --data-dir datasets/RAF-DB
          python -m kdface.export --model models/students/synthface_kd.keras --format saved_model
          python -m kdface.export --model models/teachers/synthface-ck+_doe_resnet18_fold0.keras --quantize int8

The conversion is Keras 3's own ``model.export(path, format="litert")`` (an ``ExportArchive`` ->
SavedModel -> ``tf.lite.TFLiteConverter.from_saved_model``) with **builtin ops only**: Keras' default
also allows TensorFlow ops (Flex), which phones' LiteRT runtimes lack, so a model that would need them
is refused with the ops named. ``--quantize float16`` stores float16 weights; ``int8`` is full-integer
post-training quantisation calibrated on ``--calibration-count`` images of the training split of
``--calibration-dataset`` (default: the card's), preprocessed exactly as the model's evaluation view
(the task's evaluation pipeline, the card's crop). Inputs and outputs stay float32 (crops in ``[0, 1]``
like the Keras model) unless ``--uint8-io``.

After exporting, the exported model runs (``ai_edge_litert``'s interpreter) on the test split next to
the Keras model and the difference is printed and checked: landmarks NME (target: within 0.1 point),
expression accuracy (within 1 point) and argmax agreement, otherwise the cosine similarity of the
outputs (at least 0.99); then a latency table (ms per face, median of several runs) and the file
sizes. Written beside ``<name>.tflite``: ``<name>.json`` (a copy of the model card, so ``test.py --model
<name>.tflite`` finds it like a ``.keras``'s) and ``<name>.export.json`` (settings, comparison, latency).

A pair model (card ``"input": "pair"``: DoE, Disentangled DoE step 2) keeps its one input, ``(1, 2, S,
S, 3)`` in the file (batch axis resizable), float32 in ``[0, 1]``, the neutral face at index 0 of axis 1
and the target at 1. Its calibration and comparison data are (neutral, target) pairs of a pair dataset
(``ck+``, ``synthface-ck+``), each image in the evaluation view, read as the model's
:class:`~kdface.tasks.expressions.pairs.InputSpec` reads a split, with the pair protocol its card
records (neutral pairs for ``--neutral-class``); a single-image dataset is refused with one error line.
For a model trained on one fold of a pair dataset the comparison runs on the fold it held out (as
``test.py``) and ``--calibration-split train`` means the folds it trained on. Latency is per pair.
"""

from __future__ import annotations

import argparse
import contextlib
import dataclasses
import os
import shutil
import sys
import tempfile
import time
import uuid
from pathlib import Path

import numpy as np

from kdface.cli import HelpFormatter, add_verbose_argument, quiet_tensorflow, run_cli
from kdface.errors import ConfigError, RunError, UnknownNameError
from kdface.io.cards import LEGACY_TASK, read_model_card
from kdface.registry import unknown_name_message

FORMATS = ("litert", "saved_model")
QUANTIZE = ("none", "float16", "int8")
# How close the exported model must be to the Keras model (printed as met / not met).
TARGETS = {"nme_points": 0.1, "accuracy_points": 1.0, "cosine": 0.99}
LATENCY_BATCHES = (1, 32)
COMPARE_BATCH = 32
# Cards written before they named their per-image output: SCN's expression models used this layer.
LEGACY_PER_IMAGE_OUTPUT = "importance"


@dataclasses.dataclass
class ExportOptions:
    """What ``python -m kdface.export`` does; every field is a flag of the same name."""

    format: str = "litert"
    quantize: str = "none"
    out: str | None = None
    uint8_io: bool = False
    calibration_dataset: str | None = None
    calibration_split: str = "train"
    calibration_count: int = 200
    calibration_data_dir: str | None = None
    dataset: str | None = None
    compare_split: str | None = None
    compare_count: int | None = None
    compare: bool = True
    data_dir: str | None = None
    tfds_dir: str = "datasets/tfds"
    on_bad_sample: str = "error"
    latency_runs: int = 7
    threads: int | None = None
    unsafe_load_model: bool = False
    verbose: bool = False


# --- checks -----------------------------------------------------------------------------------------------


def default_out(model_path, fmt: str, quantize: str) -> Path:
    """``<model>.tflite`` (``<model>_<quantize>.tflite`` when quantised) or ``<model>_saved_model/``."""
    model_path = Path(model_path)
    if fmt == "saved_model":
        return model_path.with_name(f"{model_path.stem}_saved_model")
    tag = "" if quantize == "none" else f"_{quantize}"
    return model_path.with_name(f"{model_path.stem}{tag}.tflite")


def export_paths(out) -> dict[str, Path]:
    """The files an export writes: the model, its card copy (``<out stem>.json``, where ``test.py`` looks)
    and the export record (``<out stem>.export.json``)."""
    out = Path(out)
    return {"model": out, "card": out.with_suffix(".json"), "record": out.with_suffix(".export.json")}


def check_options(model_path, options: ExportOptions) -> Path:
    """Refuse mistakes before any slow work (one ``error:`` line on the CLI); returns the output path."""
    model_path = Path(model_path)
    if options.format not in FORMATS:
        raise UnknownNameError(unknown_name_message("export format", options.format, FORMATS))
    if options.quantize not in QUANTIZE:
        raise UnknownNameError(unknown_name_message("--quantize value", options.quantize, QUANTIZE))
    if not model_path.is_file():
        raise RunError(f"{model_path}: no such model file")
    if model_path.suffix != ".keras":
        raise ConfigError(
            f"{model_path}: export takes a saved .keras model (this one is {model_path.suffix or 'a folder'})"
        )
    if options.format == "saved_model" and options.quantize != "none":
        raise ConfigError("--quantize applies to --format litert (a SavedModel keeps the float32 weights)")
    if options.uint8_io and options.quantize != "int8":
        raise ConfigError(
            "--uint8-io needs --quantize int8 (only a full-integer model has uint8 inputs and outputs)"
        )
    calibration_flags = (
        options.calibration_dataset or options.calibration_split != "train" or options.calibration_data_dir
    )
    if options.quantize != "int8" and calibration_flags:
        raise ConfigError("--calibration-* options apply to --quantize int8 only")
    if options.quantize == "int8" and options.calibration_count < 1:
        raise ConfigError(f"--calibration-count must be at least 1, got {options.calibration_count}")
    if options.compare_count is not None and options.compare_count < 1:
        raise ConfigError(f"--compare-count must be at least 1, got {options.compare_count}")
    if options.latency_runs < 0:
        raise ConfigError(f"--latency-runs must be 0 (no latency table) or more, got {options.latency_runs}")
    if options.threads is not None and options.threads < 1:
        raise ConfigError(f"--threads must be at least 1, got {options.threads}")
    out = Path(options.out) if options.out else default_out(model_path, options.format, options.quantize)
    if options.format == "litert" and out.suffix != ".tflite":
        raise ConfigError(f"--out {out}: a LiteRT model's file name ends with .tflite")
    if options.format == "saved_model":
        if out.suffix in (".tflite", ".keras", ".json"):
            raise ConfigError(
                f"--out {out}: a SavedModel is a folder; give a folder name without {out.suffix}"
            )
        if out.exists() and not (out / "saved_model.pb").exists():
            raise RunError(f"--out {out}: exists and is not a SavedModel folder; not replacing it")
    card_copy = export_paths(out)["card"]
    own_card = model_path.with_suffix(".json")
    if card_copy.exists() and card_copy.resolve() != own_card.resolve():
        other = card_copy.with_suffix(".keras")
        if other.exists() and other.resolve() != model_path.resolve():
            raise RunError(f"--out {out}: its card {card_copy} is the card of {other}; choose another --out")
    return out


# --- images: the evaluation view of a task's pipeline ---------------------------------------------------


@dataclasses.dataclass
class FaceImages:
    """Batches of a split through a task's evaluation pipeline: ``batches()`` yields ``(images, info)``,
    images float32 ``(B, S, S, 3)`` in ``[0, 1]`` (``(B, 2, S, S, 3)`` (neutral, target) pairs for a
    pair model); info holds ``landmarks``/``box`` (landmark datasets) or ``label`` (expression datasets)."""

    task: str
    dataset: str
    split: str
    source: object
    batches: object
    view: str


def _subset(ds, size: int, count: int | None, spread: bool):
    """The first ``count`` elements, or ``count`` evenly spaced over the split (``spread``)."""
    if count is None:
        return ds
    if spread and size > count:
        step = size // count
        ds = ds.enumerate().filter(lambda i, _: i % step == 0).map(lambda _, example: example)
    return ds.take(count)


def _load_split(loader, dataset, split, data_dir, tfds_dir, on_bad_sample, purpose: str):
    """``loader(...)``, with a dataset that cannot be read (raw folder missing or wrong) as one error line."""
    try:
        return loader(dataset, split, data_dir, tfds_dir, on_bad_sample=on_bad_sample)
    except (ValueError, OSError) as exc:  # KdfaceErrors included: say what the images were for
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0]
        raise RunError(f"{purpose} images from {dataset} {split}: {first}") from None


def face_images(dataset: str, split: str, *, task: str, card: dict, image_size: int, count=None, spread=False,
                data_dir=None, tfds_dir="datasets/tfds", on_bad_sample="error", purpose="comparison",
                spec=None) -> FaceImages:  # fmt: skip
    """A split of ``dataset`` through its task's evaluation pipeline (the model's task first: ``synthface``
    names a landmark and an expression dataset); landmark crops use the card's crop. ``purpose`` names
    the use in errors. ``spec`` is the model's input
    (:class:`~kdface.tasks.expressions.pairs.InputSpec`, default single images): a pair model gets a
    pair dataset's (neutral, target) pairs, read with the pair protocol its card records."""
    from kdface.tasks.expressions.pairs import IMAGE_INPUT
    from kdface.tasks.expressions.sources import expression_datasets, is_pair_dataset, pair_datasets
    from kdface.tasks.landmarks.sources import datasets as landmark_datasets

    spec = spec or IMAGE_INPUT
    if spec.pairs and not is_pair_dataset(dataset):
        raise ConfigError(f"{purpose}: the model takes (neutral, target) pairs of one person; {dataset} has single "
                          f"images: give a pair dataset ({', '.join(pair_datasets())})")  # fmt: skip
    if task == "recognition":
        return _recognition_images(dataset, split, image_size=image_size, count=count, spread=spread,
                                   data_dir=data_dir, tfds_dir=tfds_dir, on_bad_sample=on_bad_sample)  # fmt: skip
    known = {"landmarks": landmark_datasets(), "expressions": expression_datasets()}
    order = sorted(known, key=lambda name: name != task)
    pipeline_task = next((name for name in order if dataset in known[name]), None)
    if pipeline_task is None:
        raise UnknownNameError(
            unknown_name_message("dataset", dataset, [n for names in known.values() for n in names])
        )
    if pipeline_task == "landmarks":
        from kdface.tasks.landmarks.pipeline import CropConfig, landmark_dataset
        from kdface.tasks.landmarks.sources import load_landmark_split

        crop = CropConfig(**card["crop"]) if "crop" in card else CropConfig()
        source = _load_split(load_landmark_split, dataset, split, data_dir, tfds_dir, on_bad_sample, purpose)
        ds = landmark_dataset(_subset(source.dataset, source.size, count, spread), image_size=image_size,
                              batch_size=COMPARE_BATCH, crop=crop, with_meta=True)  # fmt: skip

        def batches():
            for images, _, meta in ds:
                yield images.numpy(), {"landmarks": meta["landmarks"].numpy(), "box": meta["box"].numpy()}

        view = f"landmark crop {dataclasses.asdict(crop)}, {image_size} px"
    else:
        from kdface.tasks.expressions.evaluation import pair_options_of

        def loader(*args, **kwargs):
            return spec.load_split(*args, **kwargs, options=pair_options_of(card, dataset))

        source = _load_split(loader, dataset, split, data_dir, tfds_dir, on_bad_sample, purpose)
        ds = spec.eval_dataset(_subset(source.dataset, source.size, count, spread), image_size=image_size,
                               batch_size=COMPARE_BATCH)  # fmt: skip

        def batches():
            for images, labels in ds:
                yield images.numpy(), {"label": labels.numpy()}

        view = f"expression evaluation view (face box, resize, centre crop), {image_size} px"
        if spec.pairs:
            view = f"(neutral, target) pairs, each image in the {view}"
    return FaceImages(pipeline_task, dataset, split, source, batches, view)


def _recognition_images(
    dataset, split, *, image_size, count, spread, data_dir, tfds_dir, on_bad_sample
) -> FaceImages:
    """Aligned face crops for an embedding model: the training identities (``split="train"``: int8
    calibration never sees the pairs it is compared on), else the verification set's pair images."""
    import tensorflow as tf

    from kdface.tasks.recognition.pipeline import identity_eval_dataset
    from kdface.tasks.recognition.sources import identity_datasets, load_identity_split, load_verification

    if split == "train" and dataset in identity_datasets():
        source = load_identity_split(dataset, data_dir, tfds_dir, on_bad_sample=on_bad_sample)
        n = len(source.labels)
        index = np.arange(n)
        if count is not None:
            index = index[:: max(1, n // count)][:count] if spread else index[:count]
        read = source.store.reader()
        ds = identity_eval_dataset(lambda i: read(tf.gather(tf.constant(index), i)), source.labels[index],
                                   image_size=image_size, batch_size=COMPARE_BATCH)  # fmt: skip

        def batches():
            for images, labels in ds:
                yield images.numpy(), {"label": labels.numpy()}

        return FaceImages(
            "recognition", dataset, "train", source, batches, f"training identities, {image_size} px"
        )
    pairs = load_verification(dataset, data_dir, image_size)
    images = pairs.images if count is None else pairs.images[:count]

    def batches():
        for i in range(0, len(images), COMPARE_BATCH):
            yield images[i : i + COMPARE_BATCH].astype(np.float32) / 255.0, {}

    return FaceImages(
        "recognition", dataset, "pairs", pairs, batches, f"verification pair images, {image_size} px"
    )


def calibration_images(images: FaceImages, count: int) -> np.ndarray:
    stacked = [batch for batch, _ in images.batches()]
    data = np.concatenate(stacked)[:count] if stacked else np.zeros((0,))
    if not len(data):
        raise RunError(f"calibration: split {images.split!r} of {images.dataset!r} has no images")
    return data.astype(np.float32)


# --- conversion -------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _native_output(show: bool):
    """Hide what TensorFlow's converter writes to the process' stdout/stderr (MLIR notes, quantiser
    lines), unless ``show``; yields a function returning the captured text."""
    if show:
        yield lambda: ""
        return
    sys.stdout.flush()
    sys.stderr.flush()
    saved = {fd: os.dup(fd) for fd in (1, 2)}
    with tempfile.TemporaryFile() as captured:
        for fd in saved:
            os.dup2(captured.fileno(), fd)

        def text():
            captured.flush()
            captured.seek(0)
            return captured.read().decode(errors="replace")

        try:
            yield text
        finally:
            for fd, copy in saved.items():
                os.dup2(copy, fd)
                os.close(copy)


def _conversion_error(model_path, exc: Exception) -> RunError:
    """The converter's refusal as one line: which ops have no LiteRT builtin kernel."""
    lines = [line.strip() for line in str(exc).splitlines()]
    ops = [line for line in lines if line.split(":")[0] in ("Custom ops", "TF Select ops", "Flex ops")]
    if ops:
        return RunError(
            f"{model_path}: cannot be exported with LiteRT builtin ops only ({'; '.join(ops)}): these TensorFlow "
            "ops would need the Flex delegate or custom kernels, which phones' LiteRT runtimes lack"
        )
    errors = [line for line in lines if "error:" in line] or lines[-1:]
    return RunError(f"{model_path}: LiteRT conversion failed: {errors[-1] if errors else type(exc).__name__}")


def deployable(model, card: dict, task: str):
    """The model to export, and the name of the per-image output exported beside the main one (the layer
    the card names in ``per_image_output``, e.g. SCN's ``importance``; None without one)."""
    import keras

    from kdface.io.litert import MAIN_OUTPUT

    fallback = LEGACY_PER_IMAGE_OUTPUT if task == "expressions" else None
    layer = card.get("per_image_output", fallback)
    if layer is None or layer not in {each.name for each in model.layers}:
        return model, None
    outputs = {MAIN_OUTPUT: model.output, layer: model.get_layer(layer).output}
    return keras.Model(model.input, outputs, name=model.name), layer


def convert_litert(model, out: Path, quantize: str, *, calibration=None, uint8_io=False, verbose=False,
                   model_path=None) -> None:  # fmt: skip
    """``model.export(out, format="litert")`` with builtin ops only, written atomically."""
    import tensorflow as tf

    from kdface.io.atomic import atomic_path

    target_spec = {"supported_ops": [tf.lite.OpsSet.TFLITE_BUILTINS]}
    kwargs = {}
    if quantize == "float16":
        kwargs["optimizations"] = [tf.lite.Optimize.DEFAULT]
        target_spec["supported_types"] = [tf.float16]
    elif quantize == "int8":

        def representative():
            for image in calibration:
                yield [image[None]]

        kwargs.update(optimizations=[tf.lite.Optimize.DEFAULT], representative_dataset=representative)
        target_spec["supported_ops"] = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        if uint8_io:
            kwargs.update(inference_input_type=tf.uint8, inference_output_type=tf.uint8)
    with atomic_path(out) as tmp, _native_output(verbose):
        try:
            model.export(str(tmp), format="litert", verbose=False, target_spec=target_spec, **kwargs)
        except Exception as exc:
            if type(exc).__name__ != "ConverterError":
                raise
            raise _conversion_error(model_path or model.name, exc) from None


def convert_saved_model(model, out: Path, verbose=False) -> None:
    """``model.export(out, format="tf_saved_model")`` into a fresh folder that then replaces ``out``."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.tmp-{uuid.uuid4().hex[:12]}")
    try:
        with _native_output(verbose):
            model.export(str(tmp), format="tf_saved_model", verbose=False)
        old = out.with_name(f".{out.name}.old-{uuid.uuid4().hex[:12]}")
        if out.exists():
            os.replace(out, old)
        os.replace(tmp, out)
        shutil.rmtree(old, ignore_errors=True)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


class SavedModelRunner:
    """An exported SavedModel's ``serve`` endpoint with ``predict_on_batch`` (main output), to compare."""

    def __init__(self, path):
        import tensorflow as tf

        from kdface.io.litert import MAIN_OUTPUT

        self._loaded = tf.saved_model.load(str(path))  # kept: serve refers to its variables
        self._serve = self._loaded.serve
        self._main = MAIN_OUTPUT

    def predict_on_batch(self, images):
        out = self._serve(np.asarray(images, np.float32))
        return np.asarray(out[self._main] if isinstance(out, dict) else out)


# --- comparison -------------------------------------------------------------------------------------------


def _cosines(a, b) -> np.ndarray:
    a, b = a.reshape(len(a), -1).astype(np.float64), b.reshape(len(b), -1).astype(np.float64)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return np.where(norms > 0, (a * b).sum(1) / np.maximum(norms, 1e-30), 1.0)


def compare(keras_model, exported, images: FaceImages, task: str, card: dict) -> dict:
    """Both models on the same batches: output differences, and the task's metric for each with its target."""
    from kdface import metrics

    ours, theirs, infos = [], [], []
    for batch, info in images.batches():
        ours.append(np.asarray(keras_model.predict_on_batch(batch)))
        theirs.append(np.asarray(exported.predict_on_batch(batch)))
        infos.append(info)
    if not ours:
        raise RunError(f"comparison: split {images.split!r} of {images.dataset!r} has no images")
    ours, theirs = np.concatenate(ours), np.concatenate(theirs)
    cosine = _cosines(ours, theirs)
    result = {"dataset": images.dataset, "split": images.split, "count": len(ours),
              "max_abs_diff": float(np.abs(ours - theirs).max()), "mean_abs_diff": float(np.abs(ours - theirs).mean()),
              "cosine_mean": float(cosine.mean()), "cosine_min": float(cosine.min())}  # fmt: skip
    if task == "landmarks" and images.task == "landmarks":
        from kdface.tasks.landmarks.points import NORMALISERS, landmarks_to_pixels

        gt = np.concatenate([i["landmarks"] for i in infos])
        boxes = np.concatenate([i["box"] for i in infos])
        norm = tuple(card.get("normaliser", NORMALISERS[images.dataset]))
        nme = [100.0 * float(metrics.nme_per_image(landmarks_to_pixels(p, boxes=boxes), gt, norm).mean())
               for p in (ours, theirs)]  # fmt: skip
        diff = nme[1] - nme[0]
        result.update(metric="nme", nme_keras=nme[0], nme_exported=nme[1], difference_points=diff,
                      target=f"|NME difference| <= {TARGETS['nme_points']} point",
                      target_met=bool(abs(diff) <= TARGETS["nme_points"]))  # fmt: skip
    elif task == "expressions" and images.task == "expressions":
        labels = np.concatenate([i["label"] for i in infos])
        keep = labels < ours.shape[-1]  # test images of a class the model lacks are left out, as in test.py
        if not keep.any():
            raise RunError(f"comparison: {images.dataset} {images.split} has no image of the model's classes")
        labels, pk, pe = labels[keep], ours[keep].argmax(-1), theirs[keep].argmax(-1)
        accuracy = [100.0 * float((p == labels).mean()) for p in (pk, pe)]
        diff = accuracy[1] - accuracy[0]
        result.update(metric="accuracy", accuracy_keras=accuracy[0], accuracy_exported=accuracy[1],
                      difference_points=diff, argmax_agreement=100.0 * float((pk == pe).mean()),
                      classified=int(keep.sum()), target=f"|accuracy difference| <= {TARGETS['accuracy_points']} point",
                      target_met=bool(abs(diff) <= TARGETS["accuracy_points"]))  # fmt: skip
    else:
        result.update(metric="cosine", target=f"mean cosine similarity of the outputs >= {TARGETS['cosine']}",
                      target_met=bool(cosine.mean() >= TARGETS["cosine"]))  # fmt: skip
    return result


# --- latency ----------------------------------------------------------------------------------------------


def _median_ms_per_face(run, images, runs: int) -> float:
    run(images)  # warm-up: tracing, allocation
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        run(images)
        times.append(time.perf_counter() - start)
    return 1000.0 * float(np.median(times)) / len(images)


def latency(
    keras_model, exported, runtime: str, image_size: int, runs: int, batches=LATENCY_BATCHES, spec=None
) -> list[dict]:
    """ms per face (per pair, for a pair model: ``spec``) (median of ``runs``) of Keras ``predict`` /
    ``predict_on_batch`` and the exported model."""
    from kdface.tasks.expressions.pairs import IMAGE_INPUT

    spec = spec or IMAGE_INPUT
    rng = np.random.default_rng(0)
    rows = []
    runners = {
        "keras predict": lambda x: keras_model.predict(x, batch_size=len(x), verbose=0),
        "keras predict_on_batch": keras_model.predict_on_batch,
        runtime: exported.predict_on_batch,
    }
    for name, run in runners.items():
        row = {"runtime": name}
        for batch in batches:
            images = spec.random(batch, image_size, rng)
            try:
                row[f"batch_{batch}"] = round(_median_ms_per_face(run, images, runs), 3)
            except Exception as exc:  # e.g. a runtime that cannot resize its input
                row[f"batch_{batch}"] = None
                row[f"batch_{batch}_error"] = str(exc).splitlines()[0][:200]
        rows.append(row)
    return rows


def latency_table(rows: list[dict], runs: int, batches=LATENCY_BATCHES, unit: str = "face") -> str:
    head = f"  {'runtime':<28s}" + "".join(f"{f'batch {b}':>10s}" for b in batches)
    body = [
        f"  {row['runtime']:<28s}"
        + "".join(
            f"{row[f'batch_{b}']:10.2f}" if row[f"batch_{b}"] is not None else f"{'n/a':>10s}"
            for b in batches
        )
        for row in rows
    ]
    title = (
        f"latency, ms per {unit} (median of {runs} runs; {os.cpu_count()} CPU cores, Keras uses all of them):"
    )
    return "\n".join([title, head, *body])


# --- the export ---------------------------------------------------------------------------------------------


def _size(path: Path) -> int:
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def _versions() -> dict:
    from importlib import metadata

    versions = {}
    for package in ("tensorflow", "keras", "ai-edge-litert"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    return versions


def _mb(n: int) -> str:
    return f"{n / 1e6:.2f} MB"


def export_model(model_path, options: ExportOptions | None = None, **overrides) -> dict:
    """Export ``model_path`` (a kdface ``.keras`` with its card) as ``options`` say; returns the record
    written to ``<out stem>.export.json`` (paths, settings, comparison, latency, sizes)."""
    options = dataclasses.replace(options or ExportOptions(), **overrides)
    model_path = Path(model_path)
    out = check_options(model_path, options)
    paths = export_paths(out)
    card = read_model_card(model_path)
    task = card.get("task", LEGACY_TASK)
    if options.format == "litert":
        from kdface.io.litert import interpreter_class

        interpreter_class()  # the runtime is needed to check the export: fail before converting
    if options.quantize == "int8" and not (options.calibration_dataset or card.get("dataset")):
        raise ConfigError(
            f"--quantize int8 needs --calibration-dataset: {model_path}'s card names no dataset"
        )

    from kdface.io.safe_load import load_keras_model

    model = load_keras_model(model_path, unsafe=options.unsafe_load_model)
    from kdface.tasks.expressions.pairs import InputSpec

    spec = InputSpec.of(model, card)  # (neutral, target) pairs for a pair model (card "input": "pair")
    image_size = spec.image_size(model.input_shape)
    common = dict(task=task, card=card, image_size=image_size, tfds_dir=options.tfds_dir,
                  on_bad_sample=options.on_bad_sample, spec=spec)  # fmt: skip
    compare_images = None
    if options.compare:  # loaded (prepared) before converting: a missing dataset or split fails fast
        from kdface.io.cards import model_dataset

        dataset = model_dataset(model_path, card, options.dataset)
        split = options.compare_split or _default_test_split(dataset, task, card)
        compare_images = face_images(
            dataset, split, count=options.compare_count, data_dir=options.data_dir, **common
        )
    record = {"model": str(model_path), "out": str(out), "format": options.format, "quantize": options.quantize,
              "uint8_io": options.uint8_io, "task": task, "input": spec.describe(image_size),
              "output": "float32"}  # fmt: skip
    calibration = None
    if options.quantize == "int8":
        dataset = options.calibration_dataset or card["dataset"]
        data_dir = options.calibration_data_dir or options.data_dir
        split = _calibration_split(options.calibration_split, dataset, card)
        images = face_images(dataset, split, count=options.calibration_count, spread=True, data_dir=data_dir,
                             purpose="int8 calibration", **common)  # fmt: skip
        calibration = calibration_images(images, options.calibration_count)
        record["calibration"] = {"dataset": dataset, "split": split, "count": len(calibration),
                                 "selection": "evenly spaced over the split", "view": images.view}  # fmt: skip
        print(f"calibration: {len(calibration)} {'pairs' if spec.pairs else 'images'} of {dataset} {split} "
              f"(evenly spaced; {images.view})")  # fmt: skip

    to_export, extra_output = deployable(model, card, task)
    start = time.perf_counter()
    if options.format == "litert":
        convert_litert(to_export, out, options.quantize, calibration=calibration, uint8_io=options.uint8_io,
                       verbose=options.verbose, model_path=model_path)  # fmt: skip
        from kdface.io.litert import LiteRTModel

        exported = LiteRTModel(out, num_threads=options.threads)
        threads = options.threads or 1  # ai_edge_litert's default
        runtime = f"litert {options.quantize}, {threads} thread{'s' * (threads > 1)}"
        record.update(builtin_ops_only=True, operators=exported.operators, outputs=exported.output_names,
                      interpreter_threads=threads, input_shape=[int(v) for v in exported.input_details["shape"]])  # fmt: skip
        if options.uint8_io:
            details = {"input": exported.input_details, "output": exported.output_details()}
            for key, d in details.items():
                scale, zero_point = d["quantization"]
                record[key] = f"uint8, real = (q - {zero_point}) * {scale:.8g}"
    else:
        convert_saved_model(to_export, out, verbose=options.verbose)
        exported = SavedModelRunner(out)
        runtime = "saved_model serve"
    seconds = time.perf_counter() - start
    from kdface.io.atomic import write_json

    if card and paths["card"].resolve() != model_path.with_suffix(".json").resolve():
        write_json(paths["card"], card)  # test.py reads the card beside the model, whatever its format
    record.update(per_image_output=extra_output, export_seconds=round(seconds, 1), size_bytes=_size(out),
                  keras_size_bytes=_size(model_path), versions=_versions())  # fmt: skip
    what = options.format + ("" if options.quantize == "none" else f", {options.quantize}")
    if options.quantize == "int8":
        what += ", full-integer, " + ("uint8 I/O" if options.uint8_io else "float32 I/O")
    print(f"exported {model_path} -> {out} ({what}) in {seconds:.1f} s: {_mb(record['size_bytes'])} "
          f"(Keras {_mb(record['keras_size_bytes'])})")  # fmt: skip
    if options.format == "litert":
        print(f"builtin ops only: {', '.join(exported.operators)}")
        print(f"input {tuple(record['input_shape'])} (batch axis resizable): {record['input']}")

    if compare_images is not None:
        result = compare(model, exported, compare_images, task, card)
        record["comparison"] = result
        print(_comparison_text(result))
    if options.latency_runs:
        rows = latency(model, exported, runtime, image_size, options.latency_runs, spec=spec)
        record["latency"] = {"unit": f"ms per {spec.unit}", "statistic": f"median of {options.latency_runs} runs",
                             "cpu_count": os.cpu_count(), "rows": rows}  # fmt: skip
        print(latency_table(rows, options.latency_runs, unit=spec.unit))

    write_json(paths["record"], record)
    card_note = (
        f", {paths['card'].name} (model card)" if card else " (no model card beside the model to copy)"
    )
    print(f"wrote {out}{card_note}, {paths['record'].name} (settings, comparison, latency)")
    return record


def _default_test_split(dataset: str, task: str, card: dict | None = None) -> str:
    """The split the comparison runs on: the dataset's first test split; for an expression model trained on
    one fold of this pair dataset, the fold it held out (as ``test.py``)."""
    from kdface.tasks.expressions.evaluation import default_test_splits
    from kdface.tasks.expressions.sources import EXPRESSION_TEST_SPLITS
    from kdface.tasks.landmarks.sources import TEST_SPLITS

    if task == "recognition":
        return "pairs"
    if task == "expressions" and dataset in EXPRESSION_TEST_SPLITS:
        return default_test_splits(dataset, card or {})[0]
    tables = [TEST_SPLITS, EXPRESSION_TEST_SPLITS]
    if task == "expressions":
        tables.reverse()
    for table in tables:
        if dataset in table:
            return table[dataset][0]
    return "test"


def _calibration_split(split: str, dataset: str, card: dict) -> str:
    """``--calibration-split``: ``train`` of the pair dataset the model was trained on is the folds it
    trained on (its card's ``train_split``, e.g. ``train-fold3``), so calibration never reads the
    subjects it is compared and tested on; any other split as given."""
    from kdface.tasks.expressions.sources import is_pair_dataset

    trained_on = (card.get("config") or {}).get("train_split")
    if split == "train" and is_pair_dataset(dataset) and card.get("dataset") == dataset and trained_on:
        return trained_on.partition("[")[0]
    return split


def _comparison_text(r: dict) -> str:
    lines = [f"comparison with the Keras model on {r['dataset']} {r['split']} (n={r['count']}):"]
    met = "met" if r["target_met"] else "NOT met"
    if r["metric"] == "nme":
        lines.append(f"  NME Keras {r['nme_keras']:.3f} %, exported {r['nme_exported']:.3f} %: "
                     f"{r['difference_points']:+.3f} points (target {r['target']}: {met})")  # fmt: skip
    elif r["metric"] == "accuracy":
        lines.append(f"  accuracy Keras {r['accuracy_keras']:.2f} %, exported {r['accuracy_exported']:.2f} %: "
                     f"{r['difference_points']:+.2f} points; argmax agreement {r['argmax_agreement']:.2f} % "
                     f"(target {r['target']}: {met})")  # fmt: skip
    else:
        lines.append(f"  cosine similarity of the outputs: mean {r['cosine_mean']:.5f}, min {r['cosine_min']:.5f} "
                     f"(target {r['target']}: {met})")  # fmt: skip
    lines.append(f"  outputs: max |difference| {r['max_abs_diff']:.3g}, mean {r['mean_abs_diff']:.3g}, "
                 f"cosine mean {r['cosine_mean']:.6f}")  # fmt: skip
    return "\n".join(lines)


# --- CLI --------------------------------------------------------------------------------------------------------


def main(argv=None) -> None:
    verbose = quiet_tensorflow(argv)
    parser = argparse.ArgumentParser(
        prog="python -m kdface.export", formatter_class=HelpFormatter,
        description="Export a saved kdface model for phones (LiteRT, builtin ops only) or as a SavedModel, "
        "and compare it with the Keras model (accuracy or NME, latency, size).",
    )  # fmt: skip
    d = ExportOptions()
    parser.add_argument(
        "--model", required=True, help="a saved kdface .keras model (its card <model>.json beside it)"
    )
    parser.add_argument("--format", default=d.format, metavar="|".join(FORMATS),
                        help="litert: a .tflite for phones (builtin ops only); saved_model: a TensorFlow SavedModel folder")  # fmt: skip
    parser.add_argument("--quantize", default=d.quantize, metavar="|".join(QUANTIZE),
                        help="litert weights: none (float32), float16, or int8 (full-integer, calibrated)")  # fmt: skip
    parser.add_argument("--out", help="the exported file (default: beside the model, <model>[_<quantize>].tflite "
                        "or <model>_saved_model/)")  # fmt: skip
    parser.add_argument("--uint8-io", action="store_true",
                        help="int8 only: uint8 input and output tensors (scale and zero point in <name>.export.json) "
                        "instead of float32 [0, 1] crops and float32 outputs")  # fmt: skip
    group = parser.add_argument_group("int8 calibration")
    group.add_argument(
        "--calibration-dataset", help="dataset whose images calibrate int8 (default: the card's)"
    )
    group.add_argument("--calibration-split", default=d.calibration_split, help="its split")
    group.add_argument("--calibration-count", type=int, default=d.calibration_count,
                       help="how many images, evenly spaced over the split")  # fmt: skip
    group.add_argument(
        "--calibration-data-dir", help="raw folder of the calibration dataset (default: --data-dir)"
    )
    group = parser.add_argument_group("comparison with the Keras model")
    group.add_argument("--dataset", help="dataset to compare on (default: the card's)")
    group.add_argument("--compare-split", help="its split (default: the dataset's first test split)")
    group.add_argument("--compare-count", type=int, help="compare on the first N images (default: all)")
    group.add_argument("--no-compare", action="store_true", help="skip the comparison")
    group.add_argument("--latency-runs", type=int, default=d.latency_runs,
                       help="runs per latency measurement (median); 0: no latency table")  # fmt: skip
    group.add_argument("--threads", type=int, help="LiteRT interpreter threads (default: LiteRT's, 1)")
    parser.add_argument("--data-dir", help="raw dataset folder (default: SynthFaces demo folder)")
    parser.add_argument("--tfds-dir", default=d.tfds_dir, help="where prepared TFDS records are kept")
    parser.add_argument("--on-bad-sample", choices=("error", "skip"), default=d.on_bad_sample,
                        help="a bad image stops with an error naming it, or is left out")  # fmt: skip
    parser.add_argument("--unsafe-load-model", action="store_true",
                        help="allow models that contain Python code (Lambda layers); only for files you trust")  # fmt: skip
    add_verbose_argument(parser)
    args = parser.parse_args(argv)
    fields = {f.name for f in dataclasses.fields(ExportOptions)}
    options = ExportOptions(**{k: v for k, v in vars(args).items() if k in fields})
    options.compare, options.verbose = not args.no_compare, verbose
    run_cli(export_model, args.model, options)


if __name__ == "__main__":
    main()
