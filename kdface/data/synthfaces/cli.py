"""The generator's command line: ``python -m kdface.data.synthfaces --out DIR --preset tiny|demo|full|faceid``."""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Sequence
from pathlib import Path

from kdface.data.synthfaces.config import SynthFacesConfig
from kdface.data.synthfaces.writers import _MARKER, _marker_matches, generate


def main(argv: Sequence[str] | None = None) -> int:
    from kdface.cli import ArgumentParser, run_cli

    parser = ArgumentParser(
        prog="python -m kdface.data.synthfaces",
        description="Generate the SynthFaces dataset (300W / RAF-DB / identity-folder / CK+ trees, verification pairs).",
        formatter_class=argparse.ArgumentDefaultsHelpFormatter,
    )
    demo = SynthFacesConfig.demo()
    parser.add_argument("--out", default="datasets/synthfaces", help="output root directory")
    parser.add_argument(
        "--preset", default="demo", choices=("demo", "tiny", "full", "faceid"), help="size preset"
    )
    overridable = [
        ("--seed", int, "seed", "random seed"),
        ("--num-identities", int, "num_identities", "number of identities"),
        ("--image-size", int, "image_size", "300W-tree image size (px)"),
        ("--w300-train", int, "w300_train", "300W train images"),
        ("--w300-common", int, "w300_common", "300W common-test images"),
        ("--w300-challenging", int, "w300_challenging", "300W challenging-test images"),
        ("--rafdb-train", int, "rafdb_train", "RAF-DB train images"),
        ("--rafdb-test", int, "rafdb_test", "RAF-DB test images"),
        ("--num-identity-folders", int, "num_identity_folders", "identities 0..N-1 that get a folder"),
        ("--images-per-identity", int, "images_per_identity", "images per identity folder"),
        (
            "--test-identity-fraction",
            float,
            "test_identity_fraction",
            "fraction of held-out identities (identities_test/, verification pairs)",
        ),
        ("--identity-size", int, "identity_size", "identity-folder image size (px)"),
        (
            "--verification-pairs",
            int,
            "verification_pairs",
            "verification/synthface.bin pairs (multiple of 20)",
        ),
        ("--occlusion-fraction", float, "occlusion_fraction", "fraction of occluded images"),
        (
            "--rafdb-test-occlusion-fraction",
            float,
            "rafdb_test_occlusion_fraction",
            "fraction of occluded RAF-DB test images",
        ),
        ("--ckplus-subjects", int, "ckplus_subjects", "CK+ tree: subjects (0: no CK+ tree)"),
        ("--ckplus-sequences", int, "ckplus_sequences", "CK+ tree: sequences (at least one a subject)"),
        ("--ckplus-min-frames", int, "ckplus_min_frames", "CK+ tree: fewest frames of a sequence"),
        ("--ckplus-max-frames", int, "ckplus_max_frames", "CK+ tree: most frames of a sequence"),
        (
            "--ckplus-labelled-fraction",
            float,
            "ckplus_labelled_fraction",
            "CK+ tree: fraction of sequences with an emotion label",
        ),
        ("--ckplus-width", int, "ckplus_width", "CK+ frame width (px)"),
        ("--ckplus-height", int, "ckplus_height", "CK+ frame height (px)"),
    ]
    for flag, typ, attr, text in overridable:
        parser.add_argument(
            flag,
            type=typ,
            default=None,
            help=f"{text} (None: the preset's value; demo: {getattr(demo, attr)})",
        )
    parser.add_argument("--workers", type=int, default=None, help="processes (None: 2 for big runs, else 1)")
    parser.add_argument("--force", action="store_true", help="regenerate even if the output is up to date")
    args = parser.parse_args(argv)
    overrides = {
        attr: getattr(args, attr) for _, _, attr, _ in overridable if getattr(args, attr) is not None
    }
    run_cli(_generate, args, overrides)
    return 0


def _generate(args, overrides: dict) -> None:
    from kdface.errors import ConfigError
    from kdface.io.paths import check_can_create

    config = SynthFacesConfig.preset(args.preset, **overrides)
    config.validate()
    check_can_create(args.out, "--out")
    if args.workers is not None and args.workers < 1:
        raise ConfigError(f"--workers must be at least 1, got {args.workers}")
    start = time.time()
    up_to_date = not args.force and _marker_matches(Path(args.out), config)
    root = generate(args.out, config, workers=args.workers, force=args.force, progress=True)
    if up_to_date:
        print(f"{root}: up to date (synthfaces.json matches the config); nothing to do")
    else:
        info = json.loads((root / _MARKER).read_text(encoding="utf-8"))
        ck = info.get("ckplus")
        extra = (
            f" and {ck['frames']} CK+ frames ({ck['sequences']} sequences of {ck['subjects']} subjects)"
            if ck
            else ""
        )
        print(
            f"{root}: wrote {info['num_images']} images {info['counts']}{extra} in {time.time() - start:.1f} s"
        )
