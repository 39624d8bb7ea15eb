"""Image data: reading image sources into rows, and the decoding shared by transform and serving.

A row holds the image's encoded bytes (PNG or JPEG) in the `features.image.column` column and
its label, so ingest, the hash split, the Parquet splits and the tf.Examples of evaluation carry
images like any other column. Decoding, resizing and scaling happen once, inside the TFT graph
(`decode_images`), so the served model takes the raw bytes.

Sources:
* a local folder with one sub-folder per class (PNG/JPEG files; the label is the folder name);
* "sklearn-digits": the 1,797 8x8 grey digit images that ship inside scikit-learn (so the image
  use case runs offline), written as PNG.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import io
from pathlib import Path
from typing import TYPE_CHECKING, Any

from mlops.config import ImageConfig, PipelineConfig, local_path

if TYPE_CHECKING:
    import pandas as pd

PACKAGED_DIGITS = "sklearn-digits"
IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg")
_MODES = {1: ("L",), 3: ("RGB",)}


# Why image models get no feature attributions (explain step, the server's explain route).
IMAGE_EXPLAIN_NOTE = (
    "no attributions for image models: sampled Shapley over raw features gives the whole image "
    "one number; pixel or region attributions are not implemented yet"
)


class ImageError(ValueError):
    """An image cannot be used; the message names the file (or instance) and what was expected."""


def is_image_source(config: PipelineConfig) -> bool:
    """Whether ingest reads `data.source` as images (features.image is set)."""
    return config.features.image is not None


def encode_png(pixels: Any) -> bytes:
    """PNG bytes of a uint8 array shaped [H, W] or [H, W, C]."""
    from PIL import Image

    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


def blank_png(image: ImageConfig) -> bytes:
    """A black PNG of the configured size (the server's warm-up request)."""
    import numpy as np

    shape = (image.height, image.width) + ((3,) if image.channels == 3 else ())
    return encode_png(np.zeros(shape, np.uint8))


def check_image(data: bytes, image: ImageConfig, where: str, exact: bool = True) -> None:
    """Raise ImageError naming `where` unless `data` decodes to a PNG/JPEG image and (when
    `exact`: training data) is height x width with the configured channels. Served images may
    differ in size and colour: the model's graph converts and resizes them."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(io.BytesIO(data)) as opened:
            opened.load()
            size, mode, fmt = opened.size, opened.mode, opened.format
    except UnidentifiedImageError:
        raise ImageError(f"{where}: not a decodable PNG or JPEG image") from None
    except (OSError, ValueError, SyntaxError) as exc:  # a truncated or corrupt image
        raise ImageError(f"{where}: not a decodable PNG or JPEG image ({exc})") from None
    if fmt not in ("PNG", "JPEG"):
        raise ImageError(f"{where}: a {fmt} image; expected PNG or JPEG")
    if not exact:
        return
    if mode not in _MODES[image.channels]:
        raise ImageError(
            f"{where}: image mode {mode} does not have features.image.channels "
            f"{image.channels} (expected mode {' or '.join(_MODES[image.channels])})"
        )
    if size != (image.width, image.height):
        raise ImageError(
            f"{where}: image is {size[0]}x{size[1]} (width x height); features.image expects "
            f"{image.width}x{image.height}"
        )


def read_image_folder(folder: str, label: str, image: ImageConfig) -> pd.DataFrame:
    """Rows {image column: file bytes, label: sub-folder name} from a folder of class folders."""
    import pandas as pd

    root = Path(folder)
    if not root.is_dir():
        raise ImageError(
            f"data.source {folder!r} is not a folder; with features.image it must be a folder "
            f"with one sub-folder of images per class, or {PACKAGED_DIGITS!r}"
        )
    stray = sorted(p.name for p in root.iterdir() if p.is_file() and not p.name.startswith("."))
    if stray:
        raise ImageError(
            f"data.source {folder!r}: files {stray[:5]} sit beside the class folders; put every "
            "image in the sub-folder named after its class"
        )
    rows: list[dict[str, Any]] = []
    for class_dir in sorted(p for p in root.iterdir() if p.is_dir()):
        for path in sorted(class_dir.iterdir()):
            if path.name.startswith(".") or not path.is_file():
                continue
            if path.suffix.lower() not in IMAGE_SUFFIXES:
                raise ImageError(
                    f"{path}: not an image file (expected one of {list(IMAGE_SUFFIXES)})"
                )
            data = path.read_bytes()
            check_image(data, image, str(path))
            rows.append({image.column: data, label: class_dir.name})
    if not rows:
        raise ImageError(f"data.source {folder!r}: no images in its class sub-folders")
    return pd.DataFrame(rows, columns=[image.column, label])


def load_digits_frame(label: str, image: ImageConfig) -> pd.DataFrame:
    """scikit-learn's packaged 8x8 digits (grey levels 0..16) as PNG rows, labels 0..9."""
    import numpy as np
    import pandas as pd
    from sklearn.datasets import load_digits

    if (image.height, image.width, image.channels) != (8, 8, 1):
        raise ImageError(
            f"data.source {PACKAGED_DIGITS!r} holds 8x8 grey images; set features.image "
            f"height: 8, width: 8, channels: 1 (got {image.height}x{image.width}x{image.channels})"
        )
    digits = load_digits()
    pixels = np.rint(digits.images * (255.0 / 16.0)).astype(np.uint8)
    return pd.DataFrame(
        {
            image.column: [encode_png(p) for p in pixels],
            label: digits.target.astype(np.int64),
        }
    )


def read_images(config: PipelineConfig) -> tuple[pd.DataFrame, list[Any]]:
    """The configured image source as rows (and no bad rows: a bad image stops ingest)."""
    image = config.features.image
    assert image is not None
    source = local_path(config.data.source)
    if source == PACKAGED_DIGITS:
        return load_digits_frame(config.data.label, image), []
    if "://" in source:
        raise ImageError(
            f"data.source {source!r}: image folders are read from local paths (or /gcs/ on "
            "Vertex); a gs:// URI of image files is not supported yet"
        )
    return read_image_folder(source, config.data.label, image), []


def content_key(image: bytes) -> str:
    """The text an image is keyed by (hash split, shared-row and skew checks): its SHA-256."""
    return hashlib.sha256(image).hexdigest()


def content_keys(frame: pd.DataFrame) -> pd.DataFrame:
    """`frame` with every column of bytes replaced by the SHA-256 of each value, so the hash
    split keys on image content (text columns are left as they are)."""
    out = frame.copy()
    for name in frame.columns:
        column = frame[name]
        if column.dtype == object and column.map(lambda v: isinstance(v, bytes)).any():
            out[name] = column.map(lambda v: content_key(v) if isinstance(v, bytes) else v)
    return out


def pixel_matrix(values: Any, image: ImageConfig) -> Any:
    """Images (encoded bytes) as a float [n, H*W*C] matrix in [0, 1], decoded with Pillow (no
    TensorFlow): the raw features of the linear baseline."""
    import numpy as np
    from PIL import Image

    mode = _MODES[image.channels][0]
    rows = []
    for data in values:
        with Image.open(io.BytesIO(data)) as opened:
            pixels = opened.convert(mode).resize((image.width, image.height))
            rows.append(np.asarray(pixels, dtype=np.float64).reshape(-1) / 255.0)
    return np.stack(rows)


def image_values(column: pd.Series) -> pd.Series:
    """Serving data's image column as bytes: request logs keep instances as received
    ({"b64": ...}), batch files hold bytes; anything else (missing) becomes None."""

    def one(value: Any) -> bytes | None:
        if isinstance(value, bytes):
            return value
        if isinstance(value, dict) and isinstance(value.get("b64"), str):
            try:
                return base64.b64decode(value["b64"], validate=True)
            except (binascii.Error, ValueError):
                return None
        return None

    return column.map(one).astype(object)


def decode_b64(value: Any, where: str) -> bytes:
    """Image bytes from Vertex's JSON convention for binary data, {"b64": "<base64>"}."""
    if not isinstance(value, dict) or set(value) != {"b64"} or not isinstance(value["b64"], str):
        raise ImageError(f'{where}: an image is sent as {{"b64": "<base64 of PNG/JPEG bytes>"}}')
    try:
        return base64.b64decode(value["b64"], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise ImageError(f"{where}: 'b64' is not valid base64 ({exc})") from None


def decode_images(encoded: Any, image: ImageConfig) -> Any:
    """TensorFlow: a [batch] string tensor of PNG/JPEG bytes -> float32 [batch, H, W, C] in
    [0, 1], resized to the configured size. Runs inside the TFT graph (train and serving)."""
    import tensorflow as tf

    def one(data: Any) -> Any:
        pixels = tf.io.decode_image(data, channels=image.channels, expand_animations=False)
        pixels = tf.image.convert_image_dtype(pixels, tf.float32)
        pixels = tf.image.resize(pixels, [image.height, image.width])
        return tf.ensure_shape(pixels, [image.height, image.width, image.channels])

    return tf.map_fn(
        one,
        encoded,
        fn_output_signature=tf.TensorSpec([image.height, image.width, image.channels], tf.float32),
    )
