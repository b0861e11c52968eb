#!/usr/bin/env python3
"""Writes tiny.zip: 2 classes x 12 noisy 64x64 JPEGs in class folders, small enough for a ConfigMap.

The classes differ in their dominant colour, so even a CPU embeddings run separates them.
Usage: make_tiny_dataset.py OUT.zip
"""
import io
import random
import sys
import zipfile

from PIL import Image


def image(rng: random.Random, base: tuple) -> bytes:
    img = Image.new("RGB", (64, 64))
    img.putdata([tuple(max(0, min(255, c + rng.randint(-40, 40))) for c in base) for _ in range(64 * 64)])
    out = io.BytesIO()
    img.save(out, format="JPEG", quality=85)
    return out.getvalue()


def main() -> None:
    if len(sys.argv) != 2:
        sys.exit("usage: make_tiny_dataset.py OUT.zip")
    rng = random.Random(1234)
    with zipfile.ZipFile(sys.argv[1], "w", zipfile.ZIP_DEFLATED) as archive:
        for label, base in [("red", (200, 40, 40)), ("blue", (40, 40, 200))]:
            for index in range(12):
                archive.writestr(f"{label}/{index:02d}.jpg", image(rng, base))


if __name__ == "__main__":
    main()
