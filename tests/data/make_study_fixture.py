#!/usr/bin/env python3
"""Write the tiny study folder tests/data/study/ (3 categories x 2 images, Caltech-256 layout).

Made for the planted-region test models (tests/models/make_planted.py), whose class 0
("planted region") wins when the mean of a window's pixels exceeds 0.1 of full scale:

  centre-lit/   a bright square over the centre window on a dark ground: "planted region".
  dark-centre/  a black square covering the centre window on a light ground: "elsewhere" when
                sharp; a Gaussian blur (study --blur 12) bleeds the light ground into the window
                and the planted-centre model changes its mind to "planted region".
  photos/       two real photos (tests/data/chelsea.png, coffee.png) at 96 px.

Usage: python3 tests/data/make_study_fixture.py   (needs Pillow; output is deterministic)
"""

import os

from PIL import Image, ImageDraw

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "study")
SIZE = 112  # stretched to 224 by the planted models: one photo pixel is two view pixels


def square(ground, ink, box):
    img = Image.new("RGB", (SIZE, SIZE), ground)
    ImageDraw.Draw(img).rectangle(box, fill=ink)
    return img


def save(img, category, name):
    os.makedirs(os.path.join(OUT, category), exist_ok=True)
    img.save(os.path.join(OUT, category, name), optimize=True)


def main():
    # Window 69..138 in view pixels is 34.5..69 in photo pixels.
    save(square((10, 10, 10), (230, 230, 230), (30, 30, 73, 73)), "centre-lit", "a.png")
    save(square((30, 20, 40), (200, 160, 90), (28, 32, 76, 72)), "centre-lit", "b.png")
    save(square((235, 235, 235), (0, 0, 0), (33, 33, 70, 70)), "dark-centre", "a.png")
    save(square((200, 220, 240), (0, 0, 0), (32, 33, 71, 70)), "dark-centre", "b.png")
    for name in ("chelsea", "coffee"):
        photo = Image.open(os.path.join(HERE, name + ".png")).convert("RGB")
        photo.thumbnail((96, 96), Image.LANCZOS)
        save(photo, "photos", name + ".png")


if __name__ == "__main__":
    main()
