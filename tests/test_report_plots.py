"""Pictures a newcomer reads without the report beside them: the CED plot (a colour per model, a line
style per split, NME in %, legend off the curves), overlay grids and photo overlays with a title and key."""

import json

import cv2
import numpy as np
import pytest

from kdface.metrics import plot_ced
from kdface.metrics.landmarks import ced_figure
from kdface.report import (
    CROP_BOX_COLOR,
    FACE_BOX_COLOR,
    GT_COLOR,
    PRED_COLOR,
    draw_box,
    key_panel,
    overlay_grid,
    photo_overlay,
)
from kdface.tasks.landmarks.evaluation import normaliser_name, normaliser_notes

MODELS = ("kd", "no_kd", "tough", "tolerant")
SPLITS = ("common", "challenging", "full")


def _curves():
    rng = np.random.default_rng(0)
    return {(m, s): rng.gamma(4.0, (0.03 + 0.005 * i + 0.01 * j) / 4, 200)
            for i, m in enumerate(MODELS) for j, s in enumerate(SPLITS)}  # fmt: skip


def _has_color(image, color) -> bool:
    return bool(np.all(image.reshape(-1, 3) == np.asarray(color, np.uint8), axis=1).any())


# --- CED ----------------------------------------------------------------------------------------


def test_ced_colour_per_model_style_per_split_and_percent_axis():
    fig = ced_figure(_curves())
    ax = fig.axes[0]
    lines = ax.get_lines()
    assert len(lines) == 12
    colours = {}
    for line, (model, split) in zip(lines, _curves(), strict=True):
        colours.setdefault(model, set()).add(tuple(np.round(line.get_color(), 4)))
        assert line.get_label().startswith(f"{model} ({split}): NME ")
    assert all(len(c) == 1 for c in colours.values())  # one colour per model...
    assert len(set().union(*colours.values())) == 4  # ...and no two models share one
    styles = [line.get_linestyle() for line in lines]
    assert len(set(styles)) == 3 and styles[:3] == styles[3:6] == styles[9:12]
    # x in percent: NMEs around 0.05 -> curves reach x values far above 1, up to the 10% threshold
    assert max(line.get_xdata().max() for line in lines) == pytest.approx(10.0)
    assert ax.get_xlim() == pytest.approx((0.0, 10.0))
    assert "%" in ax.get_xlabel()


def test_ced_legend_outside_the_axes():
    fig = ced_figure(_curves())
    fig.canvas.draw()
    ax = fig.axes[0]
    legend, axes_box = ax.get_legend().get_window_extent(), ax.get_window_extent()
    assert legend.x0 >= axes_box.x1  # right of the plotting area: hides no curve
    assert legend.x1 <= fig.bbox.x1 + 1  # and not cut off by the figure edge


def test_ced_many_models_keep_distinct_colours():
    fig = ced_figure({f"model{i}": np.full(5, 0.01 * (i + 1)) for i in range(14)})
    assert len({tuple(np.round(line.get_color(), 4)) for line in fig.axes[0].get_lines()}) == 14


def test_plot_ced_png_is_wide_enough_for_the_legend(tmp_path):
    path = plot_ced(_curves(), tmp_path / "ced.png", xlabel="NME (% of inter-ocular distance)")
    image = cv2.imread(str(path))
    assert image is not None and image.shape[1] > image.shape[0]


# --- overlay grids and keys -------------------------------------------------------------------------


def test_overlay_grid_has_title_and_key_header():
    images = np.full((10, 64, 48, 3), 0.5, np.float32)
    pred = np.full((10, 68, 2), 20.0)
    grid = overlay_grid(images, pred, pred + 1, cols=4, title="kd on synthface common")
    tiles_h = 3 * 192  # short side 48 -> scale 3 -> 192 x 144 tiles, 3 rows
    assert grid.shape[1] == 4 * 144 and grid.shape[0] > tiles_h
    header = grid[: grid.shape[0] - tiles_h]
    assert _has_color(header, GT_COLOR) and _has_color(header, PRED_COLOR)
    assert _has_color(header, (255, 255, 255))  # the title's text
    # the tiles are below the header, untouched by it
    assert np.all(grid[-tiles_h:][:10, :10] == 128)


def test_overlay_grid_without_ground_truth_keys_only_the_prediction():
    grid = overlay_grid(np.zeros((2, 32, 32, 3), np.uint8), np.full((2, 5, 2), 10.0))
    header = grid[: grid.shape[0] - 128]
    assert _has_color(header, PRED_COLOR) and not _has_color(header, GT_COLOR)


def test_key_panel_wraps_a_long_title_on_a_narrow_grid():
    one_line = key_panel(1000, [("prediction", PRED_COLOR, "dot")], "a long title " * 3)
    wrapped = key_panel(128, [("prediction", PRED_COLOR, "dot")], "a long title " * 3)
    assert wrapped.shape[1] == 128 and wrapped.shape[0] > one_line.shape[0]


def test_draw_box_outlines_the_box_edge():
    img = draw_box(np.zeros((20, 20, 3), np.uint8), (5, 5, 15, 15), FACE_BOX_COLOR, thickness=1)
    assert img[5, 5:15, 0].min() > 100 and img[5:15, 14, 0].min() > 100  # top row, right column
    assert img[10, 10].max() == 0 and img[0, 0].max() == 0 and img[18, 18].max() == 0


def test_photo_overlay_draws_both_boxes_and_the_key():
    photo = np.full((200, 300, 3), 90, np.uint8)
    out = photo_overlay(photo, [(100, 60, 160, 120)], [(90, 55, 170, 135)], [np.full((68, 2), 130.0)],
                        labels=["happy 80%"], title="m on photo.jpg")  # fmt: skip
    header = out.shape[0] - 200
    assert out.shape[1] == 300 and header > 0
    body = out[header:]
    assert _has_color(body[60:62, 100:160], FACE_BOX_COLOR)
    assert _has_color(body[55:57, 90:170], CROP_BOX_COLOR)
    assert _has_color(body, PRED_COLOR)
    for color in (FACE_BOX_COLOR, CROP_BOX_COLOR, PRED_COLOR):
        assert _has_color(out[:header], color)


# --- report notes ---------------------------------------------------------------------------------


def test_normaliser_names_and_notes():
    assert normaliser_name([36, 45], 68) == "inter-ocular distance: outer eye corners, points 36 and 45"
    assert normaliser_name((96, 97), 98).startswith("inter-pupil distance")
    assert normaliser_name((3, 7), 68) == "distance between points 3 and 7"
    results = {
        "a": {"dataset": "synthface", "normaliser_name": normaliser_name((36, 45), 68)},
        "b": {"dataset": "synthface", "normaliser_name": normaliser_name((36, 45), 68)},
        "c": {"dataset": "wflw", "normaliser_name": normaliser_name((96, 97), 98)},
    }
    notes = normaliser_notes(results).splitlines()
    assert notes == [
        "- NME normaliser on synthface (a, b): inter-ocular distance: outer eye corners, points 36 and 45.",
        "- NME normaliser on wflw (c): inter-pupil distance: pupils, points 96 and 97.",
    ]


# --- photo mode -----------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def astronaut(tmp_path_factory):
    from skimage import data as skdata

    path = tmp_path_factory.mktemp("photo") / "astronaut.jpg"
    cv2.imwrite(str(path), cv2.cvtColor(skdata.astronaut(), cv2.COLOR_RGB2BGR))
    return path


def _tiny_model(path, size, outputs, card, activation=None):
    import keras

    inputs = keras.Input((size, size, 3))
    hidden = keras.layers.GlobalAveragePooling2D()(inputs)
    keras.Model(inputs, keras.layers.Dense(outputs, activation=activation)(hidden)).save(path)
    path.with_suffix(".json").write_text(json.dumps(card))
    return path


def _check_photo_result(result, photo):
    assert len(result["faces"]) >= 1
    face = result["faces"][0]
    fx0, fy0, fx1, fy1 = face["face_box"]
    cx0, cy0, cx1, cy1 = face["box"]
    assert cx0 < fx0 and fx1 < cx1 and fx1 - fx0 > 30  # the crop pads the detected face
    overlay = cv2.cvtColor(cv2.imread(result["overlay"]), cv2.COLOR_BGR2RGB)
    h, w = cv2.imread(str(photo)).shape[:2]
    body = overlay[overlay.shape[0] - h :]
    assert overlay.shape[1] == w and overlay.shape[0] > h  # a header band above the photo
    # PNG is lossless: the box outlines keep their exact colours where the detector put them
    for y0, y1, x0, color in ((fy0, fy1, fx0, FACE_BOX_COLOR), (cy0, cy1, cx0, CROP_BOX_COLOR)):
        left_edge = body[int(y0) + 3 : int(y1) - 3, int(x0) : int(x0) + 2]
        assert np.all(left_edge == color, axis=-1).any(axis=1).mean() > 0.9
    return face, body


def test_landmark_photo_mode_draws_and_lists_the_face_box(tmp_path, astronaut):
    from kdface.tasks.landmarks.evaluation import predict_photo

    card = {"task": "landmarks", "num_points": 68, "normaliser": [36, 45], "image_size": 64,
            "crop": {"pad_px": 0.0, "pad_frac": 0.08, "union_dataset_box": False}}  # fmt: skip
    model = _tiny_model(tmp_path / "m.keras", 64, 136, card)
    result = predict_photo(model, astronaut, tmp_path / "out")
    face, body = _check_photo_result(result, astronaut)
    assert np.asarray(face["landmarks"]).shape == (68, 2)
    assert _has_color(body, PRED_COLOR)
    assert json.loads((tmp_path / "out" / "astronaut_landmarks.json").read_text())["faces"][0]["face_box"]


def test_expression_photo_mode_draws_and_lists_the_face_box(tmp_path, astronaut):
    from kdface.tasks.expressions.evaluation import predict_photo

    model = _tiny_model(tmp_path / "e.keras", 48, 7, {"task": "expressions"}, activation="softmax")
    result = predict_photo(model, astronaut, tmp_path / "out")
    face, _ = _check_photo_result(result, astronaut)
    assert face["expression"] in face["probabilities"]
