"""Where the subject is: a saliency map, face boxes and the subject's box, shared by the tools.

  spectral_residual   Hou & Zhang, "Saliency Detection: A Spectral Residual Approach", CVPR 2007:
                      the log-amplitude spectrum minus its local mean, back with the original phase,
                      squared and blurred (eq. 5-8), on a 64-pixel-wide thumbnail as in the paper.
  border_contrast     colour distance (CIELAB) from the median colour of the image's border: large
                      for an object on a plain or studio background.
  faces               OpenCV's frontal-face Haar cascade (bundled in opencv-python-headless).
  subject_box         the box around the salient blobs and the faces (with head room).
"""

from __future__ import annotations

from functools import lru_cache

import cv2
import numpy as np
from PIL import Image

Box = tuple[int, int, int, int]  # x0, y0, x1, y1 (x1, y1 exclusive), in the image's pixels


def thumbnail(rgb: np.ndarray, side: int) -> np.ndarray:
    """rgb (H, W, 3) uint8 -> the same image with its longer side at most `side` (INTER_AREA)."""
    h, w = rgb.shape[:2]
    s = side / max(h, w)
    if s >= 1:
        return rgb
    return cv2.resize(rgb, (max(1, round(w * s)), max(1, round(h * s))), interpolation=cv2.INTER_AREA)


def spectral_residual(rgb: np.ndarray, width: int = 64) -> np.ndarray:
    """Saliency (h, w) float32 in 0..1 at the thumbnail size whose width is `width`."""
    h, w = rgb.shape[:2]
    small = cv2.resize(cv2.cvtColor(rgb, cv2.COLOR_RGB2GRAY), (width, max(1, round(h * width / w))),
                       interpolation=cv2.INTER_AREA).astype(np.float32) / 255.0
    f = np.fft.fft2(small)
    log_amp = np.log(np.abs(f) + 1e-8)                          # L(f), eq. 5
    residual = log_amp - cv2.blur(log_amp, (3, 3))             # R(f) = L(f) - h_n * L(f), eq. 6
    s = np.abs(np.fft.ifft2(np.exp(residual + 1j * np.angle(f)))) ** 2  # eq. 8
    s = cv2.GaussianBlur(s.astype(np.float32), (0, 0), sigmaX=width / 24)
    return _normalise(s)


def border_lab(rgb: np.ndarray, strip: float = 0.03) -> tuple[np.ndarray, np.ndarray]:
    """(the image in CIELAB float32, the median Lab colour of its border strip)."""
    lab = cv2.cvtColor(rgb, cv2.COLOR_RGB2LAB).astype(np.float32)
    b = max(2, round(strip * min(rgb.shape[:2])))
    border = np.concatenate([lab[:b].reshape(-1, 3), lab[-b:].reshape(-1, 3),
                             lab[:, :b].reshape(-1, 3), lab[:, -b:].reshape(-1, 3)])
    return lab, np.median(border, axis=0)


def border_contrast(rgb: np.ndarray) -> np.ndarray:
    """(H, W) float32 in 0..1: distance from the border's median colour, relative to the border's own spread."""
    lab, bg = border_lab(rgb)
    d = np.linalg.norm(lab - bg, axis=2)
    b = max(2, round(0.03 * min(rgb.shape[:2])))
    spread = np.percentile(np.concatenate([d[:b].ravel(), d[-b:].ravel(), d[:, :b].ravel(), d[:, -b:].ravel()]), 90)
    return np.clip((d - spread) / max(40.0, 3 * spread), 0, 1).astype(np.float32)


def saliency_map(rgb: np.ndarray, side: int = 128) -> np.ndarray:
    """The mean of spectral residual and border contrast, at a thumbnail with longer side `side`."""
    small = thumbnail(rgb, side)
    sr = cv2.resize(spectral_residual(small), (small.shape[1], small.shape[0]), interpolation=cv2.INTER_LINEAR)
    return _normalise(0.5 * sr + 0.5 * border_contrast(small))


@lru_cache(maxsize=1)
def _face_cascade() -> cv2.CascadeClassifier:
    path = cv2.data.haarcascades + "haarcascade_frontalface_default.xml"
    cascade = cv2.CascadeClassifier(path)
    if cascade.empty():
        raise RuntimeError(f"OpenCV's face cascade is missing ({path}); reinstall opencv-python-headless<5")
    return cascade


def faces(rgb: np.ndarray, side: int = 640) -> list[Box]:
    """Frontal faces as boxes in the image's pixels (detected on a thumbnail, longer side `side`)."""
    small = thumbnail(rgb, side)
    s = rgb.shape[1] / small.shape[1]
    grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
    m = max(20, round(0.06 * min(small.shape[:2])))
    found = _face_cascade().detectMultiScale(grey, scaleFactor=1.1, minNeighbors=6, minSize=(m, m))
    return [(round(x * s), round(y * s), round((x + w) * s), round((y + h) * s)) for x, y, w, h in found]


def head_and_shoulders(face: Box, width: int, height: int) -> Box:
    """A face box grown to the head with some room above and the chin and neck below."""
    x0, y0, x1, y1 = face
    fw, fh = x1 - x0, y1 - y0
    return (max(0, x0 - fw // 3), max(0, y0 - fh // 2), min(width, x1 + fw // 3), min(height, y1 + fh // 2))


def subject_box(rgb: np.ndarray, face_boxes: list[Box] | None = None, side: int = 128) -> tuple[Box, tuple[float, float]]:
    """(the box holding the salient subject and every face, the saliency-weighted centre), in the
    image's pixels. The salient part: Otsu's threshold on the saliency map, blobs holding at least
    15% of the strongest blob's saliency."""
    h, w = rgb.shape[:2]
    sal = saliency_map(rgb, side)
    sh, sw = sal.shape
    u8 = (sal * 255).astype(np.uint8)
    _, mask = cv2.threshold(u8, 0, 255, cv2.THRESH_BINARY + cv2.THRESH_OTSU)
    n, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    mass = np.array([sal[labels == i].sum() for i in range(1, n)])
    keep = [i + 1 for i in np.flatnonzero(mass >= 0.15 * mass.max())] if len(mass) else []
    sx, sy = w / sw, h / sh
    if keep:
        boxes = [(stats[i, 0], stats[i, 1], stats[i, 0] + stats[i, 2], stats[i, 1] + stats[i, 3]) for i in keep]
        box = (min(b[0] for b in boxes) * sx, min(b[1] for b in boxes) * sy,
               max(b[2] for b in boxes) * sx, max(b[3] for b in boxes) * sy)
    else:
        box = (w * 0.25, h * 0.25, w * 0.75, h * 0.75)
    weights = sal * (labels > 0) if keep else sal
    total = weights.sum() or 1.0
    cy, cx = (np.indices(sal.shape) + 0.5).reshape(2, -1) @ weights.ravel() / total
    centre = (float(cx * sx), float(cy * sy))
    for f in face_boxes or []:
        hb = head_and_shoulders(f, w, h)
        box = (min(box[0], hb[0]), min(box[1], hb[1]), max(box[2], hb[2]), max(box[3], hb[3]))
    if face_boxes:  # faces lead: centre on them
        centre = (float(np.mean([(f[0] + f[2]) / 2 for f in face_boxes])),
                  float(np.mean([(f[1] + f[3]) / 2 for f in face_boxes])))
    x0, y0, x1, y1 = box
    return (max(0, int(x0)), max(0, int(y0)), min(w, int(np.ceil(x1))), min(h, int(np.ceil(y1)))), centre


def as_array(image: Image.Image) -> np.ndarray:
    return np.asarray(image.convert("RGB"))


def _normalise(a: np.ndarray) -> np.ndarray:
    lo, hi = float(a.min()), float(a.max())
    return ((a - lo) / (hi - lo) if hi > lo else np.zeros_like(a)).astype(np.float32)
