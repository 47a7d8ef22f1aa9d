"""The job plan: which image goes where, with which identity, expression and random streams.

A job holds everything needed to render and write one image; its parameters are a pure function
of ``(seed, job)`` (:func:`_job_params`), so the plan can be rendered in any order by any worker.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from functools import lru_cache

import numpy as np

from kdface.data.synthfaces.config import (
    VERIFICATION_FOLDS,
    SynthFacesConfig,
    held_out_folder_identities,
    identity_split,
)
from kdface.data.synthfaces.geometry import face_landmarks
from kdface.data.synthfaces.params import NEUTRAL, OCCLUDER_TYPES, Expression, FaceParams, Identity
from kdface.data.synthfaces.sampling import (
    _SPLIT_CODES,
    _TAG_EXPR,
    _TAG_LABELS,
    _TAG_PAIRS,
    _TAG_SCENE,
    _TAG_SPLIT,
    _TREE_CODES,
    sample_expression,
    sample_identity,
    sample_pose,
)

# 300W folders -> (split, share of that split's images); shares follow the real 811/2000/337 and 224/330.
W300_FOLDERS = {
    "train": (("lfpw/trainset", 811), ("helen/trainset", 2000), ("afw", 337)),
    "common": (("lfpw/testset", 224), ("helen/testset", 330)),
    "challenging": (("ibug", 1),),
}
# identity folders: train identities, held-out (test) identities
IDENTITY_TREES = {False: "identities", True: "identities_test"}


@dataclass(frozen=True)
class _Job:
    """Everything needed to render and write one image (picklable: it is sent to the workers)."""

    index: int  # global, defines the order of metadata rows
    tree: str
    split: str
    subset: str
    image_rel: str
    mask_rel: str
    pts_rel: str
    identity: int
    expression: int
    pair_id: str
    pair_role: str
    scene_key: tuple[int, ...]
    expr_key: tuple[int, ...]
    bound_exprs: tuple[tuple[int, tuple[int, ...]], ...]  # every expression this scene is rendered with
    width: int
    height: int
    face_size: float
    anchor_y: float
    center: tuple[float, float]
    pose_strength: float
    occlusion_fraction: float
    harsh: float  # 0 = clean imaging, 1 = challenging
    jpeg_quality: int


def _split_counts(total: int, weights: Sequence[float]) -> list[int]:
    """``total`` shared in proportion to ``weights``, largest remainders first (the counts sum to ``total``)."""
    w = np.asarray(weights, np.float64)
    raw = total * w / w.sum()
    counts = np.floor(raw).astype(int)
    for k in np.argsort(-(raw - counts), kind="stable")[: total - counts.sum()]:
        counts[k] += 1
    return [int(c) for c in counts]


def _labels(config: SynthFacesConfig, tree: str, split: str, n: int) -> list[int]:
    """``n`` expression labels (1..7) drawn with ``config.expression_weights``, one stream per tree and split."""
    rng = np.random.default_rng([int(config.seed), _TAG_LABELS, _TREE_CODES[tree], _SPLIT_CODES[split]])
    w = np.asarray(config.expression_weights, np.float64)
    return [int(v) + 1 for v in rng.choice(7, size=n, p=w / w.sum())]


def _plan(config: SynthFacesConfig) -> tuple[list[_Job], list[str]]:
    """Every image's job, in metadata order (300W, RAF-DB, identity folders), and RAF-DB's label lines."""
    train_ids, test_ids = identity_split(config)
    jobs: list[_Job] = []
    _plan_300w(jobs, config, train_ids, test_ids)
    label_lines: list[str] = []
    for split, total, ids in (
        ("train", config.rafdb_train, train_ids),
        ("test", config.rafdb_test, test_ids),
    ):
        label_lines += _plan_rafdb_split(jobs, config, split, total, ids)
    _plan_identity_folders(jobs, config, test_ids)
    return jobs, label_lines


def _add_job(jobs: list[_Job], config: SynthFacesConfig, **kw) -> None:
    """Append a job; unless given, its expression and scene streams are keyed by its global index."""
    idx = len(jobs)
    kw.setdefault("expr_key", (_TAG_EXPR, _TREE_CODES[kw["tree"]], idx))
    kw.setdefault("scene_key", (_TAG_SCENE, _TREE_CODES[kw["tree"]], idx))
    kw.setdefault("bound_exprs", ((kw["expression"], kw["expr_key"]),))
    kw.setdefault("pair_id", "")
    kw.setdefault("pair_role", "")
    kw.setdefault("mask_rel", "")
    kw.setdefault("pts_rel", "")
    jobs.append(_Job(index=idx, jpeg_quality=config.jpeg_quality, **kw))


def _plan_300w(jobs: list[_Job], config: SynthFacesConfig, train_ids: list[int], test_ids: list[int]) -> None:
    """300W tree: each split's images spread over its real folders, identities in a shuffled round-robin."""
    seed = int(config.seed)
    size = config.image_size
    w300 = {
        "train": (config.w300_train, train_ids, config.pose_jitter, config.occlusion_fraction, 0.0),
        "common": (config.w300_common, test_ids, config.pose_jitter, config.occlusion_fraction, 0.0),
        "challenging": (
            config.w300_challenging,
            test_ids,
            config.challenging_pose_jitter,
            config.challenging_occlusion_fraction,
            1.0,
        ),
    }
    for split, (total, ids, strength, occ, harsh) in w300.items():
        folders = W300_FOLDERS[split]
        counts = _split_counts(total, [w for _, w in folders])
        labels = _labels(config, "300w", split, total)
        rng = np.random.default_rng([seed, _TAG_SPLIT, _TREE_CODES["300w"], _SPLIT_CODES[split]])
        order = [ids[k] for k in rng.permutation(len(ids))]
        k = 0
        for (folder, _), count in zip(folders, counts, strict=True):
            for j in range(count):
                name = f"image_{j + 1:05d}"
                _add_job(
                    jobs,
                    config,
                    tree="300w",
                    split=split,
                    subset=folder.split("/")[0],
                    image_rel=f"300w/{folder}/{name}.png",
                    pts_rel=f"300w/{folder}/{name}.pts",
                    mask_rel=f"masks/300w/{folder}/{name}.png",
                    identity=order[k % len(order)],
                    expression=labels[k],
                    width=size,
                    height=size,
                    face_size=size * config.face_fraction,
                    anchor_y=0.55,
                    center=(size / 2.0, size / 2.0),
                    pose_strength=strength,
                    occlusion_fraction=occ,
                    harsh=harsh,
                )
                k += 1


def _rafdb_slots(
    config: SynthFacesConfig, split: str, total: int, ids: list[int]
) -> tuple[list[tuple[int, int, str]], np.ndarray]:
    """The split's ``(identity, label, pair role)`` slots and the shuffled order they are named in.

    Each identity first gets a neutral/expressive pair; the remaining slots go round-robin.
    """
    labels = _labels(config, "rafdb", split, total)
    rng = np.random.default_rng([int(config.seed), _TAG_SPLIT, _TREE_CODES["rafdb"], _SPLIT_CODES[split]])
    non_neutral = [lab for lab in range(1, 7) if config.expression_weights[lab - 1] > 0] or [1]
    slots: list[tuple[int, int, str]] = []
    for ident in ids:
        slots.append((ident, NEUTRAL, "neutral"))
        slots.append((ident, int(rng.choice(non_neutral)), "expressive"))
    for j in range(total - len(slots)):
        slots.append((ids[j % len(ids)], labels[j], ""))
    order = rng.permutation(len(slots))  # shuffle so file names do not reveal pairs
    return slots, order


def _plan_rafdb_split(
    jobs: list[_Job], config: SynthFacesConfig, split: str, total: int, ids: list[int]
) -> list[str]:
    """RAF-DB tree, one split (aligned faces); returns its lines of the label file.

    The two images of a pair share one scene stream (pose, light, background, occluder), and each is
    fitted into the image with both expressions, so they differ only in the expression.
    """
    rs = config.rafdb_size
    digits = max(5 if split == "train" else 4, len(str(total)))
    slots, order = _rafdb_slots(config, split, total, ids)
    base_index = len(jobs)
    pair_positions: dict[int, list[int]] = {}
    for pos, s in enumerate(order):
        if slots[s][2]:
            pair_positions.setdefault(slots[s][0], []).append(pos)
    label_lines: list[str] = []
    for pos, s in enumerate(order):
        ident, label, role = slots[s]
        name = f"{split}_{pos + 1:0{digits}d}"
        kw = dict(
            tree="rafdb",
            split=split,
            subset="basic",
            image_rel=f"rafdb/Image/aligned/{name}_aligned.jpg",
            mask_rel=f"rafdb/masks/{name}_aligned.png",
            identity=ident,
            expression=label,
            width=rs,
            height=rs,
            face_size=rs * 0.84,
            anchor_y=0.5,
            center=(rs / 2.0, rs * 0.52),
            pose_strength=0.45 * config.pose_jitter,
            occlusion_fraction=config.rafdb_test_occlusion_fraction
            if split == "test"
            else config.occlusion_fraction,
            harsh=0.3,
        )
        if role:
            p0, p1 = pair_positions[ident]
            partner = p1 if pos == p0 else p0
            partner_label = slots[order[partner]][1]
            code = _TREE_CODES["rafdb"]
            kw["scene_key"] = (_TAG_SCENE, code, base_index + p0)  # shared by both
            kw["bound_exprs"] = (
                (label, (_TAG_EXPR, code, base_index + pos)),
                (partner_label, (_TAG_EXPR, code, base_index + partner)),
            )
            kw["pair_id"] = f"{split}_pair_{ident:05d}"
            kw["pair_role"] = role
        _add_job(jobs, config, **kw)
        label_lines.append(f"{name}.jpg {label}")
    return label_lines


def identity_image_rel(identity: int, k: int, test: bool) -> str:
    """Where image ``k`` of an identity folder goes: ``identities/`` (train) or ``identities_test/``."""
    return f"{IDENTITY_TREES[test]}/{identity:05d}/{k:03d}.jpg"


def _plan_identity_folders(jobs: list[_Job], config: SynthFacesConfig, test_ids: list[int]) -> None:
    """Identity folders (CASIA-WebFace style, ArcFace-like framing): folder ``n`` holds identity ``n``,
    under ``identities/`` for a train identity and ``identities_test/`` for a held-out one, so that a
    folder reader of ``identities/`` sees train identities only. (Before generator 1.2.0 both lived
    under ``identities/``; the images themselves are unchanged: the job order and streams are.)"""
    isz = config.identity_size
    k_scale = isz / 112.0
    test_set = set(test_ids)
    labels = _labels(config, "identities", "all", config.num_identity_folders * config.images_per_identity)
    for n_id in range(config.num_identity_folders):
        test = n_id in test_set
        for k in range(config.images_per_identity):
            image_rel = identity_image_rel(n_id, k, test)
            _add_job(
                jobs,
                config,
                tree="identities",
                split="test" if test else "train",
                subset="casia",
                image_rel=image_rel,
                mask_rel=f"masks/{image_rel[:-4]}.png",
                identity=n_id,
                expression=labels[n_id * config.images_per_identity + k],
                width=isz,
                height=isz,
                face_size=78.2 * k_scale,
                anchor_y=0.0,
                center=(56.0 * k_scale, 51.6 * k_scale),
                pose_strength=0.5 * config.pose_jitter,
                occlusion_fraction=config.occlusion_fraction,
                harsh=0.3,
            )


@dataclass(frozen=True)
class VerificationPair:
    fold: int
    left: str  # image path relative to the SynthFaces root
    right: str
    issame: bool
    left_identity: int
    right_identity: int


def plan_verification_pairs(config: SynthFacesConfig) -> list[VerificationPair]:
    """``config.verification_pairs`` pairs of held-out identities' images, fold after fold.

    Each fold is ``P/20`` same-identity pairs followed by ``P/20`` different-identity pairs (the
    order LFW's and AgeDB's folds have). A same pair is two distinct images of one held-out identity,
    a different pair one image each of two held-out identities, all drawn uniformly from a stream of
    ``(seed, pairs tag)``. A pair already drawn is redrawn (up to 20 times; only a config with very
    few held-out images repeats pairs). Train identities never appear.
    """
    if not config.verification_pairs:
        return []
    held = held_out_folder_identities(config)
    rng = np.random.default_rng([int(config.seed), _TAG_PAIRS])
    n_images = config.images_per_identity
    half = config.verification_pairs // (2 * VERIFICATION_FOLDS)
    seen: set[tuple] = set()

    def draw(same: bool) -> tuple[int, int, int, int]:
        if same:
            ident = held[int(rng.integers(len(held)))]
            a, b = (int(v) for v in rng.choice(n_images, 2, replace=False))
            return ident, a, ident, b
        i, j = (held[int(v)] for v in rng.choice(len(held), 2, replace=False))
        return i, int(rng.integers(n_images)), j, int(rng.integers(n_images))

    pairs = []
    for fold in range(VERIFICATION_FOLDS):
        for same in [True] * half + [False] * half:
            for _ in range(20):
                li, lk, ri, rk = draw(same)
                key = tuple(sorted(((li, lk), (ri, rk))))
                if key not in seen:
                    break
            seen.add(key)
            pairs.append(
                VerificationPair(
                    fold=fold,
                    left=identity_image_rel(li, lk, True),
                    right=identity_image_rel(ri, rk, True),
                    issame=same,
                    left_identity=li,
                    right_identity=ri,
                )
            )
    return pairs


def _fit_in_image(params: FaceParams, expressions: Sequence[Expression], margin: float) -> FaceParams:
    """Pull the face back toward the centre / shrink it until every landmark lies inside the image."""
    for _ in range(12):
        ok = True
        for ex in expressions:
            lm = face_landmarks(replace(params, expression=ex))
            if (
                lm[:, 0].min() < margin
                or lm[:, 1].min() < margin
                or lm[:, 0].max() > params.width - margin
                or lm[:, 1].max() > params.height - margin
            ):
                ok = False
                break
        if ok:
            return params
        p = params.pose
        params = replace(
            params, pose=replace(p, shift_x=p.shift_x * 0.5, shift_y=p.shift_y * 0.5, scale=p.scale * 0.95)
        )
    return params


def _job_params(job: _Job, seed: int) -> tuple[FaceParams, np.random.Generator]:
    """The job's parameters, and its scene stream, which :func:`render_face` goes on drawing from."""
    identity = _identity_cached(seed, job.identity)
    expression = sample_expression(job.expression, np.random.default_rng([seed, *job.expr_key]))
    expressions = [expression] + [
        sample_expression(label, np.random.default_rng([seed, *key]))
        for label, key in job.bound_exprs
        if tuple(key) != tuple(job.expr_key)
    ]
    rng = np.random.default_rng([seed, *job.scene_key])
    pose = sample_pose(rng, job.pose_strength)
    h = job.harsh
    occluder = "none"
    if rng.uniform() < job.occlusion_fraction:
        occluder = OCCLUDER_TYPES[1 + int(rng.integers(len(OCCLUDER_TYPES) - 1))]
    params = FaceParams(
        identity=identity,
        expression=expression,
        pose=pose,
        width=job.width,
        height=job.height,
        face_size=job.face_size,
        anchor_y=job.anchor_y,
        center=job.center,
        light_azimuth=float(rng.uniform(-60, 60) * (1 + 0.3 * h)),
        light_elevation=float(rng.uniform(5, 55)),
        light_strength=float(rng.uniform(0.2, 0.5 + 0.2 * h)),
        ambient=float(rng.uniform(0.68, 0.85) - 0.1 * h),
        gaze=(float(rng.uniform(-0.7, 0.7)), float(rng.uniform(-0.4, 0.4))),
        occluder=occluder,
        clutter=float(rng.uniform(0.3, 1.5)),
        noise=float(rng.uniform(0.5, 4.0) + 5.0 * h * rng.uniform()),
        blur=float(rng.uniform(0.2, 0.75) + 0.8 * h * rng.uniform()),
    )
    params = _fit_in_image(params, expressions, margin=1.0)
    return params, rng


@lru_cache(maxsize=4096)
def _identity_cached(seed: int, identity_id: int) -> Identity:
    return sample_identity(seed, identity_id)
