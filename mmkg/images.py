"""Image decoding, shared by the pipeline's validation (``extraction.images``) and the model's encoders.

An image is only ever handed on after Pillow has fully decoded it, in one of ``ALLOWED_FORMATS`` and
under the pixel limit; the statuses here are the ones an ``ImageRef`` carries. This module must never
read a path it was not given or touch the network.

The pixel limit (``mmkg.settings.ImageSettings.max_pixels``, 25 Mpx unless ``MMKG_IMAGE_MAX_PIXELS``
says otherwise) is checked from the image header, before a single pixel is decoded: a small PNG that
declares 20000 x 20000 pixels is refused as ``too_many_pixels`` without its ~1.6 GB being allocated.
Pillow's own decompression-bomb guard (``Image.MAX_IMAGE_PIXELS``, ~89 Mpx, an error at twice that)
is left as it is, a second line far above ours.
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
#: the reference cannot name a file at all (a NUL byte, a name component over 255 bytes, ...)
STATUS_BAD_PATH = "bad_path"
#: an http(s) URL whose host resolves to an address that is not public (loopback, private, ...)
STATUS_BLOCKED_ADDRESS = "blocked_address"
BAD_STATUSES = (
    STATUS_MISSING,
    STATUS_CORRUPT,
    STATUS_OVERSIZED,
    STATUS_OUTSIDE_LANDING,
    STATUS_UNSUPPORTED_SCHEME,
    STATUS_FETCH_FAILED,
    STATUS_TOO_MANY_PIXELS,
    STATUS_BAD_PATH,
    STATUS_BLOCKED_ADDRESS,
)

# Social-media images are these formats; refusing the rest keeps Pillow's rarely used (and
# historically most fragile) decoders away from untrusted bytes.
ALLOWED_FORMATS = ("JPEG", "PNG", "GIF", "WEBP", "BMP")
EXTENSIONS = {"JPEG": "jpg", "PNG": "png", "GIF": "gif", "WEBP": "webp", "BMP": "bmp"}


class ImageTooLarge(ValueError):
    """Raised by ``load_image_rgb`` for an image over the pixel limit."""


def load_image_rgb(path: str | Path, *, max_pixels: int | None = None) -> Image.Image:
    """Open a validated image for the model: EXIF orientation applied, alpha over white, RGB.

    Raises ``ImageTooLarge`` over the pixel limit (checked before decoding) and Pillow's errors for
    undecodable files. At most two full-size buffers are alive at once (the decoded image and the
    converted one); an RGB image without orientation is returned as decoded, with no copy.
    """
    limit = pixel_limit(max_pixels)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        with Image.open(path, formats=ALLOWED_FORMATS) as im:
            if im.width * im.height > limit:
                raise ImageTooLarge(f"{path}: {im.width}x{im.height} is over the limit of {limit} pixels")
            im.load()
            ImageOps.exif_transpose(im, in_place=True)  # no copy; a no-op without an orientation tag
    if im.mode in ("RGBA", "LA", "PA") or (im.mode == "P" and "transparency" in im.info):
        rgba = im if im.mode == "RGBA" else im.convert("RGBA")
        del im
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        background.alpha_composite(rgba)  # in place: the same pixels as Image.alpha_composite
        del rgba
        im = background
    return im if im.mode == "RGB" else im.convert("RGB")


def pixel_limit(max_pixels: int | None) -> int:
    """``max_pixels``, or the configured limit (``ImageSettings.max_pixels``) when None."""
    if max_pixels is not None:
        return max_pixels
    from mmkg.settings import ImageSettings

    return ImageSettings.from_env().max_pixels


def decode_image(data: bytes, max_pixels: int | None) -> tuple[str, str, int | None, int | None, str | None]:
    """Fully decode the bytes: (status, message, width, height, format)."""
    limit = pixel_limit(max_pixels)
    try:
        # The pixel limit is enforced below, with our own status; Pillow's warning would be noise.
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            with Image.open(io.BytesIO(data), formats=ALLOWED_FORMATS) as im:
                width, height = im.size
                if width * height > limit:
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
