"""Low-resolution synthesis for face recognition: "down-then-up" back to the input size (spec §2.2).

The recognition KD methods train and evaluate on faces degraded by resizing down to ``d x d`` and
back up to ``H x W`` (112 x 112 for CASIA-WebFace), so that a student sees less detail at the same
input size as the teacher. The degradation differs between the code versions, and results made
with one are not comparable with another (spec §7.4):

* ``"nearest"`` (F-SKD v1, training and evaluation): ``cv2.resize`` with ``INTER_NEAREST`` down
  and up. For an integer factor ``f = H / d`` that is the top-left pixel of every ``f x f`` block
  (``x[::f, ::f]``), repeated ``f x f`` times; it is implemented that way (bit-exact, any dtype)
  and therefore needs ``d`` to divide ``H`` and ``W``.
* ``"nearest_blur"`` (A-SKD's; ``"askd"`` in the CLI, run configs and model cards, see
  :data:`METHOD_NAMES`): the same nearest down/up, then a 5 x 5 Gaussian blur with
  ``sigma = (0.1 along x, 2.0 along y)`` and reflect padding. The horizontal factor's off-centre
  weights are ``exp(-50)`` relative to the centre (below float64 precision), so the blur is the
  vertical 5-tap kernel ``[0.1525, 0.2218, 0.2514, 0.2218, 0.1525]`` (:func:`askd_blur_kernel`
  builds the 2-D kernel with torchvision's normalisation and :data:`ASKD_VERTICAL_KERNEL` is its
  column). A-SKD blurs the *normalised* tensor ``(x/255 - 0.5)/0.5``; the blur is linear with
  weights summing to 1, so it commutes with that affine map and blurring the pixels is the same
  up to rounding (for ``uint8`` input the result is rounded, as torchvision does for integer
  images).
* ``"random"`` (later F-SKD training): the down and the up interpolation are each drawn uniformly
  from cv2 ``{NEAREST, LINEAR, AREA, CUBIC, LANCZOS4}`` per image, from ``rng``.
* ``"linear"`` (later F-SKD evaluation): ``INTER_LINEAR`` both ways.

A size ``d >= H`` leaves the image unchanged for every method. Departure from A-SKD: when a
training list holds 112 together with smaller sizes and 112 is drawn, A-SKD still blurs the image;
here 112 always means the untouched HR image.

:func:`draw_down_sizes` reproduces the ``--down_size`` semantics (spec §2.3), :func:`degrade_pair`
the HR/LR pair with the shared flip, in either original's order (:data:`ORDERS`), and :func:`low_resolution_tf` the
``"nearest"`` degradation with a per-sample size inside a TensorFlow graph (``tf.data``, XLA):
no ``py_function``. Do not use ``tf.image.resize(method="nearest")`` for this: its half-pixel
centres sample pixel ``f*i + f/2``, not ``f*i`` (spec §8).
"""

from __future__ import annotations

import cv2
import numpy as np

METHODS = ("nearest", "nearest_blur", "random", "linear")
# The degradations named after the original that uses them, as ``--degradation``, run configs and model
# cards spell them; accepted wherever a method is named.
METHOD_NAMES = {"askd": "nearest_blur"}
BLOCK_METHODS = ("nearest", "nearest_blur")  # one pixel per block: the size must divide the image
# cv2 interpolations the later F-SKD code draws from (``--interpolation random``), in its order.
RANDOM_INTERPOLATIONS = (
    cv2.INTER_NEAREST,
    cv2.INTER_LINEAR,
    cv2.INTER_AREA,
    cv2.INTER_CUBIC,
    cv2.INTER_LANCZOS4,
)
ASKD_KERNEL_SIZE = 5
ASKD_SIGMA = (0.1, 2.0)  # (sigma_x, sigma_y) as A-SKD passes them: fixed, not a range
# The blur's column (spec §2.2); equal to askd_blur_kernel()[:, 2] to 1e-16.
ASKD_VERTICAL_KERNEL = (0.15246914402033734, 0.2218412955437769, 0.25137912087177144,
                        0.2218412955437769, 0.15246914402033734)  # fmt: skip
# HR/LR order of the shared flip: F-SKD v1 degrades the unflipped image, then flips both; A-SKD flips
# first, then degrades. ORDER_NAMES: the originals' names (``--flip-order``, run configs), accepted too.
ORDERS = ("degrade_then_flip", "flip_then_degrade")
ORDER_NAMES = {"fskd": "degrade_then_flip", "askd": "flip_then_degrade"}


def _canonical(value: str, names: dict, choices: tuple, what: str) -> str:
    canonical = names.get(value, value)
    if canonical not in choices:
        raise ValueError(f"{what} must be one of {choices + tuple(names)}, got {value!r}")
    return canonical


def degradation_method(method: str, what: str = "method") -> str:
    """``method`` as one of :data:`METHODS` (an original's name from :data:`METHOD_NAMES` mapped)."""
    return _canonical(method, METHOD_NAMES, METHODS, what)


def flip_order(order: str, what: str = "order") -> str:
    """``order`` as one of :data:`ORDERS` (an original's name from :data:`ORDER_NAMES` mapped)."""
    return _canonical(order, ORDER_NAMES, ORDERS, what)


def samples_blocks(method: str) -> bool:
    """Whether degradation ``method`` (either name) keeps one pixel per block, so that a size must divide
    the image; False for a name it does not know."""
    return METHOD_NAMES.get(method, method) in BLOCK_METHODS


def gaussian_kernel1d(size: int, sigma: float) -> np.ndarray:
    """torchvision's 1-D Gaussian: ``exp(-x^2 / (2 sigma^2))`` at ``x = -(size-1)/2 .. (size-1)/2``,
    divided by its sum (float64)."""
    half = (size - 1) * 0.5
    x = np.linspace(-half, half, size)
    pdf = np.exp(-0.5 * (x / sigma) ** 2)
    return pdf / pdf.sum()


def askd_blur_kernel(size: int = ASKD_KERNEL_SIZE, sigma=ASKD_SIGMA) -> np.ndarray:
    """A-SKD's ``size x size`` blur kernel, rows = y: ``outer(k_y, k_x)`` as torchvision builds it
    (``sigma = (sigma_x, sigma_y)``)."""
    return np.outer(gaussian_kernel1d(size, sigma[1]), gaussian_kernel1d(size, sigma[0]))


def resolution_ladder(image_size: int = 112) -> tuple[int, int, int, int]:
    """The multi-resolution sizes ``(S/8, S/4, S/2, S)``: 112 -> (14, 28, 56, 112), 64 -> (8, 16, 32, 64).

    F-SKD's ``--down_size 1`` draws from ``{14, 28, 56, 112}`` for its 112 px faces; other image sizes
    scale the same ladder (a generalisation: the original only knows 112), so ``image_size`` must be
    a multiple of 8.
    """
    image_size = int(image_size)
    if image_size < 8 or image_size % 8:
        raise ValueError(
            f"image_size must be a positive multiple of 8 for the S/8..S ladder, got {image_size}"
        )
    return (image_size // 8, image_size // 4, image_size // 2, image_size)


def draw_down_sizes(n: int, down_size, image_size: int = 112, equal: bool = True, rng=None) -> np.ndarray:
    """``n`` per-sample target sizes (``int64``) with F-SKD's ``--down_size`` semantics (spec §2.3).

    * ``0``: HR only, every size is ``image_size``.
    * ``1``: multi-resolution over :func:`resolution_ladder` ``(S/8, S/4, S/2, S)``; ``equal``: each
      with p = 1/4; not ``equal``: ``S`` with p = 1/2, else uniform over the three smaller (1/6 each).
    * any other int ``d`` (``2 <= d <= image_size``): fixed.
    * a sequence (A-SKD's list): one value is fixed, several are drawn uniformly.

    ``rng``: a ``np.random.Generator`` (a fresh one when None).
    """
    rng = np.random.default_rng() if rng is None else rng
    n = int(n)
    if isinstance(down_size, (list, tuple, np.ndarray)):
        values = np.asarray(down_size, np.int64).reshape(-1)
        if values.size == 0 or values.min() < 1 or values.max() > image_size:
            raise ValueError(f"down_size list values must lie in 1..{image_size}, got {list(down_size)}")
        return values[rng.integers(0, values.size, n)] if values.size > 1 else np.full(n, values[0])
    down_size = int(down_size)
    if down_size == 0:
        return np.full(n, image_size, np.int64)
    if down_size == 1:
        ladder = np.asarray(resolution_ladder(image_size), np.int64)
        if equal:
            return ladder[rng.integers(0, 4, n)]
        hr = rng.random(n) < 0.5
        low = ladder[rng.integers(0, 3, n)]
        return np.where(hr, ladder[3], low)
    if not 2 <= down_size <= image_size:
        raise ValueError(
            f"down_size must be 0 (HR), 1 (multi-resolution) or 2..{image_size}, got {down_size}"
        )
    return np.full(n, down_size, np.int64)


def _as_batch(images) -> tuple[np.ndarray, bool]:
    array = np.asarray(images)
    if array.ndim == 3:
        return array[None], True
    if array.ndim != 4:
        raise ValueError(f"images must be HWC or NHWC, got shape {array.shape}")
    return array, False


def _sizes(size, n: int) -> np.ndarray:
    sizes = np.asarray(size)
    if sizes.ndim == 0:
        sizes = np.full(n, int(sizes))
    if sizes.shape != (n,):
        raise ValueError(f"size must be an int or one per image ({n}), got shape {sizes.shape}")
    if sizes.min(initial=1) < 1:
        raise ValueError(f"sizes must be positive, got {sizes.min()}")
    return sizes.astype(np.int64)


def _block_factor(d: int, height: int, width: int) -> tuple[int, int]:
    if height % d or width % d:
        raise ValueError(
            f"nearest down/up needs the size to divide the image ({height} x {width}); {d} does not "
            "(use method='linear' or 'random' for other sizes)"
        )
    return height // d, width // d


def _nearest(image: np.ndarray, d: int) -> np.ndarray:
    """Top-left pixel of every block, repeated over the block (== cv2 INTER_NEAREST down and up)."""
    fy, fx = _block_factor(d, image.shape[0], image.shape[1])
    return np.repeat(np.repeat(image[::fy, ::fx], fy, axis=0), fx, axis=1)


def _vertical_blur(image: np.ndarray) -> np.ndarray:
    """A-SKD's blur: the 5-tap column kernel with reflect padding (``x[2], x[1] | x[0] ...``)."""
    kernel = np.asarray(ASKD_VERTICAL_KERNEL)
    pad = len(kernel) // 2
    x = image.astype(np.float64)
    padded = np.pad(x, [(pad, pad)] + [(0, 0)] * (x.ndim - 1), mode="reflect")
    out = sum(kernel[i] * padded[i : i + x.shape[0]] for i in range(len(kernel)))
    if np.issubdtype(image.dtype, np.integer):
        info = np.iinfo(image.dtype)
        return np.clip(np.round(out), info.min, info.max).astype(image.dtype)
    return out.astype(image.dtype)


def _cv2_resize(image: np.ndarray, d: int, down: int, up: int) -> np.ndarray:
    height, width = image.shape[:2]
    small = cv2.resize(image, (d, d), interpolation=down)
    out = cv2.resize(small, (width, height), interpolation=up)
    return out.reshape(image.shape)  # cv2 drops a single channel axis


def low_resolution(images, size, method: str = "nearest", rng=None) -> np.ndarray:
    """Degrade ``images`` (``NHWC`` or one ``HWC``, uint8 or float) to ``size`` and back; same shape
    and dtype.

    ``size``: an int or one per image. ``method``: ``"nearest"`` (F-SKD v1), ``"nearest_blur"`` (or
    ``"askd"``: nearest + A-SKD's vertical blur), ``"random"`` (a cv2 interpolation drawn per image and
    direction from ``rng``), ``"linear"``; see the module doc. ``size >= H`` leaves an image unchanged.
    """
    method = degradation_method(method)
    batch, single = _as_batch(images)
    sizes = _sizes(size, len(batch))
    if method == "random" and rng is None:
        rng = np.random.default_rng()
    out = batch.copy()
    height = batch.shape[1]
    for i, d in enumerate(sizes):
        d = int(d)
        if d >= height:
            continue
        if method in BLOCK_METHODS:
            out[i] = _nearest(batch[i], d)
            if method == "nearest_blur":
                out[i] = _vertical_blur(out[i])
        elif method == "linear":
            out[i] = _cv2_resize(batch[i], d, cv2.INTER_LINEAR, cv2.INTER_LINEAR)
        else:
            down, up = (RANDOM_INTERPOLATIONS[int(k)] for k in rng.integers(0, len(RANDOM_INTERPOLATIONS), 2))
            out[i] = _cv2_resize(batch[i], d, down, up)
    return out[0] if single else out


def low_resolution_tf(images, sizes):
    """``"nearest"`` down/up with one size per sample, in TensorFlow ops only (tf.data, XLA).

    ``images``: ``(N, H, W, C)`` (or one ``HWC``), any dtype; ``sizes``: a scalar or ``(N,)`` ints.
    Row ``r`` of a sample with factor ``f = H // d`` takes source row ``(r // f) * f`` (a gather with
    ``batch_dims=1``), the same for columns: equal to :func:`low_resolution` ``(method="nearest")``.
    ``d >= H`` gives ``f = 1`` (unchanged). A size that does not divide ``H`` and ``W`` fails a
    ``tf.debugging`` check (eager and tf.data graphs; XLA compiles the check to a no-op).
    """
    import tensorflow as tf

    images = tf.convert_to_tensor(images)
    single = images.shape.rank == 3
    if single:
        images = images[None]
    shape = tf.shape(images)
    n, height, width = shape[0], shape[1], shape[2]
    sizes = tf.cast(tf.convert_to_tensor(sizes), tf.int32)
    sizes = tf.broadcast_to(tf.reshape(sizes, [-1]), [n])  # a scalar or (N,)
    sizes = tf.minimum(sizes, tf.minimum(height, width))
    checks = [
        tf.debugging.assert_positive(sizes, message="low_resolution_tf: sizes must be positive"),
        tf.debugging.assert_equal(
            (height % sizes) + (width % sizes),
            tf.zeros_like(sizes),
            message="low_resolution_tf: every size must divide the image height and width",
        ),
    ]
    with tf.control_dependencies(checks):
        fy = (height // sizes)[:, None]
        fx = (width // sizes)[:, None]
    rows = (tf.range(height)[None, :] // fy) * fy  # (N, H)
    cols = (tf.range(width)[None, :] // fx) * fx  # (N, W)
    out = tf.gather(images, rows, axis=1, batch_dims=1)
    out = tf.gather(out, cols, axis=2, batch_dims=1)
    return out[0] if single else out


def _flip(images: np.ndarray, flip) -> np.ndarray:
    """Mirror along the width axis; ``flip`` is a bool or one per image of a batch."""
    flags = np.asarray(flip, bool)
    if flags.ndim == 0:
        return images[..., ::-1, :].copy() if flags else images
    if images.ndim != 4 or flags.shape != (len(images),):
        raise ValueError(f"flip must be a bool or one per image, got shape {flags.shape}")
    return np.where(flags[:, None, None, None], images[:, :, ::-1, :], images)


def degrade_pair(
    image, size, flip, order: str = "degrade_then_flip", method: str = "nearest", rng=None
) -> tuple[np.ndarray, np.ndarray]:
    """The (HR, LR) training pair of one sample (or a batch), with the same flip on both (spec §2.1).

    ``order="degrade_then_flip"`` (``"fskd"``, F-SKD v1): degrade the unflipped image, then flip HR
    and LR; ``"flip_then_degrade"`` (``"askd"``): flip first, then degrade (A-SKD flips the loaded
    image before its transform). With nearest sampling the two differ: degrading after the flip keeps
    the top-*right* pixel of every original block.
    """
    order = flip_order(order)
    image = np.asarray(image)
    if order == "degrade_then_flip":
        lr = low_resolution(image, size, method, rng)
        return _flip(image, flip), _flip(lr, flip)
    hr = _flip(image, flip)
    return hr, low_resolution(hr, size, method, rng)


__all__ = [
    "ASKD_SIGMA",
    "ASKD_VERTICAL_KERNEL",
    "BLOCK_METHODS",
    "METHODS",
    "METHOD_NAMES",
    "ORDERS",
    "ORDER_NAMES",
    "RANDOM_INTERPOLATIONS",
    "askd_blur_kernel",
    "degradation_method",
    "degrade_pair",
    "draw_down_sizes",
    "flip_order",
    "gaussian_kernel1d",
    "low_resolution",
    "low_resolution_tf",
    "resolution_ladder",
    "samples_blocks",
]
