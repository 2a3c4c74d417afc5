"""The blocks of a picture file's container, counted before Pillow opens it.

Pillow walks a JPEG's header markers, a PNG's chunks and a GIF's blocks in Python as it opens a
file, with a Python object or a read for each: a 10 MB JPEG of empty APP5 markers took 4 s and
0.4 GB in ``serve``, a 250 MB GIF of one-byte comments 31 s and 9.5 GB (hostile round 12), where
a picture of those sizes takes a fraction of it. Writers put a few dozen markers in a JPEG's
header (an ICC profile of 16 MB in 256 of them at most), and fill a PNG's image data chunks with
8 KB or more and a GIF's data sub-blocks with 255 bytes: counts far above these are refused,
walked here no further than the limit (a bytes index a block, not Pillow's reads and objects).
"""

from __future__ import annotations

MAX_HEADER_BLOCKS = 4_096  # a JPEG's markers before its first scan, a PNG's chunks other than IDAT, GIF extensions
MAX_DATA_BLOCKS = 1 << 20  # a GIF's data sub-blocks (1 MB of 1-byte ones: refused at 2 MB)
# a PNG's IDAT chunks, 512 MB of a writer's 8 KB ones: Pillow's decoder takes each in Python (770,000 one-byte chunks,
# 10 MB, took 1.9 s where a picture of that size takes 0.1 s; hostile round 13)
MAX_PNG_DATA_CHUNKS = 1 << 16
JPEG_START, PNG_SIGNATURE, GIF_SIGNATURES = b"\xff\xd8", b"\x89PNG\r\n\x1a\n", (b"GIF87a", b"GIF89a")
JPEG_STANDALONE = frozenset({0x01, *range(0xD0, 0xD9)})  # TEM, RSTn, SOI: markers without a length


def crowded_container(data: bytes) -> str | None:
    """What makes ``data`` a picture file of more blocks than the limits (:data:`MAX_HEADER_BLOCKS`,
    :data:`MAX_DATA_BLOCKS`), said for a refusal; None for any other file (a damaged one is left to Pillow)."""
    if data.startswith(JPEG_START):
        markers = _jpeg_header_markers(data)
        return (f"a JPEG header of more than {MAX_HEADER_BLOCKS:,} markers (a writer's has a few dozen)"
                if markers > MAX_HEADER_BLOCKS else None)
    if data.startswith(PNG_SIGNATURE):
        return _crowded_png(data)
    if data[:6] in GIF_SIGNATURES:
        return _crowded_gif(data)
    return None


def _jpeg_header_markers(data: bytes) -> int:
    """The markers (and fill bytes) before the first start of scan, counted up to one past the limit."""
    at, count = len(JPEG_START), 0
    while at + 4 <= len(data) and count <= MAX_HEADER_BLOCKS and data[at] == 0xFF:
        kind = data[at + 1]
        if kind == 0xDA:  # start of scan: libjpeg reads the rest, in C
            break
        count += 1
        at += 1 if kind == 0xFF else 2 if kind in JPEG_STANDALONE else 2 + int.from_bytes(data[at + 2:at + 4], "big")
    return count


def _crowded_png(data: bytes) -> str | None:
    at, image, other = len(PNG_SIGNATURE), 0, 0
    while at + 8 <= len(data):
        kind = data[at + 4:at + 8]
        if kind == b"IEND":
            break
        if kind == b"IDAT":
            image += 1
        else:
            other += 1
        if image > MAX_PNG_DATA_CHUNKS:
            return f"a PNG of more than {MAX_PNG_DATA_CHUNKS:,} image data chunks (a writer's hold 8 KB or more each)"
        if other > MAX_HEADER_BLOCKS:
            return f"a PNG of more than {MAX_HEADER_BLOCKS:,} chunks besides its image data (a writer's has a few)"
        at += 12 + int.from_bytes(data[at:at + 4], "big")  # length, type, data, CRC
    return None


def _crowded_gif(data: bytes) -> str | None:
    """Walked up to a second picture (refused as one, by Pillow, which walks no further than that either)."""
    if len(data) < 13:
        return None
    flags = data[10]
    at = 13 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)  # the header, its colour table
    extensions, sub_blocks, pictures, metadata = 0, 0, 0, 0
    while at < len(data):
        introducer = data[at]
        if introducer == 0x21:  # an extension: its label, then its sub-blocks
            extensions += 1
            at += 2
            start = sub_blocks
        elif introducer == 0x2C:  # a picture: its descriptor and colour table, the LZW code size, its sub-blocks
            pictures += 1
            if pictures > 1 or at + 10 > len(data):
                break
            flags = data[at + 9]
            at += 11 + (3 << ((flags & 7) + 1) if flags & 0x80 else 0)
        else:  # the trailer, or a damaged file
            break
        if extensions > MAX_HEADER_BLOCKS:
            return f"a GIF of more than {MAX_HEADER_BLOCKS:,} extension blocks (a writer's has a few)"
        while at < len(data):
            size = data[at]
            at += 1 + size
            sub_blocks += 1
            if sub_blocks > MAX_DATA_BLOCKS:
                return f"a GIF of more than {MAX_DATA_BLOCKS:,} data sub-blocks (a writer's hold 255 bytes each)"
            if not size:
                break
        if introducer == 0x21:
            metadata += sub_blocks - start - 1  # its pieces, not the empty one that ends them
            if metadata > MAX_HEADER_BLOCKS:  # Pillow joins a comment's pieces one by one: 10 MB took 6 s, 0.7 GB
                return (f"a GIF of more than {MAX_HEADER_BLOCKS:,} sub-blocks of comments or other extensions "
                        f"(1 MB; a writer's have a few)")
    return None
