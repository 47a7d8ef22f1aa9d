"""IResNet backbone + converter: a hand-built insightface-layout IResNet-18 in torch with random
weights, BN statistics and PReLU slopes, converted, gives the same layer-4 map and embedding in Keras;
``--drop-fc``; the fixed ``features`` gamma; strict names."""

from __future__ import annotations

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from kdface.backbones import build_iresnet  # noqa: E402
from kdface.convert import convert, load_into  # noqa: E402
from kdface.convert.__main__ import main as convert_main  # noqa: E402
from kdface.convert.torch_resnet import iresnet_tensor_count  # noqa: E402
from kdface.errors import DataFormatError  # noqa: E402

TOL = 1e-4


# --- insightface arcface_torch's IResNet, rebuilt; same module names -------------------------------------
class IBasicBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        return out + identity


class TorchIResNet(nn.Module):
    def __init__(self, layers=(2, 2, 2, 2), image_size=112):
        super().__init__()
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
            downsample = nn.Sequential(
                nn.Conv2d(self.inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-05)
            )
            blocks = [IBasicBlock(self.inplanes, planes, 2, downsample)]
            blocks += [IBasicBlock(planes, planes) for _ in range(1, count)]
            self.inplanes = planes
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
        self.dropout = nn.Dropout(0.0)
        side = image_size // 16
        self.fc = nn.Linear(512 * side * side, 512)
        self.features = nn.BatchNorm1d(512, eps=1e-05)
        nn.init.constant_(self.features.weight, 1.0)
        self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        x = self.layer4(self.layer3(self.layer2(self.layer1(x))))
        embedding = self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))
        return x, embedding


def random_torch_iresnet(seed=0, image_size=112):
    torch.manual_seed(seed)
    net = TorchIResNet(image_size=image_size)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                if m is not net.features:
                    m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
            elif isinstance(m, nn.Conv2d):  # unit gain: activations stay O(1) through 8 residual blocks
                m.weight.normal_(0.0, m.weight[0].numel() ** -0.5)
    return net.eval()


def compare(net, model, size, seed=1):
    image = np.random.default_rng(seed).random((1, size, size, 3), dtype=np.float32)
    normalised = (image - 0.5) / 0.5  # arcface normalisation
    with torch.no_grad():
        fmap, emb = net(torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy()))
    fmap = fmap.numpy().transpose(0, 2, 3, 1)
    outputs = model(image, training=False)
    features, embedding = np.asarray(outputs["feature_map"]), np.asarray(outputs["embedding"])
    assert features.shape == fmap.shape and embedding.shape == emb.shape == (1, 512)
    assert np.abs(fmap).max() > 0.1 and np.abs(emb.numpy()).max() > 0.1
    diffs = np.abs(features - fmap).max(), np.abs(embedding - emb.numpy()).max()
    print(f"{model.name} {size} px: max |layer4| {np.abs(fmap).max():.3g}, max abs diffs {diffs}")
    return max(float(d) for d in diffs)


@pytest.fixture(scope="module")
def ir18():
    return random_torch_iresnet()


def test_iresnet18_checkpoint_matches_torch(ir18, tmp_path):
    path = tmp_path / "backbone.pth"
    torch.save({"module." + k: v for k, v in ir18.state_dict().items()}, path)
    out = tmp_path / "iresnet18.npz"
    report = convert(path, 18, out, arch="iresnet", image_size=112)
    assert report.matched == iresnet_tensor_count(18) == 155
    assert "features.weight" in report.dropped  # checked to be 1, fixed in the model
    model = build_iresnet(18, image_size=112, weights=str(out))
    assert compare(ir18, model, 112) <= TOL


def test_drop_fc_for_another_input_size(ir18, tmp_path, capsys):
    """SCN's third-party code loads 112 px ArcFace weights into a 224 px model with fc.* skipped."""
    path = tmp_path / "backbone.pth"
    torch.save(ir18.state_dict(), path)
    with pytest.raises(DataFormatError, match=r"fc.weight \(512, 25088\) != model \(512, 18432\)"):
        convert(path, 18, tmp_path / "wrong.npz", arch="iresnet", image_size=96)
    out = tmp_path / "no_fc.npz"
    convert_main(["iresnet", "--depth", "18", "--checkpoint", str(path), "--out", str(out), "--drop-fc"])
    assert "matched 153 tensors" in capsys.readouterr().out
    model = build_iresnet(18, image_size=96, weights=str(out))
    assert "fc were left out at conversion" in capsys.readouterr().out
    for name in ("conv1", "layer3.1.conv2", "features"):
        expected = ir18.state_dict()[f"{name}.weight" if name != "features" else "features.bias"].numpy()
        got = model.get_layer(name).get_weights()[0]
        got = got.transpose(3, 2, 0, 1) if got.ndim == 4 else got
        np.testing.assert_allclose(got, expected, atol=1e-7)


def test_features_gamma_must_be_one_and_names_are_strict(ir18, tmp_path):
    model = build_iresnet(18, image_size=112)
    state = {k: v.clone() for k, v in ir18.state_dict().items()}
    state["features.weight"] = state["features.weight"] * 2
    with pytest.raises(DataFormatError, match="features.weight must be all ones"):
        load_into(model, state, "trained.pth", dropped_prefixes=())
    state = dict(ir18.state_dict())
    state.pop("layer2.1.prelu.weight")
    state["head.weight"] = torch.zeros(3)
    with pytest.raises(
        DataFormatError, match=r"missing 1: \[layer2.1.prelu.weight\].*unexpected 1: \[head.weight\]"
    ):
        load_into(model, state, "odd.pth", dropped_prefixes=())
    report = load_into(model, ir18.state_dict(), "ok.pth", dropped_prefixes=())
    assert report.matched == 155


def test_build_iresnet_shapes_and_arguments():
    model = build_iresnet(18, image_size=96, head="pool", normalization="imagenet")
    fmap, emb = model.output["feature_map"], model.output["embedding"]
    assert tuple(fmap.shape) == (None, 6, 6, 512) and tuple(emb.shape) == (None, 512)
    assert [model.get_layer(f"layer{i}_out").output.shape[1] for i in range(1, 5)] == [48, 24, 12, 6]
    with pytest.raises(ValueError, match="multiple of 16"):
        build_iresnet(18, image_size=100)
    with pytest.raises(ValueError, match="unknown IResNet depth"):
        build_iresnet(20)
