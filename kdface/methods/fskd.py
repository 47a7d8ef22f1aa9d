"""F-SKD: low-resolution face recognition by feature similarity knowledge distillation (Shin, Yu, Lee,
arXiv 2303.04681, v1 code: spec ``fskd_lowres_fr.md``).

* ``python train_teacher.py --method fskd --mode ir|cbam --down-size 0`` trains the HR teacher (iResNet
  + CosFace, cross-entropy only); ``--down-size 1|14|28|56`` trains the same network on low-resolution
  views without distillation: the paper's "naive" baselines.
* ``python train_student.py --method fskd --teacher T.keras --down-size 1|14|...`` trains a freshly
  initialised network of the teacher's architecture on the low-resolution view, the frozen teacher on
  the HR view of the same sample, with CE + 20 x mean over the four stages of mean_batch(1 - cos) of
  the flattened stage maps (:func:`kdface.losses.feature_similarity_loss`).

Departures from the v1 code (docs/fskd.md): the run length is whole epochs (25 epochs ~ 47.9k
iterations at batch 256 against v1's 47,001); class ids come from sorted folder names (v1: os.listdir
order); every batch is full (v1 keeps the last, smaller one).
"""

from __future__ import annotations

import dataclasses

from kdface.backbones.contract import STAGES
from kdface.losses import feature_similarity_loss
from kdface.methods import Method, Role, register_method
from kdface.tasks.recognition.training import (
    Distillation,
    RecognitionConfig,
    StudentConfig,
    train_lowres_student,
    train_recognizer,
)

FSKD_WEIGHT = 20.0  # v1 run scripts: --distill_param 20


def fskd_distillation_loss(student, teacher):
    return feature_similarity_loss([student[k] for k in STAGES], [teacher[k] for k in STAGES])


FSKD = Distillation("fskd", fskd_distillation_loss, "feature similarity of the four stage maps (F-SKD)")


def train_teacher(config: RecognitionConfig, out=None, run_dir=None, options=None):
    config = config.resolved("teacher")
    name = f"fskd_{config.backbone}_{config.mode}{'_' + config.cbam if config.mode == 'cbam' else ''}_{config.resolution_tag()}"
    return train_recognizer(config, method="fskd", name=name, out=out, run_dir=run_dir, options=options)


def train_student(config: StudentConfig, out=None, run_dir=None, options=None):
    return train_lowres_student(config, FSKD, method="fskd", defaults={"distill_weight": FSKD_WEIGHT}, out=out,
                                run_dir=run_dir, options=options)  # fmt: skip


@dataclasses.dataclass
class FSKDStudentConfig(StudentConfig):
    pass


register_method(Method(
    name="fskd", task="recognition",
    summary="F-SKD low-resolution face recognition: HR teacher / no-KD LR network (teacher), feature "
            "similarity distillation (student)",
    roles={"teacher": Role(RecognitionConfig, train_teacher), "student": Role(FSKDStudentConfig, train_student)},
))  # fmt: skip
