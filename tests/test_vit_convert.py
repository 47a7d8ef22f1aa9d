"""ViT converter (``python -m kdface.convert vit``): random state dicts of vit_tiny's architecture in
Hugging Face names and in timm names, converted, loaded into kdface's ViT and compared with reference
forwards written here in torch straight from the state dicts (HF's ViTModel math and timm's
VisionTransformer math, each with its own LayerNorm epsilon); strict names and shapes; the position
embedding resample; the CLI's report and one-line errors."""

from __future__ import annotations

import math

import numpy as np
import pytest

torch = pytest.importorskip("torch")
F = torch.nn.functional

from kdface.backbones import VIT_VARIANTS, create_backbone  # noqa: E402
from kdface.backbones.weights import DROPPED_KEY  # noqa: E402
from kdface.convert.__main__ import main as convert_main  # noqa: E402
from kdface.convert.torch_vit import convert, resample_position_embeddings, to_keras_arrays  # noqa: E402
from kdface.errors import ConfigError, DataFormatError  # noqa: E402

TOL = 1e-5
ARCH = VIT_VARIANTS["vit_tiny"]  # patch 8, 4 blocks, width 192, 3 heads, MLP 768
SIZE = 32  # a 4 x 4 grid of patches
D, M, P, H = ARCH.width, ARCH.mlp_width, ARCH.patch_size, ARCH.heads


# --- random checkpoints ---------------------------------------------------------------------------------
def _random(seed):
    gen = torch.Generator().manual_seed(seed)

    def normal(*shape, std=1.0, mean=0.0):
        return torch.randn(*shape, generator=gen) * std + mean

    return normal


def hf_state_dict(seed=0, grid=SIZE // P, pooler=True, classifier=0, prefix=""):
    """A ``ViTModel`` (``pooler``) or ``ViTForImageClassification`` (``prefix="vit."``, ``classifier``
    classes) state dict; unit-gain kernels, LayerNorms and biases away from 1/0 so every tensor counts."""
    n = _random(seed)
    sd = {
        "embeddings.cls_token": n(1, 1, D, std=0.5),
        "embeddings.position_embeddings": n(1, 1 + grid * grid, D, std=0.5),
        "embeddings.patch_embeddings.projection.weight": n(D, 3, P, P, std=(3 * P * P) ** -0.5),
        "embeddings.patch_embeddings.projection.bias": n(D, std=0.1),
        "layernorm.weight": n(D, std=0.1, mean=1.0),
        "layernorm.bias": n(D, std=0.1),
    }
    for i in range(ARCH.depth):
        layer = f"encoder.layer.{i}"
        for norm in ("layernorm_before", "layernorm_after"):
            sd[f"{layer}.{norm}.weight"] = n(D, std=0.1, mean=1.0)
            sd[f"{layer}.{norm}.bias"] = n(D, std=0.1)
        for name, n_in, n_out in (
            *((f"attention.attention.{part}", D, D) for part in ("query", "key", "value")),
            ("attention.output.dense", D, D),
            ("intermediate.dense", D, M),
            ("output.dense", M, D),
        ):
            sd[f"{layer}.{name}.weight"] = n(n_out, n_in, std=n_in**-0.5)
            sd[f"{layer}.{name}.bias"] = n(n_out, std=0.1)
    if pooler:
        sd["pooler.dense.weight"] = n(D, D, std=D**-0.5)
        sd["pooler.dense.bias"] = n(D, std=0.1)
    sd = {prefix + k: v for k, v in sd.items()}
    if classifier:
        sd["classifier.weight"] = n(classifier, D, std=0.02)
        sd["classifier.bias"] = n(classifier)
    return sd


def timm_state_dict(seed=1, grid=SIZE // P, head=10, pre_logits=False, embed_scale=1.0):
    """A timm ``VisionTransformer`` state dict (fused qkv); ``pre_logits``: old in21k's representation
    layer; ``embed_scale`` scales the embeddings (CLS, positions, patch conv)."""
    n = _random(seed)
    sd = {
        "cls_token": n(1, 1, D, std=0.5 * embed_scale),
        "pos_embed": n(1, 1 + grid * grid, D, std=0.5 * embed_scale),
        "patch_embed.proj.weight": n(D, 3, P, P, std=(3 * P * P) ** -0.5 * embed_scale),
        "patch_embed.proj.bias": n(D, std=0.1 * embed_scale),
        "norm.weight": n(D, std=0.1, mean=1.0),
        "norm.bias": n(D, std=0.1),
    }
    for i in range(ARCH.depth):
        block = f"blocks.{i}"
        for norm in ("norm1", "norm2"):
            sd[f"{block}.{norm}.weight"] = n(D, std=0.1, mean=1.0)
            sd[f"{block}.{norm}.bias"] = n(D, std=0.1)
        for name, n_in, n_out in (
            ("attn.qkv", D, 3 * D),
            ("attn.proj", D, D),
            ("mlp.fc1", D, M),
            ("mlp.fc2", M, D),
        ):
            sd[f"{block}.{name}.weight"] = n(n_out, n_in, std=n_in**-0.5)
            sd[f"{block}.{name}.bias"] = n(n_out, std=0.1)
    if pre_logits:
        sd["pre_logits.fc.weight"] = n(D, D, std=D**-0.5)
        sd["pre_logits.fc.bias"] = n(D, std=0.1)
    if head:
        sd["head.weight"] = n(head, D, std=0.02)
        sd["head.bias"] = n(head)
    return sd


# --- reference forwards, straight from the state dicts (torch, float64) ---------------------------------
def _patches(x, weight, bias):
    x = F.conv2d(x, weight, bias, stride=weight.shape[-1])  # (B, D, g, g)
    return x.flatten(2).transpose(1, 2)  # (B, g*g, D), row-major


def _attend(q, k, v, heads):  # (B, N, D) each -> (B, N, D), scaled dot product per head
    b, n, d = q.shape
    q, k, v = (t.reshape(b, n, heads, d // heads).transpose(1, 2) for t in (q, k, v))
    weights = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(d // heads), dim=-1)
    return (weights @ v).transpose(1, 2).reshape(b, n, d)


def hf_reference(sd, images, position_embeddings=None):
    """HF ``ViTModel.forward``: LayerNorm eps 1e-12, exact GELU, pooler ``tanh(dense(CLS))``."""
    w = {k.removeprefix("vit."): v.double() for k, v in sd.items()}
    eps = 1e-12
    x = _patches(images, w["embeddings.patch_embeddings.projection.weight"],
                 w["embeddings.patch_embeddings.projection.bias"])  # fmt: skip
    cls = w["embeddings.cls_token"].expand(x.shape[0], -1, -1)
    pos = w["embeddings.position_embeddings"] if position_embeddings is None else position_embeddings
    x = torch.cat([cls, x], dim=1) + pos
    blocks = []
    for i in range(ARCH.depth):
        p = f"encoder.layer.{i}."

        def linear(t, name, p=p):
            return F.linear(t, w[p + name + ".weight"], w[p + name + ".bias"])

        h = F.layer_norm(x, (D,), w[p + "layernorm_before.weight"], w[p + "layernorm_before.bias"], eps)
        q, k, v = (linear(h, f"attention.attention.{part}") for part in ("query", "key", "value"))
        x = x + linear(_attend(q, k, v, H), "attention.output.dense")
        h = F.layer_norm(x, (D,), w[p + "layernorm_after.weight"], w[p + "layernorm_after.bias"], eps)
        x = x + linear(F.gelu(linear(h, "intermediate.dense")), "output.dense")
        blocks.append(x)
    x = F.layer_norm(x, (D,), w["layernorm.weight"], w["layernorm.bias"], eps)
    pooled = torch.tanh(F.linear(x[:, 0], w["pooler.dense.weight"], w["pooler.dense.bias"])) if (
        "pooler.dense.weight" in w) else None  # fmt: skip
    return x, blocks, pooled


def timm_reference(sd, images, eps=1e-6):
    """timm ``VisionTransformer.forward_features`` (+ ``pre_logits`` when present): fused qkv split as
    ``reshape(B, N, 3, heads, head_dim)``, LayerNorm eps 1e-6."""
    w = {k: v.double() for k, v in sd.items()}
    x = _patches(images, w["patch_embed.proj.weight"], w["patch_embed.proj.bias"])
    x = torch.cat([w["cls_token"].expand(x.shape[0], -1, -1), x], dim=1) + w["pos_embed"]
    blocks = []
    for i in range(ARCH.depth):
        p = f"blocks.{i}."
        h = F.layer_norm(x, (D,), w[p + "norm1.weight"], w[p + "norm1.bias"], eps)
        b, n, _ = h.shape
        qkv = F.linear(h, w[p + "attn.qkv.weight"], w[p + "attn.qkv.bias"])
        q, k, v = qkv.reshape(b, n, 3, H, D // H).permute(2, 0, 3, 1, 4).unbind(0)  # (B, heads, N, hd)
        a = torch.softmax((q * (D // H) ** -0.5) @ k.transpose(-2, -1), dim=-1)
        a = (a @ v).transpose(1, 2).reshape(b, n, D)
        x = x + F.linear(a, w[p + "attn.proj.weight"], w[p + "attn.proj.bias"])
        h = F.layer_norm(x, (D,), w[p + "norm2.weight"], w[p + "norm2.bias"], eps)
        h = F.linear(F.gelu(F.linear(h, w[p + "mlp.fc1.weight"], w[p + "mlp.fc1.bias"])),
                     w[p + "mlp.fc2.weight"], w[p + "mlp.fc2.bias"])  # fmt: skip
        x = x + h
        blocks.append(x)
    x = F.layer_norm(x, (D,), w["norm.weight"], w["norm.bias"], eps)
    pooled = torch.tanh(F.linear(x[:, 0], w["pre_logits.fc.weight"], w["pre_logits.fc.bias"])) if (
        "pre_logits.fc.weight" in w) else None  # fmt: skip
    return x, blocks, pooled


def images(size=SIZE, batch=3, seed=0):
    return np.random.default_rng(seed).random((batch, size, size, 3), dtype=np.float32)


def compare(model, reference, size=SIZE, **kwargs):
    """Max abs difference of every output (CLS, final-LN patch map, block-1 map, pooled) on three random
    [0, 1] images; the reference is fed kdface's rescaled input, NCHW, [-1, 1]."""
    x = images(size)
    scaled = torch.from_numpy((2.0 * x - 1.0).transpose(0, 3, 1, 2).astype(np.float64))
    with torch.no_grad():
        tokens, blocks, pooled = (
            t.numpy() if torch.is_tensor(t) else t for t in reference(images=scaled, **kwargs)
        )
    grid = size // P
    got = {k: np.asarray(v) for k, v in model(x, training=False).items()}
    pairs = [
        (got["embedding"], tokens[:, 0]),
        (got["feature_map"], tokens[:, 1:].reshape(-1, grid, grid, D)),
        (got["stage1"], blocks[0].numpy()[:, 1:].reshape(-1, grid, grid, D)),
    ]
    if pooled is not None and "pooled" in got:
        pairs.append((got["pooled"], pooled))
    for ours, theirs in pairs:
        assert ours.shape == theirs.shape
        assert np.abs(theirs).max() > 0.3  # not a degenerate comparison
    diffs = [float(np.abs(ours - theirs).max()) for ours, theirs in pairs]
    print(f"{model.name} {size} px: max abs diffs {diffs}")
    return max(diffs)


# --- conversions that match --------------------------------------------------------------------------------
def test_hf_vitmodel_with_pooler_matches_torch(tmp_path):
    sd = hf_state_dict()
    checkpoint = tmp_path / "pytorch_model.bin"
    torch.save(sd, checkpoint)
    report = convert(checkpoint, "vit_tiny", tmp_path / "vit.npz")
    assert (report.layout, report.matched, report.arrays) == ("hf", len(sd), len(sd)) == ("hf", 72, 72)
    assert (report.dropped, report.left_out, report.pooler_from) == ([], [], "pooler.dense.weight")
    assert (report.image_size, report.checkpoint_grid, report.grid, report.resampled) == (32, 4, 4, False)
    with np.load(tmp_path / "vit.npz") as data:
        assert DROPPED_KEY not in data.files and "pooler.dense/kernel" in data.files
    model = create_backbone("vit_tiny", image_size=SIZE, weights=tmp_path / "vit.npz", pooler=True)
    assert compare(model, lambda images: hf_reference(sd, images)) <= TOL


def test_hf_image_classifier_drops_the_classifier_and_marks_the_pooler(tmp_path, capsys):
    """``ViTForImageClassification``: ``vit.`` prefix, a ``classifier`` head, no pooler."""
    sd = hf_state_dict(seed=2, pooler=False, classifier=7, prefix="vit.")
    checkpoint = tmp_path / "classifier.pth"
    torch.save({"state_dict": sd, "epoch": 3}, checkpoint)
    report = convert(checkpoint, "vit_tiny", tmp_path / "vit.npz")
    assert report.dropped == ["classifier.bias", "classifier.weight"] and report.left_out == ["pooler.dense"]
    assert report.matched == 70 and "pooler=True" not in report.build_call()
    with np.load(tmp_path / "vit.npz") as data:
        assert [str(n) for n in data[DROPPED_KEY]] == ["pooler.dense"]
    plain = create_backbone("vit_tiny", image_size=SIZE, weights=tmp_path / "vit.npz")
    assert compare(plain, lambda images: hf_reference(sd, images)) <= TOL
    create_backbone("vit_tiny", image_size=SIZE, weights=tmp_path / "vit.npz", pooler=True)
    assert "pooler.dense were left out at conversion" in capsys.readouterr().out


@pytest.mark.parametrize("pre_logits", [False, True])
def test_timm_checkpoint_matches_torch(tmp_path, pre_logits):
    sd = timm_state_dict(pre_logits=pre_logits)
    checkpoint = tmp_path / "vit_timm.pth"
    torch.save({"model": {"module." + k: v for k, v in sd.items()}}, checkpoint)  # a training checkpoint
    report = convert(checkpoint, "vit_tiny", tmp_path / "vit.npz")
    assert report.layout == "timm" and report.dropped == ["module.head.bias", "module.head.weight"]
    assert report.matched == 54 + 2 * pre_logits and report.arrays == 4 * 16 + 6 + 2 * pre_logits
    assert report.left_out == ([] if pre_logits else ["pooler.dense"])
    assert report.pooler_from == ("module.pre_logits.fc.weight" if pre_logits else None)
    assert "layer_norm_epsilon=1e-6" in report.build_call()
    weights = tmp_path / "vit.npz"
    model = create_backbone(
        "vit_tiny", image_size=SIZE, weights=weights, pooler=True, layer_norm_epsilon=1e-6
    )
    assert compare(model, lambda images: timm_reference(sd, images)) <= TOL
    if not pre_logits:  # kdface's default epsilon (HF's 1e-12) on timm weights: O(1) activations, no harm
        default = create_backbone("vit_tiny", image_size=SIZE, weights=weights)
        assert compare(default, lambda images: timm_reference(sd, images)) <= 2 * TOL


def test_timm_layer_norm_epsilon_matters_on_small_activations(tmp_path):
    """Embeddings 100x smaller: block 0's LayerNorm input has a variance ~1e-4, where eps 1e-6 vs 1e-12
    shows; ``layer_norm_epsilon=1e-6`` (what the report asks for) is timm's network, the default is not."""
    sd = timm_state_dict(seed=5, embed_scale=0.01)
    np.savez(tmp_path / "timm.npz", **{k: v.numpy() for k, v in sd.items()})
    convert(tmp_path / "timm.npz", "vit_tiny", tmp_path / "vit.npz")
    timm = create_backbone("vit_tiny", image_size=SIZE, weights=tmp_path / "vit.npz", layer_norm_epsilon=1e-6)
    assert {timm.get_layer(n).epsilon for n in ("layernorm", "encoder.layer.3.layernorm_after")} == {1e-6}
    assert compare(timm, lambda images: timm_reference(sd, images)) <= TOL
    default = create_backbone("vit_tiny", image_size=SIZE, weights=tmp_path / "vit.npz")
    assert compare(default, lambda images: timm_reference(sd, images)) > 1e-3


def test_in_memory_npz_and_numpy_inputs_agree(tmp_path):
    sd = hf_state_dict(seed=3)
    arrays, report = to_keras_arrays(sd, "vit_tiny")  # torch tensors
    np.savez(tmp_path / "torch_names.npz", **{k: v.numpy() for k, v in sd.items()})
    convert(tmp_path / "torch_names.npz", "vit_tiny", tmp_path / "vit.npz")
    with np.load(tmp_path / "vit.npz") as data:
        assert sorted(data.files) == sorted(arrays)
        for key in arrays:
            np.testing.assert_array_equal(data[key], arrays[key])
    # the kernels as kdface's layers hold them
    assert arrays["encoder.layer.1.attention/query/kernel"].shape == (D, H, D // H)
    assert arrays["encoder.layer.1.attention/key/bias"].shape == (H, D // H)
    assert arrays["encoder.layer.1.attention/attention_output/kernel"].shape == (H, D // H, D)
    np.testing.assert_array_equal(
        arrays["encoder.layer.1.attention/value/kernel"][:, 2, 5],
        sd["encoder.layer.1.attention.attention.value.weight"].numpy()[2 * (D // H) + 5],
    )
    assert arrays["embeddings.patch_embeddings.projection/kernel"].shape == (P, P, 3, D)


# --- position embeddings ----------------------------------------------------------------------------------
def _torch_resample(pos, grid):
    """HF's ``interpolate_pos_encoding``: the patch rows as an n x n map, bicubic, CLS row kept."""
    n = math.isqrt(pos.shape[1] - 1)
    patches = pos[:, 1:].reshape(1, n, n, -1).permute(0, 3, 1, 2)
    patches = F.interpolate(patches, size=(grid, grid), mode="bicubic", align_corners=False)
    return torch.cat([pos[:, :1], patches.permute(0, 2, 3, 1).reshape(1, grid * grid, -1)], dim=1)


def test_position_embeddings_resampled_bicubically(tmp_path, capsys):
    sd = hf_state_dict(seed=4)
    checkpoint = tmp_path / "pytorch_model.bin"
    torch.save(sd, checkpoint)
    pos = sd["embeddings.position_embeddings"].double()
    for size in (48, 16, 40):  # 4 x 4 -> 6 x 6, 2 x 2, 5 x 5
        out = tmp_path / f"vit{size}.npz"
        report = convert(checkpoint, "vit_tiny", out, image_size=size)
        assert (report.checkpoint_grid, report.grid, report.resampled) == (4, size // P, True)
        with np.load(out) as data:
            table = data["embeddings.position_embeddings/embeddings"]
        expected = _torch_resample(pos, size // P)[0].numpy()
        assert table.shape == (1 + (size // P) ** 2, D)
        np.testing.assert_array_equal(table[0], sd["embeddings.position_embeddings"][0, 0].numpy())
        np.testing.assert_allclose(table, expected, atol=1e-6)
    # the resampled model is HF's ViT run with interpolate_pos_encoding at 48 px
    model = create_backbone("vit_tiny", image_size=48, weights=tmp_path / "vit48.npz", pooler=True)
    reference = lambda images: hf_reference(sd, images, _torch_resample(pos, 6))  # noqa: E731
    assert compare(model, reference, size=48) <= TOL
    # at the checkpoint's size, nothing changes
    same = convert(checkpoint, "vit_tiny", tmp_path / "vit32.npz", image_size=32)
    assert not same.resampled
    with np.load(tmp_path / "vit32.npz") as data:
        np.testing.assert_array_equal(
            data["embeddings.position_embeddings/embeddings"], sd["embeddings.position_embeddings"][0].numpy()
        )
    table = np.random.default_rng(0).normal(size=(17, 5)).astype(np.float32)
    assert resample_position_embeddings(table, 4) is table
    convert_main(["vit", "--variant", "vit_tiny", "--checkpoint", str(checkpoint), "--out",
                  str(tmp_path / "cli.npz"), "--image-size", "48"])  # fmt: skip
    assert "4 x 4 grid resampled bicubically to 6 x 6 for 48 px (CLS row kept)" in capsys.readouterr().out


# --- strictness --------------------------------------------------------------------------------------------
def _error(sd, tmp_path, variant="vit_tiny", **kwargs):
    path = tmp_path / "bad.bin"
    torch.save(sd, path)
    with pytest.raises(DataFormatError) as info:
        convert(path, variant, tmp_path / "never.npz", **kwargs)
    assert not (tmp_path / "never.npz").exists()
    message = str(info.value)
    assert message.startswith(str(path)) and "\n" not in message
    return message


def test_wrong_shape_missing_and_unexpected_tensors(tmp_path):
    sd = hf_state_dict(prefix="vit.")
    wrong = dict(sd, **{"vit.encoder.layer.2.intermediate.dense.weight": torch.zeros(D, M)})
    message = _error(wrong, tmp_path)
    assert (
        "wrong shape 1: [vit.encoder.layer.2.intermediate.dense.weight (192, 768) != expected (768, 192)]"
        in message
    )
    missing = {k: v for k, v in sd.items() if k != "vit.encoder.layer.1.attention.output.dense.bias"}
    assert "missing 1: [vit.encoder.layer.1.attention.output.dense.bias (192,)]" in _error(missing, tmp_path)
    extra = dict(sd, **{"vit.embeddings.mask_token": torch.zeros(1, 1, D)})  # a masked-image-modelling ViT
    assert "unexpected 1: [vit.embeddings.mask_token]" in _error(extra, tmp_path)
    half_pooler = {k: v for k, v in sd.items() if k != "vit.pooler.dense.bias"}
    assert "missing 1: [vit.pooler.dense.bias (192,)]" in _error(half_pooler, tmp_path)
    no_pos = {k: v for k, v in sd.items() if k != "vit.embeddings.position_embeddings"}
    assert "missing 1: [vit.embeddings.position_embeddings (1, 1 + n*n, 192)" in _error(no_pos, tmp_path)
    odd_pos = dict(sd, **{"vit.embeddings.position_embeddings": torch.zeros(1, 20, D)})
    assert "position_embeddings (1, 20, 192) != expected (1, 1 + n*n, 192)" in _error(odd_pos, tmp_path)
    timm = timm_state_dict()
    timm["blocks.3.attn.qkv.weight"] = torch.zeros(D, D)  # a qkv that is not fused
    assert "blocks.3.attn.qkv.weight (192, 192) != expected (576, 192)" in _error(timm, tmp_path)
    timm = timm_state_dict()
    timm["dist_token"] = torch.zeros(1, 1, D)  # DeiT distilled: another network
    del timm["blocks.0.attn.qkv.bias"]  # qkv_bias=False
    message = _error(timm, tmp_path)
    assert "missing 1: [blocks.0.attn.qkv.bias (576,)]" in message and "unexpected 1: [dist_token]" in message


def test_architecture_and_layout_mismatches(tmp_path):
    message = _error(hf_state_dict(), tmp_path, variant="vit_b16")
    assert "expected a vit_b16 checkpoint (patch 16, depth 12, width 768, MLP width 3072)" in message
    for part in ("patch 8 (the variant's 16)", "depth 4 (the variant's 12)", "width 192 (the variant's 768)",
                 "MLP width 768 (the variant's 3072)", "--variant vit_tiny fits"):  # fmt: skip
        assert part in message, message
    deeper = hf_state_dict()
    deeper["encoder.layer.4.layernorm_before.weight"] = torch.ones(D)
    assert "depth 5 (the variant's 4); no kdface variant fits" in _error(deeper, tmp_path)
    mixed = dict(hf_state_dict(), **timm_state_dict())
    assert "not both; got names of both" in _error(mixed, tmp_path)
    assert "got neither (e.g. conv1.weight)" in _error({"conv1.weight": torch.zeros(3)}, tmp_path)
    with pytest.raises(
        ConfigError, match="--image-size 36 is not a positive multiple of vit_tiny's patch size 8"
    ):
        to_keras_arrays(hf_state_dict(), "vit_tiny", image_size=36)
    with pytest.raises(ConfigError, match="unknown ViT variant 'vit_s16'"):
        to_keras_arrays(hf_state_dict(), "vit_s16")


# --- the command line ----------------------------------------------------------------------------------------
def test_cli_report_drop_pooler_and_one_line_errors(tmp_path, capsys):
    checkpoint = tmp_path / "pytorch_model.bin"
    torch.save(hf_state_dict(), checkpoint)
    out = tmp_path / "pretrained" / "vit.npz"
    convert_main(["vit", "--variant", "vit_tiny", "--checkpoint", str(checkpoint), "--out", str(out)])
    printed = capsys.readouterr().out
    for line in ("layout: Hugging Face ViTModel names", "matched 72 tensors", "heads: 3, vit_tiny's",
                 "dropped 0: -", "pooler: pooler.dense.weight -> pooler.dense",
                 "position embeddings: 4 x 4 grid, for 32 px (as in the checkpoint)",
                 "build it with create_backbone('vit_tiny', image_size=32, weights=..., pooler=True)"):  # fmt: skip
        assert line in printed, printed
    assert out.is_file() and not list(out.parent.glob(".*tmp-*"))
    # --drop-pooler: for a model without one (ViT-SE variant B)
    dropped = tmp_path / "no_pooler.npz"
    convert_main(["vit", "--variant", "vit_tiny", "--checkpoint", str(checkpoint), "--out", str(dropped),
                  "--drop-pooler"])  # fmt: skip
    printed = capsys.readouterr().out
    assert "dropped 2: pooler.dense.bias, pooler.dense.weight" in printed
    assert "pooler: left out (--drop-pooler)" in printed
    create_backbone("vit_tiny", image_size=SIZE, weights=dropped)
    with pytest.raises(DataFormatError, match=r"unexpected 2: \[pooler.dense/bias, pooler.dense/kernel\]"):
        create_backbone(
            "vit_tiny", image_size=SIZE, weights=out
        )  # a pooler in the file needs a model with one

    timm = tmp_path / "timm.pth"
    torch.save(timm_state_dict(), timm)
    convert_main(
        ["vit", "--variant", "vit_tiny", "--checkpoint", str(timm), "--out", str(tmp_path / "t.npz")]
    )
    printed = capsys.readouterr().out
    assert (
        "layout: timm VisionTransformer names" in printed and "dropped 2: head.bias, head.weight" in printed
    )
    assert (
        "pooler: left out (none in the checkpoint), marked so" in printed
        and "layer_norm_epsilon=1e-6" in printed
    )

    bad = dict(hf_state_dict())
    del bad["encoder.layer.3.output.dense.weight"]
    torch.save(bad, tmp_path / "bad.bin")
    for argv, expected in (
        (
            ["--checkpoint", str(tmp_path / "bad.bin")],
            "missing 1: [encoder.layer.3.output.dense.weight (192, 768)]",
        ),
        (["--checkpoint", str(checkpoint), "--variant", "vit_b16"], "--variant vit_tiny fits"),
        (["--checkpoint", str(tmp_path / "nowhere.bin")], "nowhere.bin"),
        (["--checkpoint", str(checkpoint), "--out", str(tmp_path / "x.weights.h5")], "writes an .npz"),
        (
            ["--checkpoint", str(checkpoint), "--image-size", "36"],
            "--image-size 36 is not a positive multiple",
        ),
        (["--checkpoint", str(checkpoint), "--layout", "timm"], "missing"),
    ):
        args = {"--variant": "vit_tiny", "--out": str(tmp_path / "x.npz")}
        args.update(dict(zip(argv[::2], argv[1::2], strict=True)))
        with pytest.raises(SystemExit) as info:
            convert_main(["vit", *(item for pair in args.items() for item in pair)])
        assert info.value.code == 2
        captured = capsys.readouterr()
        errors = captured.err.strip().splitlines()
        assert len(errors) == 1 and errors[0].startswith("error:") and expected in errors[0], errors
    assert not (tmp_path / "x.npz").exists()


def test_cli_variants_are_kdface_s(capsys):
    with pytest.raises(SystemExit) as info:
        convert_main(["vit", "--variant", "vit_s16", "--checkpoint", "x.bin", "--out", "x.npz"])
    assert info.value.code == 2
    assert "--variant {" + ",".join(sorted(VIT_VARIANTS)) + "}" in capsys.readouterr().err
