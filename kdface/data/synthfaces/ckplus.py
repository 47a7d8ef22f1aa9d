"""The CK+ tree: each SynthFaces subject's frame sequences going from a neutral onset to the peak of one
expression, planned and rendered here and written in CK+'s layout by :mod:`.writers`.

What a sequence is made of:

* **One person**: subject ``k`` is identity ``IDENTITY_BASE + k``, a person of its own (never in the
  300W, RAF-DB or identity-folder trees), named ``S{FIRST_SUBJECT + k:03d}`` as CK+ names subjects.
* **One session per subject**: background, clothing, light and imaging are drawn once per subject, so
  all its sequences are filmed in the same place; each sequence draws its own head pose and gaze.
* **An intensity ramp**: frame ``i`` of ``n`` has the expression ``neutral + t * (peak - neutral)``
  parameter by parameter, ``t = smoothstep(i / (n - 1))``: frame 1 is exactly the sequence's neutral
  face (CK+'s onset), frame ``n`` the peak, eased in and out like a posed expression.
* **Frame jitter**: each frame moves the head slightly (roll ~0.3 degrees, shift ~0.2 % of the face)
  and has its own sensor noise; the background stays still (a fixed camera).
* **Labels**: ``ckplus_labelled_fraction`` of the sequences carry a CK+ emotion code (each subject
  at least one, as 118 of CK+'s 123 subjects do), drawn in CK+'s proportions (:data:`LABEL_COUNTS`)
  and without repeats within a subject while codes last (a CK+ subject poses each emotion once), at
  intensity 0.8..1.2. The other sequences show any of the 7 emotions at 0.3..0.6: expressions that,
  as in CK+, did not qualify for a label.

Frames are grey (CK+'s are, almost all), with the 68 landmarks of every frame in ``Landmarks/``
(1-based pixel centres) and ``metadata.csv`` listing every frame.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, replace

import cv2
import numpy as np

from kdface.data.synthfaces.config import SynthFacesConfig
from kdface.data.synthfaces.params import CONTEMPT, NEUTRAL, Expression, FaceParams
from kdface.data.synthfaces.plan import _fit_in_image, _identity_cached
from kdface.data.synthfaces.render import render_face
from kdface.data.synthfaces.sampling import _TAG_CKPLUS, sample_expression, sample_pose

CKPLUS_DIR = "ckplus"
IDENTITY_BASE = 100_000
FIRST_SUBJECT = 5  # CK+'s subjects are S005..S999
# CK+'s labelled sequences per emotion code (Lucey et al. 2010): the proportions labels are drawn in.
LABEL_COUNTS = {1: 45, 2: 18, 3: 59, 4: 25, 5: 69, 6: 28, 7: 83}
# CK+ emotion code -> SynthFaces expression label (RAF-DB order, 8 contempt)
CKPLUS_TO_SYNTHFACES = {1: 6, 2: CONTEMPT, 3: 3, 4: 2, 5: 4, 6: 5, 7: 1}
# purposes of the CK+ streams (after _TAG_CKPLUS in the seed sequence)
_PLAN, _SUBJECT, _SESSION, _SEQUENCE, _FRAME, _BACKGROUND = range(6)


@dataclass(frozen=True)
class SequenceJob:
    """One sequence to render: subject index, 1-based sequence number, frame count, CK+ code (``None``:
    unlabelled) and the SynthFaces expression of its peak."""

    subject: int
    sequence: int
    frames: int
    code: int | None
    expression: int

    @property
    def subject_name(self) -> str:
        return f"S{FIRST_SUBJECT + self.subject:03d}"

    def frame_name(self, number: int) -> str:
        """CK+'s name of frame ``number`` (1-based), e.g. ``S005_001_00000003``."""
        return f"{self.subject_name}_{self.sequence:03d}_{number:08d}"

    @property
    def folder(self) -> str:
        return f"{self.subject_name}/{self.sequence:03d}"


def _draw_codes(rng: np.random.Generator, count: int) -> list[int]:
    """``count`` CK+ codes in CK+'s proportions, without repeats until all 7 are used."""
    codes: list[int] = []
    while len(codes) < count:
        pool = list(LABEL_COUNTS)
        weights = np.array([LABEL_COUNTS[c] for c in pool], np.float64)
        take = min(count - len(codes), len(pool))
        codes += [pool[i] for i in rng.choice(len(pool), size=take, replace=False, p=weights / weights.sum())]
    return codes


def plan_ckplus(config: SynthFacesConfig) -> list[SequenceJob]:
    """Every sequence of the CK+ tree, subject by subject (module doc); ``[]`` without CK+ subjects."""
    if not config.ckplus_subjects:
        return []
    seed, n = int(config.seed), config.ckplus_subjects
    rng = np.random.default_rng([seed, _TAG_CKPLUS, _PLAN])
    counts = 1 + rng.multinomial(config.ckplus_sequences - n, np.full(n, 1.0 / n))
    jobs = []
    for k, count in enumerate(counts):
        srng = np.random.default_rng([seed, _TAG_CKPLUS, _SUBJECT, k])
        labelled = srng.uniform(size=count) < config.ckplus_labelled_fraction
        if config.ckplus_labelled_fraction > 0 and not labelled.any():
            labelled[int(srng.integers(count))] = True
        codes = iter(_draw_codes(srng, int(labelled.sum())))
        for j in range(count):
            frames = int(srng.integers(config.ckplus_min_frames, config.ckplus_max_frames + 1))
            if labelled[j]:
                code = next(codes)
                expression = CKPLUS_TO_SYNTHFACES[code]
            else:
                code, expression = None, int(srng.choice([e for e in CKPLUS_TO_SYNTHFACES.values()]))
            jobs.append(SequenceJob(k, j + 1, frames, code, expression))
    return jobs


def blend_expressions(neutral: Expression, peak: Expression, t: float) -> Expression:
    """``neutral + t * (peak - neutral)`` for every parameter; the peak's label, intensity ``t * peak``'s."""
    values = {
        f.name: (1.0 - t) * getattr(neutral, f.name) + t * getattr(peak, f.name)
        for f in dataclasses.fields(Expression)
        if f.name not in ("label", "intensity")
    }
    return Expression(label=peak.label, intensity=t * peak.intensity, **values)


def ramp(number: int, frames: int) -> float:
    """The expression's share at frame ``number`` (1-based) of ``frames``: smoothstep, 0 at the onset, 1 at the peak."""
    u = (number - 1) / (frames - 1)
    return u * u * (3.0 - 2.0 * u)


def render_sequence(job: SequenceJob, config: SynthFacesConfig):
    """Render one sequence: a list of ``(grey image (H, W) uint8, landmarks (68, 2) kdface pixels,
    FaceParams)`` for frames 1..n."""
    seed, width, height = int(config.seed), config.ckplus_width, config.ckplus_height
    identity = _identity_cached(seed, IDENTITY_BASE + job.subject)
    session = np.random.default_rng([seed, _TAG_CKPLUS, _SESSION, job.subject])
    light = dict(
        light_azimuth=float(session.uniform(-40, 40)),
        light_elevation=float(session.uniform(15, 50)),
        light_strength=float(session.uniform(0.2, 0.4)),
        ambient=float(session.uniform(0.72, 0.85)),
        clutter=float(session.uniform(0.2, 0.8)),
        blur=float(session.uniform(0.3, 0.7)),
    )
    noise_sigma = float(session.uniform(0.5, 2.5))
    rng = np.random.default_rng([seed, _TAG_CKPLUS, _SEQUENCE, job.subject, job.sequence])
    pose = sample_pose(rng, 0.3 * config.pose_jitter)
    gaze = (float(rng.normal(0, 0.1)), float(rng.normal(0, 0.1)))
    neutral = sample_expression(NEUTRAL, rng)
    intensity = float(rng.uniform(0.8, 1.2) if job.code is not None else rng.uniform(0.3, 0.6))
    peak = sample_expression(job.expression, rng, intensity=intensity)
    base = FaceParams(identity=identity, expression=neutral, pose=pose, width=width, height=height,
                      face_size=0.3 * width, anchor_y=0.5, center=(width / 2.0, 0.47 * height), gaze=gaze,
                      occluder="none", noise=0.0, **light)  # fmt: skip
    base = _fit_in_image(base, [neutral, peak], margin=0.05 * width)
    frames = []
    for number in range(1, job.frames + 1):
        jitter = np.random.default_rng([seed, _TAG_CKPLUS, _FRAME, job.subject, job.sequence, number])
        p = base.pose
        moved = replace(p, roll=p.roll + float(jitter.normal(0, 0.3)),
                        shift_x=p.shift_x + float(jitter.normal(0, 0.002)),
                        shift_y=p.shift_y + float(jitter.normal(0, 0.002)))  # fmt: skip
        params = replace(
            base, pose=moved, expression=blend_expressions(neutral, peak, ramp(number, job.frames))
        )
        # the same background stream for every frame of the subject: a still camera in one session
        image, landmarks, _ = render_face(
            params, np.random.default_rng([seed, _TAG_CKPLUS, _BACKGROUND, job.subject])
        )
        grey = cv2.cvtColor(image, cv2.COLOR_RGB2GRAY)
        noise = jitter.standard_normal(grey.shape, dtype=np.float32) * np.float32(noise_sigma)
        grey = cv2.add(grey, noise, dtype=cv2.CV_8U)
        frames.append((grey, landmarks, params))
    return frames
