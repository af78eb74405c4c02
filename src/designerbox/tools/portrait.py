"""A portrait, analysed: the one face, its eyes, whether the photo can make a headshot, and the person's mask.
Shared by the headshot and avatar tools; OpenCV only (no network weights).

  find_face       OpenCV's frontal-face Haar cascade (Viola & Jones, CVPR 2001) on a working copy,
                  hits with a last-stage weight under 1 dropped (texture and JPEG blocks pass the
                  cascade with weights near 0, faces score 4 to 9); faces under 35% of the largest
                  one's width are ignored (people in the background,
                  false hits in texture), the rest must be exactly one;
  check_photo     the face large enough in pixels, bright enough (mean luma), sharp enough (variance
                  of the Laplacian of the face resized to 128 px: Pech-Pacheco et al., ICPR 2000);
  find_eyes       the eye cascades on the face's upper part; a pair is kept when the two eyes sit
                  in opposite halves, at a plausible distance, nearly level (otherwise: None, and the
                  framing uses the eye line's usual place in the face box);
  person_mask     GrabCut (Rother et al., SIGGRAPH 2004) seeded by a head-and-shoulders prior drawn
                  from the face box (face core, crown and neck sure, head and shoulders probable, the far
                  sides, the space above the head and everything half a face beyond the prior
                  background), at a working size, then once more on the head alone (its
                  surroundings' colours only); the part holding the face, its holes filled, each
                  row below the chin filled between its outer edges within 1.3 face widths of the
                  middle (the body is one span there);
                  then refined at full size by a guided filter (He et al., ECCV 2010) so the edge
                  follows the hair.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import cv2
import numpy as np

from designerbox.tools.product import guided_filter
from designerbox.tools.saliency import Box, thumbnail


class PortraitError(ValueError):
    """The photo cannot make a headshot; `problem` is one of no_face, several_faces, face_too_small,
    too_dark, too_blurry."""

    def __init__(self, problem: str, message: str):
        super().__init__(message)
        self.problem = problem


@dataclass
class Face:
    box: Box                                           # x0, y0, x1, y1 in the image's pixels
    eyes: tuple[tuple[float, float], tuple[float, float]] | None = None  # (image-left eye, image-right eye) centres

    @property
    def width(self) -> int:
        return self.box[2] - self.box[0]

    @property
    def height(self) -> int:
        return self.box[3] - self.box[1]

    @property
    def eye_centre(self) -> tuple[float, float]:
        """The middle of the eyes; without eyes, the usual place in a Haar face box (40% down)."""
        if self.eyes:
            (lx, ly), (rx, ry) = self.eyes
            return (lx + rx) / 2, (ly + ry) / 2
        return (self.box[0] + self.box[2]) / 2, self.box[1] + 0.40 * self.height

    @property
    def roll(self) -> float:
        """Degrees the eye line is tilted (positive: the image-right eye is lower); 0 without eyes."""
        if not self.eyes:
            return 0.0
        (lx, ly), (rx, ry) = self.eyes
        return float(np.degrees(np.arctan2(ry - ly, rx - lx)))


@lru_cache(maxsize=None)
def _cascade(name: str) -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + name
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's cascade {name} is missing ({path}); reinstall opencv-python-headless<5")
    return cascade


def detect_faces(rgb: np.ndarray, side: int = 1024) -> list[Box]:
    """Every frontal face (boxes in the image's pixels), largest first; detected on a copy whose
    longer side is at most `side`, down to 24 px faces there."""
    small = thumbnail(rgb, side)
    s = rgb.shape[1] / small.shape[1]
    grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    found, _, weights = _cascade("haarcascade_frontalface_default.xml").detectMultiScale3(
        grey, scaleFactor=1.08, minNeighbors=8, minSize=(24, 24), outputRejectLevels=True)
    # a hit the last stage barely passed (weight under 1: texture, a JPEG's blocks) is not a face
    boxes = [(round(x * s), round(y * s), round((x + w) * s), round((y + h) * s))
             for (x, y, w, h), weight in zip(found, np.ravel(weights)) if weight >= 1.0]
    return sorted(boxes, key=lambda b: -(b[2] - b[0]))


def find_face(rgb: np.ndarray) -> tuple[Face, dict]:
    """The one face of a portrait, with its eyes; PortraitError (no_face, several_faces) otherwise."""
    boxes = detect_faces(rgb)
    if not boxes:
        least = round(24 * max(1.0, max(rgb.shape[:2]) / 1024))
        raise PortraitError("no_face", "no face found: a headshot needs a photo of one person facing the camera "
                                       f"(a frontal face, not hidden, at least {least} px across in this photo)")
    main = [b for b in boxes if (b[2] - b[0]) >= 0.35 * (boxes[0][2] - boxes[0][0])]
    if len(main) > 1:
        raise PortraitError("several_faces", f"{len(main)} faces found, at {' and '.join(_where(b, rgb) for b in main)}: "
                                             "a headshot is of one person; crop the photo to the one face and try again")
    face = Face(box=main[0], eyes=find_eyes(rgb, main[0]))
    return face, {"face_box": list(face.box), "ignored_faces": [list(b) for b in boxes[1:]],
                  "eyes": [list(map(float, e)) for e in face.eyes] if face.eyes else None, "roll": round(face.roll, 2)}


def _where(b: Box, rgb: np.ndarray) -> str:
    cx, cy = (b[0] + b[2]) / 2 / rgb.shape[1], (b[1] + b[3]) / 2 / rgb.shape[0]
    return f"({cx:.0%} across, {cy:.0%} down)"


def find_eyes(rgb: np.ndarray, box: Box) -> tuple[tuple[float, float], tuple[float, float]] | None:
    """The eye centres in the image's pixels, or None when no plausible pair is found."""
    x0, y0, x1, y1 = box
    fw = x1 - x0
    roi = cv2.cvtColor(rgb[y0:y0 + round(0.6 * (y1 - y0)), x0:x1], cv2.COLOR_RGB2GRAY)
    s = 200 / fw  # eyes are looked for in a face 200 px wide
    roi = cv2.equalizeHist(cv2.resize(roi, (200, max(1, round(roi.shape[0] * s))), interpolation=cv2.INTER_AREA
                                      if s < 1 else cv2.INTER_CUBIC))
    for name in ("haarcascade_eye_tree_eyeglasses.xml", "haarcascade_eye.xml"):
        found = _cascade(name).detectMultiScale(roi, scaleFactor=1.05, minNeighbors=3, minSize=(24, 24),
                                                maxSize=(90, 90))
        centres = [(x + w / 2, y + h / 2) for x, y, w, h in found if 0.12 * 200 <= w <= 0.45 * 200]
        left = [c for c in centres if c[0] < 100 and c[1] > 0.15 * 200]
        right = [c for c in centres if c[0] >= 100 and c[1] > 0.15 * 200]
        pairs = [(a, b) for a in left for b in right
                 if 0.25 * 200 <= b[0] - a[0] <= 0.7 * 200 and abs(b[1] - a[1]) <= 0.15 * (b[0] - a[0]) * 4]
        pairs = [(a, b) for a, b in pairs if abs(np.degrees(np.arctan2(b[1] - a[1], b[0] - a[0]))) <= 20]
        if pairs:
            a, b = min(pairs, key=lambda p: abs(p[1][1] - p[0][1]))
            return (x0 + a[0] / s, y0 + a[1] / s), (x0 + b[0] / s, y0 + b[1] / s)
    return None


def check_photo(rgb: np.ndarray, face: Face, min_face: int = 64, min_brightness: float = 45.0,
                min_sharpness: float = 25.0) -> dict:
    """Measures of the face; PortraitError (face_too_small, too_dark, too_blurry) when one is out of bounds."""
    x0, y0, x1, y1 = face.box
    if face.width < min_face:
        raise PortraitError("face_too_small", f"the face is too small: {face.width}x{face.height} px, a headshot "
                                              f"needs at least {min_face} px across; use a larger photo or one "
                                              "taken closer")
    grey = cv2.cvtColor(rgb[y0:y1, x0:x1], cv2.COLOR_RGB2GRAY)
    brightness = float(grey.mean())
    if brightness < min_brightness:
        raise PortraitError("too_dark", f"the photo is too dark: the face's mean brightness is {brightness:.0f} of "
                                        f"255 (at least {min_brightness:.0f} is needed); use a photo taken in more light")
    g128 = cv2.resize(grey, (128, 128), interpolation=cv2.INTER_AREA if face.width > 128 else cv2.INTER_CUBIC)
    g128 = g128.astype(np.float32) * (128.0 / max(brightness, 1.0))  # judged at a common exposure
    sharpness = float(cv2.Laplacian(g128, cv2.CV_32F).var())
    if sharpness < min_sharpness:
        raise PortraitError("too_blurry", f"the photo is too blurry: the face's sharpness (variance of the Laplacian "
                                          f"at 128 px) is {sharpness:.1f}, at least {min_sharpness:.0f} is needed; "
                                          "use a sharper photo (in focus, without motion blur)")
    return {"face_px": face.width, "brightness": round(brightness, 1), "sharpness": round(sharpness, 1)}


def person_mask(rgb: np.ndarray, face: Face, work_size: int = 512) -> tuple[np.ndarray, dict]:
    """alpha (H, W) float32 in 0..1 of the person around `face`: head, hair, neck and shoulders."""
    H, W = rgb.shape[:2]
    x0, y0, x1, y1 = face.box
    fw, fh = x1 - x0, y1 - y0
    cx = (x0 + x1) / 2
    # 1. the region the person can occupy: 2.2 face widths either side, from above the hair to the bottom
    rx0, rx1 = max(0, round(cx - 2.2 * fw)), min(W, round(cx + 2.2 * fw))
    ry0, ry1 = max(0, round(y0 - 1.0 * fh)), min(H, round(y1 + 4.0 * fh))
    region = rgb[ry0:ry1, rx0:rx1]
    s = min(1.0, work_size / max(region.shape[:2]))
    small = cv2.resize(region, (max(1, round(region.shape[1] * s)), max(1, round(region.shape[0] * s))),
                       interpolation=cv2.INTER_AREA) if s < 1 else region
    h, w = small.shape[:2]
    # 2. the prior, in working pixels
    f = lambda v, o: (v - o) * s  # noqa: E731  image coordinate -> working coordinate
    fcx, fx0, fx1, fy0, fy1 = f(cx, rx0), f(x0, rx0), f(x1, rx0), f(y0, ry0), f(y1, ry0)
    fws, fhs = fx1 - fx0, fy1 - fy0
    mask = np.full((h, w), cv2.GC_PR_BGD, np.uint8)
    head = np.zeros((h, w), np.uint8)
    cv2.ellipse(head, (round(fcx), round(fy0 + 0.4 * fhs)), (round(0.72 * fws), round(0.95 * fhs)), 0, 0, 360, 1, -1)
    shoulders = np.zeros((h, w), np.uint8)
    top = fy1 + 0.35 * fhs
    pts = np.array([[fcx - 0.9 * fws, top], [fcx + 0.9 * fws, top], [fcx + 2.0 * fws, top + 1.6 * fhs],
                    [fcx + 2.0 * fws, h], [fcx - 2.0 * fws, h], [fcx - 2.0 * fws, top + 1.6 * fhs]], np.int32)
    cv2.fillPoly(shoulders, [pts], 1)
    neck = np.zeros((h, w), np.uint8)
    cv2.rectangle(neck, (round(fcx - 0.22 * fws), round(fy1 - 0.1 * fhs)), (round(fcx + 0.22 * fws), round(fy1 + 0.6 * fhs)), 1, -1)
    core = np.zeros((h, w), np.uint8)
    cv2.ellipse(core, (round(fcx), round((fy0 + fy1) / 2 + 0.05 * fhs)), (round(0.3 * fws), round(0.38 * fhs)), 0, 0, 360, 1, -1)
    crown = np.zeros((h, w), np.uint8)  # just above the face box: hair, scalp or hat, the person's in any case
    cv2.ellipse(crown, (round(fcx), round(fy0 + 0.05 * fhs)), (round(0.3 * fws), round(0.28 * fhs)), 0, 0, 360, 1, -1)
    mask[(head | shoulders).astype(bool)] = cv2.GC_PR_FGD
    mask[(core | neck | crown).astype(bool)] = cv2.GC_FGD
    far = np.zeros((h, w), bool)  # sure background: above the hair, and the sides above the shoulders
    far[: max(0, round(fy0 - 0.75 * fhs))] = True
    yy, xx = np.mgrid[:h, :w]
    far |= (yy < top) & (np.abs(xx - fcx) > 1.25 * fws)
    mask[far & ~(head | core | neck | crown).astype(bool)] = cv2.GC_BGD
    grow = max(3, round(0.5 * fws)) | 1  # outside the prior grown by half a face width: background for sure
    envelope = cv2.dilate(head | shoulders | neck, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (grow, grow))).astype(bool)
    mask[~envelope] = cv2.GC_BGD
    # 3. GrabCut from that mask
    cv2.setRNGSeed(0)  # its GMM initialisation draws from OpenCV's RNG: fixed for repeatable masks
    bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
    cv2.grabCut(np.ascontiguousarray(small), mask, None, bgd, fgd, 5, cv2.GC_INIT_WITH_MASK)
    # 3b. the head again, on its own: colour models of the head's surroundings only (a brown object
    # elsewhere in the photo must not claim brown hair for the background)
    hx0, hx1 = max(0, round(fcx - 1.2 * fws)), min(w, round(fcx + 1.2 * fws))
    hy0, hy1 = max(0, round(fy0 - 1.0 * fhs)), min(h, round(fy1 + 0.3 * fhs))
    sub = mask[hy0:hy1, hx0:hx1]
    if ((sub == cv2.GC_BGD) | (sub == cv2.GC_PR_BGD)).any() and ((sub == cv2.GC_FGD) | (sub == cv2.GC_PR_FGD)).any():
        cv2.setRNGSeed(0)
        sub = np.ascontiguousarray(sub)
        bgd, fgd = np.zeros((1, 65), np.float64), np.zeros((1, 65), np.float64)
        cv2.grabCut(np.ascontiguousarray(small[hy0:hy1, hx0:hx1]), sub, None, bgd, fgd, 4, cv2.GC_INIT_WITH_MASK)
        mask[hy0:hy1, hx0:hx1] = sub
    m = ((mask == cv2.GC_FGD) | (mask == cv2.GC_PR_FGD)).astype(np.uint8)
    # 4. the part holding the face, holes filled, small bites smoothed
    m = cv2.morphologyEx(m, cv2.MORPH_OPEN, np.ones((3, 3), np.uint8))
    n, labels = cv2.connectedComponents(m, connectivity=8)
    keep = labels[np.clip(round((fy0 + fy1) / 2), 0, h - 1), np.clip(round(fcx), 0, w - 1)]
    m = (labels == keep).astype(np.uint8) if keep else core
    inv = (1 - m).astype(np.uint8)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(inv, connectivity=4)
    for i in range(1, n):
        x, y, ww, hh, _ = stats[i]
        if x > 0 and y > 0 and x + ww < w and y + hh < h:  # enclosed: a hole, not background
            m[labels == i] = 1
    # below the chin the body is one span per row: fill between its outer edges (a collar, a gap in a ring)
    chin = max(0, min(h, round(fy1)))
    band = np.abs(np.arange(w) - fcx) <= 1.3 * fws  # within 1.3 face widths of the middle (not a held object)
    rows = m[chin:].astype(bool) & band[None, :]
    has = rows.any(axis=1)
    if has.any():
        first = np.where(has, rows.argmax(axis=1), w)
        last = np.where(has, w - 1 - rows[:, ::-1].argmax(axis=1), -1)
        cols = np.arange(w)[None, :]
        m[chin:] |= ((cols >= first[:, None]) & (cols <= last[:, None])).astype(np.uint8)
    k = max(5, round(0.2 * fws)) | 1  # gaps narrower than a fifth of the face (a collar, a strand) are closed
    m = cv2.morphologyEx(m, cv2.MORPH_CLOSE, cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (k, k))) & envelope
    # 5. full size, guided by the photo's own edges
    alpha = np.zeros((H, W), np.float32)
    a = cv2.resize(m.astype(np.float32), (rx1 - rx0, ry1 - ry0), interpolation=cv2.INTER_LINEAR)
    grey = cv2.cvtColor(region, cv2.COLOR_RGB2GRAY).astype(np.float32) / 255.0
    r = max(2, round(2 / s))
    a = np.clip(guided_filter(grey, a, r, 1e-3), 0, 1)
    alpha[ry0:ry1, rx0:rx1] = np.clip((a - 0.5) * 1.5 + 0.5, 0, 1)
    return alpha, {"mask_share": round(float(m.mean()), 4), "region": [rx0, ry0, rx1, ry1]}
