"""What ``POST /predict`` accepts, read within a size limit and prepared for the model, or refused with a 4xx.

A picture comes either as the request body (``Content-Type: image/png``, ``image/jpeg``,
... any ``image/*``) or as the multipart form field ``file`` (what a browser's file
upload sends). :func:`read_upload` is a FastAPI dependency: LitServe's request handler
calls it in the HTTP process before anything is queued, so a bad request gets its 4xx
JSON error there and only prepared 28x28 images travel to the inference worker (3 KiB
each instead of the picture, and no error can fail a whole batch there).

Why not LitServe's own request reading: it parses a body as JSON or as a form, and
Starlette's form parser needs python-multipart and spools file parts over 1 MiB to a
temporary file on disk. Here the body is read into memory, never more than
``max_bytes`` (the ``Content-Length`` is checked before reading, the bytes counted while
reading), and a multipart body is split with the standard library's ``email`` parser.
Nothing is written to disk.

The preprocessing is :func:`mnist_common.images.preparation.prepare_bytes`, the one ``predict`` uses;
it runs in a thread so the event loop keeps answering while a picture is prepared.
"""

from __future__ import annotations

import asyncio
import base64
import email.errors
import email.message
import email.parser
import email.policy
import io
import itertools
import re
from collections.abc import Iterator
from dataclasses import dataclass
import numpy as np
from fastapi import HTTPException, Request
from PIL import Image
from starlette.concurrency import run_in_threadpool
from starlette.requests import ClientDisconnect

from mnist_common.images.decoding import ImageError
from mnist_common.images.preparation import prepare_bytes

FIELD = "file"  # the multipart field that holds the picture
BACKENDS = ("torch", "keras", "onnx")
# A browser's upload sends one part; 200,000 empty ones (in a form nested in the form, too) fit in 10 MB and took
# the email parser 17 s of a process's CPU, 100 parts of 16 KiB headers a minute
MAX_FORM_PARTS = 20
# lines (ended as the email parser ends them) a form may hold: the parser takes a Python loop turn for each, and
# 10 MB of line breaks in one part cost 19 s (hostile round 10); a picture's bytes hold a break every ~128 bytes
# by chance, base64 every 76
MAX_FORM_LINES = 250_000
# A browser's part headers are under 300 bytes; the parser's time and memory grow with the square of crafted ones
# (a file name of 300,000 encoded words, 4 MB: 22 GB; 200,000 continuations: 3 minutes of CPU; a comment of 16 KB
# of parentheses 0.65 s)
MAX_PART_HEADERS = 1024
# The request's own Content-Type goes to the same parser, once for each part: a browser's is under 100 characters (a
# comment of 20 KB took 4 s)
MAX_CONTENT_TYPE = 256
# The request line and headers an HTTP process keeps before a request's headers end (h11's default; a browser's are
# about a kilobyte): more is refused with a 431 (uvicorn's default parser, httptools, kept 200 MB of them)
MAX_REQUEST_HEADERS = 16 * 1024
MAX_FORM_NESTING = 4  # forms within forms: checked this deep, and refused deeper
MAX_BYTES = 10 * 1024 * 1024  # the default body limit: a phone photo of a digit fits, a drawn one is ~10 KiB
BODY_TIMEOUT = 30.0  # the default seconds a request body may stall between two pieces before 408
# and it must all arrive within this many times that: a body trickled a byte every 20 s held its connection (and a
# descriptor) for hours, 1,000 of them at once (hostile round 10); a 10 MB picture at 1 Mbit/s takes 80 s
BODY_DEADLINE_FACTOR = 4
# Pictures an HTTP process prepares at once: a 64-megapixel one (a 450 KB compressed TIFF) takes about 1 GB while it
# is decoded and resized, and the thread pool would run 40; the others wait their turn
PREPARING_AT_ONCE = 2
# The body bytes an HTTP process holds at once while they arrive, as a multiple of the body limit: clients each
# sending all but the last bytes of 10 MiB held 10 MiB apiece for two minutes (150 of them: 3.4 GB; hostile round 12).
# A request whose Content-Length would pass it is answered 503 before its body is read, one whose bytes pass it when
# they arrive, then. Bytes that arrived count, not lengths declared: ten idle connections declaring 10 MiB each
# locked every upload out for two minutes at a time (hostile round 13)
RECEIVING_FACTOR = 4
BUSY = 503
BAD_REQUEST, TIMED_OUT, LENGTH_REQUIRED, TOO_LARGE, WRONG_TYPE, UNUSABLE = 400, 408, 411, 413, 415, 422


@dataclass
class Upload:
    """One picture, prepared: what the inference worker receives for each request."""

    name: str  # how answers and errors call it: "request body" or "file 'x.png'"
    pixels: np.ndarray  # (28, 28) float32 ink in [0, 1], what the model reads
    inverted: bool  # the picture had dark strokes on a light background
    size: tuple[int, int]  # (width, height) of the picture
    seen: str  # the 28x28 input as a PNG data URL (white ink on black, as MNIST), for clients to show
    backends: tuple[str, ...]  # the backends asked for


def refuse(status: int, reason: str) -> HTTPException:
    """An HTTP error whose detail is one line (the server answers ``{"error": detail}``)."""
    return HTTPException(status_code=status, detail=" ".join(str(reason).split()))


def input_data_url(pixels: np.ndarray) -> str:
    """A (28, 28) ink image in [0, 1] as a grayscale PNG data URL (about 300 to 600 bytes)."""
    buffer = io.BytesIO()
    Image.fromarray((np.clip(pixels, 0.0, 1.0) * 255).round().astype(np.uint8), "L").save(buffer, "PNG")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def wanted_backends(request: Request) -> tuple[str, ...]:
    """``?backends=torch`` (or ``keras``, ``onnx``, any of them comma-separated; default all three): who answers.

    Any other query parameter (``?backend=torch``), or ``backends`` given twice, is a 400: silently
    answering from all three backends, or from one of the two lists, is not what was asked.
    """
    params = request.query_params
    unknown = sorted(set(params.keys()) - {"backends"})
    if unknown:
        raise refuse(BAD_REQUEST, f"unknown query parameter {unknown[0]!r}: /predict takes only backends (torch, "
                                  f"keras, onnx, comma-separated)")
    if len(params.getlist("backends")) > 1:
        raise refuse(BAD_REQUEST, "backends is given more than once: name them all in one, comma-separated")
    asked = params.get("backends")
    if asked is None:
        return BACKENDS
    names = tuple(dict.fromkeys(name.strip() for name in asked.split(",") if name.strip()))
    unknown = [name for name in names if name not in BACKENDS]
    if not names or unknown:
        raise refuse(BAD_REQUEST, f"backends must name torch, keras, onnx or several (comma-separated), got {asked!r}")
    return names


@dataclass
class Receiving:
    """The body bytes an HTTP process holds of the requests it is receiving, and how many it may at once."""

    limit: int
    held: int = 0


async def read_body(request: Request, max_bytes: int, timeout: float, receiving: Receiving) -> bytes:
    """The request body, refused with 413 as soon as it is known to exceed ``max_bytes``, and with 408 when
    ``timeout`` seconds pass without a piece of it (a client that sent less than its ``Content-Length``
    would otherwise hold its connection, and a slot of the server, for ever) or when it is not whole within
    :data:`BODY_DEADLINE_FACTOR` times ``timeout``; with 503 when the bytes of bodies ``receiving`` counts leave no
    room for its Content-Length, or for its bytes as they arrive (counted there until it is whole)."""
    # the connection closes after the answer: the server would otherwise read (and drop) the rest of the body, as
    # long as the client keeps sending it
    too_large = HTTPException(TOO_LARGE, f"the request body is larger than the limit of {max_bytes:,} bytes",
                              headers={"Connection": "close"})
    if "chunked" in request.headers.get("transfer-encoding", "").lower():
        # each chunk costs the HTTP parser a few microseconds whatever its size: 10 MB of one-byte chunks took 47 s of
        # CPU (hostile round 8). Refused before any is read; the connection closes, so none is parsed
        raise HTTPException(LENGTH_REQUIRED, "a chunked request body is not accepted: send it with a Content-Length "
                                             "(browsers, curl --data-binary or -F, and requests given bytes do)",
                            headers={"Connection": "close"})
    declared = request.headers.get("content-length")
    if declared is not None:
        try:
            if int(declared) > max_bytes:
                raise too_large
        except ValueError:
            raise refuse(BAD_REQUEST, f"Content-Length is not a number: {declared!r}") from None
    size = max(int(declared or 0), 0)  # neither a length nor chunks: no body

    def busy() -> HTTPException:
        return HTTPException(BUSY, f"the server holds {receiving.held:,} bytes of the bodies it is receiving, and "
                                   f"this one's {size:,} would pass the {receiving.limit:,} it holds at once; send it "
                                   f"again shortly", headers={"Connection": "close", "Retry-After": "5"})

    if receiving.held + size > receiving.limit:
        raise busy()
    chunks, total, counted = [], 0, 0
    stream = request.stream()
    clock = asyncio.get_running_loop()
    deadline = clock.time() + BODY_DEADLINE_FACTOR * timeout  # a body trickled a byte a stall never stalls
    try:  # (a body is counted in receiving while it arrives, however that ends)
        while True:
            try:
                chunk = await asyncio.wait_for(anext(stream), min(timeout, deadline - clock.time()))
            except StopAsyncIteration:
                break
            total += len(chunk)
            if total > max_bytes:
                raise too_large
            if receiving.held + len(chunk) > receiving.limit:  # other bodies' bytes arrived meanwhile
                raise busy()
            receiving.held += len(chunk)
            counted += len(chunk)
            chunks.append(chunk)
    except ClientDisconnect:  # gone before its body was whole: an answer nobody reads, not a traceback in the log
        raise refuse(BAD_REQUEST, "the client disconnected before the whole request body arrived") from None
    except asyncio.TimeoutError:  # the rest of the body is not read: the connection closes after the answer
        expected = f" of {int(declared):,}" if declared is not None else ""
        said = (f"took more than {BODY_DEADLINE_FACTOR * timeout:g} s in all ({BODY_DEADLINE_FACTOR} times the "
                f"{timeout:g} s it may stall): {total:,}{expected} bytes arrived" if clock.time() >= deadline else
                f"stalled: {total:,}{expected} bytes arrived, then nothing for {timeout:g} s")
        raise HTTPException(TIMED_OUT, f"the request body {said}", headers={"Connection": "close"}) from None
    finally:
        receiving.held -= counted
    return b"".join(chunks)


def unreadable_form(err: Exception) -> HTTPException:
    """The 400 for a header or a form the standard library's parser cannot read: one nested past Python's stack (a
    multipart body 3,000 forms deep, a header comment of 2,000 parentheses) was a traceback and a 500."""
    return refuse(BAD_REQUEST, f"the request's Content-Type or multipart form cannot be read ({type(err).__name__}: "
                               f"nested too deep, or malformed)")


# How a form's picture may be encoded in it: as its bytes (what browsers and curl send), or in the two encodings
# whose decoding is never longer than the part (the email parser also decodes uuencode, whose lines it pads)
PICTURE_ENCODINGS = ("", "binary", "8bit", "7bit", "base64", "quoted-printable")
# what the standard library's email parser raises on headers and forms it cannot read
EMAIL_PARSER_ERRORS = (RecursionError, ValueError, LookupError, IndexError, email.errors.MessageError)


def body_kind(content_type: str) -> str:
    """"image" (the body is the picture) or "form" (multipart: the picture is the field ``file``); else 415, or 400
    for a header longer than :data:`MAX_CONTENT_TYPE`, before the parser reads it."""
    if len(content_type) > MAX_CONTENT_TYPE:
        raise refuse(BAD_REQUEST, f"the Content-Type header is {len(content_type):,} characters, more than "
                                  f"{MAX_CONTENT_TYPE:,} (a browser sends under 100)")
    header = email.message.Message()
    try:
        header["content-type"] = content_type
        kind = header.get_content_type()  # lower case; "text/plain" when the header is missing or malformed
    except EMAIL_PARSER_ERRORS as err:
        raise unreadable_form(err) from None
    if content_type and kind.startswith("image/"):
        return "image"
    if kind == "multipart/form-data":
        if not header.get_param("boundary"):
            raise refuse(BAD_REQUEST, "the multipart form's Content-Type has no boundary, which separates its parts")
        return "form"
    shown = " ".join(content_type.split())[:80] or "none"
    raise refuse(WRONG_TYPE, f"Content-Type {shown} is not accepted: send the picture as the body with Content-Type "
                             f"image/* (image/png, image/jpeg, ...) or as the multipart form field {FIELD!r}")


def form_picture(content_type: str, body: bytes) -> tuple[bytes, str]:
    """(picture bytes, name) from a multipart/form-data body: its field ``file``, or a 400."""
    try:
        return _form_picture(content_type, body)
    except EMAIL_PARSER_ERRORS as err:
        raise unreadable_form(err) from None


def _form_picture(content_type: str, body: bytes) -> tuple[bytes, str]:
    # Each part, of the form or of a form nested in it, starts on a line of -- and its boundary (and each form ends
    # with one more): counted before the parser spends its time, on the lines the parser reads (ended by CR LF, LF
    # or a bare CR). A picture's bytes hold such a line by chance about once in 16 MB.
    if not _at_most(LINE_OF_DASHES.finditer(body), MAX_FORM_PARTS + 1):
        raise refuse(BAD_REQUEST, f"the multipart form has more than {MAX_FORM_PARTS} parts (its own and those of "
                                  f"forms within it): send the picture as its field {FIELD!r}, one picture per request")
    if not _at_most(LINE_END.finditer(body), MAX_FORM_LINES):  # the parser's loop turns, one a line
        raise refuse(BAD_REQUEST, f"the multipart form has more than {MAX_FORM_LINES:,} lines, which its parser reads "
                                  f"one by one (a 10 MB picture holds some 80,000 line breaks by chance): send the "
                                  f"picture's bytes as the request body")
    _check_part_headers(content_type, body)
    form = email.parser.BytesParser(policy=email.policy.HTTP).parsebytes(
        b"Content-Type: " + content_type.encode("latin-1") + b"\r\n\r\n" + body)
    parts = [part for part in form.iter_parts() if part.get_param("name", header="content-disposition") == FIELD] \
        if form.is_multipart() else []
    if not parts:
        raise refuse(BAD_REQUEST, f"the multipart form has no field {FIELD!r} holding the picture")
    if len(parts) > 1:  # one picture per request: the others would go unanswered
        raise refuse(BAD_REQUEST, f"the multipart form has {len(parts)} fields {FIELD!r}: send one picture per request")
    encoding = " ".join(str(parts[0].get("content-transfer-encoding", "")).split()).lower()
    if encoding not in PICTURE_ENCODINGS:  # uuencode's decoder made 157 MB of a 10 MB part (hostile round 9)
        raise refuse(BAD_REQUEST, f"the form's field {FIELD!r} is sent in Content-Transfer-Encoding {encoding[:40]!r}; "
                                  f"send its bytes as they are (a browser does), or in base64 or quoted-printable")
    filename = " ".join((parts[0].get_filename() or "").split())[:100]
    return parts[0].get_payload(decode=True) or b"", f"file {filename!r}" if filename else "file"


def _check_part_headers(content_type: str, body: bytes, depth: int = 0) -> None:
    """Refuse a part of the form (or of a form within it) whose headers are longer than :data:`MAX_PART_HEADERS`,
    found before the parser reads them as the parser finds them: its boundary as the parser reads it (an RFC 2231
    ``boundary*=utf-8''B``, an encoded word or a comment around it too), on a line of its own (the text ``--B``
    inside a header is no boundary), the headers ending at the first empty line."""
    boundary = _form_boundary(content_type)
    if boundary is None:
        return  # the parser says what is wrong with a form without one
    if depth > MAX_FORM_NESTING:
        raise refuse(BAD_REQUEST, f"the multipart form holds forms more than {MAX_FORM_NESTING} deep: send the "
                                  f"picture as its field {FIELD!r}")
    delimiter = re.compile(rb"(?:\A|\r\n|\r|\n)--" + re.escape(boundary.encode("utf-8", "surrogateescape")) +
                           rb"(--)?[ \t]*(?:\r\n|\r|\n|\Z)")
    for match in delimiter.finditer(body):
        if match.group(1):  # the form's closing delimiter
            break
        start = match.end()
        end = _headers_end(body, start)
        if end - start > MAX_PART_HEADERS:
            raise refuse(BAD_REQUEST, f"a part of the multipart form has {end - start:,} bytes of headers, more than "
                                      f"{MAX_PART_HEADERS:,} (a browser sends a few hundred)")
        headers = email.parser.BytesHeaderParser(policy=email.policy.compat32).parsebytes(body[start:end])
        inner = str(headers.get("content-type", ""))
        if _form_boundary(inner) is not None:  # a form within it (the rest of the body copied for those only)
            _check_part_headers(inner, body[end:], depth + 1)


def _form_boundary(content_type: str) -> str | None:
    """What the parser splits a part of this Content-Type on, read as it reads it (policy HTTP: an encoded word or a
    comment around the boundary is its plain B, round 7; an encoded word in "multipart" is multipart, round 8);
    None for a part that is no form, or a form without a boundary."""
    declared = email.message.EmailMessage(policy=email.policy.HTTP)
    declared["content-type"] = content_type
    boundary = declared.get_boundary()
    return boundary if declared.get_content_maintype() == "multipart" and boundary else None


LINE_END = re.compile(rb"\r\n|\r|\n")  # how the email parser ends a line
LINE_OF_DASHES = re.compile(rb"(?:\A|\r\n|\r|\n)--")  # a line that may be a form's delimiter


def _headers_end(body: bytes, start: int) -> int:
    """Where the headers of the part starting at ``start`` end: at its first empty line (or the body's end), looked
    for no further than :data:`MAX_PART_HEADERS` bytes and a line past them."""
    previous = start
    for line in LINE_END.finditer(body, start):
        if line.start() == previous:  # an empty line: the headers are over
            return line.start()
        if line.start() - start > MAX_PART_HEADERS:
            return line.start()
        previous = line.end()
    return len(body)


def _at_most(matches: Iterator, count: int) -> bool:
    """Whether ``matches`` has no more than ``count`` items, stopping at the one after them."""
    return next(itertools.islice(matches, count, None), None) is None


def prepare_upload(kind: str, content_type: str, body: bytes, backends: tuple[str, ...]) -> Upload:
    """The picture in ``body`` prepared the MNIST way (:func:`~mnist_common.images.preparation.prepare_bytes`),
    or a 4xx."""
    picture, name = form_picture(content_type, body) if kind == "form" else (body, "request body")
    try:
        prepared = prepare_bytes(picture, name)
    except ImageError as err:
        raise refuse(UNUSABLE, str(err)) from None
    return Upload(name=name, pixels=prepared.pixels, inverted=prepared.inverted, size=tuple(prepared.size),
                  seen=input_data_url(prepared.pixels), backends=backends)


async def read_upload(request: Request) -> Upload:
    """The FastAPI dependency that turns a ``POST /predict`` request into an :class:`Upload`, or a 4xx.

    The query and the headers are checked before the body is read; the body limit and stall timeout
    are the app's ``state.max_bytes`` and ``state.body_timeout`` (the server sets them), else
    :data:`MAX_BYTES` and :data:`BODY_TIMEOUT`. Splitting a form and preparing
    the picture (up to a second for a large photo) run in a thread, so the event loop keeps serving,
    :data:`PREPARING_AT_ONCE` at a time (each can take a gigabyte).
    """
    backends = wanted_backends(request)
    if len(request.headers.getlist("content-type")) > 1:  # the first was taken, the others not looked at
        raise refuse(BAD_REQUEST, "Content-Type is given more than once: send one")
    encoding = " ".join(request.headers.get("content-encoding", "").split()).lower()
    if encoding not in ("", "identity"):  # a gzip-encoded picture was read as its compressed bytes: "not an image"
        raise refuse(WRONG_TYPE, f"Content-Encoding {encoding[:40]} is not accepted: send the picture's own bytes (a "
                                 f"PNG or JPEG is compressed already)")
    content_type = request.headers.get("content-type", "")
    kind = body_kind(content_type)
    state = request.app.state
    max_bytes = getattr(state, "max_bytes", MAX_BYTES)
    if getattr(state, "receiving", None) is None:  # one for the HTTP process
        state.receiving = Receiving(RECEIVING_FACTOR * max_bytes)
    body = await read_body(request, max_bytes, getattr(state, "body_timeout", BODY_TIMEOUT), state.receiving)
    if getattr(state, "preparing", None) is None:  # one for the HTTP process, made in its own event loop
        state.preparing = asyncio.Semaphore(PREPARING_AT_ONCE)
    async with state.preparing:
        return await run_in_threadpool(prepare_upload, kind, content_type, body, backends)
