#!/usr/bin/env python3
"""The Python reference for import throughput: one process opens and fully decodes every
image file under DIR with Pillow (as a careful Python importer would), and prints images/s."""
import os
import sys
import time

from PIL import Image

Image.MAX_IMAGE_PIXELS = 89_478_485  # Pillow's default bomb limit, the same as Ocellus's


def main() -> None:
    root = sys.argv[1]
    paths = sorted(
        os.path.join(folder, name)
        for folder, _, names in os.walk(root)
        for name in names
        if name.lower().endswith((".png", ".jpg", ".jpeg"))
    )
    start = time.perf_counter()
    for path in paths:
        with Image.open(path) as image:
            image.load()
    seconds = time.perf_counter() - start
    print(f"pillow: {len(paths)} images in {seconds:.2f} s = {len(paths) / seconds:.0f} images/s")


if __name__ == "__main__":
    main()
