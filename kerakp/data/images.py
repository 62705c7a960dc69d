"""Image files: decoding one as RGB, and finding every image under a list of files and folders."""
from __future__ import annotations

from pathlib import Path

import numpy as np

from kerakp.errors import KerakpError
from kerakp.quiet import native_stderr_silenced

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def read_image(path) -> np.ndarray:
    """Decode an image file as RGB uint8; a clear error for a missing or corrupt file."""
    import cv2

    path = Path(path)
    if not path.is_file():
        raise KerakpError(f"{path}: image not found")
    data = np.fromfile(str(path), dtype=np.uint8)
    try:
        with native_stderr_silenced():   # libjpeg's own complaints about damaged files
            image = cv2.imdecode(data, cv2.IMREAD_COLOR) if data.size else None
    except cv2.error:   # OpenCV asserts on some malformed headers instead of returning None
        image = None
    if image is None or image.size == 0:
        raise KerakpError(f"{path}: not a readable image")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


def image_files(paths) -> list[tuple[str, Path]]:
    """(name, path) of every image in `paths` (files, or folders searched recursively with names relative to
    the folder), in order; one line for a path that does not exist or a search that finds no image."""
    items = []
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file())
            items += [(str(p.relative_to(path)), p) for p in found]
        elif path.is_file():
            items.append((str(path), path))
        else:
            raise KerakpError(f"{path}: no such image or folder")
    if not items:
        raise KerakpError("no images found in " + ", ".join(map(str, [paths] if isinstance(paths, (str, Path)) else paths)))
    return items
