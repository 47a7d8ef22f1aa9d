"""Face-identity pretraining for any backbone: the face-pretrained start the other methods' papers assume.

The expression and landmark papers start from networks pretrained on face identities (MS-Celeb-1M,
VGGFace2), which cannot be downloaded here. ``python train_teacher.py --method face-id --backbone
resnet18 --dataset synthface`` trains any registered backbone (ResNet-18/50, iResNet, MobileNetV2/V3,
EfficientNet-B3) on identity folders with a margin head (CosFace by default), exactly as a recognition
teacher is trained. The saved model is the embedding network; its backbone is what every other
method loads with ``--backbone-weights models/teachers/synthface_faceid_resnet18.keras`` (strict name
and shape matching: a different backbone or layout is an error listing the mismatched layers).

Pretrain at the image size the later method uses when the backbone's weights depend on it (an
iResNet ``fc`` head); convolutional backbones with a pooled embedding load at any size.
"""

from __future__ import annotations

import dataclasses

from kdface.methods import Method, Role, register_method
from kdface.tasks.recognition.training import RecognitionConfig, train_recognizer


@dataclasses.dataclass
class FaceIDConfig(RecognitionConfig):
    pass


def train_face_id(config: FaceIDConfig, out=None, run_dir=None, options=None):
    config = config.resolved("teacher")
    return train_recognizer(config, method="face-id", name=f"faceid_{config.backbone}_{config.image_size}px",
                            out=out, run_dir=run_dir, options=options)  # fmt: skip


register_method(Method(
    name="face-id", task="recognition",
    summary="face-identity pretraining of any backbone (margin head on identity folders); its backbone "
            "initialises any method through --backbone-weights",
    roles={"teacher": Role(FaceIDConfig, train_face_id)},
    instead="face-id pretrains a backbone: python train_teacher.py --method face-id --backbone resnet18",
))  # fmt: skip
