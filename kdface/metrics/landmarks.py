"""Landmark evaluation metrics: NME, failure rate, AUC of the CED curve, and a CED plot.

Pure NumPy (evaluation runs after ``predict``), on landmarks in kdface pixels ``(B, N, 2)``
(see :mod:`kdface.tasks.landmarks.points` for the convention and :data:`NORMALISERS` for the point pairs).

Two AUCs are provided because published KD-Loss numbers use a non-standard one:

* :func:`auc` is the standard normalised area under the CED curve over ``[0, threshold]``
  (1.0 = every image perfect). Report this one.
* :func:`auc_kdloss_original` reproduces the KD-Loss authors' code, which sums ``F(t_k)`` times the
  *midpoint* of each interval rather than its width; it tops out at 0.95 and is not comparable with
  the standard AUC (every image at NME 0.0356 scores 0.855 there vs 0.644 standard).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from kdface.io.atomic import atomic_path
from kdface.tasks.landmarks.points import NORMALISERS


def _resolve_normaliser(normaliser) -> tuple[int, int]:
    """Accept a point pair ``(a, b)`` or a key of :data:`NORMALISERS` such as ``"wflw"``."""
    if isinstance(normaliser, str):
        try:
            return NORMALISERS[normaliser]
        except KeyError:
            raise ValueError(f"unknown normaliser {normaliser!r}; known: {sorted(NORMALISERS)}") from None
    a, b = normaliser
    return int(a), int(b)


def _as_nme(nme) -> np.ndarray:
    """Per-image NMEs as a non-empty 1-D float64 array (an empty set has no meaningful rate)."""
    arr = np.asarray(nme, dtype=np.float64).reshape(-1)
    if arr.size == 0:
        raise ValueError("no NME values given (empty array)")
    if np.isnan(arr).any():
        raise ValueError(f"{int(np.isnan(arr).sum())} NME value(s) are NaN")
    return arr


def _fraction_at_most(nme: np.ndarray, t: np.ndarray) -> np.ndarray:
    """CED value ``F(t)``: the fraction of images with NME <= t, for every t at once."""
    return np.searchsorted(np.sort(nme), t, side="right") / nme.size


def nme_per_image(pred, gt, normaliser: tuple[int, int] | str = (36, 45)) -> np.ndarray:
    """Normalised mean error of each image: ``mean_i ||pred_i - gt_i|| / ||gt[a] - gt[b]||``.

    ``pred`` and ``gt`` are ``(B, N, 2)`` pixels (a single ``(N, 2)`` image is treated as ``B = 1``);
    ``normaliser`` is the point pair ``(a, b)`` or a :data:`NORMALISERS` key. Returns ``(B,)`` float64.
    """
    pred = np.asarray(pred, dtype=np.float64)
    gt = np.asarray(gt, dtype=np.float64)
    if pred.ndim == 2:
        pred = pred[None]
    if gt.ndim == 2:
        gt = gt[None]
    if pred.shape != gt.shape or pred.ndim != 3 or pred.shape[-1] != 2:
        raise ValueError(
            f"pred and gt must both have shape (B, N, 2); got pred {pred.shape} and gt {gt.shape}"
        )
    a, b = _resolve_normaliser(normaliser)
    num_points = gt.shape[1]
    if not (-num_points <= a < num_points and -num_points <= b < num_points):
        raise ValueError(f"normaliser indices ({a}, {b}) out of range for {num_points} landmarks")
    norm = np.linalg.norm(gt[:, a] - gt[:, b], axis=-1)
    bad = np.flatnonzero(~(norm > 0))
    if bad.size:
        raise ValueError(
            f"normaliser distance between points {a} and {b} is zero (or NaN) for image index "
            f"{int(bad[0])}" + (f" and {bad.size - 1} more" if bad.size > 1 else "")
        )
    errors = np.linalg.norm(pred - gt, axis=-1).mean(axis=-1)
    return errors / norm


def failure_rate(nme, threshold: float = 0.1) -> float:
    """Fraction of images with NME strictly greater than ``threshold`` (a tie is not a failure)."""
    return float(np.mean(_as_nme(nme) > threshold))


def auc(nme, threshold: float = 0.1, step: float | None = None) -> float:
    """Standard normalised area under the CED curve over ``[0, threshold]`` (1.0 = perfect).

    With ``step=None`` (default) it is exact: the CED is a step function, so the area is
    ``mean_i max(0, threshold - nme_i) / threshold``. Passing a ``step`` instead integrates the
    curve numerically (trapezoid rule on a grid of that spacing), as many reference scripts do;
    the two agree to about ``step / threshold``.
    """
    nme = _as_nme(nme)
    if threshold <= 0:
        raise ValueError(f"threshold must be positive, got {threshold}")
    if step is None:
        return float(np.mean(np.maximum(0.0, threshold - nme)) / threshold)
    t = np.linspace(0.0, threshold, int(round(threshold / step)) + 1)
    return float(np.trapezoid(_fraction_at_most(nme, t), t) / threshold)


def auc_kdloss_original(nme) -> float:
    """AUC exactly as the KD-Loss authors' code computes it, to compare with their published numbers.

    ``t_k = 0.1 k / 19`` (k = 0..19), ``AUC = sum_{k=1..19} F(t_k) (t_{k-1} + t_k) / 2`` with
    ``F(t)`` the fraction of images with NME <= t. Not a normalised area: its maximum is 0.95.
    """
    nme = _as_nme(nme)
    t = np.linspace(0.0, 0.1, 20)
    f = _fraction_at_most(nme, t)
    return float(np.sum(f[1:] * (t[:-1] + t[1:]) / 2))


def ced_curve(nme, threshold: float = 0.1, num: int = 1000) -> tuple[np.ndarray, np.ndarray]:
    """Cumulative error distribution: ``num`` thresholds ``t`` on ``[0, threshold]`` and ``F(t)``."""
    nme = _as_nme(nme)
    t = np.linspace(0.0, threshold, num)
    return t, _fraction_at_most(nme, t)


def summarize(nme, threshold: float = 0.1) -> dict:
    """Headline numbers for a report: ``nme``, ``median`` and ``fr`` in percent, AUCs as fractions."""
    nme = _as_nme(nme)
    return {
        "nme": float(np.mean(nme) * 100),
        "median": float(np.median(nme) * 100),
        "fr": failure_rate(nme, threshold) * 100,
        "auc": auc(nme, threshold),
        "auc_original": auc_kdloss_original(nme),
        "threshold": float(threshold),
        "count": int(nme.size),
    }


# Line styles for the splits of a CED plot, in order of first appearance (then dash patterns).
_SPLIT_STYLES = ("-", "--", ":", "-.", (0, (5, 1, 1, 1, 1, 1)), (0, (8, 2)), (0, (1, 3)))


def _model_colours(count: int) -> list:
    """``count`` distinct colours: Tableau's 10, else evenly spaced hues of a continuous map."""
    from matplotlib import colormaps

    if count <= 10:
        return [colormaps["tab10"](i) for i in range(count)]
    return [colormaps["turbo"](x) for x in np.linspace(0.05, 0.95, count)]


def ced_figure(
    curves: Mapping[str | tuple[str, str], np.ndarray],
    threshold: float = 0.1,
    title: str = "Cumulative error distribution",
    xlabel: str = "NME (%)",
):
    """The CED plot of :func:`plot_ced` as a matplotlib ``Figure`` (Agg canvas, pyplot untouched)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    keys = [key if isinstance(key, tuple) else (key, None) for key in curves]
    models = list(dict.fromkeys(model for model, _ in keys))
    splits = list(dict.fromkeys(split for _, split in keys if split is not None))
    colour = dict(zip(models, _model_colours(len(models)), strict=True))
    style = {split: _SPLIT_STYLES[i % len(_SPLIT_STYLES)] for i, split in enumerate(splits)}

    fig = Figure(figsize=(11, 5.5), dpi=100, layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    for (model, split), nme in zip(keys, curves.values(), strict=True):
        nme = _as_nme(nme)
        t, f = ced_curve(nme, threshold)
        name = model if split is None else f"{model} ({split})"
        label = f"{name}: NME {np.mean(nme) * 100:.2f}%, AUC {auc(nme, threshold):.4f}"
        ax.plot(t * 100, f, label=label, color=colour[model], linestyle=style.get(split, "-"), linewidth=1.8)
    ax.set_xlim(0, threshold * 100)
    ax.set_ylim(0, 1)
    ax.set_xlabel(xlabel)
    ax.set_ylabel("Fraction of images with NME \u2264 x")
    ax.set_title(title)
    ax.grid(True, alpha=0.3)
    if curves:
        ax.legend(loc="upper left", bbox_to_anchor=(1.02, 1.0), borderaxespad=0.0, fontsize="small",
                  handlelength=3.0, title=f"model (split): mean NME, AUC@{threshold * 100:g}%",
                  title_fontsize="small")  # fmt: skip
    return fig


def plot_ced(
    curves: Mapping[str | tuple[str, str], np.ndarray],
    path,
    threshold: float = 0.1,
    title: str = "Cumulative error distribution",
    xlabel: str = "NME (%)",
):
    """Save a CED plot to a PNG at ``path``; NME on the x axis in percent, as in the report tables.

    ``curves`` maps a label to per-image NMEs (fractions). A ``(model, split)`` tuple label gives each
    model its own colour and each split its own line style; a plain string label is a model of its own.
    The legend (NME % and AUC of every curve) sits right of the axes, so it hides no curve.
    """
    fig = ced_figure(curves, threshold, title, xlabel)
    with atomic_path(path) as tmp:
        fig.savefig(str(tmp), format="png")
    return path
