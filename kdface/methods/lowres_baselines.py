"""The distillation baselines the later F-SKD code compares against (spec ``fskd_lowres_fr.md`` §3.4), each
a student method over the same frozen HR teacher and low-resolution student as F-SKD:

* ``fitnet``: mean over the four stages of the MSE between the stage maps (lambda 1.5);
* ``at``: attention transfer, the MSE of the L2-normalised channel-energy maps, mean over stages
  (lambda 1000);
* ``rkd``: relational KD on the embeddings, distance + 2 x angle, smooth-L1 (lambda 40);
* ``logit-kd``: T^2 KL(teacher || student) of the margin-head logits at T = 4 (weight 1), needing the
  teacher's margin head, which ``train_teacher.py`` writes beside the teacher (``<teacher>.margin.npz``).

``python train_student.py --method fitnet --teacher T.keras --down-size 14``. Hint layers (the HEAD code's
optional conv1x1 + BN on student stages) are not built: teacher and student share one architecture.
"""

from __future__ import annotations

import dataclasses

from kdface.backbones.contract import STAGES
from kdface.losses import attention_transfer_loss, fitnet_loss, logit_kd_loss, rkd_loss
from kdface.methods import Method, Role, register_method
from kdface.tasks.recognition.training import Distillation, StudentConfig, train_lowres_student


def _stages(outputs):
    return [outputs[k] for k in STAGES]


BASELINES = {
    "fitnet": (Distillation("fitnet", lambda s, t: fitnet_loss(_stages(s), _stages(t)), "FitNet: stage-map MSE"), 1.5),
    "at": (Distillation("at", lambda s, t: attention_transfer_loss(_stages(s), _stages(t)),
                        "attention transfer: normalised channel-energy maps"), 1000.0),
    "rkd": (Distillation("rkd", lambda s, t: rkd_loss(s["embedding"], t["embedding"]),
                         "relational KD on the embeddings (distance + angle)"), 40.0),
    "logit-kd": (Distillation("logit-kd", lambda s, t: logit_kd_loss(s["logits"], t["logits"]),
                              "KD of the margin-head logits (T = 4)", needs_teacher_head=True), 1.0),
}  # fmt: skip


def _register(name: str, distillation: Distillation, weight: float) -> None:
    config_cls = dataclasses.make_dataclass(
        f"{name.title().replace('-', '')}StudentConfig", [], bases=(StudentConfig,)
    )

    def train(config, out=None, run_dir=None, options=None):
        return train_lowres_student(config, distillation, method=name, defaults={"distill_weight": weight}, out=out,
                                    run_dir=run_dir, options=options)  # fmt: skip

    register_method(Method(
        name=name, task="recognition", summary=f"low-resolution recognition baseline: {distillation.summary}",
        roles={"student": Role(config_cls, train)},
        instead=f"{name} is a distillation baseline for students; teachers: python train_teacher.py --method fskd",
    ))  # fmt: skip


for _name, (_distillation, _weight) in BASELINES.items():
    _register(_name, _distillation, _weight)
