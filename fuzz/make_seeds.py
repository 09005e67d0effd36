#!/usr/bin/env python3
"""Write the format seeds of the pipeline fuzz target (corpus/pipeline/seed-*): two steering
bytes (segmenter/fill, grid), then a small image in each format glassbox decodes.
Usage: python3 fuzz/make_seeds.py   (needs Pillow)"""
import io
import os

from PIL import Image

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus", "pipeline")
base = Image.open(os.path.join(HERE, "..", "tests", "data", "chelsea.png")).convert("RGB")


def save(name, img, fmt, ctl, **kw):
    b = io.BytesIO()
    img.save(b, fmt, **kw)
    with open(os.path.join(OUT, "seed-" + name), "wb") as f:
        f.write(bytes(ctl) + b.getvalue())


os.makedirs(OUT, exist_ok=True)
small = base.resize((24, 16))
save("png-rgb", small, "PNG", [0, 9])
save("png-grey", small.convert("L"), "PNG", [1, 3])
save("png-rgba", small.convert("RGBA"), "PNG", [2, 29])
save("jpeg", base.resize((40, 28)), "JPEG", [4, 10], quality=70)
save("gif", small.convert("P"), "GIF", [6, 2])
save("bmp", base.resize((8, 8)), "BMP", [3, 0])
save("tiff", base.resize((6, 4)), "TIFF", [5, 7])
save("webp", base.resize((20, 20)), "WEBP", [7, 15])
