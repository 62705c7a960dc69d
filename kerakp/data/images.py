"""Image files: decoding one as RGB, and finding every image under a list of files and folders."""
from __future__ import annotations

import bisect
import os
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


class ImageList:
    """(name, path) of many images, held as a folder and its images' names relative to it (a few bytes an image,
    where a list of paths takes about 400): what `image_files` finds, indexed and sliced like a list."""

    def __init__(self):
        self.groups: list[tuple[Path | None, list[str]]] = []   # (folder, names in it) or (None, [a file's path])
        self.starts: list[int] = []

    def add(self, folder: Path | None, names: list[str]) -> None:
        if names:
            self.starts.append(len(self))
            self.groups.append((folder, names))

    def __len__(self) -> int:
        return self.starts[-1] + len(self.groups[-1][1]) if self.groups else 0

    def __getitem__(self, index):
        if isinstance(index, slice):
            return [self[i] for i in range(*index.indices(len(self)))]
        if index < 0:
            index += len(self)
        group = bisect.bisect_right(self.starts, index) - 1
        folder, names = self.groups[group]
        return _item(folder, names[index - self.starts[group]])

    def __iter__(self):
        for folder, names in self.groups:
            for name in names:
                yield _item(folder, name)

    def names(self):
        for _, names in self.groups:
            yield from names


def _item(folder: Path | None, name: str) -> tuple[str, Path]:
    return name, (Path(name) if folder is None else folder / name)


def image_files(paths) -> ImageList:
    """(name, path) of every image in `paths` (files, or folders searched recursively with names relative to
    the folder), in order; one line for a path that does not exist or a search that finds no image."""
    items = ImageList()
    for path in map(Path, [paths] if isinstance(paths, (str, Path)) else paths):
        if path.is_dir():
            found = [str(p.relative_to(path)) for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES and p.is_file()]
            items.add(path, sorted(found, key=lambda name: name.split(os.sep)))   # as paths sort: part by part
        elif path.is_file():
            items.add(None, [str(path)])
        else:
            raise KerakpError(f"{path}: no such image or folder")
    if not len(items):
        raise KerakpError("no images found in " + ", ".join(map(str, [paths] if isinstance(paths, (str, Path)) else paths)))
    return items
