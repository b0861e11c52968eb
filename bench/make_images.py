#!/usr/bin/env python3
"""Writes benchmark datasets of real image files (Pillow), deterministic by seed.

  make_images.py folders DIR --count 10000 --size 256     class folders, half PNG half JPEG
  make_images.py archive FILE.tar --megabytes 2048 --size 512   an uncompressed tar of noise PNGs
"""
import argparse
import io
import os
import sys
import tarfile

import numpy as np
from PIL import Image


def picture(rng: np.random.Generator, size: int) -> Image.Image:
    """Gradients plus noise: compresses like a photo, not like a flat colour."""
    y, x = np.mgrid[0:size, 0:size].astype(np.float32) / size
    base = np.stack([x, y, (x + y) / 2], axis=-1) * rng.uniform(60, 200, size=3)
    noise = rng.normal(0, 25, size=(size, size, 3))
    return Image.fromarray(np.clip(base + noise, 0, 255).astype(np.uint8))


def folders(out: str, count: int, size: int) -> None:
    rng = np.random.default_rng(7)
    for i in range(count):
        folder = os.path.join(out, f"class{i % 10}")
        os.makedirs(folder, exist_ok=True)
        image = picture(rng, size)
        if i % 2:
            image.save(os.path.join(folder, f"{i}.jpg"), quality=90)
        else:
            image.save(os.path.join(folder, f"{i}.png"), compress_level=1)


def archive(path: str, megabytes: int, size: int) -> None:
    rng = np.random.default_rng(11)
    written, i = 0, 0
    with tarfile.open(path, "w") as tar:
        while written < megabytes << 20:
            noise = rng.integers(0, 256, size=(size, size, 3), dtype=np.uint8)
            buffer = io.BytesIO()
            Image.fromarray(noise).save(buffer, format="PNG", compress_level=0)
            info = tarfile.TarInfo(f"noise/class{i % 4}/{i}.png")
            info.size = buffer.tell()
            buffer.seek(0)
            tar.addfile(info, buffer)
            written += info.size
            i += 1
    print(f"{path}: {i} images, {written >> 20} MiB", file=sys.stderr)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="kind", required=True)
    f = sub.add_parser("folders")
    f.add_argument("out")
    f.add_argument("--count", type=int, default=10000)
    f.add_argument("--size", type=int, default=256)
    a = sub.add_parser("archive")
    a.add_argument("out")
    a.add_argument("--megabytes", type=int, default=2048)
    a.add_argument("--size", type=int, default=512)
    args = parser.parse_args()
    if args.kind == "folders":
        folders(args.out, args.count, args.size)
    else:
        archive(args.out, args.megabytes, args.size)


if __name__ == "__main__":
    main()
