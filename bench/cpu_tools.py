"""CPU benchmark of the creation tools on a 12-megapixel input, against the plain steps each chains.

    OMP_NUM_THREADS=1 .venv/bin/python bench/cpu_tools.py [--repeats 3] [--json]

Input: a 4000x3000 JPEG (quality 92) of a synthetic product shot: a shaded red object on a
textured cloth (so GrabCut and the saliency map have real work), made once in a temporary folder;
for headshot and avatar, a 4000x3000 portrait (skimage's astronaut enlarged, reflected at the sides).

For each tool, CPU seconds (time.process_time: all threads of this process) of
  tool    jobs.tool.run_tool(...) + export to a folder (load, analysis, composition, PNGs with
          their records); the gallery is skipped (save=False), so only the tool is timed;
  plain   the steps the tool cannot avoid, done with Pillow alone: decode the same JPEG, centre-crop
          to each output's aspect ratio and resize to its size (one Lanczos resize with a box and
          reducing_gap=3, as the tools call it), encode each as PNG and write it;
and tool / plain: how much the tool's own work (cut-out, saliency, faces, compositing) costs on top.
The median of --repeats runs, after one warm-up run of each.
"""

from __future__ import annotations

import argparse
import io
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from designerbox import presets
from designerbox.jobs.tool import export, run_tool
from designerbox.tools.registry import get_tool


def make_input(folder: Path) -> Path:
    rng = np.random.default_rng(0)
    W, H = 4000, 3000
    xx = np.arange(W, dtype=np.float32)[None, :, None]
    cloth = np.array([190, 180, 165], np.float32) + rng.normal(0, 10, (H, W, 3)).astype(np.float32) + 18 * np.sin(xx / 30)
    im = Image.fromarray(np.clip(cloth, 0, 255).astype(np.uint8))
    mask = Image.new("L", (W, H))
    ImageDraw.Draw(mask).ellipse((1700, 500, 3000, 2600), fill=255)
    ImageDraw.Draw(mask).rectangle((2200, 250, 2500, 600), fill=255)
    shade = np.linspace(0.75, 1.1, W, dtype=np.float32)[None, :, None] * np.array([200, 40, 30], np.float32)
    im.paste(Image.fromarray(np.broadcast_to(shade, (H, W, 3)).clip(0, 255).astype(np.uint8)), (0, 0), mask)
    path = folder / "product-12mp.jpg"
    im.save(path, quality=92)
    return path


def make_portrait(folder: Path) -> Path:
    """A 4000x3000 portrait: skimage's astronaut enlarged to 3000x3000 (Lanczos), reflected at the sides."""
    from skimage import data

    face = np.asarray(Image.fromarray(data.astronaut()).resize((3000, 3000), Image.LANCZOS))
    im = np.concatenate([face[:, 500:0:-1], face, face[:, -2:-502:-1]], axis=1)
    path = folder / "portrait-12mp.jpg"
    Image.fromarray(np.ascontiguousarray(im)).save(path, quality=92)
    return path


def plain(path: Path, sizes: list[tuple[int, int]], out: Path) -> None:
    """Decode, resize to each size, encode PNG, write: what any tool must do at the least."""
    with Image.open(path) as im:
        im.load()
        for i, (w, h) in enumerate(sizes):
            iw, ih = im.size  # the centred window of the output's aspect ratio: a naive centre crop
            cw, ch = (iw, iw * h / w) if iw * h / w <= ih else (ih * w / h, ih)
            box = ((iw - cw) / 2, (ih - ch) / 2, (iw + cw) / 2, (ih + ch) / 2)
            buf = io.BytesIO()
            im.resize((w, h), Image.LANCZOS, box=box, reducing_gap=3.0).save(buf, format="PNG")
            (out / f"plain-{i}.png").write_bytes(buf.getvalue())


def cpu(fn) -> float:
    t = time.process_time()
    fn()
    return time.process_time() - t


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    cases = {
        "product (amazon)": ("product", "amazon", [(2000, 2000)]),
        "social (all 12 sizes)": ("social", "all", [(presets.get_size(s).width, presets.get_size(s).height)
                                                    for s in get_tool("social").presets()["all"]["options"]["sizes"]]),
        "marketing (square post)": ("marketing", "square-post", [(1080, 1080)]),
        "enhance (clean-up, same size)": ("enhance", "clean-up", [(4000, 3000)]),
        "style (starry)": ("style", "starry", [(4000, 3000)]),
        "headshot (4 looks, 1024)": ("headshot", "looks", [(1024, 1024)] * 4),
        "avatar (selfie, 512)": ("avatar", "selfie-512", [(512, 512)]),
    }
    options = {"marketing": {"headline": "Summer sale on everything red", "subline": "This week only, in every store",
                             "cta": "Shop now"}}
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        tmp = Path(tmp)
        product, portrait = make_input(tmp), make_portrait(tmp)
        for label, (tool, preset, sizes) in cases.items():
            src = portrait if tool in ("headshot", "avatar") else product
            out = tmp / tool
            out.mkdir()
            run = lambda: export(run_tool(tool, [src], options.get(tool), preset=preset, save=False), out)  # noqa: E731
            base = lambda: plain(src, sizes, out)  # noqa: E731
            run(), base()  # warm-up (imports, cascades)
            t_tool, t_plain = [], []
            for _ in range(args.repeats):
                t_tool.append(cpu(run))
                t_plain.append(cpu(base))
            a, b = statistics.median(t_tool), statistics.median(t_plain)
            rows.append({"tool": label, "input": "4000x3000 JPEG", "outputs": len(sizes), "tool_cpu_s": round(a, 2),
                         "plain_cpu_s": round(b, 2), "ratio": round(a / b, 2)})
            print(f"{label}: {a:.2f} s", file=sys.stderr)
    if args.json:
        print(json.dumps(rows, indent=2))
        return 0
    print(f"{'tool':<24} {'outputs':>7} {'tool CPU s':>11} {'plain CPU s':>12} {'tool/plain':>11}")
    for r in rows:
        print(f"{r['tool']:<24} {r['outputs']:>7} {r['tool_cpu_s']:>11.2f} {r['plain_cpu_s']:>12.2f} {r['ratio']:>10.2f}x")
    print("plain = decode the JPEG + centre crop and Lanczos resize to each output size + PNG encode and write (Pillow only)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
