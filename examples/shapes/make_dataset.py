"""Make a small "shapes" image-classification dataset, rendered on the fly (nothing downloaded).

It writes a folder-of-images dataset, one subfolder per class (circle, square, triangle, cross),
each image a PNG of one outlined shape at a random position, size, rotation, stroke width and
brightness, on a background with random brightness and noise. By default 20 % of each class goes
to a test split:

    shapes/test/circle/circle_0000.png ... shapes/train/cross/cross_1999.png

With `--split 0` the class folders sit directly under the output folder. Images are grayscale
(`L` mode) unless `--rgb` is given. The same `--seed` gives the same images.

    python make_dataset.py --out shapes --per-class 2000 --size 32 --seed 0
"""

import argparse
import math
import shutil
import sys
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

CLASSES = ("circle", "square", "triangle", "cross")
SUPERSAMPLE = 4  # draw at 4x the size, then downscale: anti-aliased edges


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, default=Path("shapes"), help="output folder (default: shapes/)")
    p.add_argument("--per-class", type=int, default=2000, help="images per class (default: 2000)")
    p.add_argument("--size", type=int, default=32, help="image width and height in pixels (default: 32)")
    p.add_argument("--seed", type=int, default=0, help="random seed (default: 0)")
    p.add_argument("--rgb", action="store_true", help="RGB images with random colours (default: grayscale)")
    p.add_argument("--split", type=float, default=0.2,
                   help="fraction of each class written to test/ (the rest to train/); 0 = no split (default: 0.2)")
    args = p.parse_args(argv)
    if args.per_class < 1 or args.size < 8 or not 0.0 <= args.split < 1.0:
        p.error("need --per-class >= 1, --size >= 8 and 0 <= --split < 1")
    return args


def polygon(cx, cy, radius, angle, n):
    """The n vertices of a regular polygon centred on (cx, cy)."""
    return [(cx + radius * math.cos(angle + 2 * math.pi * k / n),
             cy + radius * math.sin(angle + 2 * math.pi * k / n)) for k in range(n)]


def draw_shape(draw, name, cx, cy, radius, angle, width, fill):
    """Draw one outlined shape (or, for a cross, two bars) on `draw`."""
    if name == "circle":
        draw.ellipse([cx - radius, cy - radius, cx + radius, cy + radius], outline=fill, width=width)
    elif name == "square":
        draw.polygon(polygon(cx, cy, radius * 1.15, angle, 4), outline=fill, width=width)
    elif name == "triangle":
        draw.polygon(polygon(cx, cy, radius * 1.2, angle, 3), outline=fill, width=width)
    elif name == "cross":
        for a in (angle, angle + math.pi / 2):
            dx, dy = radius * math.cos(a), radius * math.sin(a)
            draw.line([cx - dx, cy - dy, cx + dx, cy + dy], fill=fill, width=width)
    else:
        raise ValueError(f"unknown shape {name!r}")


def colours(rng, rgb):
    """A background and a foreground colour that differ by at least 70 grey levels."""
    bg = rng.uniform(0, 255)
    fg = rng.uniform(0, 255)
    while abs(fg - bg) < 70:
        fg = rng.uniform(0, 255)
    if not rgb:
        return int(bg), int(fg)
    tint = lambda v: tuple(int(np.clip(v + rng.uniform(-40, 40), 0, 255)) for _ in range(3))
    return tint(bg), tint(fg)


def render(name, size, rng, rgb):
    """One random image of shape `name` as a PIL image (`L`, or `RGB` if rgb)."""
    big = size * SUPERSAMPLE
    bg, fg = colours(rng, rgb)
    img = Image.new("RGB" if rgb else "L", (big, big), bg)
    radius = rng.uniform(0.22, 0.38) * big
    margin = 1.2 * radius  # the polygons' vertices reach 1.2 radius: keep them inside
    cx, cy = rng.uniform(margin, big - margin, size=2)
    width = int(rng.uniform(0.15, 0.35) * radius)
    draw_shape(ImageDraw.Draw(img), name, cx, cy, radius, rng.uniform(0, 2 * math.pi), width, fg)
    img = img.resize((size, size), Image.LANCZOS)
    return add_noise(img, rng)


def add_noise(img, rng):
    """Gaussian pixel noise of a random strength (sigma 0..25 grey levels)."""
    pixels = np.asarray(img, dtype=np.float32)
    pixels += rng.normal(0.0, rng.uniform(0, 25), size=pixels.shape)
    return Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8), mode=img.mode)


def write_class(root, name, args, rng):
    """Write `--per-class` images of one class; the first `split` fraction go to test/."""
    n_test = round(args.per_class * args.split)
    for i in range(args.per_class):
        part = "" if args.split == 0 else ("test" if i < n_test else "train")
        folder = root / part / name
        folder.mkdir(parents=True, exist_ok=True)
        render(name, args.size, rng, args.rgb).save(folder / f"{name}_{i:04d}.png")


def main(argv=None):
    args = parse_args(argv)
    out = args.out
    if out.exists() and (not out.is_dir() or any(out.iterdir())):
        print(f"make_dataset: {out} exists and is not empty; remove it or choose another --out", file=sys.stderr)
        return 2
    tmp = out.with_name(out.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    rng = np.random.default_rng(args.seed)
    for name in CLASSES:
        write_class(tmp, name, args, rng)
    if out.exists():
        out.rmdir()  # the empty folder we were allowed to fill
    tmp.rename(out)
    n = args.per_class * len(CLASSES)
    print(f"wrote {n} images ({len(CLASSES)} classes: {', '.join(CLASSES)}) to {out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
