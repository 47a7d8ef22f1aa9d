"""IResNet with F-SKD's and A-SKD's CBAM (spec ``fskd_lowres_fr.md`` §1.2-1.3): the two originals' torch
backbones rebuilt here with their module names (F-SKD ``backbone/iresnet.py`` + Jongchan Park's CBAM as
its ``attention``; A-SKD ``model/backbone.py`` ``CBAMResNet``), random weights and BatchNorm statistics,
converted with ``python -m kdface.convert iresnet``, give the same embedding, stages and every attention
map in Keras; the maps are post-sigmoid gates (F-SKD) or pre-sigmoid logits (A-SKD); output keys,
``.keras`` round trip, registry options, strict converter errors."""

from __future__ import annotations

import keras
import numpy as np
import pytest

torch = pytest.importorskip("torch")
nn = torch.nn
F = torch.nn.functional

from kdface.backbones import (  # noqa: E402
    BACKBONE_OUTPUTS,
    attention_blocks,
    attention_maps,
    backbone_spec,
    build_iresnet,
    create_backbone,
)
from kdface.backbones.registry import backbone_entry  # noqa: E402
from kdface.convert import convert  # noqa: E402
from kdface.convert.__main__ import main as convert_main  # noqa: E402
from kdface.convert.torch_resnet import (  # noqa: E402
    face_pytorch_name,
    iresnet_tensor_count,
    to_keras_arrays,
)
from kdface.errors import DataFormatError  # noqa: E402

TOL = 1e-4
SIZE = 48  # 48 -> 24 -> 12 -> 6 -> 3: every map has a real spatial extent, the fc head is 512 x 3 x 3
LAYERS18 = (2, 2, 2, 2)


# --- F-SKD: insightface IBasicBlock + `attention` = CBAM (Jongchan Park's, returning its two gates) ---------
class Flatten(nn.Module):
    def forward(self, x):
        return x.view(x.size(0), -1)


class BasicConv(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 7, 1, 3, bias=False)
        self.bn = nn.BatchNorm2d(1, eps=1e-5, momentum=0.01)

    def forward(self, x):
        return self.bn(self.conv(x))


class ChannelGate(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.mlp = nn.Sequential(Flatten(), nn.Linear(c, c // 16), nn.ReLU(), nn.Linear(c // 16, c))

    def forward(self, x):
        avg = F.avg_pool2d(x, (x.size(2), x.size(3)))
        mx = F.max_pool2d(x, (x.size(2), x.size(3)))
        mc = torch.sigmoid(self.mlp(avg) + self.mlp(mx))
        return x * mc[:, :, None, None], mc


class SpatialGate(nn.Module):
    def __init__(self):
        super().__init__()
        self.spatial = BasicConv()

    def forward(self, x):
        pooled = torch.cat((torch.max(x, 1)[0].unsqueeze(1), torch.mean(x, 1).unsqueeze(1)), dim=1)
        ms = torch.sigmoid(self.spatial(pooled))
        return x * ms, ms


class CBAM(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.ChannelGate = ChannelGate(c)
        self.SpatialGate = SpatialGate()

    def forward(self, x):
        x, mc = self.ChannelGate(x)
        x, ms = self.SpatialGate(x)
        return x, [mc, ms]


class FSKDBlock(nn.Module):
    def __init__(self, inplanes, planes, stride=1, downsample=None):
        super().__init__()
        self.bn1 = nn.BatchNorm2d(inplanes, eps=1e-05)
        self.conv1 = nn.Conv2d(inplanes, planes, 3, 1, 1, bias=False)
        self.bn2 = nn.BatchNorm2d(planes, eps=1e-05)
        self.prelu = nn.PReLU(planes)
        self.conv2 = nn.Conv2d(planes, planes, 3, stride, 1, bias=False)
        self.bn3 = nn.BatchNorm2d(planes, eps=1e-05)
        self.downsample = downsample
        self.attention = CBAM(planes)

    def forward(self, x):
        identity = x if self.downsample is None else self.downsample(x)
        out = self.bn3(self.conv2(self.prelu(self.bn2(self.conv1(self.bn1(x))))))
        out, self.attn = self.attention(out)
        return out + identity


class FSKDIResNet(nn.Module):
    """F-SKD's IResNet with ``attention_type='cbam'``; ``pooling`` 'A' (GAP) or 'E' (BN-flatten-fc-BN)."""

    def __init__(self, layers=LAYERS18, pooling="A", image_size=SIZE):
        super().__init__()
        self.pooling, inplanes = pooling, 64
        self.conv1 = nn.Conv2d(3, 64, 3, 1, 1, bias=False)
        self.bn1 = nn.BatchNorm2d(64, eps=1e-05)
        self.prelu = nn.PReLU(64)
        for i, (planes, count) in enumerate(zip((64, 128, 256, 512), layers, strict=True), start=1):
            down = nn.Sequential(
                nn.Conv2d(inplanes, planes, 1, 2, bias=False), nn.BatchNorm2d(planes, eps=1e-05)
            )
            blocks = [FSKDBlock(inplanes, planes, 2, down)] + [
                FSKDBlock(planes, planes) for _ in range(1, count)
            ]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
            inplanes = planes
        if pooling == "A":
            self.gp = nn.AdaptiveAvgPool2d((1, 1))
        else:
            self.bn2 = nn.BatchNorm2d(512, eps=1e-05)
            self.dropout = nn.Dropout(p=0.0)
            self.fc = nn.Linear(512 * (image_size // 16) ** 2, 512)
            self.features = nn.BatchNorm1d(512, eps=1e-05)
            nn.init.constant_(self.features.weight, 1.0)
            self.features.weight.requires_grad = False

    def forward(self, x):
        x = self.prelu(self.bn1(self.conv1(x)))
        stages = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        if self.pooling == "A":
            emb = torch.flatten(self.gp(x), 1)
        else:
            emb = self.features(self.fc(self.dropout(torch.flatten(self.bn2(x), 1))))
        maps = [m for i in range(1, 5) for block in getattr(self, f"layer{i}") for m in block.attn]
        return emb, stages, maps


# --- A-SKD: Face_Pytorch's CBAM-IR layout (input_layer / res_layer / shortcut_layer / output_layer) ----------
class CAModule(nn.Module):
    def __init__(self, c):
        super().__init__()
        self.avg_pool, self.max_pool = nn.AdaptiveAvgPool2d(1), nn.AdaptiveMaxPool2d(1)
        self.shared_mlp = nn.Sequential(nn.Conv2d(c, c // 16, 1, bias=False), nn.ReLU(),
                                        nn.Conv2d(c // 16, c, 1, bias=False))  # fmt: skip

    def forward(self, x):
        logits = self.shared_mlp(self.avg_pool(x)) + self.shared_mlp(self.max_pool(x))
        return x * torch.sigmoid(logits), logits


class SAModule(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Conv2d(2, 1, 3, padding=1, bias=False)

    def forward(self, x):
        logits = self.conv(torch.cat((torch.mean(x, 1, True), torch.max(x, 1, True)[0]), 1))
        return x * torch.sigmoid(logits), logits


class BottleNeckIRCBAM(nn.Module):
    def __init__(self, cin, cout, stride, dim_match):
        super().__init__()
        self.res_layer = nn.Sequential(nn.BatchNorm2d(cin), nn.Conv2d(cin, cout, 3, 1, 1, bias=False),
                                       nn.BatchNorm2d(cout), nn.PReLU(cout),
                                       nn.Conv2d(cout, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout))  # fmt: skip
        self.channel_layer, self.spatial_layer = CAModule(cout), SAModule()
        self.shortcut_layer = None if dim_match else nn.Sequential(
            nn.Conv2d(cin, cout, 1, stride, bias=False), nn.BatchNorm2d(cout)
        )  # fmt: skip

    def forward(self, x):
        res, a_c = self.channel_layer(self.res_layer(x))
        res, a_s = self.spatial_layer(res)
        self.attn = [a_c, a_s]
        return (x if self.shortcut_layer is None else self.shortcut_layer(x)) + res


class ASKDCBAMResNet(nn.Module):
    def __init__(self, layers=LAYERS18, image_size=SIZE):
        super().__init__()
        self.input_layer = nn.Sequential(
            nn.Conv2d(3, 64, 3, 1, 1, bias=False), nn.BatchNorm2d(64), nn.PReLU(64)
        )
        widths = (64, 64, 128, 256, 512)
        for i, count in enumerate(layers, start=1):
            blocks = [BottleNeckIRCBAM(widths[i - 1], widths[i], 2, False)]
            blocks += [BottleNeckIRCBAM(widths[i], widths[i], 1, True) for _ in range(1, count)]
            setattr(self, f"layer{i}", nn.Sequential(*blocks))
        self.output_layer = nn.Sequential(nn.BatchNorm2d(512), nn.Dropout(0.4), Flatten(),
                                          nn.Linear(512 * (image_size // 16) ** 2, 512), nn.BatchNorm1d(512))  # fmt: skip

    def forward(self, x):
        x = self.input_layer(x)
        stages = []
        for i in range(1, 5):
            x = getattr(self, f"layer{i}")(x)
            stages.append(x)
        maps = [m for i in range(1, 5) for block in getattr(self, f"layer{i}") for m in block.attn]
        return self.output_layer(x), stages, maps


def randomise(net, seed=0):
    """Unit-gain convs (activations stay O(1)), BatchNorms with non-trivial affine and statistics."""
    torch.manual_seed(seed)
    fixed = getattr(net, "features", None)
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, nn.BatchNorm2d | nn.BatchNorm1d):
                if m is not fixed:
                    m.weight.uniform_(0.5, 1.5)
                m.bias.normal_(0.0, 0.2)
                m.running_mean.normal_(0.0, 0.2)
                m.running_var.uniform_(0.5, 2.0)
            elif isinstance(m, nn.PReLU):
                m.weight.uniform_(0.05, 0.5)
            elif isinstance(m, nn.Conv2d):
                m.weight.normal_(0.0, m.weight[0].numel() ** -0.5)
            elif isinstance(m, nn.Linear):
                m.weight.normal_(0.0, m.weight.shape[1] ** -0.5)
                m.bias.normal_(0.0, 0.2)
    return net.eval()


def nhwc(t):
    a = t.detach().numpy()
    return a.transpose(0, 2, 3, 1) if a.ndim == 4 else a


def compare(net, model, size=SIZE, seed=1) -> float:
    """Max difference, relative to each output's scale (floor 1), over embedding, stages and maps."""
    images = np.random.default_rng(seed).random((2, size, size, 3), dtype=np.float32)
    with torch.no_grad():
        emb, stages, maps = net(torch.from_numpy(((images - 0.5) / 0.5).transpose(0, 3, 1, 2).copy()))
    outputs = {k: np.asarray(v) for k, v in model(images, training=False).items()}
    expected = {"embedding": emb.numpy(), **{f"stage{i}": nhwc(s) for i, s in enumerate(stages, start=1)}}
    got_maps = [m for pair in attention_maps(outputs) for m in pair]
    assert len(got_maps) == len(maps) == 2 * sum(LAYERS18)
    worst = 0.0
    pairs = [(outputs[k], v, k) for k, v in expected.items()]
    pairs += [
        (g, nhwc(m).reshape(g.shape), f"map {i}") for i, (g, m) in enumerate(zip(got_maps, maps, strict=True))
    ]
    for got, want, key in pairs:
        assert got.shape == want.shape, key
        worst = max(worst, float(np.abs(got - want).max() / max(1.0, np.abs(want).max())))
    print(f"{model.name}: worst relative difference {worst:.2e}")
    return worst


@pytest.fixture(scope="module")
def fskd_pool():
    return randomise(FSKDIResNet(pooling="A"))


@pytest.fixture(scope="module")
def askd():
    return randomise(ASKDCBAMResNet(), seed=3)


def test_fskd_cbam_checkpoint_matches_torch(fskd_pool, tmp_path):
    state = {"module." + k: v for k, v in fskd_pool.state_dict().items()}
    state["module.hint_layer1.hint.weight"] = torch.zeros(64, 64, 1, 1)  # a later F-SKD student's
    path = tmp_path / "last_net.ckpt"
    torch.save(state, path)
    out = tmp_path / "fskd.npz"
    report = convert(path, 18, out, arch="iresnet", attention="cbam_fskd", head="pool")
    assert report.matched == iresnet_tensor_count(18, attention="cbam_fskd", head="pool") == 146 + 8 * 9
    assert "module.hint_layer1.hint.weight" in report.dropped
    model = build_iresnet(18, image_size=SIZE, weights=str(out), attention="cbam_fskd", head="pool")
    assert compare(fskd_pool, model) <= TOL
    channel, spatial = attention_maps(model(np.zeros((1, SIZE, SIZE, 3), np.float32)))[0]
    assert 0 < np.min(channel) and np.max(channel) < 1 and 0 < np.min(spatial) and np.max(spatial) < 1


def test_fskd_cbam_fc_head_matches_torch(tmp_path):
    net = randomise(FSKDIResNet(pooling="E"), seed=2)
    path = tmp_path / "e.pth"
    torch.save(net.state_dict(), path)
    out = tmp_path / "fskd_e.npz"
    report = convert(path, 18, out, arch="iresnet", attention="cbam_fskd", image_size=SIZE)
    assert report.matched == iresnet_tensor_count(18, attention="cbam_fskd") and not report.features_scale
    model = build_iresnet(18, image_size=SIZE, weights=str(out), attention="cbam_fskd")
    assert compare(net, model) <= TOL


def test_askd_checkpoint_matches_torch(askd, tmp_path, capsys):
    path = tmp_path / "askd.pth"
    torch.save({"state_dict": askd.state_dict()}, path)
    out = tmp_path / "askd.npz"
    convert_main(["iresnet", "--depth", "18", "--checkpoint", str(path), "--out", str(out),
                  "--attention", "cbam_askd", "--image-size", str(SIZE)])  # fmt: skip
    printed = capsys.readouterr().out
    assert (
        f"matched {iresnet_tensor_count(18, attention='cbam_askd', features_scale=True)} tensors" in printed
    )
    assert "features_scale=True" in printed  # A-SKD's BatchNorm1d is trainable: the layout's default
    model = create_backbone("iresnet18", image_size=SIZE, weights=str(out), attention="cbam_askd",
                            dropout=0.4, features_scale=True)  # fmt: skip
    assert compare(askd, model) <= TOL
    # the maps are the logits: some negative, not squashed into (0, 1)
    maps = attention_maps(model(np.random.default_rng(0).random((1, SIZE, SIZE, 3), dtype=np.float32)))
    assert min(float(np.min(c)) for c, _ in maps) < 0 and min(float(np.min(s)) for _, s in maps) < 0


def test_face_pytorch_cbam_names_are_the_same_weights(askd):
    """Face_Pytorch's ``CBAM_BottleNeck_IR`` holds the same CAModule/SAModule inside ``res_layer`` (6, 7)."""
    state = {k: v.numpy() for k, v in askd.state_dict().items()}
    face_pytorch = {
        k.replace("channel_layer.", "res_layer.6.").replace("spatial_layer.", "res_layer.7."): v
        for k, v in state.items()
    }
    assert (
        face_pytorch_name("layer1.0.res_layer.6.shared_mlp.2.weight")
        == "layer1.0.channel_layer.shared_mlp.2.weight"
    )
    assert face_pytorch_name("layer3.1.res_layer.4.weight") == "layer3.1.conv2.weight"
    assert face_pytorch_name("output_layer.4.running_var") == "features.running_var"
    model = build_iresnet(18, image_size=SIZE, attention="cbam_askd", features_scale=True)
    a, _ = to_keras_arrays(model, state, "askd", (), rename=face_pytorch_name)
    b, _ = to_keras_arrays(model, face_pytorch, "face_pytorch", (), rename=face_pytorch_name)
    assert sorted(a) == sorted(b) and all(np.array_equal(a[k], b[k]) for k in a)


def test_converter_mismatches_are_listed(fskd_pool, askd, tmp_path):
    state = dict(fskd_pool.state_dict())
    path = tmp_path / "cbam.pth"
    torch.save(state, path)
    with pytest.raises(
        DataFormatError, match=r"unexpected 72: \[layer1\.0\.attention\.ChannelGate\.mlp\.1\.bias"
    ):
        convert(path, 18, tmp_path / "x.npz", arch="iresnet", head="pool")  # built without attention
    state.pop("layer3.1.attention.SpatialGate.spatial.bn.running_var")
    torch.save(state, path)
    with pytest.raises(
        DataFormatError, match=r"missing 1: \[layer3\.1\.attention\.SpatialGate\.spatial\.bn\.running_var\]"
    ):
        convert(path, 18, tmp_path / "x.npz", arch="iresnet", head="pool", attention="cbam_fskd")
    torch.save(askd.state_dict(), path)
    with pytest.raises(DataFormatError, match="F-SKD's CBAM names"):
        convert(path, 18, tmp_path / "x.npz", arch="iresnet", attention="cbam_fskd", image_size=SIZE)
    with pytest.raises(DataFormatError, match=r"features.weight must be all ones.*--features-scale"):
        convert(path, 18, tmp_path / "x.npz", arch="iresnet", attention="cbam_askd", image_size=SIZE,
                features_scale=False)  # fmt: skip
    state = dict(askd.state_dict())
    state["layer1.0.res_layer.9.weight"] = torch.zeros(3)
    torch.save(state, path)
    with pytest.raises(DataFormatError, match=r"unexpected 1: \[layer1\.0\.res_layer\.9\.weight\]"):
        convert(path, 18, tmp_path / "x.npz", arch="iresnet", attention="cbam_askd", image_size=SIZE)
    assert not (tmp_path / "x.npz").exists()


@pytest.mark.parametrize(
    ("attention", "head", "channel_layer", "spatial_layer"),
    [
        (
            "cbam_fskd",
            "pool",
            "layer{}.attention.ChannelGate.sigmoid",
            "layer{}.attention.SpatialGate.sigmoid",
        ),
        ("cbam_askd", "fc", "layer{}.channel_layer.logits", "layer{}.spatial_layer.conv"),
    ],
)
def test_keras_round_trip_and_one_graph(attention, head, channel_layer, spatial_layer, tmp_path):
    model = create_backbone("iresnet18", image_size=64, attention=attention, head=head, features_scale=True)
    blocks = [f"layer{s}.{i}" for s in range(1, 5) for i in range(2)]
    assert attention_blocks(model) == blocks
    keys = list(model.output)
    assert keys[: len(BACKBONE_OUTPUTS)] == list(BACKBONE_OUTPUTS) and len(keys) == len(BACKBONE_OUTPUTS) + 16
    spec = backbone_spec(model)
    assert spec.stage_strides == (2, 4, 8, 16) and spec.embedding_size == 512
    for block, (channel, spatial) in zip(blocks, attention_maps(model.output), strict=True):
        # the maps are tensors of the backbone's own graph, no second copy of the network
        assert channel is model.get_layer(channel_layer.format(block[5:])).output
        assert spatial is model.get_layer(spatial_layer.format(block[5:])).output
        width, side = 64 * 2 ** (int(block[5]) - 1), 64 // 2 ** int(block[5])
        assert tuple(channel.shape) == (None, width) and tuple(spatial.shape) == (None, side, side, 1)
    if head == "fc":
        assert model.get_layer("features").scale  # features_scale=True: a trainable gamma
    x = np.random.default_rng(0).random((2, 64, 64, 3), dtype=np.float32)
    expected = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    path = tmp_path / "cbam.keras"
    model.save(path)
    loaded = keras.saving.load_model(path, safe_mode=True, compile=False)  # built-in layers only
    assert backbone_spec(loaded) == spec and attention_blocks(loaded) == blocks
    got = loaded(x, training=False)
    assert list(got) == list(expected)
    for key, value in expected.items():
        np.testing.assert_allclose(np.asarray(got[key]), value, rtol=0, atol=1e-6, err_msg=key)
    assert build_iresnet(18, image_size=64, weights=str(path), attention=attention, head=head,
                         features_scale=True).count_params() == model.count_params()  # fmt: skip


def test_registry_options_and_defaults():
    options = backbone_entry("iresnet50").options()
    assert {"attention", "features_scale", "head", "dropout"} <= set(options)
    plain = create_backbone("iresnet18", image_size=32, head="pool")
    assert attention_blocks(plain) == [] and attention_maps(plain.output) == []
    assert list(plain.output) == list(BACKBONE_OUTPUTS)
    assert not any("attention" in layer.name or "channel_layer" in layer.name for layer in plain.layers)
    with pytest.raises(ValueError, match="attention must be one of"):
        create_backbone("iresnet18", image_size=32, attention="cbam")
    fskd = create_backbone("iresnet18", image_size=32, head="pool", attention="cbam_fskd")
    momenta = {
        layer.name: layer.momentum
        for layer in fskd.layers
        if isinstance(layer, keras.layers.BatchNormalization)
    }
    assert momenta["layer1.0.attention.SpatialGate.spatial.bn"] == 0.99 and momenta["layer1.0.bn3"] == 0.9
    with pytest.raises(ValueError, match="in pairs"):
        attention_blocks({"attention/layer1.0/channel": None})


def test_iresnet50_cbam_fskd_matches_torch(tmp_path):
    """The real depth: 24 blocks, 48 maps."""
    layers = (3, 4, 14, 3)
    net = randomise(FSKDIResNet(layers=layers, pooling="A"), seed=5)
    path = tmp_path / "r50.pth"
    torch.save(net.state_dict(), path)
    report = convert(path, 50, tmp_path / "r50.npz", arch="iresnet", attention="cbam_fskd", head="pool")
    assert report.matched == iresnet_tensor_count(50, attention="cbam_fskd", head="pool") == 386 + 24 * 9
    model = build_iresnet(
        50, image_size=32, weights=str(tmp_path / "r50.npz"), attention="cbam_fskd", head="pool"
    )
    assert len(attention_blocks(model)) == 24 and len(model.output) == len(BACKBONE_OUTPUTS) + 48
    images = np.random.default_rng(1).random((1, 32, 32, 3), dtype=np.float32)
    with torch.no_grad():
        emb, _, maps = net(torch.from_numpy(((images - 0.5) / 0.5).transpose(0, 3, 1, 2).copy()))
    outputs = model(images, training=False)
    got = [np.asarray(m) for pair in attention_maps(outputs) for m in pair]
    assert len(got) == len(maps) == 48
    scale = max(1.0, float(emb.abs().max()))
    assert np.abs(np.asarray(outputs["embedding"]) - emb.numpy()).max() <= TOL * scale
    for g, m in zip(got, maps, strict=True):
        np.testing.assert_allclose(g, nhwc(m).reshape(g.shape), atol=TOL)
