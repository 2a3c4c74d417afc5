"""``python -m lightning_mnist predict``: MNIST-style preprocessing, both backends, k-fold ensembles, bad input.

The weights are the notebook's own (``../shared/seed/cnn_model.keras``, 99.22 % on the
MNIST test set), converted once to a Lightning checkpoint with ``convert``. The test
pictures are MNIST test digits rendered the way users draw, scan or photograph them
(:mod:`mnist_common.renderings`).
"""

from __future__ import annotations

import collections
import io
import json
import os
import shutil
import struct
import warnings
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist_common.model_files import load_architecture
from mnist_common.images.decoding import ImageError, open_image, upright as upright_of
from mnist_common.images.mnist_style import BOX, SIZE
from mnist_common.images.preparation import prepare
from mnist_common.renderings import STYLES, write_renderings

RENDERINGS = 10 * len(STYLES)


# ---------------------------------------------------------------------------------------------
# Fixtures


@pytest.fixture(scope="session")
def seed_ckpt(tmp_path_factory, mnist_dir, seed_keras) -> Path:
    """The notebook's model as a Lightning checkpoint, made by ``convert`` (checked on 1000 test images)."""
    from lightning_mnist.conversion import keras_to_checkpoint

    path = tmp_path_factory.mktemp("weights") / "seed.ckpt"
    report, _ = keras_to_checkpoint(seed_keras, path, check_images=1000, data_dir=mnist_dir)
    assert report.ok
    return path


@pytest.fixture(scope="session")
def renderings(tmp_path_factory, mnist):
    """Ten pictures in each style of mnist_common.renderings, from seeded-random MNIST test digits."""
    return write_renderings(mnist.test_images, mnist.test_labels, tmp_path_factory.mktemp("renderings"),
                            count=RENDERINGS, seed=1)


def _png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, "PNG")
    return buf.getvalue()


def _chunk(kind: bytes, data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)


def _write_rle_bmp(path: Path, data: bytes, width: int, height: int) -> None:
    """A BMP of 8-bit run-length data (which Pillow cannot write), a grey palette."""
    palette = b"".join(bytes((i, i, i, 0)) for i in range(256))
    info = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 8, 1, len(data), 2835, 2835, 256, 0)
    offset = 14 + len(info) + len(palette)
    path.write_bytes(b"BM" + struct.pack("<IHHI", offset + len(data), 0, 0, offset) + info + palette + data)


def _icon_of(dib: bytes) -> bytes:
    """An .ico file of one 16 x 16 entry holding ``dib`` (a BMP without its file header), whatever its own size."""
    return struct.pack("<HHH", 0, 1, 1) + struct.pack("<BBBBHHII", 16, 16, 0, 0, 1, 8, len(dib), 22) + dib


def make_bad_images(directory: Path) -> dict[str, str]:
    """File name -> a fragment of the reason predict must give for it."""
    directory.mkdir(parents=True, exist_ok=True)
    noise = Image.fromarray((np.random.default_rng(0).random((300, 300)) * 255).astype(np.uint8))
    good = _png_bytes(noise)
    (directory / "truncated.png").write_bytes(good[: len(good) // 2])
    corrupt = bytearray(good)
    corrupt[len(corrupt) // 2: len(corrupt) // 2 + 300] = bytes(300)
    (directory / "corrupt.png").write_bytes(bytes(corrupt))
    (directory / "empty.png").write_bytes(b"")
    (directory / "notes.png").write_text("a text file with an image's name\n")
    # Pillow reads PostScript through Ghostscript, which runs it: never opened as a picture (hostile round 6)
    (directory / "postscript.png").write_text("%!PS-Adobe-3.0 EPSF-3.0\n%%BoundingBox: 0 0 28 28\n"
                                              "0 0 moveto 28 28 lineto stroke showpage\n")
    (directory / "folder.png").mkdir()
    Image.new("RGB", (640, 480), (255, 255, 255)).save(directory / "blank.png")
    Image.new("RGBA", (200, 200), (0, 0, 0, 0)).save(directory / "transparent.png")
    noise.save(directory / "static.png")  # no plain border to tell a background by
    paper = np.clip(0.8 + np.random.default_rng(1).normal(0, 0.04, (300, 400)), 0, 1)
    Image.fromarray((paper * 255).astype(np.uint8)).save(directory / "paper_noise_only.png")
    # a 100,000 x 100,000 PNG in a few hundred bytes: refused before any pixel is decoded
    header = struct.pack(">IIBBBBB", 100_000, 100_000, 1, 0, 0, 0, 0)
    (directory / "bomb.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                                         + _chunk(b"IDAT", zlib.compress(bytes(10_000))) + _chunk(b"IEND", b""))
    header = struct.pack(">IIBBBBB", 20_000, 5_000, 8, 0, 0, 0, 0)  # 100 megapixels
    (directory / "huge.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                                         + _chunk(b"IDAT", zlib.compress(bytes(10_000))) + _chunk(b"IEND", b""))
    header = struct.pack(">IIBBBBB", 30_001, 1, 8, 0, 0, 0, 0)  # few pixels, one side beyond the limit
    (directory / "long.png").write_bytes(b"\x89PNG\r\n\x1a\n" + _chunk(b"IHDR", header)
                                         + _chunk(b"IDAT", zlib.compress(bytes(30_002))) + _chunk(b"IEND", b""))
    # a progressive JPEG whose last scan comes 100 times more: each decodes the whole picture again (hostile round 7)
    progressive = io.BytesIO()
    noise.save(progressive, "JPEG", progressive=True)
    scans = progressive.getvalue()
    last = scans.rindex(b"\xff\xda")
    (directory / "scans.jpg").write_bytes(scans[:-2] + scans[last:-2] * 100 + b"\xff\xd9")
    # a run-length BMP whose every row is "one pixel, end of line": 10 KB that Pillow decodes in Python, a loop turn a
    # pixel (64 megapixels: 5.5 s; hostile round 8); an icon holding a BMP larger than the icon says
    rows = (b"\x01\xff\x00\x00" * 2133 + b"\x00\x01", 30_000, 2133)
    _write_rle_bmp(directory / "rle.bmp", *rows)
    (directory / "icon.ico").write_bytes(_icon_of((directory / "rle.bmp").read_bytes()[14:]))
    # a camera's multi-picture JPEG (MPO) was not counted as a JPEG: its scans went unchecked
    noise.save(directory / "scans.mpo.jpg", "MPO", save_all=True, append_images=[noise] * 11, progressive=True)
    # only the first picture of an animation or of pages was read, silently
    noise.save(directory / "animation.gif", save_all=True, append_images=[noise.transpose(Image.Transpose.ROTATE_90)])
    noise.save(directory / "pages.tiff", save_all=True, append_images=[noise] * 2)
    (directory / "broken_pages.tif").write_bytes(_pages_beyond_the_file())
    (directory / "tiles.tif").write_bytes(_tiny_tiles(2000, 4))
    with open(directory / "video.png", "wb") as video:  # sparse: 300 MB on the disk's books, none written
        video.truncate(300 << 20)
    _crowded_containers(directory, noise)
    nan_digit = np.zeros((64, 64), np.float32)
    nan_digit[16:48, 28:36], nan_digit[0, 0] = 1.0, np.nan
    Image.fromarray(nan_digit).save(directory / "nan.tiff")  # a float TIFF: NaN is a value it can hold
    return {
        "missing.png": "no such file",
        "nan.tiff": "has pixels that are not numbers (NaN or infinite values)",
        "folder.png": "is a folder",  # open_image: not an image; predict: no pictures in it
        "notes.png": "not an image",
        "postscript.png": "is PostScript, which is not read (Pillow would run it through Ghostscript)",
        "empty.png": "empty (0 bytes)",
        "truncated.png": "truncated or corrupt",
        "corrupt.png": "truncated or corrupt",
        "blank.png": "nothing is drawn",
        "transparent.png": "nothing is drawn",
        "paper_noise_only.png": "nothing is drawn",
        "static.png": "cannot tell the digit from the background",
        "bomb.png": "refused: more than the limit of 64 megapixels",  # beyond even Pillow's own ceiling
        "huge.png": "than the limit of 64 megapixels",
        "long.png": "refused: 30001x1 pixels has a side longer than the limit of 30000 pixels",
        "video.png": "refused: 314,572,800 bytes, more than the limit of 268,435,456",
        "scans.jpg": "refused: a JPEG of 106 scans, more than the limit of 64 (a progressive JPEG has about 10",
        "scans.mpo.jpg": "refused: a JPEG of 72 scans, more than the limit of 64",
        "rle.bmp": "refused: 30000x2133 pixels of BMP encoded as bmp_rle, which Pillow decodes in Python, more than "
                   "the limit of 4 megapixels for it",
        "icon.ico": "is not an image (or not in a format Pillow can read)",
        "animation.gif": "holds more than one picture (an animation, or pages); only its first would be read: give "
                         "one picture",
        "pages.tiff": "holds more than one picture (an animation, or pages)",
        # its pages were counted first (a walk of 90,000 pages: 50 s; hostile round 9): this one's end is not read
        "broken_pages.tif": "holds more than one picture (an animation, or pages)",
        # Pillow made and read each tile in Python (2.5 million: 13 s and 0.9 GB for 10 MB; hostile round 9)
        "tiles.tif": "refused: TIFF of 250,000 tiles or strips, more than the limit of 65,536",
        # Pillow walked these blocks in Python as it opened the file, an object or a read each (10 MB: 1 to 4 s and
        # 0.4 GB; 250 MB: 31 s and 9.5 GB; hostile round 12)
        "markers.jpg": "refused: a JPEG header of more than 4,096 markers (a writer's has a few dozen)",
        "chunks.png": "refused: a PNG of more than 4,096 chunks besides its image data",
        "data_chunks.png": "refused: a PNG of more than 65,536 image data chunks (a writer's hold 8 KB or more each)",
        "comments.gif": "refused: a GIF of more than 4,096 extension blocks",
        "long_comment.gif": "refused: a GIF of more than 4,096 sub-blocks of comments or other extensions (1 MB",
        "comments.im": "is not an image (or not in a format Pillow can read)",
        # Pillow walked their image resources and boxes in Python (10 MB of empty ones: 4.5 and 3.8 s; round 13)
        "resources.psd": "is not an image (or not in a format Pillow can read)",
        "picture.jp2": "is not an image (or not in a format Pillow can read)",
    }


def _crowded_containers(directory: Path, picture: Image.Image) -> None:
    """Pictures of empty blocks by the thousand before their pixels: APP5 markers, private PNG chunks, GIF comments
    (one byte each, or one comment of 2 MB); and, readable, a JPEG of an ICC profile in 255 markers, as large as a
    writer splits one, and a PNG of image data in 1 KB chunks."""
    jpeg, png, gif = (io.BytesIO() for _ in range(3))
    picture.save(jpeg, "JPEG")
    picture.save(png, "PNG")
    picture.save(gif, "GIF")
    jpeg, png, gif = jpeg.getvalue(), png.getvalue(), gif.getvalue()
    (directory / "markers.jpg").write_bytes(jpeg[:2] + b"\xff\xe5\x00\x02" * 5000 + jpeg[2:])
    start = png.index(b"IDAT") - 4
    (directory / "chunks.png").write_bytes(png[:start] + _chunk(b"prIv", b"") * 5000 + png[start:])
    stream = zlib.compress(b"".join(b"\x00" + row for row in _rows(picture)))  # in one-byte chunks, padded with
    stream = stream[:2] + b"\x00\x00\x00\xff\xff" * 14_000 + stream[2:]  # empty stored blocks to 70,000 of them
    (directory / "data_chunks.png").write_bytes(png[:start] + b"".join(_chunk(b"IDAT", stream[i:i + 1])
                                                                      for i in range(len(stream)))
                                                + _chunk(b"IEND", b""))
    header = 13 + 3 * 256  # a GIF of Pillow's: its global colour table of 256 entries
    (directory / "comments.gif").write_bytes(gif[:header] + b"\x21\xfe\x01A\x00" * 5000 + gif[header:])
    long = b"\x21\xfe" + (b"\xff" + b"A" * 255) * 8200 + b"\x00"
    (directory / "long_comment.gif").write_bytes(gif[:header] + long + gif[header:])
    im = io.BytesIO()  # LabEye's IM, whose header's lines Pillow reads in Python: not read at all
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # Pillow drops IM in 2028
        picture.save(im, "IM")
    first = im.getvalue().index(b"\r\n") + 2
    (directory / "comments.im").write_bytes(im.getvalue()[:first] + b"Comment: x\r\n" * 5000 + im.getvalue()[first:])
    gray = picture.convert("L")  # Photoshop's PSD (8-bit grayscale, uncompressed, 5,000 empty image resources)
    resources = (b"8BIM" + struct.pack(">H", 1000) + b"\x00\x00" + struct.pack(">I", 0)) * 5000
    (directory / "resources.psd").write_bytes(
        b"8BPS" + struct.pack(">H", 1) + bytes(6) + struct.pack(">HIIHH", 1, gray.height, gray.width, 8, 1)
        + struct.pack(">I", 0) + struct.pack(">I", len(resources)) + resources + struct.pack(">I", 0)
        + struct.pack(">H", 0) + gray.tobytes())
    jp2 = io.BytesIO()
    gray.save(jp2, "JPEG2000")
    (directory / "picture.jp2").write_bytes(jp2.getvalue())  # a JPEG 2000 Pillow reads: not read at all
    icc = b"".join(b"\xff\xe2" + struct.pack(">H", 16 + 100) + b"ICC_PROFILE\x00" + bytes((i, 255)) + bytes(100)
                   for i in range(1, 256))
    (directory / "icc_chunks.jpg").write_bytes(jpeg[:2] + icc + jpeg[2:])
    pixels = zlib.compress(b"".join(b"\x00" + row for row in _rows(picture)))
    png_1k = b"".join(_chunk(b"IDAT", pixels[i:i + 1024]) for i in range(0, len(pixels), 1024))
    (directory / "small_chunks.png").write_bytes(png[:png.index(b"IDAT") - 4] + png_1k + _chunk(b"IEND", b""))


def _rows(picture: Image.Image) -> list[bytes]:
    data, width = picture.tobytes(), picture.width
    return [data[i:i + width] for i in range(0, len(data), width)]


def _tiny_tiles(side: int, tile: int) -> bytes:
    """An uncompressed side x side TIFF in tile x tile tiles, every tile at the same 16 bytes: 4 bytes a tile."""
    count = (side // tile) ** 2
    offsets, counts, ifd = 8 + tile * tile, 8 + tile * tile + 2 * count, 8 + tile * tile + 4 * count
    entries = [(256, 4, 1, side), (257, 4, 1, side), (258, 3, 1, 8), (259, 3, 1, 1), (262, 3, 1, 1), (277, 3, 1, 1),
               (322, 4, 1, tile), (323, 4, 1, tile), (324, 3, count, offsets), (325, 3, count, counts)]
    return (b"II*\0" + struct.pack("<I", ifd) + b"\xff" * tile * tile + struct.pack(f"<{count}H", *[8] * count)
            + struct.pack(f"<{count}H", *[tile * tile] * count) + struct.pack("<H", len(entries))
            + b"".join(struct.pack("<HHII", *entry) for entry in entries) + b"\0\0\0\0")


def _pages_beyond_the_file() -> bytes:
    """A TIFF of a 1x1 picture whose second page's header says a third page lies beyond the end of the file."""
    def tags(data: int) -> bytes:  # width, height, bits, no compression, black is zero, data, 1 sample, rows, bytes
        entries = [(256, 4, 1), (257, 4, 1), (258, 3, 8), (259, 3, 1), (262, 3, 1), (273, 4, data), (277, 3, 1),
                   (278, 4, 1), (279, 4, 1)]
        return struct.pack("<H", len(entries)) + b"".join(struct.pack("<HHII", t, k, 1, v) for t, k, v in entries)

    first, second = 12, 12 + 2 + 9 * 12 + 4
    return (b"II*\0" + struct.pack("<I", first) + b"\xff\0\0\0" + tags(8) + struct.pack("<I", second)
            + tags(8) + struct.pack("<I", 1 << 30))


def predict_files(paths, weights, backend: str, mode: str = "mnist") -> np.ndarray:
    from lightning_mnist.predictors import load_predictor

    predictor = load_predictor(weights, backend)
    return predictor.predict_proba(np.stack([prepare(p, mode).pixels for p in paths]))


# ---------------------------------------------------------------------------------------------
# Preprocessing (framework-free)


def _digit_picture(mnist, index: int, dark_on_light: bool, side: int = 300, canvas=(900, 700), at=(450, 100)):
    big = Image.fromarray(mnist.test_images[index]).resize((side, side), Image.Resampling.BICUBIC)
    ink = np.asarray(big, np.float32) / 255
    page = np.zeros(canvas[::-1], np.float32)
    page[at[1]:at[1] + side, at[0]:at[0] + side] = ink
    page = 1 - page if dark_on_light else page
    return Image.fromarray((page * 255).round().astype(np.uint8))


def test_mnist_preprocessing_makes_an_mnist_digit(mnist, tmp_path):
    """Either polarity gives the same 28x28: ink 1, fitted in 20x20, mass centred at (14, 14)."""
    out = {}
    for dark in (True, False):
        path = tmp_path / f"{dark}.png"
        _digit_picture(mnist, 0, dark).save(path)
        prepared = prepare(path)
        assert prepared.inverted is dark and prepared.size == (900, 700)
        x = prepared.pixels
        assert x.shape == (SIZE, SIZE) and x.dtype == np.float32 and x.min() >= 0 and x.max() == pytest.approx(1)
        rows, cols = np.nonzero(x.max(1) > 0)[0], np.nonzero(x.max(0) > 0)[0]
        assert max(rows[-1] - rows[0] + 1, cols[-1] - cols[0] + 1) == BOX
        ys, xs = np.mgrid[:SIZE, :SIZE]
        assert abs((x * ys).sum() / x.sum() - 14) <= 0.5 and abs((x * xs).sum() / x.sum() - 14) <= 0.5
        out[dark] = x
    assert np.abs(out[True] - out[False]).max() < 1e-5
    # the original MNIST digit is recovered closely
    assert np.abs(out[True] - mnist.test_images[0] / 255).mean() < 0.05


def test_transparency_palette_and_16_bit(mnist, tmp_path):
    ref_path = tmp_path / "ref.png"
    _digit_picture(mnist, 3, True).save(ref_path)
    ref = prepare(ref_path).pixels
    ink = 1 - np.asarray(Image.open(ref_path), np.float32) / 255
    variants = {
        # dark strokes on a transparent canvas whose hidden colour is black (what notebook-style loading gets wrong)
        "rgba_dark.png": Image.fromarray(np.dstack([np.zeros(ink.shape + (3,), np.uint8),
                                                    (ink * 255).round().astype(np.uint8)])),
        # white strokes on a transparent canvas: composited on black, not on white
        "rgba_light.png": Image.fromarray(np.dstack([np.full(ink.shape + (3,), 255, np.uint8),
                                                     (ink * 255).round().astype(np.uint8)])),
        "palette.png": Image.open(ref_path).convert("RGB").quantize(16),
        "gray16.png": Image.fromarray(((1 - ink) * 65535).round().astype(np.uint16)),
        # values of no usual scale read by their own range (a float TIFF of 0..1020 was "nothing is drawn on it", an
        # int32 one of -255..0 "the image is uniform")
        "float_1020.tif": Image.fromarray(((1 - ink) * 1020).astype(np.float32)),
        "int_negative.tif": Image.fromarray(((1 - ink) * 255 - 255).round().astype(np.int32)),
        # float32's whole range: its width overflowed float32 (numpy's warnings, then "nothing is drawn": hostile 11)
        "float_wide.tif": Image.fromarray(((1 - ink.astype(np.float64)) * 4e38 - 3e38).astype(np.float32)),
    }
    for name, image in variants.items():
        image.save(tmp_path / name)
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing printed beside the answer
            assert np.abs(prepare(tmp_path / name).pixels - ref).mean() < 0.02, name


def test_exif_orientation_is_applied(mnist, tmp_path):
    upright = _digit_picture(mnist, 1, True)
    upright.save(tmp_path / "upright.png")
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 clockwise to display": the stored pixels are turned the other way
    upright.rotate(90, expand=True).save(tmp_path / "phone.jpg", quality=95, exif=exif)
    assert np.abs(prepare(tmp_path / "phone.jpg").pixels - prepare(tmp_path / "upright.png").pixels).mean() < 0.03
    # a PNG's EXIF has no size bound: 9 MB of fractions took 27 s and 0.7 GB a picture when Pillow's exif_transpose
    # wrote the block again without the orientation (hostile round 8); only the orientation is read now
    exif[0x9286] = b"x" * 100_000  # a large tag beside it (UserComment)
    exif[0x011A] = tuple((index, 7) for index in range(20_000))  # XResolution as 20,000 fractions
    upright.rotate(90, expand=True).save(tmp_path / "phone.png", exif=exif)
    with Image.open(tmp_path / "phone.png") as opened:
        opened.load()
        block = opened.info["exif"]
        assert upright_of(opened).info["exif"] is block  # not decoded and written again
    assert np.abs(prepare(tmp_path / "phone.png").pixels - prepare(tmp_path / "upright.png").pixels).mean() < 0.03
    # a damaged orientation, which Pillow skips with a warning: its lines reached stderr before the answer (hostile
    # round 13): a TIFF's tag of 5,000 entries, a JPEG's EXIF entry pointing past its block; read as they are
    upright.save(tmp_path / "tag.tif", tiffinfo={0x0112: tuple([1] * 5000)})
    past_end = struct.pack("<H", 1) + struct.pack("<HHII", 0x0112, 3, 1000, 999_999) + struct.pack("<I", 0)
    upright.save(tmp_path / "damaged.jpg", quality=95, exif=b"Exif\x00\x00II*\x00" + struct.pack("<I", 8) + past_end)
    for name in ("tag.tif", "damaged.jpg"):
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # nothing printed beside the answer
            assert np.abs(prepare(tmp_path / name).pixels - prepare(tmp_path / "upright.png").pixels).mean() < 0.03


def test_notebook_preprocessing_is_the_notebooks(tmp_path, seed_png):
    """Grayscale, nearest-neighbour resize to 28x28 (keras.utils.load_img's default), 1 - x/255."""
    prepared = prepare(seed_png, "notebook")
    expected = 1 - np.asarray(Image.open(seed_png).convert("L").resize((28, 28), Image.Resampling.NEAREST)) / 255
    assert prepared.pixels.dtype == np.float32 and np.allclose(prepared.pixels, expected)


def test_notebook_preprocessing_reads_what_pillows_grayscale_drops(tmp_path, seed_png):
    """Pillow's ``convert("L")`` dropped a digit drawn in the alpha channel and clipped a float TIFF in [0, 1] to
    black, and the EXIF orientation was ignored: each reached the model as another picture, answered with confidence.
    Now read as the MNIST way reads them (the same 28x28 as the plain picture's), and a uniform one refused."""
    gray = Image.open(seed_png).convert("L")
    expected = prepare(seed_png, "notebook").pixels
    ink = Image.fromarray(255 - np.asarray(gray))  # the digit as opacity, over nothing
    Image.merge("LA", (Image.new("L", gray.size, 0), ink)).save(tmp_path / "alpha.png")
    Image.fromarray(np.asarray(gray, np.float32) / 255).save(tmp_path / "float.tif")
    turned = gray.transpose(Image.Transpose.ROTATE_270)  # stored on its side, EXIF orientation 8 turns it back
    exif = Image.Exif()
    exif[0x0112] = 8
    turned.save(tmp_path / "turned.png", exif=exif)
    assert np.abs(prepare(tmp_path / "float.tif", "notebook").pixels - expected).max() < 1e-6
    turned_back = prepare(tmp_path / "turned.png", "notebook").pixels  # nearest samples of a turned grid: not exact
    alpha = prepare(tmp_path / "alpha.png", "notebook").pixels  # composited on a contrasting background
    for pixels in (turned_back, alpha):
        assert np.corrcoef(pixels.ravel(), expected.ravel())[0, 1] > 0.9
    Image.new("L", (50, 50), 0).save(tmp_path / "black.png")
    with pytest.raises(ImageError, match="black.png: nothing is drawn on it \\(the image is uniform\\)"):
        prepare(tmp_path / "black.png", "notebook")


def test_bad_images_raise_one_line_errors(tmp_path):
    expected = make_bad_images(tmp_path)
    for name, reason in expected.items():
        with pytest.raises(ImageError) as info:
            prepare(tmp_path / name)
        message = str(info.value)
        assert "\n" not in message and str(tmp_path / name) in message and reason in message, message
    noise = np.asarray(open_image(tmp_path / "static.png"))
    assert np.array_equal(np.asarray(open_image(tmp_path / "small_chunks.png")), noise)  # 1 KB chunks: 88 of them
    assert open_image(tmp_path / "icc_chunks.jpg").size == (300, 300)  # 255 markers of a profile: a writer's most
    os.mkfifo(tmp_path / "pipe.png")  # read, it would wait for a writer forever
    for path, reason in ((tmp_path / "pipe.png", "pipe.png: is not a regular file"),
                         ("/dev/zero", "/dev/zero: is not a regular file"), ("", "'': an empty name")):
        with pytest.raises(ImageError) as info:
            prepare(path)
        assert reason in str(info.value), info.value


def test_a_cameras_multi_picture_jpeg_is_read_as_its_photo(mnist, tmp_path):
    """A phone's MPO file (the photo, then other views of it: a preview, a depth map) is one picture: its first,
    read as the same JPEG alone is (an animation or pages are refused, above)."""
    photo = _digit_picture(mnist, 0, dark_on_light=True).convert("RGB")
    photo.save(tmp_path / "photo.jpg", quality=90)
    photo.save(tmp_path / "camera.jpg", "MPO", save_all=True, quality=90,
               append_images=[Image.new("RGB", photo.size, (128, 0, 0))])
    with Image.open(tmp_path / "camera.jpg") as opened:
        assert (opened.format, opened.n_frames) == ("MPO", 2)
    assert np.array_equal(prepare(tmp_path / "camera.jpg").pixels, prepare(tmp_path / "photo.jpg").pixels)


# ---------------------------------------------------------------------------------------------
# Predictions with the notebook's weights


def test_renderings_are_recognised(renderings, seed_ckpt, mnist):
    """>= 97 % of varied pictures right with MNIST preprocessing; the notebook's preprocessing far behind."""
    paths = [r.path for r in renderings]
    labels = np.array([r.label for r in renderings])
    right = {mode: predict_files(paths, seed_ckpt, "torch", mode).argmax(1) == labels for mode in ("mnist", "notebook")}
    by_style = collections.defaultdict(list)
    for r, ok in zip(renderings, right["mnist"]):
        by_style[r.style].append(ok)
    summary = {style: f"{sum(v)}/{len(v)}" for style, v in by_style.items()}
    assert right["mnist"].mean() >= 0.97, summary
    assert all(sum(v) >= len(v) - 2 for v in by_style.values()), summary
    assert right["notebook"].mean() < right["mnist"].mean() - 0.3


def test_both_backends_agree_on_every_weights_file(renderings, seed_ckpt, seed_png, seed_keras):
    """The notebook's 4 with torch and Keras, from the .keras file and the checkpoint: probabilities within 1e-5."""
    import torch

    from lightning_mnist.checkpoints import load_classifier, load_networks

    paths = [seed_png] + [r.path for r in renderings[:24]]
    probs = {(backend, Path(w).suffix): predict_files(paths, w, backend)
             for backend in ("torch", "keras") for w in (seed_ckpt, seed_keras)}
    reference = probs[("keras", ".keras")]  # the notebook's own model in its own framework
    for key, p in probs.items():
        assert p.shape == (len(paths), 10) and np.allclose(p.sum(1), 1, atol=1e-5)
        assert np.abs(p - reference).max() <= 1e-5, key
        assert (p.argmax(1) == reference.argmax(1)).all(), key
        assert p[0].argmax() == 4 and p[0, 4] > 0.99, key
    # the fast path (torch only, no Lightning) is MnistClassifier.predict_proba
    x = torch.from_numpy(np.stack([prepare(p).pixels for p in paths])[:, None])
    [network], classifier = load_networks(seed_ckpt), load_classifier(seed_ckpt)
    with torch.inference_mode():
        full = classifier.predict_proba(x)
    assert torch.allclose(torch.softmax(network(x), 1), full, atol=1e-6)


def test_kfold_ensemble_averages_its_folds(seed_ckpt, tmp_path, seed_png, seed_keras):
    import torch

    from lightning_mnist.predictors import load_predictor, resolve

    # a second "fold": the seed checkpoint with its last layer's bias shifted towards class 7
    checkpoint = torch.load(seed_ckpt, weights_only=True)
    checkpoint["state_dict"]["network.dense_1.bias"][7] += 8.0
    (tmp_path / "folds").mkdir()
    torch.save(checkpoint, tmp_path / "folds" / "fold_1.ckpt")
    results = {"framework": "lightning", "num_folds": 2, "folds": [
        {"fold": 0, "model_path": str(seed_ckpt)}, {"fold": 1, "model_path": "folds/fold_1.ckpt"}]}  # relative
    (tmp_path / "cv_results.json").write_text(json.dumps(results))
    x = np.stack([prepare(seed_png).pixels] * 2)
    single = [load_predictor(w, "torch").predict_proba(x) for w in (seed_ckpt, tmp_path / "folds" / "fold_1.ckpt")]
    for where in (tmp_path / "cv_results.json", tmp_path):  # the file, or the run folder holding it
        predictor = load_predictor(where)
        assert predictor.ensemble and predictor.backend == "torch" and len(predictor.paths) == 2
        assert np.allclose(predictor.predict_proba(x), (single[0] + single[1]) / 2, atol=1e-6)
    # a Keras k-fold run (.keras fold models) runs on Keras by default
    keras_results = {"framework": "keras", "folds": [{"fold": 0, "model_path": str(seed_keras)}]}
    (tmp_path / "keras_cv.json").write_text(json.dumps(keras_results))
    assert resolve(tmp_path / "keras_cv.json")[2] == "keras"


@pytest.mark.parametrize("name, content, reason", [
    ("missing.ckpt", None, "no such file"),
    ("empty.ckpt", b"", "empty file"),
    ("garbage.ckpt", b"\x00not a checkpoint" * 50, "not a PyTorch checkpoint"),
    ("garbage.keras", b"PK\x03\x04 not a zip" * 20, "not a .keras file"),
    ("weights.h5", b"x", "weights.h5 is not a legacy Keras model file (not an HDF5 file)"),
    ("weights.pb", b"x", "expected a Lightning checkpoint (.ckpt), a Keras model (.keras, or a legacy .h5) or a "
                         "k-fold run's cv_results.json, or an .onnx file (--backend onnx)"),
    ("model.pt2", b"x", "a torch.export program is a file for deploying, which predict and serve do not run; give a "
                        "Lightning checkpoint (.ckpt), a Keras model (.keras, or a legacy .h5) or a k-fold run's "
                        "cv_results.json, or an .onnx file (--backend onnx)"),
    ("model.tflite", b"x", "a LiteRT model is a file for deploying"),
    ("folder.ckpt", "folder", "folder.ckpt: a folder without a cv_results.json (a k-fold run's folder holds one); "
                              "name a Lightning checkpoint (.ckpt), a Keras model (.keras, or a legacy .h5) or a "
                              "k-fold run's cv_results.json, or an .onnx file (--backend onnx)"),
    ("unzipped", "keras folder", "unzipped: a Keras model saved unzipped (save_model(..., zipped=False)); save it "
                                 "as a .keras file (model.save(\"model.keras\")) and name that"),
    ("cv_results.json", b"{\"folds\": []}", "not a k-fold"),
    ("broken.json", b"{not json", "not a readable k-fold"),
    ("lost_folds.json", b"{\"folds\": [{\"model_path\": \"gone.ckpt\"}]}", "fold 0 model"),
])
def test_bad_weights_fail_in_one_line(name, content, reason, tmp_path, capsys, seed_png):
    from lightning_mnist.commands.predict import main

    weights = tmp_path / name
    if content in ("folder", "keras folder"):
        weights.mkdir()
        if content == "keras folder":  # what keras.saving.save_model(model, folder, zipped=False) writes
            for part in ("config.json", "metadata.json", "model.weights.h5"):
                (weights / part).write_bytes(b"{}")
    elif content is not None:
        weights.write_bytes(content)
    with pytest.raises(SystemExit) as info:
        main([str(seed_png), "--weights", str(weights)])
    assert info.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("error:") and reason in err[0], err


def test_weights_of_another_model_are_refused(tmp_path, capsys, seed_png):
    import torch

    from lightning_mnist.commands.predict import main

    torch.save({"state_dict": {"encoder.weight": torch.zeros(4, 4)}}, tmp_path / "other.ckpt")
    with pytest.raises(SystemExit) as info:
        main([str(seed_png), "--weights", str(tmp_path / "other.ckpt")])
    assert info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert "other.ckpt" in line and "records no architecture" in line


@pytest.mark.parametrize("backend", ["torch", "keras"])
@pytest.mark.parametrize("input_shape, units, fragment", [
    ([32, 32, 3], 10, "takes 32x32x3 inputs; predict prepares 28x28 grayscale digits"),
    ([28, 28, 1], 5, "its network gives 5 classes; predict and serve answer with a digit, 0 to 9"),
])
def test_a_network_that_does_not_take_or_give_digits_is_refused(input_shape, units, fragment, backend, tmp_path,
                                                                   capsys, seed_png):
    from lightning_mnist.checkpoints import save_checkpoint
    from lightning_mnist.commands.predict import main
    from lightning_mnist.models import KerasNetwork
    from mnist_common.architecture import Architecture

    other = Architecture.from_config({"input_shape": input_shape, "layers": [{"type": "Flatten"},
                                                                            {"type": "Dense", "units": units}]})
    save_checkpoint(tmp_path / "other.ckpt", other, KerasNetwork(other).state_dict())
    with pytest.raises(SystemExit) as info:
        main([str(seed_png), "--weights", str(tmp_path / "other.ckpt"), "--backend", backend])
    assert info.value.code == 2
    [line] = capsys.readouterr().err.strip().splitlines()
    assert fragment in line and not capsys.readouterr().out


# ---------------------------------------------------------------------------------------------
# The command line, as real subprocesses


def test_cli_predicts_good_files_and_reports_each_bad_one(run_module, seed_ckpt, renderings, tmp_path, seed_png):
    bad = make_bad_images(tmp_path / "bad")
    good = [seed_png, renderings[0].path, renderings[1].path]
    args = [good[0], *[tmp_path / "bad" / name for name in bad], *good[1:]]
    proc = run_module("lightning_mnist", "predict", *args, "--weights", seed_ckpt, "--json",
                      "--show", tmp_path / "figure.png", "--timings", check=False)
    assert proc.returncode == 2 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    errors = [line for line in proc.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == len(bad), proc.stderr
    for (name, reason), line in zip(bad.items(), errors):  # one line per bad file, in order
        assert f"{tmp_path / 'bad' / name}: " in line and reason in line, line
    rows = [json.loads(line) for line in proc.stdout.splitlines()]
    failed = [row for row in rows if "error" in row]  # every bad file gets a JSON record too
    assert [(row["image"], bad[Path(row["image"]).name] in row["error"]) for row in failed] == \
        [(str(tmp_path / "bad" / name), True) for name in bad]
    rows = [row for row in rows if "error" not in row]
    assert [row["image"] for row in rows] == [str(p) for p in good]
    assert rows[0]["digit"] == 4 and rows[0]["probability"] > 0.99 and rows[0]["backend"] == "torch"
    assert [row["digit"] for row in rows[1:]] == [r.label for r in renderings[:2]]
    for row in rows:
        assert len(row["probabilities"]) == 10 and abs(sum(row["probabilities"]) - 1) < 1e-5
        assert row["probability"] == max(row["probabilities"])
    assert Image.open(tmp_path / "figure.png").format == "PNG"
    assert "timings:" in proc.stderr and "inference" in proc.stderr


def test_a_figure_shows_names_that_are_no_text_or_look_like_mathematics(run_main, seed_ckpt, seed_png, tmp_path):
    """A picture whose name's bytes are not UTF-8 was a traceback in the figure's font renderer after every
    prediction had been printed (hostile round 8); a name between dollar signs was read as mathematics."""
    import os

    folder = tmp_path / "digits"
    folder.mkdir()
    for name in (b"a\xff.png", b"$\\frac{$.png"):
        shutil.copy(seed_png, os.path.join(os.fsencode(folder), name))
    out = run_main("lightning_mnist", "predict", folder, "--weights", seed_ckpt, "--show", tmp_path / "figure.png").out
    assert "a\\udcff.png: 4" in out and "$\\frac{$.png: 4" in out, out
    assert Image.open(tmp_path / "figure.png").format == "PNG"


def test_a_folder_stands_for_the_pictures_in_it(run_main, capsys, seed_ckpt, renderings, seed_png, tmp_path):
    """``predict digits/``: each picture in the folder by name (not its hidden files, other files or subfolders),
    in the place of the folder among the other arguments; a folder without pictures gets its own error line."""
    digits, empty = tmp_path / "digits", tmp_path / "empty"
    (digits / "sub").mkdir(parents=True)
    empty.mkdir()
    shutil.copy(seed_png, digits / "b_four.PNG")
    shutil.copy(renderings[0].path, digits / "a_first.png")
    for name in (".hidden.png", "sub/c.png"):
        shutil.copy(seed_png, digits / name)
    (digits / "notes.txt").write_text("not a picture")
    with pytest.raises(SystemExit) as exit_info:
        run_main("lightning_mnist", "predict", digits, empty, seed_png, "--weights", seed_ckpt, "--json")
    assert exit_info.value.code == 2
    printed = capsys.readouterr()
    rows = [json.loads(line) for line in printed.out.splitlines()]
    assert [row["image"] for row in rows] == [str(digits / "a_first.png"), str(digits / "b_four.PNG"), str(seed_png),
                                              str(empty)]
    assert [row["digit"] for row in rows[:3]] == [renderings[0].label, 4, 4] and "no pictures" in rows[3]["error"]
    assert printed.err.count("error:") == 1 and f"error: {empty}: is a folder with no pictures in it" in printed.err



def test_entries_of_a_folder_named_like_pictures_that_are_none_get_their_own_line(run_main, capsys, seed_ckpt,
                                                                                  seed_png, tmp_path):
    """A FIFO, a link to itself and a folder named ``*.png`` in a folder: skipped without a word, while an unreadable
    picture got its line. Each gets its own now (a FIFO is not opened: read, it would wait for a writer)."""
    digits = tmp_path / "digits"
    (digits / "folder.png").mkdir(parents=True)
    shutil.copy(seed_png, digits / "a_four.png")
    os.mkfifo(digits / "pipe.png")
    os.symlink(digits / "loop.png", digits / "loop.png")
    with pytest.raises(SystemExit) as exit_info:
        run_main("lightning_mnist", "predict", digits, "--weights", seed_ckpt, "--json")
    printed = capsys.readouterr()
    rows = {Path(row["image"]).name: row for row in map(json.loads, printed.out.splitlines())}
    assert exit_info.value.code == 2 and sorted(rows) == ["a_four.png", "folder.png", "loop.png", "pipe.png"]
    assert rows["a_four.png"]["digit"] == 4 and "is a folder, not an image" in rows["folder.png"]["error"]
    assert "is not a regular file" in rows["pipe.png"]["error"] and "cannot be read" in rows["loop.png"]["error"]
    assert printed.err.count("error:") == 3


def test_cli_plain_text_keeps_one_line_per_image_whatever_its_name(run_module, seed_ckpt, seed_png, tmp_path):
    """A newline or an escape sequence in a file name is written escaped, so each image stays one line (and its
    probabilities the next) and the terminal is not driven by a name; --json keeps the name as it is."""
    odd = tmp_path / "four\n7: 1 (probability 1.0000)\x1b[2J.png"
    shutil.copy(seed_png, odd)
    proc = run_module("lightning_mnist", "predict", odd, "--weights", seed_ckpt)
    lines = proc.stdout.splitlines()
    assert len(lines) == 2 and lines[0].startswith(str(tmp_path / "four\\n7: 1 (probability 1.0000)\\x1b[2J.png: 4 ")), lines
    assert "\x1b" not in proc.stdout
    proc = run_module("lightning_mnist", "predict", odd, "--weights", seed_ckpt, "--json")
    assert json.loads(proc.stdout)["image"] == str(odd)


def test_output_into_a_closed_pipe_ends_quietly_and_into_a_closed_stdout_goes_nowhere(mnist_dir, seed_ckpt, seed_png,
                                                                                        tmp_path, monkeypatch, capsys):
    """``predict digits/ | head`` ended in a BrokenPipeError traceback (and Python's "Exception ignored" of its last
    flush): the command stops quietly with the shell's code for it, 141. With standard output closed (``>&-``),
    predict and ``--print_config`` ended in a traceback (None has no flush or write): they write it nowhere."""
    import subprocess
    import sys

    from conftest import module_env

    from lightning_mnist.__main__ import main

    process = subprocess.Popen([sys.executable, "-m", "lightning_mnist", "predict", seed_png, seed_png, "--weights",
                                seed_ckpt], cwd=tmp_path, env=module_env(mnist_dir), stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    process.stdout.close()  # the reader goes away before anything is written
    err = process.communicate(timeout=300)[1]
    assert process.returncode == 141 and "Traceback" not in err and "Exception ignored" not in err, err[-3000:]
    monkeypatch.setattr("sys.stdout", None)
    for args in (["predict", str(seed_png), "--weights", str(seed_ckpt)], ["fit", "--print_config"]):
        try:
            main(args)
        except SystemExit as done:
            assert done.code in (0, None), args
        assert "Traceback" not in capsys.readouterr().err


def test_cli_keras_backend_reads_the_notebooks_file(run_module, renderings, seed_png, seed_keras):
    """The notebook's .keras file runs on Keras by default; the text output is the notebook's."""
    proc = run_module("lightning_mnist", "predict", seed_png, renderings[2].path, "--weights", seed_keras)
    lines = proc.stdout.splitlines()
    assert lines[0].startswith(f"{seed_png}: 4 (probability 0.99") or lines[0].startswith(f"{seed_png}: 4 (probability 1.00")
    assert lines[1].split()[0::2] == [f"{k}:" for k in range(10)]
    assert lines[2].startswith(f"{renderings[2].path}: {renderings[2].label} ")
    assert "Traceback" not in proc.stderr


def test_cli_notebook_preprocessing_reproduces_the_notebook(run_module, seed_ckpt, seed_png):
    """The notebook printed class 4 with probability 0.9984 for imagen.png."""
    proc = run_module("lightning_mnist", "predict", seed_png, "--weights", seed_ckpt, "--preprocess", "notebook",
                      "--json")
    [row] = [json.loads(line) for line in proc.stdout.splitlines()]
    assert row["digit"] == 4 and row["probability"] == pytest.approx(0.9984, abs=5e-4)
    assert row["preprocess"] == "notebook"


def test_cli_bad_weights_and_flags_fail_in_one_line(run_module, tmp_path, seed_png):
    from conftest import assert_one_line_error

    (tmp_path / "broken.ckpt").write_bytes(b"PK\x03\x04" + bytes(100))
    proc = run_module("lightning_mnist", "predict", seed_png, "--weights", tmp_path / "broken.ckpt", check=False)
    assert proc.returncode == 2
    assert_one_line_error(proc, "broken.ckpt")
    assert proc.stdout == ""


@pytest.mark.parametrize("backend", ["torch", "keras", "onnx"])
def test_many_images_run_a_batch_at_a_time_with_the_same_answers(backend, seed_keras, mnist, monkeypatch):
    """A folder of thousands of pictures ran as one batch (10 GB for a network of large activations, a helper's):
    they run :attr:`Predictor.batch_size` at a time, which shrinks with the network's activations, and the answers
    are those of one batch."""
    import lightning_mnist.interop.proof as proof
    import lightning_mnist.predictors as predictors

    predictor = predictors.load_predictor(seed_keras, backend)
    pixels = mnist.test_images[:300].astype(np.float32) / 255.0
    whole = predictor.predict_proba(pixels)
    monkeypatch.setattr(predictors, "PREDICT_BATCH", 7)
    assert predictor.batch_size == 7
    np.testing.assert_allclose(predictor.predict_proba(pixels), whole, atol=1e-6)
    values = load_architecture(seed_keras).activation_values
    monkeypatch.setattr(proof, "CHECK_BATCH_VALUES", 3 * values)  # the bound predict shares with the check
    # the onnx backend runs one exported graph and keeps no description: its batch is the plain one
    assert predictor.batch_size == (7 if backend == "onnx" else 3)
