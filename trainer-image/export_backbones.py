#!/usr/bin/env python3
"""Export the standard architectures from timm as fine-tunable TorchScript backbones.

Each architecture becomes ``OUT/NAME/{model.pt,manifest.json}`` in the format of
docs/backbones.md: ``forward(x[N,3,H,W]) -> [N, featureDim]`` pooled features (no dropout,
no classifier) and an exported ``classifier_logits(features) -> [N, classes]`` method that
is the model's own ImageNet head. The manifest's input size, resize, mean and std come from
timm's ``pretrained_cfg`` of the exact weights (``resize.shorterSide = floor(input /
crop_pct)``, as timm's own eval transform does).

Why scripted, not traced: ``torch.jit.trace`` records the ops of one mode, so BatchNorm
would stay frozen in it and ``.train()`` from Rust would do nothing. ``torch.jit.script``
keeps the train/eval switch, so the backbone can be fine-tuned from Rust (tch
``TrainableCModule``). All ten timm models below script as they are.

Weights: by default the pretrained ImageNet weights, downloaded by timm from the Hugging
Face hub (or the URL in the cfg), which needs the internet. With ``--random-weights`` the
network is timm's random initialisation (seeded, so repeatable): right shapes, meaningless
features, for offline shape and loading tests only; the manifest says so in ``source`` and
with ``"pretrained": false``.

Every folder is written into a temporary directory next to its destination and renamed
into place, so an interrupted export never leaves a half-written backbone. Before that the
saved file is reloaded and checked: eval mode, same features as the eager timm model,
``[2, featureDim]`` at the manifest's input size, and BatchNorm running statistics that
move in train mode and stay put in eval mode.

model.pt is not byte-reproducible (TorchScript writes a random serialization id), so
``modelSha256`` changes from export to export while the weights are the same.
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import socket
import sys
import tempfile
import time
from typing import Dict, List
from urllib.parse import urlparse

import torch
import torch.nn as nn

# Ocellus architecture name (crds/src/experiment.rs STANDARD_ARCHITECTURES) -> timm model.
TIMM_MODELS: Dict[str, str] = {
    "densenet121": "densenet121",
    "efficientnetb0": "efficientnet_b0",
    "efficientnetb2": "efficientnet_b2",
    "inception_v3": "inception_v3",
    "mobilenetv2": "mobilenetv2_100",
    "resnet34": "resnet34",
    "resnet50": "resnet50",
    "seresnet50": "seresnet50",
    "seresnext50": "seresnext50_32x4d",
    # timm's port of the Keras Xception weights (the original Keras architecture).
    "xception": "legacy_xception",
}
SEED = 0
CHECK_BATCH = 2


class FeatureExtractor(nn.Module):
    """A timm network without its classifier, plus that classifier as a separate method."""

    def __init__(self, network: nn.Module, head: nn.Module):
        super().__init__()
        self.network = network
        self.head = head

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalised [N,3,H,W] -> globally pooled features [N, featureDim]."""
        return self.network(x)

    @torch.jit.export
    def classifier_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features [N, featureDim] -> the pretrained head's logits [N, classes]."""
        return self.head(features)


class ExportError(Exception):
    pass


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def create_network(name: str, model: str, random_weights: bool) -> nn.Module:
    import timm

    # No dropout (timm's default stochastic depth is off too, see assert_deterministic): the
    # exported forward is the same in train and eval mode except for BatchNorm.
    kwargs = {"drop_rate": 0.0}
    if random_weights:
        torch.manual_seed(SEED)
        return timm.create_model(model, pretrained=False, **kwargs)
    try:
        return timm.create_model(model, pretrained=True, **kwargs)
    except Exception as error:  # timm raises whatever the hub client or urllib raised
        raise ExportError(
            f"{name}: could not download the pretrained weights of timm model {model!r} "
            f"({type(error).__name__}: {str(error).splitlines()[0] if str(error) else ''}). "
            "The weights come from the Hugging Face hub (or the URL in timm's pretrained_cfg), "
            "so run this script on a machine where the hub is reachable and copy the exported "
            "folder into the backbone directory, or pass --random-weights for an offline export "
            "that is good for shape tests only"
        ) from error


def weights_host(model: str) -> str:
    """The host timm downloads `model`'s default pretrained weights from."""
    import timm

    cfg = timm.models.get_pretrained_cfg(model)
    if cfg is None:
        raise ExportError(f"timm has no pretrained weights for {model!r}")
    if cfg.hf_hub_id:
        return urlparse(os.environ.get("HF_ENDPOINT", "https://huggingface.co")).hostname
    return urlparse(cfg.url).hostname


def check_weights_reachable(names: List[str]) -> None:
    """Fails at once, before exporting anything, when a weights host cannot be reached.

    Without this the hub client retries for about 25 s per file before giving up. Skipped
    with HF_HUB_OFFLINE=1, where timm uses the weights already in the local cache.
    """
    if os.environ.get("HF_HUB_OFFLINE", "").lower() in ("1", "true", "yes"):
        return
    hosts: Dict[str, List[str]] = {}
    for name in names:
        hosts.setdefault(weights_host(TIMM_MODELS[name]), []).append(name)
    unreachable = []
    for host, needing in sorted(hosts.items()):
        try:
            socket.create_connection((host, 443), timeout=10).close()
        except OSError as error:
            unreachable.append(f"{host} ({error}) for {', '.join(needing)}")
    if unreachable:
        raise ExportError(
            f"cannot reach {'; '.join(unreachable)}, where the pretrained weights come from. "
            "Run this script on a machine where the hub is reachable and copy the exported "
            "folders into the backbone directory, or pass --random-weights for an offline "
            "export that is good for shape tests only")


def assert_deterministic(name: str, network: nn.Module) -> None:
    """No dropout or stochastic depth left in the network."""
    from timm.layers import DropPath

    for path, module in network.named_modules():
        active = (isinstance(module, nn.modules.dropout._DropoutNd) and module.p > 0) or (
            isinstance(module, DropPath) and module.drop_prob > 0)
        if active:
            raise ExportError(f"{name}: {path} ({type(module).__name__}) is random in train mode")


def split_head(network: nn.Module) -> FeatureExtractor:
    """Moves the classifier out of `network`, which then returns pooled features."""
    head = network.get_classifier()
    if not isinstance(head, nn.Linear):
        raise ExportError(f"expected a Linear classifier, found {type(head).__name__}")
    network.reset_classifier(0)  # classifier -> Identity; global pooling stays
    return FeatureExtractor(network, head)


def manifest_for(name: str, model: str, network: nn.Module, head: nn.Linear,
                 random_weights: bool) -> dict:
    import timm

    cfg = network.pretrained_cfg
    channels, height, width = cfg["input_size"]
    if channels != 3 or height != width:
        raise ExportError(f"{name}: timm input size {cfg['input_size']} is not a square RGB image")
    crop_pct = float(cfg.get("crop_pct") or 1.0)
    if cfg.get("crop_mode", "center") != "center":
        raise ExportError(f"{name}: timm crop_mode {cfg.get('crop_mode')!r}, only 'center' is supported")
    weights = f"{model}.{cfg['tag']}" if cfg.get("tag") else model
    source = f"timm:{weights}"
    if random_weights:
        source += " (random weights: shape tests only)"
    return {
        "name": name,
        "format": 1,
        "inputSize": height,
        "resize": {
            "shorterSide": int(math.floor(height / crop_pct)),
            "centerCrop": height,
            "cropPct": crop_pct,
            "interpolation": cfg.get("interpolation", "bilinear"),
        },
        "mean": [float(v) for v in cfg["mean"]],
        "std": [float(v) for v in cfg["std"]],
        "featureDim": int(network.num_features),
        "classifier": {"method": "classifier_logits", "classes": int(head.out_features),
                       "labels": "ImageNet-1k" if head.out_features == 1000 else "see source"},
        "source": source,
        "license": cfg.get("license") or "unknown: see the weights' source",
        "pretrained": not random_weights,
        "timm": timm.__version__,
        "torch": torch.__version__,
    }


def check_saved(path: str, eager: FeatureExtractor, manifest: dict) -> None:
    """The saved file loads in eval mode, matches eager timm, and BatchNorm follows train/eval."""
    size, dim = manifest["inputSize"], manifest["featureDim"]
    loaded = torch.jit.load(path)
    if loaded.training:
        raise ExportError(f"{path}: saved in train mode")
    x = torch.randn(CHECK_BATCH, 3, size, size, generator=torch.Generator().manual_seed(SEED))
    with torch.no_grad():
        features = loaded(x)
        expected = eager(x)
        logits = loaded.classifier_logits(features)
    if list(features.shape) != [CHECK_BATCH, dim]:
        raise ExportError(f"{path}: features of shape {list(features.shape)}, expected {[CHECK_BATCH, dim]}")
    if list(logits.shape) != [CHECK_BATCH, manifest["classifier"]["classes"]]:
        raise ExportError(f"{path}: logits of shape {list(logits.shape)}")
    difference = float((features - expected).abs().max())
    if not difference <= 1e-4 * max(1.0, float(expected.abs().max())):
        raise ExportError(f"{path}: scripted and eager features differ by {difference:.3g}")

    def running_means() -> List[torch.Tensor]:
        return [b.clone() for n, b in loaded.named_buffers() if n.endswith("running_mean")]

    before = running_means()
    if not before:
        raise ExportError(f"{path}: no BatchNorm running statistics found")
    with torch.no_grad():
        loaded(x)
    if any(not torch.equal(a, b) for a, b in zip(before, running_means())):
        raise ExportError(f"{path}: BatchNorm statistics changed in eval mode")
    loaded.train()
    with torch.no_grad():
        loaded(x)
    moved = sum(not torch.equal(a, b) for a, b in zip(before, running_means()))
    if moved < len(before) // 2:
        raise ExportError(f"{path}: only {moved}/{len(before)} BatchNorm layers updated in train mode")


def replace_dir(tmp: str, dest: str) -> None:
    """Swaps the freshly built dir into place (rename is atomic; the old dir is removed after)."""
    old = None
    if os.path.exists(dest):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.old-", dir=os.path.dirname(dest))
        os.rename(dest, os.path.join(old, "x"))
    os.rename(tmp, dest)
    if old:
        shutil.rmtree(old)


def export(name: str, out_root: str, random_weights: bool) -> dict:
    started = time.time()
    model = TIMM_MODELS[name]
    network = create_network(name, model, random_weights)
    assert_deterministic(name, network)
    eager = split_head(network).eval()
    manifest = manifest_for(name, model, network, eager.head, random_weights)
    scripted = torch.jit.script(eager).eval()

    dest = os.path.join(out_root, name)
    tmp = tempfile.mkdtemp(prefix=f".{name}.tmp-", dir=out_root)
    try:
        model_path = os.path.join(tmp, "model.pt")
        scripted.save(model_path)
        check_saved(model_path, eager, manifest)
        manifest["modelSha256"] = sha256_file(model_path)
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o755)
        replace_dir(tmp, dest)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)
    print(f"{name}: {manifest['source']}, input {manifest['inputSize']}, "
          f"featureDim {manifest['featureDim']}, {os.path.getsize(os.path.join(dest, 'model.pt')) >> 20} MiB, "
          f"{time.time() - started:.1f}s", flush=True)
    return manifest


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n")[0],
        epilog="architectures: " + ", ".join(f"{n} (timm {m})" for n, m in TIMM_MODELS.items()))
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help="architectures to export (default: all ten)")
    parser.add_argument("--out", required=True,
                        help="backbone directory; each NAME/ folder in it is replaced atomically")
    parser.add_argument("--random-weights", action="store_true",
                        help="timm's random initialisation instead of downloading the pretrained "
                             "weights (offline; for shape tests only)")
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    args = parser.parse_args()

    names = args.names or list(TIMM_MODELS)
    unknown = [n for n in names if n not in TIMM_MODELS]
    if unknown:
        parser.error(f"unknown architecture(s) {', '.join(unknown)}; "
                     f"the standard ones are {', '.join(TIMM_MODELS)}")
    torch.set_num_threads(args.threads)
    # The few check forwards would otherwise pay for the profiling executor's graph
    # optimisation (seconds per model); it changes speed only, not results or the saved file.
    torch._C._set_graph_executor_optimize(False)
    out_root = os.path.abspath(args.out)
    os.makedirs(out_root, exist_ok=True)
    started = time.time()
    try:
        if not args.random_weights:
            check_weights_reachable(names)
        for name in dict.fromkeys(names):
            export(name, out_root, args.random_weights)
    except ExportError as error:
        print(f"ERROR: {error}", file=sys.stderr)
        sys.exit(1)
    print(f"exported {len(names)} backbone(s) into {out_root} in {time.time() - started:.1f}s")


if __name__ == "__main__":
    main()
