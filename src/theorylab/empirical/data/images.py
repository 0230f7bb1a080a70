"""Image data: IDX files (MNIST / Fashion-MNIST), sklearn's 8×8 digits, a folder of images.

Readers return ``(X, y)``: ``X`` float32 of shape (N, H, W) scaled to [0, 1], ``y`` int64 of
shape (N,). Malformed input raises :class:`~theorylab.errors.DataFormatError` naming the file.

**IDX** (LeCun's format): a 4-byte magic ``0x00 0x00 <type> <ndim>``, then ``ndim`` big-endian
uint32 sizes, then the data, big-endian, row-major. Type codes: 0x08 uint8, 0x09 int8, 0x0B int16,
0x0C int32, 0x0D float32, 0x0E float64. A file is read gzip-compressed or raw (recognised by its
magic bytes, not its name), and its payload must have exactly the declared size.

Fashion-MNIST ships in Debian's ``dataset-fashion-mnist`` (``apt-get install
dataset-fashion-mnist``) under :data:`FASHION_MNIST_DIR`.
"""

from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

from theorylab.errors import DataFormatError, InputError

__all__ = ["FASHION_MNIST_DIR", "FASHION_MNIST_CLASSES", "read_idx", "load_fashion_mnist",
           "fashion_mnist_available", "load_digits", "read_image_folder"]

FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt",
                         "Sneaker", "Bag", "Ankle boot")

_IDX_TYPES = {0x08: ">u1", 0x09: ">i1", 0x0B: ">i2", 0x0C: ">i4", 0x0D: ">f4", 0x0E: ">f8"}
_GZIP_MAGIC = b"\x1f\x8b"


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        raise DataFormatError("no such file", path) from None
    except IsADirectoryError:
        raise DataFormatError("is a directory, not an IDX file", path) from None
    if raw[:2] == _GZIP_MAGIC:
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError, zlib.error) as exc:
            raise DataFormatError(f"corrupted gzip stream ({exc})", path) from None
    return raw


def read_idx(path: str | Path) -> np.ndarray:
    """The array stored in an IDX file (gzip or raw), in native byte order."""
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataFormatError("not an IDX file (the magic number must start with two zero bytes)",
                              path)
    code, ndim = raw[2], raw[3]
    if code not in _IDX_TYPES:
        raise DataFormatError(f"unknown IDX data type 0x{code:02X} (known: "
                              f"{', '.join(f'0x{c:02X}' for c in _IDX_TYPES)})", path)
    if ndim == 0 or len(raw) < 4 + 4 * ndim:
        raise DataFormatError(f"truncated IDX header ({ndim} dimensions declared)", path)
    shape = tuple(int(s) for s in np.frombuffer(raw, ">u4", count=ndim, offset=4))
    dtype = np.dtype(_IDX_TYPES[code])
    expected = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    payload = len(raw) - 4 - 4 * ndim
    if payload != expected:
        raise DataFormatError(f"IDX payload has {payload} bytes, the header's shape {shape} of "
                              f"{dtype.name} needs {expected}", path)
    data = np.frombuffer(raw, dtype, offset=4 + 4 * ndim).reshape(shape)
    return data.astype(dtype.newbyteorder("="))


def _images_and_labels(images: np.ndarray, labels: np.ndarray, img_path, lab_path,
                       n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    if images.ndim != 3:
        raise DataFormatError(f"images must be 3-d (N, H, W), the file holds {images.ndim}-d",
                              img_path)
    if labels.ndim != 1:
        raise DataFormatError(f"labels must be 1-d, the file holds {labels.ndim}-d", lab_path)
    if len(images) != len(labels):
        raise DataFormatError(f"{len(images)} images but {len(labels)} labels in {lab_path}",
                              img_path)
    if labels.size and (labels.min() < 0 or labels.max() >= n_classes):
        raise DataFormatError(f"labels must lie in 0..{n_classes - 1}; found "
                              f"{int(labels.min())}..{int(labels.max())}", lab_path)
    X = images.astype(np.float32)
    if images.dtype == np.uint8:
        X /= 255.0
    return X, labels.astype(np.int64)


def fashion_mnist_available(root: str | Path = FASHION_MNIST_DIR) -> bool:
    root = Path(root)
    return all((root / f"{p}-{k}-idx{d}-ubyte.gz").exists()
               for p in ("train", "t10k") for k, d in (("images", 3), ("labels", 1)))


def load_fashion_mnist(split: str = "train", root: str | Path = FASHION_MNIST_DIR
                       ) -> tuple[np.ndarray, np.ndarray]:
    """Fashion-MNIST ``split`` ("train": 60,000, "test": 10,000 images of 28×28)."""
    if split not in ("train", "test"):
        raise InputError(f"'split' must be 'train' or 'test'. Got {split!r}.")
    root = Path(root)
    if not fashion_mnist_available(root):
        raise DataFormatError("Fashion-MNIST IDX files not found (install the Debian package "
                              "dataset-fashion-mnist, or pass the folder that holds them)", root)
    prefix = "train" if split == "train" else "t10k"
    img, lab = root / f"{prefix}-images-idx3-ubyte.gz", root / f"{prefix}-labels-idx1-ubyte.gz"
    return _images_and_labels(read_idx(img), read_idx(lab), img, lab, 10)


def load_digits() -> tuple[np.ndarray, np.ndarray]:
    """scikit-learn's 8×8 digits (1,797 images, 10 classes), scaled to [0, 1]."""
    from sklearn.datasets import load_digits as sk_digits
    d = sk_digits()
    return (d.images / 16.0).astype(np.float32), d.target.astype(np.int64)


def read_image_folder(root: str | Path, size: tuple[int, int] | None = None
                      ) -> tuple[np.ndarray, np.ndarray, tuple[str, ...]]:
    """Images in ``root/<class>/<file>`` (any format Pillow reads), as grey-scale [0, 1].

    Returns ``(X, y, classes)`` with classes in sorted folder order. All images must share one
    size unless ``size=(H, W)`` resizes them.
    """
    from PIL import Image, UnidentifiedImageError
    root = Path(root)
    if not root.is_dir():
        raise DataFormatError("not a folder of class sub-folders", root)
    classes = tuple(sorted(p.name for p in root.iterdir() if p.is_dir()))
    if not classes:
        raise DataFormatError("holds no class sub-folders", root)
    xs, ys = [], []
    for label, name in enumerate(classes):
        for f in sorted(p for p in (root / name).iterdir() if p.is_file()):
            try:
                with Image.open(f) as im:
                    im = im.convert("L")
                    if size is not None:
                        im = im.resize((size[1], size[0]))
                    arr = np.asarray(im, dtype=np.float32) / 255.0
            except (UnidentifiedImageError, OSError) as exc:
                raise DataFormatError(f"not a readable image ({type(exc).__name__})", f) from None
            if xs and arr.shape != xs[0].shape:
                raise DataFormatError(f"image is {arr.shape[0]}×{arr.shape[1]}, the first was "
                                      f"{xs[0].shape[0]}×{xs[0].shape[1]} (pass size=(H, W))", f)
            xs.append(arr)
            ys.append(label)
    if not xs:
        raise DataFormatError("holds no images", root)
    return np.stack(xs), np.asarray(ys, dtype=np.int64), classes
