#!/usr/bin/env python3
"""PyTorch reference for the embedding benchmark (bench/embed.sh), in its best configuration.

model: the backbone's scripted model.pt, tried as scripted, channels_last, channels_last +
    torch.jit.freeze, and channels_last + freeze + optimize_for_inference; the fastest counts.
files: Pillow decode + Resize(shorterSide, bilinear antialiased) + CenterCrop + ToTensor +
    Normalize (the torchvision steps, written with Pillow and numpy) in a DataLoader, with the
    best of num_workers 0/1/2, into the fastest model form.
Prints one JSON line per measurement, and a last line for the best.
"""
import argparse
import json
import os
import resource
import time

import numpy as np
import torch
from PIL import Image


def model_forms(path: str):
    scripted = torch.jit.load(path).eval()
    yield "scripted", scripted, False
    cl = torch.jit.load(path).eval().to(memory_format=torch.channels_last)
    yield "channels_last", cl, True
    frozen = torch.jit.freeze(torch.jit.load(path).eval().to(memory_format=torch.channels_last))
    yield "channels_last+freeze", frozen, True
    try:
        optimized = torch.jit.optimize_for_inference(
            torch.jit.freeze(torch.jit.load(path).eval().to(memory_format=torch.channels_last)))
        yield "channels_last+freeze+optimize_for_inference", optimized, True
    except Exception as error:  # noqa: BLE001 - report and go on with the others
        print(json.dumps({"impl": "pytorch", "form": "optimize_for_inference", "error": str(error)}))


def time_model(model, channels_last: bool, batch: int, side: int, total: int) -> float:
    x = torch.randn(batch, 3, side, side)
    if channels_last:
        x = x.contiguous(memory_format=torch.channels_last)
    with torch.inference_mode():
        model(x)
        model(x)
        started = time.perf_counter()
        done = 0
        while done < total:
            model(x)[0, 0].item()
            done += batch
    return done / (time.perf_counter() - started)


class Images(torch.utils.data.Dataset):
    def __init__(self, paths, manifest):
        self.paths = paths
        self.shorter = manifest["resize"]["shorterSide"]
        self.crop = manifest["resize"]["centerCrop"]
        self.mean = np.array(manifest["mean"], dtype=np.float32)
        self.std = np.array(manifest["std"], dtype=np.float32)

    def __len__(self):
        return len(self.paths)

    def __getitem__(self, index):
        image = Image.open(self.paths[index]).convert("RGB")
        width, height = image.size
        scale = self.shorter / min(width, height)
        size = (max(self.crop, int(width * scale + 0.5)), max(self.crop, int(height * scale + 0.5)))
        image = image.resize(size, Image.BILINEAR)  # Pillow's resize is antialiased, as torchvision's
        left, top = (size[0] - self.crop) // 2, (size[1] - self.crop) // 2
        image = image.crop((left, top, left + self.crop, top + self.crop))
        array = (np.asarray(image, dtype=np.float32) / 255.0 - self.mean) / self.std
        return torch.from_numpy(array.transpose(2, 0, 1).copy())


def time_files(model, channels_last, paths, manifest, batch, workers) -> float:
    loader = torch.utils.data.DataLoader(Images(paths, manifest), batch_size=batch, num_workers=workers,
                                         persistent_workers=False)
    started = time.perf_counter()
    rows = 0
    with torch.inference_mode():
        for x in loader:
            if channels_last:
                x = x.contiguous(memory_format=torch.channels_last)
            rows += model(x).shape[0]
    assert rows == len(paths)
    return len(paths) / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("mode", choices=["model", "files"])
    parser.add_argument("backbone", help="backbone folder (model.pt + manifest.json)")
    parser.add_argument("dir", nargs="?")
    parser.add_argument("--batch", type=int, default=16)
    parser.add_argument("--images", type=int, default=256)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    manifest = json.load(open(os.path.join(args.backbone, "manifest.json")))
    side = manifest["inputSize"]
    results = []
    forms = list(model_forms(os.path.join(args.backbone, "model.pt")))
    speeds = {name: time_model(m, cl, args.batch, side, args.images) for name, m, cl in forms}
    for name, speed in speeds.items():
        print(json.dumps({"impl": "pytorch", "mode": "model", "form": name, "batch": args.batch,
                          "images_per_second": round(speed, 2)}))
    best_form = max(speeds, key=speeds.get)
    if args.mode == "model":
        results.append({"form": best_form, "images_per_second": speeds[best_form]})
    else:
        model, channels_last = next((m, cl) for name, m, cl in forms if name == best_form)
        paths = sorted(os.path.join(args.dir, f) for f in os.listdir(args.dir))
        time_files(model, channels_last, paths[: 2 * args.batch], manifest, args.batch, 0)  # warm-up
        for workers in (0, 1, 2):
            speed = time_files(model, channels_last, paths, manifest, args.batch, workers)
            print(json.dumps({"impl": "pytorch", "mode": "files", "form": best_form, "workers": workers,
                              "images_per_second": round(speed, 2)}))
            results.append({"form": best_form, "workers": workers, "images_per_second": speed})
    best = max(results, key=lambda r: r["images_per_second"])
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    print(json.dumps({"impl": "pytorch", "mode": args.mode, "best": True, "batch": args.batch,
                      **{k: (round(v, 2) if isinstance(v, float) else v) for k, v in best.items()},
                      "peak_rss_mb": round(peak, 1)}))


if __name__ == "__main__":
    main()
