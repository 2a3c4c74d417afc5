"""Reading and decoding picture files with Pillow, refusing anything that is not a sane image in one line.

Dimensions are checked before any pixel is decoded, so a decompression bomb costs nothing, and
large JPEGs are decoded at a reduced scale: a digit never needs more than ``WORK_SIDE`` pixels a side.
"""

from __future__ import annotations

import contextlib
import functools
import io
import os
import struct
import warnings
from collections.abc import Iterator
from pathlib import Path

import numpy as np
from PIL import ExifTags, Image, UnidentifiedImageError

from mnist_common.errors import UserError, path_text
from mnist_common.images.blocks import crowded_container
from mnist_common.files import os_reason

MAX_PIXELS = 64_000_000  # larger images are refused unread (a decompression bomb, or far more than a digit needs)
MAX_SIDE = 30_000
# A picture file's bytes, read whole before its header is looked at: a 64-megapixel picture takes 192 MB uncompressed
# (a video or a disk image named .png took its size in memory, or a MemoryError traceback)
MAX_FILE_BYTES = 256 << 20
# A progressive JPEG is decoded scan by scan, each over the whole picture: libjpeg's own progressive files have 6 to
# 10 scans, but a crafted one repeating its last a thousand times took 29 s for 1.6 MB (hostile round 7). Counted as
# start-of-scan markers, which entropy-coded data never holds (a 0xFF there is followed by 0x00 or a restart marker).
MAX_JPEG_SCANS = 64
START_OF_SCAN = b"\xff\xda"
WORK_SIDE = 1024  # larger images are reduced (by an integer factor) to at most this a side before the float work
FILE_SIZE = "lightning_mnist.file_size"  # image.info key: a JPEG decoded at a reduced scale keeps its (width, height)
# The formats a picture of a digit is read in: Pillow's raster formats that it decodes itself. Not its every plugin:
# PostScript (EPS) is handed to Ghostscript, which runs it (any file, named .png or sent to serve, whatever its name)
# (not ICO or CUR: an icon's entries hold pictures of sizes of their own, decoded before any is compared with the
# icon's, so a 256 x 256 icon held a 64-megapixel picture)
PICTURE_FORMATS = ("PNG", "JPEG", "GIF", "BMP", "DIB", "TIFF", "WEBP", "AVIF", "PPM", "TGA", "PCX", "SGI", "QOI", "XBM",
                   "XPM", "MSP", "SUN", "DDS")
# (not IM, LabEye's: Pillow reads its header's lines in Python whatever their number, 10 MB of comment lines in 4 s
# of an HTTP process: hostile round 12; nor Photoshop's PSD and JPEG 2000, whose image resources and boxes Pillow
# walks in Python too, 10 MB of empty ones in 4.5 and 3.8 s: hostile round 13)
# Pictures that Pillow decodes in Python, a loop turn a pixel or a byte (BMP's run-length encodings, QOI, MSP's):
# 9.6 KB of run-length BMP took 5.5 s at 64 megapixels. They are refused past this many pixels (0.3 s)
MAX_PYTHON_DECODED_PIXELS = 4_000_000
# Pillow reads a picture's tiles or strips one by one in Python (a seek, a read and a decoder each): 2.5 million
# TIFF tiles of 2x2 pixels, all at one offset, took 13 s and 0.9 GB for 10 MB. Writers use tiles of 16x16 pixels
# or more and strips of about 8 KB (a 64-megapixel picture: under 10,000 of them); more are refused unread
MAX_TILES = 65_536
# what Pillow calls a JPEG file it opens: a camera's MPO (multi-picture: the photo, then a preview or depth map) is
# one too, its first picture the photo, decoded by libjpeg as any JPEG
JPEG_FORMATS = ("JPEG", "MPO")
POSTSCRIPT = (b"%!PS", b"\xc5\xd0\xd3\xc6")  # how a PostScript file and a DOS EPS file begin


class ImageError(UserError):
    """An image file that cannot be predicted; the message names the file and the reason."""

    def __init__(self, path: str | os.PathLike, reason: str) -> None:
        self.path = str(path)
        self.reason = " ".join(str(reason).split())  # always one line
        super().__init__(f"{path_text(self.path)}: {self.reason}")  # a newline or NUL in a name too


def first_line(err: BaseException) -> str:
    """The first line of a library's error message (its type's name if it has none), to quote in an ImageError."""
    text = str(err).strip().splitlines()
    return text[0] if text else type(err).__name__


def pictures_in(paths: list[str]) -> list[str | ImageError]:
    """``paths`` in order, each folder among them replaced by the pictures in it: its entries whose extension Pillow
    reads (``.png``, ``.jpg``, ...), in the order of their names, neither hidden ones nor those of its subfolders. One
    so named that is no regular file (a FIFO, a device, a link to nothing or to itself, a folder) stays in the list,
    for :func:`open_image` to refuse in its own line (it was skipped without a word). A folder holding none is an
    :class:`ImageError` in its place."""
    readable = {ext for ext, kind in Image.registered_extensions().items() if kind in picture_formats()}
    found: list[str | ImageError] = []
    for path in paths:
        folder = Path(path)
        if not str(path).strip() or not folder.is_dir():
            found.append(path)  # a file, or anything open_image refuses in its own words
            continue
        try:
            pictures = sorted(str(p) for p in folder.iterdir() if p.suffix.lower() in readable
                              and not p.name.startswith("."))
        except OSError as err:
            found.append(ImageError(path, f"is a folder that cannot be listed ({os_reason(err)})"))
            continue
        found.extend(pictures or [ImageError(path, "is a folder with no pictures in it (files named .png, .jpg, "
                                                   "... in the folder itself)")])
    return found


@functools.cache
def picture_formats() -> tuple[str, ...]:
    """:data:`PICTURE_FORMATS` that this Pillow reads (AVIF only where it was built with libavif)."""
    Image.init()
    return tuple(kind for kind in PICTURE_FORMATS if kind in Image.OPEN)


def open_image(path: str | os.PathLike) -> Image.Image:
    """Read and fully decode the file ``path``; :class:`ImageError` for anything that is not a sane image."""
    if not str(path).strip():  # Path("") is the current folder
        raise ImageError(repr(str(path)), "an empty name, not an image file")
    p = Path(path)
    try:
        st = p.stat()
    except FileNotFoundError:
        raise ImageError(path, "no such file") from None
    except (OSError, ValueError) as err:  # ValueError: a NUL byte in a name (a config file's list can hold one)
        raise ImageError(path, f"cannot be read ({os_reason(err)})") from None
    if p.is_dir():
        raise ImageError(path, "is a folder, not an image")
    if not p.is_file():  # /dev/zero would be read forever, a FIFO waits for a writer
        raise ImageError(path, "is not a regular file (a device, FIFO or socket), not an image")
    if st.st_size == 0:
        raise ImageError(path, "is empty (0 bytes)")
    if st.st_size > MAX_FILE_BYTES:
        raise ImageError(path, f"refused: {st.st_size:,} bytes, more than the limit of {MAX_FILE_BYTES:,} (a picture "
                               f"of {MAX_PIXELS // 1_000_000} megapixels takes less)")
    try:
        data = p.read_bytes()
    except OSError as err:
        raise ImageError(path, f"cannot be read ({err.strerror or first_line(err)})") from None
    return decode_image(data, path)


TIFF_OFFSETS = (273, 324)  # the tags listing where each strip and each tile is


def tiff_pieces(data: bytes) -> int:
    """How many strips or tiles the first picture of a TIFF (classic or BigTIFF) lists, read from its header (0 for
    anything else, or a header too short to say)."""
    order = {b"II": "<", b"MM": ">"}.get(data[:2])
    if order is None or len(data) < 16:
        return 0
    big = struct.unpack(f"{order}H", data[2:4])[0] == 43  # BigTIFF: 8-byte counts and offsets
    count_size, entry_size, head, offset = (8, 20, "Q", "Q") if big else (2, 12, "H", "I")
    start = struct.unpack(f"{order}{offset}", data[8:16] if big else data[4:8])[0]
    if start + count_size > len(data):
        return 0
    entries = struct.unpack(f"{order}{head}", data[start:start + count_size])[0]
    pieces = 0
    for index in range(min(entries, (len(data) - start - count_size) // entry_size)):
        at = start + count_size + index * entry_size
        tag = struct.unpack(f"{order}H", data[at:at + 2])[0]
        if tag in TIFF_OFFSETS:
            pieces = max(pieces, struct.unpack(f"{order}{offset}", data[at + 4:at + 4 + struct.calcsize(offset)])[0])
    return pieces


@contextlib.contextmanager
def quiet_pillow() -> Iterator[None]:
    """Pillow's warnings about a file's damaged metadata, which it skips (a tag of 5 million entries, a tag's data
    past the file's end): stray lines on stderr before the answer (hostile round 13), where the picture is read as
    Pillow reads it; and its decompression bomb warning, whose limit here is our own."""
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", category=UserWarning, module="PIL")
        warnings.simplefilter("ignore", Image.DecompressionBombWarning)
        yield


def decode_image(data: bytes, name: str | os.PathLike = "image") -> Image.Image:
    """Decode image file bytes (a file's, or an HTTP request's); :class:`ImageError` naming ``name`` if not sane.

    Dimensions are checked before any pixel is decoded, so a decompression bomb costs nothing.
    """
    if not data:
        raise ImageError(name, "is empty (0 bytes)")
    pieces = tiff_pieces(data)
    if pieces > MAX_TILES:  # counted from the header: Pillow makes a Python entry for each while it opens the file
        raise ImageError(name, f"refused: TIFF of {pieces:,} tiles or strips, more than the limit of {MAX_TILES:,} "
                               f"(each is read on its own; a writer's are 16x16 pixels or more)")
    crowded = crowded_container(data)  # Pillow's objects and reads, block by block, while it opens the file
    if crowded:
        raise ImageError(name, f"refused: {crowded}")
    try:
        with quiet_pillow():  # (a decompression bomb: our own limit is checked below)
            image = Image.open(io.BytesIO(data), formats=picture_formats())
    except Image.DecompressionBombError:  # Pillow's own ceiling (twice its warning limit) is above ours: say ours
        raise ImageError(name, f"refused: more than the limit of {MAX_PIXELS // 1_000_000} megapixels "
                               f"(a decompression bomb?)") from None
    except UnidentifiedImageError:
        if data.startswith(POSTSCRIPT):
            raise ImageError(name, "is PostScript, which is not read (Pillow would run it through Ghostscript): give "
                                   "a PNG, JPEG or another picture of pixels") from None
        raise ImageError(name, "is not an image (or not in a format Pillow can read)") from None
    except Exception as err:  # Pillow raises many types (SyntaxError, ValueError, struct.error, ...) on damaged headers
        raise ImageError(name, f"is not a readable image ({type(err).__name__}: {first_line(err)})") from None
    width, height = image.size
    if width <= 0 or height <= 0:
        raise ImageError(name, f"has no pixels ({width}x{height})")
    if width * height > MAX_PIXELS:
        raise ImageError(name, f"refused: {width}x{height} pixels ({width * height / 1e6:.0f} megapixels) is more "
                               f"than the limit of {MAX_PIXELS // 1_000_000} megapixels (a decompression bomb?)")
    if max(width, height) > MAX_SIDE:
        raise ImageError(name, f"refused: {width}x{height} pixels has a side longer than the limit of {MAX_SIDE} "
                               f"pixels (a decompression bomb?)")
    slow = sorted({tile[0] for tile in image.tile if tile[0] in Image.DECODERS})  # Pillow's Python decoders
    if slow and width * height > MAX_PYTHON_DECODED_PIXELS:
        raise ImageError(name, f"refused: {width}x{height} pixels of {image.format} encoded as {', '.join(slow)}, "
                               f"which Pillow decodes in Python, more than the limit of "
                               f"{MAX_PYTHON_DECODED_PIXELS // 1_000_000} megapixels for it (save it as PNG or JPEG)")
    try:  # whether a second picture follows (a TIFF's next page is said in its first page's header): never counted,
        several = bool(getattr(image, "is_animated", False))  # which walked 90,000 pages in Python (50 s)
    except Exception as err:  # a damaged frame index (a GIF's blocks)
        raise ImageError(name, f"is not a readable image ({type(err).__name__}: {first_line(err)})") from None
    if several and image.format not in JPEG_FORMATS:  # MPO: a camera's photo, then its other views
        raise ImageError(name, "holds more than one picture (an animation, or pages); only its first would be read: "
                               "give one picture (a PNG or JPEG of the digit)")
    if image.format in JPEG_FORMATS and data.count(START_OF_SCAN) > MAX_JPEG_SCANS:
        raise ImageError(name, f"refused: a JPEG of {data.count(START_OF_SCAN):,} scans, more than the limit of "
                               f"{MAX_JPEG_SCANS} (a progressive JPEG has about 10; each scan decodes the whole "
                               f"picture again)")
    try:
        if image.format in JPEG_FORMATS and max(width, height) > WORK_SIDE:
            # let libjpeg decode at a reduced scale (1/2, 1/4, 1/8) that still has WORK_SIDE pixels on the long side
            scale = WORK_SIDE / max(width, height)
            image.draft(image.mode, (max(1, int(np.ceil(width * scale))), max(1, int(np.ceil(height * scale)))))
            image.info[FILE_SIZE] = (width, height)  # what Prepared.size reports: the file's, not the draft's
        with quiet_pillow():
            image.load()
    except Exception as err:  # OSError("image file is truncated"), zlib/CRC errors, ValueError, ...
        raise ImageError(name, f"is truncated or corrupt ({type(err).__name__}: {first_line(err)})") from None
    return image


def file_size(image: Image.Image) -> tuple[int, int]:
    """(width, height) of the file ``image`` was decoded from, even where it was decoded at a reduced scale."""
    return tuple(image.info.get(FILE_SIZE, image.size))


# How a picture is turned upright for each EXIF orientation (the tag's values 2 to 8; 1 is upright)
UPRIGHT = {2: Image.Transpose.FLIP_LEFT_RIGHT, 3: Image.Transpose.ROTATE_180, 4: Image.Transpose.FLIP_TOP_BOTTOM,
           5: Image.Transpose.TRANSPOSE, 6: Image.Transpose.ROTATE_270, 7: Image.Transpose.TRANSVERSE,
           8: Image.Transpose.ROTATE_90}


def upright(image: Image.Image) -> Image.Image:
    """``image`` turned as its EXIF orientation says (a phone's photo); as it is when that cannot be read.

    Only the Orientation tag is read (Pillow decodes a tag's values when it is asked for). Pillow's
    ``ImageOps.exif_transpose`` also writes the EXIF block again without the tag, decoding every value of
    it: 9 MB of fractions in a PNG's EXIF took 27 s and 0.7 GB a picture (hostile round 8), for a block
    nothing here reads."""
    try:
        with quiet_pillow():
            method = UPRIGHT.get(image.getexif().get(ExifTags.Base.Orientation, 1))
    except Exception:  # a damaged EXIF block must not stop the prediction
        return image
    return image if method is None else image.transpose(method)


__all__ = ["ImageError", "MAX_PIXELS", "MAX_SIDE", "WORK_SIDE", "decode_image", "file_size", "first_line",
           "open_image", "upright"]
