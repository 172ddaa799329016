"""Detections drawn on their image: a box, a class name and a score for each (``sagedet predict --draw``)."""

from __future__ import annotations

from collections.abc import Sequence

from PIL import Image, ImageDraw, ImageFont

from sagedet.serve.predictor import Prediction

PALETTE = ((230, 25, 75), (60, 180, 75), (255, 225, 25), (0, 130, 200), (245, 130, 48), (145, 30, 180),
           (70, 240, 240), (240, 50, 230), (210, 245, 60), (250, 190, 212), (0, 128, 128), (220, 190, 255))


def draw_detections(image: Image.Image, prediction: Prediction, class_names: Sequence[str],
                    min_score: float = 0.0) -> Image.Image:
    """A copy of ``image`` (the full oriented RGB image) with the detections scoring at least
    ``min_score`` drawn on it, the lowest scores first so the best stay on top."""
    canvas = image.convert("RGB") if image.mode != "RGB" else image.copy()
    width, height = canvas.size
    sx, sy = width / prediction.width, height / prediction.height  # 1 unless the image was reduced
    draw = ImageDraw.Draw(canvas)
    side = min(width, height)
    font = ImageFont.load_default(size=max(10, side // 40))
    line = max(1, side // 250)
    rows = [row for row in zip(prediction.boxes, prediction.scores, prediction.labels) if row[1] >= min_score]
    for box, score, label in reversed(rows):
        colour = PALETTE[label % len(PALETTE)]
        x0, y0 = box[0] * prediction.width * sx, box[1] * prediction.height * sy
        x1, y1 = box[2] * prediction.width * sx, box[3] * prediction.height * sy
        draw.rectangle([x0, y0, max(x0, x1), max(y0, y1)], outline=colour, width=line)
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        text = f"{name} {score:.2f}"
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        text_w, text_h = right - left + 2 * line, bottom - top + 2 * line
        tx = min(max(0.0, x0), max(0.0, width - text_w))
        ty = y0 - text_h if y0 - text_h >= 0 else y0  # above the box, or inside it at the top edge
        draw.rectangle([tx, ty, tx + text_w, ty + text_h], fill=colour)
        luminance = 0.299 * colour[0] + 0.587 * colour[1] + 0.114 * colour[2]
        draw.text((tx + line - left, ty + line - top), text, font=font,
                  fill=(0, 0, 0) if luminance > 140 else (255, 255, 255))
    return canvas
