"""A-SKD: attention similarity knowledge distillation for low-resolution face recognition ("Teaching Where
to Look", Shin et al., ECCV 2022; spec ``fskd_lowres_fr.md`` §1.2, §3.2).

``python train_student.py --method askd --teacher T.keras --down-size ...`` distils the teacher's CBAM
attention maps (channel and spatial, every block) into a student of the same CBAM-iResNet. Which loss
follows from the teacher's CBAM:

* ``--cbam askd`` teacher (the ECCV code's CBAM: 3x3 spatial conv, maps taken before the sigmoid):
  the original's sum over all blocks of [(1 - cos) channel + (1 - cos) spatial], weight beta = 5;
* ``--cbam fskd`` teacher (the F-SKD repo's CBAM: 7x7 conv + BN, maps after the sigmoid): the F-SKD
  repo's A-SKD, the mean over blocks of half that sum, weight 80 (its later scripts); the "A-SKD" rows
  of the F-SKD paper's tables come from this variant.

Teachers come from ``python train_teacher.py --method fskd --mode cbam --cbam askd|fskd``.
"""

from __future__ import annotations

import dataclasses

from kdface.backbones.contract import attention_maps
from kdface.errors import ConfigError
from kdface.losses import attention_similarity_loss
from kdface.methods import Method, Role, register_method
from kdface.tasks.recognition.training import Distillation, StudentConfig, train_lowres_student

# By the teacher's CBAM: how the per-map terms are reduced and their weight (ECCV: summed, beta 5 per
# map; F-SKD repo: averaged, lambda 80).
REDUCTIONS = {"askd": "sum", "fskd": "mean"}
WEIGHTS = {"askd": 5.0, "fskd": 80.0}


def _check(backbone, source) -> None:
    if not attention_maps(backbone.output):
        raise ConfigError(f"--teacher {source} has no CBAM attention maps; A-SKD needs a CBAM teacher: python "
                          "train_teacher.py --method fskd --mode cbam --cbam askd")  # fmt: skip


def _loss(reduction):
    def askd_loss(student, teacher):
        return attention_similarity_loss(
            attention_maps(student), attention_maps(teacher), reduction=reduction
        )

    return askd_loss


@dataclasses.dataclass
class ASKDConfig(StudentConfig):
    pass


def train_student(config: ASKDConfig, out=None, run_dir=None, options=None):
    from kdface.io.cards import read_model_card
    from kdface.io.paths import require_file

    require_file(
        config.teacher,
        "--teacher",
        hint="a CBAM teacher from python train_teacher.py --method fskd --mode cbam",
    )
    attention = read_model_card(config.teacher).get("architecture", {}).get("attention", "none")
    if attention not in ("cbam_askd", "cbam_fskd"):
        raise ConfigError(f"--teacher {config.teacher} has no CBAM (its card says attention {attention!r}); A-SKD "
                          "needs a CBAM teacher: python train_teacher.py --method fskd --mode cbam --cbam askd")  # fmt: skip
    variant = attention.removeprefix("cbam_")
    distillation = Distillation(
        f"askd ({variant} CBAM)", _loss(REDUCTIONS[variant]), "attention similarity (A-SKD)", _check
    )
    return train_lowres_student(config, distillation, method="askd", defaults={"distill_weight": WEIGHTS[variant]},
                                out=out, run_dir=run_dir, options=options)  # fmt: skip


register_method(Method(
    name="askd", task="recognition",
    summary="A-SKD low-resolution face recognition: CBAM attention similarity distillation (student)",
    roles={"student": Role(ASKDConfig, train_student)},
    instead="A-SKD distils a CBAM teacher: python train_teacher.py --method fskd --mode cbam --cbam askd",
))  # fmt: skip
