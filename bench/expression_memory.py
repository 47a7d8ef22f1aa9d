"""Peak memory and speed of the expression training stream as the training split grows.

Builds synthetic training splits (random 48 x 48 JPEGs, labels 0..6, whole-image boxes) of each
``--sizes`` as a TFRecord file, then, in a fresh subprocess per (size, mode), loads the split as
training does and iterates ``--batches`` batches of the training stream (IGKD's standard
augmentation, class-balanced sampler), reporting peak RSS (``ru_maxrss``) and images/s:

* ``file``: :class:`~kdface.tasks.expressions.pipeline.FileBackedSplit` (what training uses): the
  images are read per element from a content-keyed store; the store is written by a first run and
  reused by the measured one, as a second training run would.
* ``memory``: :class:`~kdface.tasks.expressions.pipeline.InMemorySplit`, the path training used
  before: the encoded images held in memory and in the input graph as one constant.

    python bench/expression_memory.py                                   # 10k and 100k, 64 px
    python bench/expression_memory.py --sizes 10000 --image-size 96     # demo settings, speed

RSS is reliable on a shared machine; images/s much less so (run it twice).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
NUM_CLASSES = 7


def _peak_rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux


def write_records(path: Path, size: int, seed: int = 0) -> Path:
    """``size`` examples (image, label, box, key) as one TFRecord file (once)."""
    if path.exists():
        return path
    import cv2
    import tensorflow as tf

    from kdface.io.atomic import atomic_path

    rng = np.random.default_rng(seed)
    t0 = time.perf_counter()
    with atomic_path(path) as tmp, tf.io.TFRecordWriter(str(tmp)) as writer:
        for i in range(size):
            # smooth noise: JPEGs of face-crop size (~1-2 KB), each different
            image = cv2.resize(rng.integers(0, 256, (12, 12, 3), dtype=np.uint8), (48, 48))
            ok, encoded = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])
            assert ok
            feature = {
                "image": tf.train.Feature(bytes_list=tf.train.BytesList(value=[encoded.tobytes()])),
                "label": tf.train.Feature(
                    int64_list=tf.train.Int64List(value=[int(rng.integers(NUM_CLASSES))])
                ),
                "box": tf.train.Feature(float_list=tf.train.FloatList(value=[0, 0, 48, 48])),
                "key": tf.train.Feature(bytes_list=tf.train.BytesList(value=[f"img_{i:07d}.jpg".encode()])),
            }
            writer.write(tf.train.Example(features=tf.train.Features(feature=feature)).SerializeToString())
    print(f"wrote {size} examples to {path} in {time.perf_counter() - t0:.0f} s", flush=True)
    return path


def _source(records: Path):
    import tensorflow as tf

    spec = {
        "image": tf.io.FixedLenFeature([], tf.string),
        "label": tf.io.FixedLenFeature([], tf.int64),
        "box": tf.io.FixedLenFeature([4], tf.float32),
        "key": tf.io.FixedLenFeature([], tf.string),
    }
    return tf.data.TFRecordDataset(str(records)).map(lambda record: tf.io.parse_single_example(record, spec))


def child(args) -> dict:
    """One measurement, in its own process: load the split, build the stream, iterate it."""
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
    import tensorflow as tf

    from kdface.tasks.expressions.pipeline import FileBackedSplit, InMemorySplit, expression_training_stream

    tf.get_logger().setLevel("ERROR")
    result = {
        "size": args.size,
        "mode": args.mode,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
    }
    base = _peak_rss_mb()
    t0 = time.perf_counter()
    source = _source(Path(args.records))
    if args.mode == "file":
        split = FileBackedSplit.load(source, args.store_dir)
        result["store_files"] = split.store.num_packs + 1
    else:
        split = InMemorySplit.load(source, max_bytes=2**40)
    result["load_s"] = time.perf_counter() - t0
    result["rss_after_load_mb"] = _peak_rss_mb()
    stream = expression_training_stream(
        split, image_size=args.image_size, batch_size=args.batch_size, num_classes=NUM_CLASSES, balanced=True
    )
    t0 = time.perf_counter()
    iterator = iter(stream)
    for _ in range(args.warmup):
        next(iterator)
    result["first_batches_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for _ in range(args.batches):
        next(iterator)
    seconds = time.perf_counter() - t0
    result["images_per_s"] = args.batches * args.batch_size / seconds
    result["peak_rss_mb"] = _peak_rss_mb()
    result["python_start_rss_mb"] = base
    return result


def run_child(records: Path, size: int, mode: str, args) -> dict:
    command = [sys.executable, __file__, "--child", "--mode", mode, "--size", str(size), "--records", str(records),
               "--store-dir", str(args.work / "stores"), "--image-size", str(args.image_size),
               "--batch-size", str(args.batch_size), "--batches", str(args.batches), "--warmup", str(args.warmup)]  # fmt: skip
    env = {**os.environ, "PYTHONPATH": f"{ROOT}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"}
    out = subprocess.run(command, env=env, capture_output=True, text=True)
    if out.returncode:
        sys.exit(f"{mode} {size}: failed\n{out.stdout[-3000:]}\n{out.stderr[-3000:]}")
    return json.loads(out.stdout.strip().splitlines()[-1])


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000])
    parser.add_argument("--modes", nargs="+", choices=["file", "memory"], default=["file", "memory"])
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=200, help="batches timed (after --warmup)")
    parser.add_argument("--warmup", type=int, default=10, help="batches iterated before timing")
    parser.add_argument("--work", type=Path, default=Path("/tmp/kdface-bench-expression-memory"),
                        help="TFRecords and image stores (kept and reused)")  # fmt: skip
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--mode", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--records", help=argparse.SUPPRESS)
    parser.add_argument("--store-dir", help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.child:
        print(json.dumps(child(args)))
        return
    args.work.mkdir(parents=True, exist_ok=True)
    results = []
    for size in args.sizes:
        records = write_records(args.work / f"split-{size}.tfrecord", size)
        for mode in args.modes:
            if mode == "file":  # the first run writes the store; a later run (the one measured) reads it
                t0 = time.perf_counter()
                first = run_child(
                    records, size, mode, argparse.Namespace(**{**vars(args), "batches": 1, "warmup": 1})
                )
                print(f"file {size}: first run (store written if new) {time.perf_counter() - t0:.0f} s, "
                      f"load {first['load_s']:.1f} s", flush=True)  # fmt: skip
            result = run_child(records, size, mode, args)
            results.append(result)
            print(json.dumps(result), flush=True)
    print(
        f"\nimage size {args.image_size}, batch {args.batch_size}, {args.batches} batches timed after {args.warmup}"
    )
    print(f"{'mode':8} {'size':>8} {'peak RSS MB':>12} {'after load':>11} {'load s':>7} {'images/s':>9}")
    for r in results:
        print(f"{r['mode']:8} {r['size']:>8} {r['peak_rss_mb']:>12.0f} {r['rss_after_load_mb']:>11.0f} "
              f"{r['load_s']:>7.1f} {r['images_per_s']:>9.0f}")  # fmt: skip
    for mode in args.modes:
        peaks = [r["peak_rss_mb"] for r in results if r["mode"] == mode]
        if len(peaks) > 1:
            print(f"{mode}: largest / smallest peak RSS = {max(peaks) / min(peaks):.3f}")


if __name__ == "__main__":
    main()
