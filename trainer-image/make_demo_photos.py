#!/usr/bin/env python3
"""Copies scikit-image's bundled sample photos (real files, not re-encoded) into class
folders for the demo dataset: DIR/<class>/<name>."""
import os
import shutil
import sys

import skimage

CLASSES = {
    "texture": ["brick.png", "grass.png", "gravel.png"],
    "animal": ["chelsea.png", "astronaut.png", "horse.png"],
    "object": ["coffee.png", "rocket.jpg", "clock_motion.png", "motorcycle_left.png", "camera.png", "coins.png"],
}


def main() -> None:
    out = sys.argv[1]
    data = os.path.join(os.path.dirname(skimage.__file__), "data")
    for label, names in CLASSES.items():
        os.makedirs(os.path.join(out, label), exist_ok=True)
        for name in names:
            shutil.copyfile(os.path.join(data, name), os.path.join(out, label, name))


if __name__ == "__main__":
    main()
