"""Image decoding, shared by the pipeline's validation (``extraction.images``) and the model's encoders.

An image is only ever handed on after Pillow has fully decoded it, in one of ``ALLOWED_FORMATS`` and
under the pixel limit; the statuses here are the ones an ``ImageRef`` carries. This module must never
read a path it was not given or touch the network.
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path

from PIL import Image, ImageOps

STATUS_OK = "ok"
STATUS_MISSING = "missing"
STATUS_CORRUPT = "corrupt"
STATUS_OVERSIZED = "oversized"
STATUS_OUTSIDE_LANDING = "outside_landing"
STATUS_UNSUPPORTED_SCHEME = "unsupported_scheme"
STATUS_FETCH_FAILED = "fetch_failed"
STATUS_TOO_MANY_PIXELS = "too_many_pixels"
BAD_STATUSES = (
    STATUS_MISSING,
    STATUS_CORRUPT,
    STATUS_OVERSIZED,
    STATUS_OUTSIDE_LANDING,
    STATUS_UNSUPPORTED_SCHEME,
    STATUS_FETCH_FAILED,
    STATUS_TOO_MANY_PIXELS,
)

# Social-media images are these formats; refusing the rest keeps Pillow's rarely used (and
# historically most fragile) decoders away from untrusted bytes.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}


class ImageTooLarge(ValueError):
    """Raised by ``load_image_rgb`` for an image over the pixel limit."""


def load_image_rgb(path: str | Path, *, max_pixels: int | None = None) -> Image.Image:
    """Open a validated image for the model: EXIF orientation applied, alpha over white, RGB.

    Raises ``ImageTooLarge`` over the pixel limit and Pillow's errors for undecodable files.
    """
    limit = pixel_limit(max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path, formats=ALLOWED_FORMATS) as im:
            if limit is not None and im.width * im.height > limit:
                raise ImageTooLarge(f"{path}: {im.width}x{im.height} is over the limit of {limit} pixels")
            im = ImageOps.exif_transpose(im)  # returns a loaded copy, detached from the file
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        im = Image.alpha_composite(background, rgba)
    return im.convert("RGB")


def pixel_limit(max_pixels: int | None) -> int | None:
    return max_pixels if max_pixels is not None else Image.MAX_IMAGE_PIXELS


def decode_image(data: bytes, max_pixels: int | None) -> tuple[str, str, int | None, int | None, str | None]:
    """Fully decode the bytes: (status, message, width, height, format)."""
    limit = pixel_limit(max_pixels)
    try:
        # The pixel limit is enforced below, with our own status; Pillow's warning would be noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
                width, height = im.size
                if limit is not None and width * height > limit:
                    message = f"{width}x{height} is over the limit of {limit} pixels"
                    return STATUS_TOO_MANY_PIXELS, message, None, None, None
                # open() only reads the header; load() decodes every pixel, so truncated or
                # corrupt data fails here and not later inside the model stage.
                im.load()
                fmt = im.format
    except Image.DecompressionBombError as exc:
        return STATUS_TOO_MANY_PIXELS, str(exc), None, None, None
    except Exception as exc:  # Pillow raises OSError, SyntaxError, ValueError, struct.error, ...
        return STATUS_CORRUPT, f"cannot decode image ({type(exc).__name__}: {exc})", None, None, None
    return STATUS_OK, "", width, height, fmt
