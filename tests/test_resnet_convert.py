"""ResNet backbone + torch checkpoint converter: a hand-built torchvision-layout ResNet in torch with
random weights and BN statistics, converted, gives the same layer-4 map in Keras; strict name checks;
safe checkpoint loading; ``.keras`` round trip."""

from __future__ import annotations

import io
import pickle
import struct
import subprocess
import sys

import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn

from kdface.backbones import build_resnet  # noqa: E402
from kdface.backbones.resnet import IMAGENET_MEAN, IMAGENET_STD  # noqa: E402
from kdface.convert import convert, expected_tensor_count, load_into, read_state_dict  # noqa: E402
from kdface.errors import DataFormatError, UnsafeFileError  # noqa: E402
from kdface.io.safe_load import load_keras_model, load_torch_checkpoint  # noqa: E402

TOL = 1e-4


# --- torchvision's ResNet, rebuilt (no torchvision in the environment); same module names ---------------
class BasicBlock(nn.Module):
    expansion = 1

    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.conv1 = nn.Conv2d(inplanes, planes, 3, stride, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        return self.relu(self.bn2(self.conv2(out)) + identity)


class Bottleneck(nn.Module):
    expansion = 4

    def __init__(self, inplanes, planes, stride=1, downsample=None, stride_on="3x3"):
        super().__init__()
        s1, s3 = (1, stride) if stride_on == "3x3" else (stride, 1)
        self.conv1 = nn.Conv2d(inplanes, planes, 1, s1, bias=False)
        self.bn1 = nn.BatchNorm2d(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, s3, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes)
        self.conv3 = nn.Conv2d(planes, planes * 4, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes * 4)
        self.relu = nn.ReLU()
        self.downsample = downsample

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.relu(self.bn1(self.conv1(x)))
        out = self.relu(self.bn2(self.conv2(out)))
        return self.relu(self.bn3(self.conv3(out)) + identity)


class TorchResNet(nn.Module):
    def __init__(self, depth, stride_on="3x3", num_classes=1000):
        super().__init__()
        block, layers = {18: (BasicBlock, [2, 2, 2, 2]), 50: (Bottleneck, [3, 4, 6, 3])}[depth]
        extra = {"stride_on": stride_on} if block is Bottleneck else {}
        self.inplanes = 64
        self.conv1 = nn.Conv2d(3, 64, 7, 2, 3, bias=False)
        self.bn1 = nn.BatchNorm2d(64)
        self.relu = nn.ReLU()
        self.maxpool = nn.MaxPool2d(3, 2, 1)
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
            stride = 1 if i == 1 else 2
            blocks = []
            for j in range(count):
                downsample = None
                if j == 0 and (stride != 1 or self.inplanes != planes * block.expansion):
                    downsample = nn.Sequential(
                        nn.Conv2d(self.inplanes, planes * block.expansion, 1, stride, bias=False),
                        nn.BatchNorm2d(planes * block.expansion),
                    )
                blocks.append(block(self.inplanes, planes, stride if j == 0 else 1, downsample, **extra))
                self.inplanes = planes * block.expansion
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.fc = nn.Linear(512 * block.expansion, num_classes)  # the head the converter must drop

    def forward(self, x):
        x = self.maxpool(self.relu(self.bn1(self.conv1(x))))
        return self.layer4(self.layer3(self.layer2(self.layer1(x))))


def random_torch_resnet(depth, seed=0, stride_on="3x3"):
    """A ResNet with random conv weights *and* random BN affine parameters and running statistics,
    so the BN conversion (gamma/beta/mean/var, epsilon) is really exercised."""
    torch.manual_seed(seed)
    net = TorchResNet(depth, stride_on)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
    return net.eval()


def compare(net, model, size, seed=1):
    """Max abs difference of the layer-4 maps and of the pooled vectors on one random image."""
    image = np.random.default_rng(seed).random((1, size, size, 3), dtype=np.float32)  # [0, 1], NHWC
    normalised = (image - np.float32(IMAGENET_MEAN)) / np.float32(IMAGENET_STD)
    with torch.no_grad():
        expected = (
            net(torch.from_numpy(normalised.transpose(0, 3, 1, 2).copy())).numpy().transpose(0, 2, 3, 1)
        )
    outputs = model(image, training=False)
    features, pooled = np.asarray(outputs["feature_map"]), np.asarray(outputs["embedding"])
    assert features.shape == expected.shape
    assert np.abs(expected).max() > 0.1  # not a degenerate all-zero comparison
    diffs = np.abs(features - expected).max(), np.abs(pooled - expected.mean(axis=(1, 2))).max()
    print(f"{model.name} {size} px: max |layer4| {np.abs(expected).max():.3g}, max abs diff {diffs}")
    return max(float(d) for d in diffs)


def save_checkpoint(net, path, prefix=""):
    sd = {prefix + k: v for k, v in net.state_dict().items()}  # incl. fc.* and num_batches_tracked
    torch.save({"state_dict": sd, "epoch": 3}, path)
    return path


@pytest.fixture(scope="module")
def r18():
    return random_torch_resnet(18)


@pytest.mark.parametrize("prefix", ["", "module."])
def test_resnet18_checkpoint_matches_torch(r18, tmp_path, prefix):
    checkpoint = save_checkpoint(r18, tmp_path / "resnet18_msceleb.pth", prefix)
    out = tmp_path / "resnet18.npz"
    report = convert(checkpoint, 18, out)
    assert report.matched == expected_tensor_count(18) == 100
    assert sorted(report.dropped) == sorted(
        prefix + k for k in r18.state_dict() if k.startswith("fc.") or k.endswith("num_batches_tracked")
    )
    model = build_resnet(18, image_size=224, weights=str(out))
    assert compare(r18, model, 224) <= TOL


def test_resnet50_matches_torch(tmp_path):
    net = random_torch_resnet(50, seed=2)
    out = tmp_path / "resnet50.npz"
    report = convert(save_checkpoint(net, tmp_path / "r50.pth"), 50, out)
    assert report.matched == expected_tensor_count(50) == 265
    model = build_resnet(50, image_size=224, weights=str(out))
    assert compare(net, model, 224) <= TOL
    assert model.get_layer("layer2.0.conv2").strides == (2, 2)  # v1.5: stride on the 3x3
    assert model.get_layer("layer2.0.conv1").strides == (1, 1)


def test_resnet50_stride_on_1x1_matches_torch_v1(tmp_path):
    net = random_torch_resnet(50, seed=3, stride_on="1x1")
    model = build_resnet(50, image_size=64, stride_on="1x1")
    assert tuple(model.output["feature_map"].shape) == (None, 2, 2, 2048)
    assert tuple(model.output["embedding"].shape) == (None, 2048)
    assert model.get_layer("layer2.0.conv1").strides == (2, 2)  # v1: stride on the first 1x1
    assert model.get_layer("layer2.0.conv2").strides == (1, 1)
    load_into(model, net.state_dict())  # in memory, torch tensors
    assert compare(net, model, 64) <= TOL


class Py2Pickler(pickle._Pickler):
    """Writes ``str`` and ``bytes`` as Python 2 ``str`` opcodes (BINSTRING), as in a pickle written by
    Python 2 (VGGFace2's ``resnet50_ft_weight.pkl``): the safe unpickler returns them as ``bytes``."""

    dispatch = dict(pickle._Pickler.dispatch)

    def save_py2_str(self, obj):
        data = obj.encode("latin-1") if isinstance(obj, str) else bytes(obj)
        if len(data) < 256:
            self.write(pickle.SHORT_BINSTRING + bytes([len(data)]) + data)
        else:
            self.write(pickle.BINSTRING + struct.pack("<i", len(data)) + data)
        self.memoize(obj)

    dispatch[str] = save_py2_str
    dispatch[bytes] = save_py2_str


@pytest.mark.parametrize("style", ["py3", "py2"])
def test_numpy_pickle_teacher_dict(r18, tmp_path, style):
    """The IGKD teacher format: a pickled {name: ndarray} dict (VGGFace2 resnet50_ft_weight.pkl style)."""
    arrays = {k: v.numpy() for k, v in r18.state_dict().items()}
    path = tmp_path / "teacher.pkl"
    if style == "py2":
        buffer = io.BytesIO()
        Py2Pickler(buffer, protocol=2).dump(arrays)
        path.write_bytes(buffer.getvalue())
    else:
        path.write_bytes(pickle.dumps(arrays, protocol=2))
    out = tmp_path / "teacher.npz"
    report = convert(path, 18, out)
    assert report.matched == 100
    assert compare(r18, build_resnet(18, image_size=64, weights=str(out)), 64) <= TOL
    if style == "py3":
        h5 = tmp_path / "teacher.weights.h5"  # Keras weights instead of .npz
        convert(path, 18, h5)
        assert compare(r18, build_resnet(18, image_size=64, weights=str(h5)), 64) <= TOL
        assert sorted(p.name for p in tmp_path.iterdir() if "tmp-" in p.name) == []
        # the same torch names in an .npz
        npz = tmp_path / "teacher_torch_names.npz"
        np.savez(npz, **arrays)
        assert read_state_dict(npz).keys() == arrays.keys()


def test_pickle_with_code_is_refused(tmp_path):
    path = tmp_path / "evil.pkl"
    path.write_bytes(b"cos\nsystem\n(S'echo hacked'\ntR.")
    with pytest.raises(UnsafeFileError, match="os.system"):
        read_state_dict(path)


def _mismatch(state_dict, tmp_path, *names):
    path = tmp_path / "bad.pth"
    torch.save(state_dict, path)
    with pytest.raises(DataFormatError) as info:
        convert(path, 18, tmp_path / "never.npz")
    message = str(info.value)
    assert str(path) in message
    for name in names:
        assert name in message, message
    assert not (tmp_path / "never.npz").exists()
    return message


def test_missing_unexpected_and_wrong_shape_are_errors(r18, tmp_path):
    sd = dict(r18.state_dict())
    missing = dict(sd)
    del missing["layer3.1.bn2.running_var"]
    assert "missing 1" in _mismatch(missing, tmp_path, "layer3.1.bn2.running_var")
    extra = dict(sd, **{"layer5.0.conv1.weight": torch.zeros(1, 1, 1, 1)})
    assert "unexpected 1" in _mismatch(extra, tmp_path, "layer5.0.conv1.weight")
    wrong = dict(sd, **{"layer2.0.downsample.0.weight": torch.zeros(128, 64, 3, 3)})
    assert "wrong shape 1" in _mismatch(wrong, tmp_path, "layer2.0.downsample.0.weight")
    # a ResNet-50 checkpoint given as depth 18: many names at once, none loaded
    _mismatch(
        random_torch_resnet(50).state_dict(), tmp_path, "missing", "unexpected", "layer1.0.conv3.weight"
    )


def test_in_memory_load_is_all_or_nothing(r18):
    model = build_resnet(18, image_size=64)
    before = np.asarray(model.get_layer("conv1").kernel).copy()
    sd = dict(r18.state_dict())
    del sd["bn1.weight"]
    with pytest.raises(DataFormatError, match="bn1.weight"):
        load_into(model, sd)
    np.testing.assert_array_equal(np.asarray(model.get_layer("conv1").kernel), before)


def test_npz_weights_strict(tmp_path):
    model = build_resnet(18, image_size=64)
    path = tmp_path / "partial.npz"
    np.savez(path, **{"conv1/kernel": np.zeros((7, 7, 3, 64), np.float32)})
    with pytest.raises(DataFormatError, match="missing 99"):
        build_resnet(18, image_size=64, weights=str(path))
    del model


class NotATensor:  # module level so torch.save can pickle it
    def __init__(self):
        self.payload = "anything"


def test_load_torch_checkpoint_refuses_objects(tmp_path):
    plain = tmp_path / "plain.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}}, plain)
    assert torch.equal(load_torch_checkpoint(plain)["state_dict"]["w"], torch.ones(2))
    evil = tmp_path / "object.pth"
    torch.save({"state_dict": {"w": torch.ones(2)}, "extra": NotATensor()}, evil)
    with pytest.raises(UnsafeFileError, match="weights_only"):
        load_torch_checkpoint(evil)
    with pytest.raises(UnsafeFileError):
        convert(evil, 18, tmp_path / "never.npz")


def test_keras_save_load_round_trip(r18, tmp_path):
    model = build_resnet(18, image_size=64, name="student_backbone")
    load_into(model, r18.state_dict())
    path = tmp_path / "resnet18.keras"
    model.save(path)
    loaded = load_keras_model(path)  # safe_mode: no Lambda in the model
    image = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    expected, got = model(image, training=False), loaded(image, training=False)
    assert sorted(got) == sorted(expected)
    for key in expected:
        np.testing.assert_allclose(np.asarray(got[key]), np.asarray(expected[key]), atol=1e-6)
    assert [layer.name for layer in loaded.layers] == [layer.name for layer in model.layers]


def test_build_resnet_arguments():
    model = build_resnet(18, image_size=64)
    assert tuple(model.output["feature_map"].shape) == (None, 2, 2, 512)
    assert tuple(model.output["embedding"].shape) == (None, 512)
    bn = model.get_layer("layer2.0.downsample.1")
    assert (bn.momentum, bn.epsilon) == (0.9, 1e-5)
    assert model.count_params() == 11_186_112  # torchvision resnet18 without fc, + BN moving stats
    with pytest.raises(ValueError, match="depth"):
        build_resnet(34)
    with pytest.raises(ValueError, match="stride_on"):
        build_resnet(18, stride_on="1x1")


def test_cli(r18, tmp_path, capsys):
    from kdface.convert.__main__ import main

    checkpoint = save_checkpoint(r18, tmp_path / "resnet18_msceleb.pth", "module.")
    out = tmp_path / "pretrained" / "resnet18_msceleb.npz"
    main(["resnet", "--depth", "18", "--checkpoint", str(checkpoint), "--out", str(out)])
    printed = capsys.readouterr().out
    assert "matched 100 tensors" in printed and "dropped 22" in printed, printed
    assert out.is_file()
    assert not list(out.parent.glob(".*tmp-*"))  # atomic write left no temporaries
    bad = tmp_path / "bad.pth"
    torch.save({"state_dict": {"conv1.weight": torch.zeros(64, 3, 7, 7)}}, bad)
    with pytest.raises(SystemExit) as info:
        main(["resnet", "--depth", "18", "--checkpoint", str(bad), "--out", str(tmp_path / "x.npz")])
    assert info.value.code == 2
    errors = capsys.readouterr().err.strip().splitlines()
    assert len(errors) == 1 and errors[0].startswith("error:") and "missing 99" in errors[0], errors
    # the module entry point (``--help`` exits before Keras is imported, so this is fast)
    done = subprocess.run(
        [sys.executable, "-m", "kdface.convert", "resnet", "--help"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0 and "--checkpoint" in done.stdout, done.stderr
