"""SynthFaces: procedural faces with exact ground truth, written in the real datasets' formats.

No real face dataset can be downloaded in the environments kdface is developed in, so kdface renders
its own: cartoon-like but structured faces drawn with OpenCV (anti-aliased shapes, skin tone,
lighting, hair, background clutter, noise, blur). Every quantity a model is trained on is known
exactly because it is computed from the generator's own geometry:

* **68 landmarks** (300W convention, see :mod:`kdface.tasks.landmarks.points`) are samples of the very
  parametric curves that are drawn (jaw contour, brow top edges, eyelids, nose bridge and base,
  lip contours), pushed through the same pose transform.  Point 0 is on the image's left (the
  subject's right), point 36 is the outer corner of the eye on the image left.
* **7 basic expressions** in RAF-DB order (1 Surprise, 2 Fear, 3 Disgust, 4 Happiness, 5 Sadness,
  6 Anger, 7 Neutral), each a change of geometry (brows, eyelids, mouth, nose wrinkle, folds) with
  per-image intensity jitter.
* **Identities**: persistent parameter sets (face shape, features, skin, hair) drawn from
  ``(seed, identity id)``.
* **Occluders** (sunglasses, medical mask, hand, hair, textured objects) drawn after the face with
  an exact binary mask (255 = occluded) and per-landmark occlusion flags.
* **Neutral/expressive pairs**: for every identity at least one pair of RAF-DB images sharing pose,
  lighting, background and occluder, one Neutral and one with another expression.
* **CK+ sequences** (:mod:`.ckplus`): subjects of their own filmed from a neutral onset to the peak of
  an expression (7 CK+ emotions, contempt included), in CK+'s layout with its emotion and landmark files.

Canonical face frame
--------------------
Shapes are built in a canonical frame: ``x`` to the image right, ``y`` down, the origin between
the eye centres, one unit = half the face width (``jaw 0 -> jaw 16`` is about 2 units).  A point
also gets a depth ``z`` (a head ellipsoid plus a per-feature offset, e.g. the nose tip sticks out).
The pose maps canonical points to kdface pixels: yaw (rotation about the vertical axis, which
squashes one side of the face), then roll, scale and shift around an anchor.  Drawing and
landmarks use the same function, so the landmarks sit exactly on the drawn features (up to the
1/16 px fixed-point precision of OpenCV's drawing).

On-disk layout (``generate``)
-----------------------------
::

    <root>/300w/{lfpw,helen}/{trainset,testset}/, 300w/afw/, 300w/ibug/   image_00001.png + .pts
    <root>/masks/300w/<same folders>/image_00001.png                       occluded images only
    <root>/rafdb/EmoLabel/list_patition_label.txt                          (sic, the real name)
    <root>/rafdb/Image/aligned/train_00001_aligned.jpg, test_0001_aligned.jpg   100x100
    <root>/rafdb/masks/train_00001_aligned.png                             occluded images only
    <root>/rafdb/metadata.csv
    <root>/rafdb/rafdb_occlusion_list.txt     RAN Occlusion-RAF-DB format, CRLF: "test_0003_aligned 3 4"
                                              = occluded test image, RAF label 0..6, OCCLUDER_TYPES index
    <root>/identities/00012/000.jpg               CASIA-WebFace style 112x112, train identities only
    <root>/identities_test/00003/000.jpg          the held-out (test) identities' folders
    <root>/masks/identities/00012/000.png, masks/identities_test/...       occluded images only
    <root>/verification/synthface.bin             InsightFace verification .bin of held-out identities:
                                                  10 folds, each P/20 same then P/20 different pairs
    <root>/verification/synthface_pairs.csv       pair, fold, left, right, issame, left/right identity
    <root>/ckplus/cohn-kanade-images/S005/001/S005_001_00000001.png   CK+ layout, grey frames
    <root>/ckplus/Emotion/S005/001/S005_001_00000008_emotion.txt       labelled sequences' CK+ code
    <root>/ckplus/Landmarks/S005/001/S005_001_00000001_landmarks.txt   every frame's 68 points
    <root>/ckplus/metadata.csv                    one row per CK+ frame
    <root>/metadata.csv          one row per image of the 300W / RAF-DB / identity trees
    <root>/landmarks.npz         paths, (N, 68, 2) landmarks (kdface pixels), (N, 68) occlusion flags
    <root>/synthfaces.json       the config; written last, marks a complete run

Test identities (300W common/challenging, RAF-DB test, identities_test/, the verification pairs) are
disjoint from train identities (a folder reader of identities/ sees train identities only). RAF-DB
test images are occluded more often (``rafdb_test_occlusion_fraction``, default 0.5) than the rest
(``occlusion_fraction``), so that the occlusion list, SynthFaces' Occlusion-RAF-DB, is large enough.
Everything is deterministic: each image's random stream is seeded from ``(seed, tree, index)``,
so the bytes do not depend on the number of worker processes.

CLI: ``python -m kdface.data.synthfaces --out datasets/synthfaces --preset demo`` (``faceid``: the
face-identification preset, see :meth:`SynthFacesConfig.faceid`).

Modules
-------
:mod:`.params` (what determines one rendering), :mod:`.sampling` (identities, expressions, poses),
:mod:`.geometry` (canonical curves, landmarks, pose projection), :mod:`.canvas` (batched OpenCV
drawing), :mod:`.person` (drawing the person), :mod:`.occluders`, :mod:`.render` (``render_face``),
:mod:`.config` (``SynthFacesConfig``), :mod:`.plan` (which image goes where), :mod:`.writers`
(``generate``) and :mod:`.cli`.
"""

from kdface.data.synthfaces.ckplus import CKPLUS_DIR, plan_ckplus, render_sequence
from kdface.data.synthfaces.cli import main
from kdface.data.synthfaces.config import (
    CKPLUS_FIELDS,
    SynthFacesConfig,
    held_out_folder_identities,
    identity_split,
)
from kdface.data.synthfaces.geometry import face_landmarks
from kdface.data.synthfaces.occluders import landmark_occlusion
from kdface.data.synthfaces.params import (
    EXPRESSION_NAMES,
    OCCLUDER_TYPES,
    Expression,
    FaceParams,
    Identity,
    Pose,
    mirror_params,
)
from kdface.data.synthfaces.params import HAIR_STYLES as HAIR_STYLES
from kdface.data.synthfaces.params import NEUTRAL as NEUTRAL
from kdface.data.synthfaces.params import Color as Color
from kdface.data.synthfaces.plan import IDENTITY_TREES as IDENTITY_TREES
from kdface.data.synthfaces.plan import W300_FOLDERS as W300_FOLDERS
from kdface.data.synthfaces.plan import VerificationPair, plan_verification_pairs
from kdface.data.synthfaces.plan import _job_params as _job_params
from kdface.data.synthfaces.plan import _plan as _plan
from kdface.data.synthfaces.render import render_face
from kdface.data.synthfaces.sampling import sample_expression, sample_identity, sample_pose
from kdface.data.synthfaces.writers import GENERATOR_VERSION, generate
from kdface.data.synthfaces.writers import METADATA_COLUMNS as METADATA_COLUMNS
from kdface.data.synthfaces.writers import OCCLUSION_LIST as OCCLUSION_LIST
from kdface.data.synthfaces.writers import VERIFICATION_BIN as VERIFICATION_BIN
from kdface.data.synthfaces.writers import VERIFICATION_PAIRS_CSV as VERIFICATION_PAIRS_CSV

# The "X as X" imports above are re-exports outside __all__ (importable from here as from the former
# single module): the on-disk format's constants and the plan steps tests use to re-render an image.
__all__ = [
    "CKPLUS_DIR",
    "CKPLUS_FIELDS",
    "EXPRESSION_NAMES",
    "GENERATOR_VERSION",
    "OCCLUDER_TYPES",
    "Expression",
    "FaceParams",
    "Identity",
    "Pose",
    "SynthFacesConfig",
    "VerificationPair",
    "face_landmarks",
    "generate",
    "held_out_folder_identities",
    "identity_split",
    "landmark_occlusion",
    "main",
    "mirror_params",
    "plan_ckplus",
    "plan_verification_pairs",
    "render_face",
    "render_sequence",
    "sample_expression",
    "sample_identity",
    "sample_pose",
]
