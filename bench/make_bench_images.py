#!/usr/bin/env python3
"""N JPEG photos of a typical listing size (640x480) for the embedding benchmark: random crops
of scikit-image's real sample photos, so decoding costs what real photos cost."""
import os
import sys

import numpy as np
import skimage
from PIL import Image

NAMES = ["chelsea.png", "coffee.png", "rocket.jpg", "astronaut.png", "motorcycle_left.png", "brick.png"]


def main() -> None:
    out, count = sys.argv[1], int(sys.argv[2])
    os.makedirs(out, exist_ok=True)
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    photos = [Image.open(os.path.join(data, n)).convert("RGB") for n in NAMES]
    rng = np.random.default_rng(0)
    for i in range(count):
        path = os.path.join(out, f"{i:05d}.jpg")
        if os.path.exists(path):
            continue
        photo = photos[i % len(photos)]
        w, h = photo.size
        s = rng.uniform(0.7, 1.0)
        cw, ch = int(w * s), int(h * s)
        left, top = int(rng.integers(0, w - cw + 1)), int(rng.integers(0, h - ch + 1))
        photo.crop((left, top, left + cw, top + ch)).resize((640, 480), Image.BILINEAR).save(path, quality=90)


if __name__ == "__main__":
    main()
