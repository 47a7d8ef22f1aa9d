"""``python -m kdface.convert resnet|iresnet|vit --checkpoint X.pth --out X.npz ...``.

Converts a torchvision-named ResNet-18/50 checkpoint (``torch.save`` file, pickled dict of NumPy
arrays, or ``.npz``) to an ``.npz`` that ``kdface.backbones.create_backbone("resnet18", image_size=...,
weights=...)`` loads (likewise ``iresnet`` for insightface IResNets, F-SKD's and A-SKD's CBAM ones included);
see :mod:`kdface.convert.torch_resnet`. ``vit --variant vit_b16`` converts a Hugging Face or timm ViT
(:mod:`kdface.convert.torch_vit`). Errors print one ``error:`` line and exit with status 2.
"""

from __future__ import annotations

import argparse

from kdface.cli import ArgumentParser, HelpFormatter, add_verbose_argument, quiet_tensorflow, run_cli


def _print_report(report, what: str, details=()) -> None:
    print(f"matched {report.matched} tensors ({what})")
    counters = [k for k in report.dropped if k.endswith(".num_batches_tracked")]
    shown = [k for k in report.dropped if k not in counters] + (
        [f"{len(counters)} x num_batches_tracked"] if counters else []
    )
    print(f"dropped {len(report.dropped)}: {', '.join(shown) or '-'}")
    for line in details:
        print(line)
    print(f"wrote {report.out}")


def _check(args) -> None:
    """The paths, before the backbone is built: the checkpoint exists, ``--out`` can be written."""
    from kdface.convert.torch_resnet import check_out
    from kdface.io.paths import require_file

    require_file(
        args.checkpoint, "--checkpoint", hint="a PyTorch checkpoint (.pth), a pickle (.pkl) or an .npz"
    )
    check_out(args.out, getattr(args, "drop_fc", False))


def _resnet(args) -> None:
    from kdface.convert.torch_resnet import convert

    _check(args)
    report = convert(args.checkpoint, args.depth, args.out, stride_on=args.stride_on, fmt=args.format)
    _print_report(report, f"ResNet-{args.depth} backbone, stride on {args.stride_on}")


def _iresnet(args) -> None:
    from kdface.convert.torch_resnet import convert

    _check(args)
    report = convert(args.checkpoint, args.depth, args.out, fmt=args.format, arch="iresnet",
                     image_size=args.image_size, drop_fc=args.drop_fc, attention=args.attention,
                     head=args.head, features_scale=args.features_scale, layout=args.layout)  # fmt: skip
    if args.head == "pool":
        head = "pool head"
    else:
        head = "fc dropped" if args.drop_fc else f"fc for {args.image_size} px input"
    build = f"attention={args.attention!r}, head={args.head!r}"
    if args.head == "fc" and report.features_scale:
        build += ", features_scale=True"
    _print_report(report, f"IResNet-{args.depth} backbone, attention {args.attention}, {head}")
    print(f"build it with create_backbone('iresnet{args.depth}', image_size=..., weights=..., {build})")


def _vit(args) -> None:
    from kdface.backbones.vit import VIT_VARIANTS
    from kdface.convert.torch_vit import LAYOUT_TITLES, check_vit_out, convert
    from kdface.io.paths import require_file

    require_file(args.checkpoint, "--checkpoint",
                 hint="a PyTorch checkpoint (pytorch_model.bin, .pth), a pickle (.pkl) or an .npz")  # fmt: skip
    check_vit_out(args.out)
    report = convert(args.checkpoint, args.variant, args.out, image_size=args.image_size, fmt=args.format,
                     layout=args.layout, drop_pooler=args.drop_pooler)  # fmt: skip
    arch = VIT_VARIANTS[report.variant]
    details = [f"heads: {arch.heads}, {report.variant}'s (a state dict does not say)"]
    if report.pooler_from:
        details.append(f"pooler: {report.pooler_from} -> pooler.dense")
    else:
        why = "--drop-pooler" if args.drop_pooler and report.dropped_pooler else "none in the checkpoint"
        details.append(
            f"pooler: left out ({why}), marked so in the .npz: a pooler=True model keeps an initialised one"
        )
    grid, ckpt = report.grid, report.checkpoint_grid
    if report.resampled:
        details.append(f"position embeddings: the checkpoint's {ckpt} x {ckpt} grid resampled bicubically to "
                       f"{grid} x {grid} for {report.image_size} px (CLS row kept)")  # fmt: skip
    else:
        details.append(
            f"position embeddings: {grid} x {grid} grid, for {report.image_size} px (as in the checkpoint)"
        )
    if report.layout == "timm":
        details.append("LayerNorm epsilon: timm's is 1e-6 (kdface's default 1e-12): build with "
                       "layer_norm_epsilon=1e-6 for timm's exact network")  # fmt: skip
    print(f"layout: {LAYOUT_TITLES[report.layout]}")
    what = (f"{report.variant} backbone: patch {arch.patch_size}, depth {arch.depth}, width {arch.width}, "
            f"MLP {arch.mlp_width}; {report.arrays} kdface arrays")  # fmt: skip
    _print_report(report, what, details)
    print(f"build it with {report.build_call()}")


def main(argv=None) -> None:
    quiet_tensorflow(argv)
    parser = ArgumentParser(
        prog="python -m kdface.convert", description=__doc__.split("\n")[0], formatter_class=HelpFormatter
    )
    commands = parser.add_subparsers(dest="command", required=True)
    resnet = commands.add_parser(
        "resnet",
        help="torchvision-named ResNet-18/50 checkpoint -> kdface .npz",
        description="Convert a torchvision-named ResNet-18/50 checkpoint to kdface weights (strict: "
        "every backbone tensor matched exactly once; fc.*, feature.* and num_batches_tracked dropped).",
        formatter_class=HelpFormatter,
    )
    resnet.add_argument("--depth", type=int, choices=(18, 50), required=True)
    resnet.add_argument(
        "--checkpoint",
        required=True,
        help=".pth/.pth.tar (torch.save), .pkl (dict of "
        "NumPy arrays, e.g. VGGFace2 resnet50_ft_weight.pkl) or .npz",
    )
    resnet.add_argument("--out", required=True, help="output .npz (or .weights.h5)")
    resnet.add_argument(
        "--format",
        default="auto",
        choices=("auto", "torch", "pickle", "npz"),
        help="checkpoint format (auto: from the suffix; .npz, .pkl/.pickle, else torch)",
    )
    resnet.add_argument(
        "--stride-on",
        default="3x3",
        choices=("3x3", "1x1"),
        help="depth 50: 1x1 for Caffe-style v1 weights such as VGGFace2's",
    )
    iresnet = commands.add_parser(
        "iresnet",
        help="insightface / F-SKD / A-SKD IResNet-18/34/50/100 checkpoint -> kdface .npz",
        description="Convert an insightface (arcface_torch) IResNet checkpoint, or an F-SKD / A-SKD (Face_Pytorch "
        "layout) one with or without CBAM, to kdface weights (strict: every backbone tensor, the embedding fc "
        "and BatchNorm1d included, matched exactly once).",
        formatter_class=HelpFormatter,
    )
    iresnet.add_argument("--depth", type=int, choices=(18, 34, 50, 100), required=True)
    iresnet.add_argument("--checkpoint", required=True, help=".pth (torch.save), .pkl or .npz")
    iresnet.add_argument("--out", required=True, help="output .npz (or .weights.h5)")
    iresnet.add_argument("--format", default="auto", choices=("auto", "torch", "pickle", "npz"),
                         help="checkpoint format (auto: from the suffix)")  # fmt: skip
    iresnet.add_argument("--image-size", type=int, default=112,
                         help="input size the model will be built for (the embedding fc's width depends on it)")  # fmt: skip
    iresnet.add_argument("--drop-fc", action="store_true",
                         help="leave the embedding fc out (it keeps its initialisation), for another input size")  # fmt: skip
    iresnet.add_argument("--attention", default="none", choices=("none", "cbam_fskd", "cbam_askd"),
                         help="the blocks' attention: none (--mode ir), F-SKD's CBAM or A-SKD's (Face_Pytorch's)")  # fmt: skip
    iresnet.add_argument("--head", default="fc", choices=("fc", "pool"),
                         help="embedding head: fc (BN-dropout-fc-BN, 'Option E') or pool (F-SKD v1's 'Option A', no weights)")  # fmt: skip
    iresnet.add_argument("--layout", default="auto", choices=("auto", "insightface", "face_pytorch"),
                         help="the checkpoint's names: insightface/F-SKD, or Face_Pytorch/A-SKD "
                         "(input_layer, res_layer, shortcut_layer, output_layer); auto: from the names")  # fmt: skip
    iresnet.add_argument("--features-scale", action=argparse.BooleanOptionalAction, default=None,
                         help="the fc head's BatchNorm1d gamma is trainable (A-SKD) rather than fixed at 1 "
                         "(insightface, F-SKD); default: trainable for the face_pytorch layout only")  # fmt: skip
    vit = commands.add_parser(
        "vit",
        help="Hugging Face or timm ViT checkpoint -> kdface .npz",
        description="Convert a Hugging Face ViTModel / ViTForImageClassification checkpoint (e.g. "
        "google/vit-base-patch16-224-in21k's pytorch_model.bin) or a timm VisionTransformer one to kdface ViT "
        "weights (strict: every tensor used once or reported as dropped; classifier.* / head.* dropped).",
        formatter_class=HelpFormatter,
    )
    vit.add_argument("--variant", required=True, choices=("vit_b16", "vit_tiny"),
                     help="the kdface ViT the weights are for (its shapes are checked; the heads are taken from it)")  # fmt: skip
    vit.add_argument(
        "--checkpoint", required=True, help="pytorch_model.bin / .pth (torch.save), .pkl or .npz"
    )
    vit.add_argument("--out", required=True, help="output .npz")
    vit.add_argument("--format", default="auto", choices=("auto", "torch", "pickle", "npz"),
                     help="checkpoint format (auto: from the suffix)")  # fmt: skip
    vit.add_argument("--layout", default="auto", choices=("auto", "hf", "timm"),
                     help="the checkpoint's names: Hugging Face (embeddings.*, encoder.layer.*; 'vit.' prefix optional) "
                     "or timm (cls_token, pos_embed, blocks.*); auto: from the names")  # fmt: skip
    vit.add_argument("--image-size", type=int, default=None,
                     help="input size the model will be built for; position embeddings are resampled "
                     "bicubically when it differs from the checkpoint's (default: the checkpoint's)")  # fmt: skip
    vit.add_argument("--drop-pooler", action="store_true",
                     help="leave the checkpoint's pooler out, for a model built without one (pooler=False, "
                     "ViT-SE variant B)")  # fmt: skip
    for command in (resnet, iresnet, vit):
        add_verbose_argument(command)
    args = parser.parse_args(argv)
    if args.command in ("iresnet", "vit"):
        run_cli(_iresnet if args.command == "iresnet" else _vit, args)
        return
    if args.stride_on != "3x3" and args.depth != 50:
        parser.error("--stride-on 1x1 applies only to --depth 50 (bottleneck blocks)")
    run_cli(_resnet, args)


if __name__ == "__main__":
    main()
