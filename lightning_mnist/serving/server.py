"""The LitServer: ``POST /predict`` (LitServe), ``GET /`` (the draw-a-digit page), ``GET /health``, JSON errors.

LitServe owns the request handling: its HTTP process(es) queue each request, its
inference worker(s) batch them (:class:`~lightning_mnist.serving.api.DigitAPI`), and its
``/health`` answers 200 only once every worker has loaded its models. Two things are
changed on the FastAPI app LitServe builds: ``GET /`` serves the page instead of
LitServe's "litserve running" text, and every HTTP error is answered as
``{"error": "<one line>"}``. LitServe's OpenAPI pages are off (Swagger UI loads its
scripts from a CDN) and so is its ``client.py`` generation: the server writes nothing.
"""

from __future__ import annotations

import json
import multiprocessing
import signal
import sys
import threading
from importlib.resources import files
from pathlib import Path

import litserve as ls
from fastapi import Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.exceptions import HTTPException as StarletteHTTPException

from lightning_mnist.serving.api import DigitAPI
from lightning_mnist.serving.uploads import BODY_TIMEOUT, MAX_BYTES, MAX_REQUEST_HEADERS

PAGE = "page/index.html"
REQUEST_TIMEOUT = 30.0  # seconds a request may wait for a worker before LitServe answers 504
INFERENCE_WORKER = "inference-worker"  # the name LitServe gives its inference worker processes
WORKER_STOP_SECONDS = 5.0  # a stopped worker gets this long to end before it is killed (LitServe's own wait)


class DigitServer(ls.LitServer):
    """LitServe's server, its inference workers started with Ctrl-C and SIGTERM held off.

    A terminal's Ctrl-C reaches every process of its group, the workers too; the main process
    stops them (:func:`stop_inference_workers`). A worker still importing its libraries when
    Ctrl-C came printed a traceback of KeyboardInterrupt before its ``setup`` could ignore it
    (hostile round 12). So SIGINT is blocked while the workers are started: a process starts with
    the signals its parent's thread blocked still blocked, and a worker never sees it. A SIGTERM
    to this process while it wrote a new worker its pickled start broke the write off, and the
    worker printed a traceback of the truncated pickle (seen in CI): SIGTERM is kept, not blocked
    (the workers must still take the SIGTERM that stops them). Either signal that comes meanwhile
    is raised once they have started (SIGTERM through the handler there was before). (A server run outside
    the main thread, which Python gives no signals, starts them as LitServe does.)
    """

    def launch_inference_worker(self, lit_api: ls.LitAPI) -> list:
        if threading.current_thread() is not threading.main_thread():  # signals are the main thread's to handle
            return super().launch_inference_worker(lit_api)
        came: list[int] = []
        previous = {kept: signal.signal(kept, lambda signum, frame: came.append(signum))
                    for kept in (signal.SIGINT, signal.SIGTERM)}
        held = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        try:
            workers = super().launch_inference_worker(lit_api)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, held)
            for kept, handler in previous.items():
                signal.signal(kept, handler)
        if signal.SIGTERM in came:  # to the handler there was (serve's raises Terminated; the default ends it)
            handler = previous[signal.SIGTERM]
            handler(signal.SIGTERM, None) if callable(handler) else signal.raise_signal(signal.SIGTERM)
        if signal.SIGINT in came:  # (raised whatever the handler: one started with SIGINT ignored gets none)
            raise KeyboardInterrupt
        return workers


def page_html() -> str:
    """The draw-a-digit page (package data: one HTML file with its CSS and script, nothing fetched elsewhere)."""
    return files("lightning_mnist.serving").joinpath(PAGE).read_text(encoding="utf-8")


async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
    return JSONResponse({"error": " ".join(str(exc.detail).split())}, status_code=exc.status_code,
                        headers=getattr(exc, "headers", None))


async def _validation_error(request: Request, exc: RequestValidationError) -> JSONResponse:
    first = exc.errors()[0] if exc.errors() else {}
    where = ".".join(str(part) for part in first.get("loc", ()))
    return JSONResponse({"error": f"{where}: {first.get('msg', 'invalid request')}"}, status_code=422)


def build_server(weights: str | Path, keras_weights: str | Path | None = None, workers: int = 1, threads: int = 1,
                 max_batch_size: int = 32, batch_timeout: float = 0.005, max_bytes: int = MAX_BYTES,
                 onnx_weights: str | Path | None = None, body_timeout: float = BODY_TIMEOUT,
                 onnx_model: bytes | None = None) -> ls.LitServer:
    """A LitServer for ``weights`` (PyTorch), ``keras_weights`` (Keras) and ``onnx_weights`` (ONNX Runtime; each
    ``weights`` again when None; ``onnx_model``: its ONNX graph, exported already)."""
    api = DigitAPI(str(weights), str(keras_weights) if keras_weights else None, threads=threads,
                   max_batch_size=max_batch_size, batch_timeout=batch_timeout,
                   onnx_weights=str(onnx_weights) if onnx_weights else None, onnx_model=onnx_model)
    names = {"torch": Path(weights).name, "keras": Path(keras_weights or weights).name,
             "onnx": Path(onnx_weights or weights).name}
    server = DigitServer(api, accelerator="cpu", workers_per_device=workers, timeout=REQUEST_TIMEOUT,
                         disable_openapi_url=True, model_metadata={"weights": names, "max_bytes": max_bytes})
    app = server.app
    app.state.max_bytes = max_bytes  # read by lightning_mnist.serving.uploads.read_upload
    app.state.body_timeout = body_timeout  # ... and this
    app.router.routes[:] = [route for route in app.router.routes if getattr(route, "path", None) != "/"]
    # /predict/ is another path (a 404), not a redirect to a URL made of the client's Host header (hostile round 12)
    app.router.redirect_slashes = False
    html = page_html()

    async def page() -> HTMLResponse:
        return HTMLResponse(html, headers={"Cache-Control": "no-cache"})

    app.add_api_route("/", page, methods=["GET", "HEAD"], response_class=HTMLResponse)
    app.add_exception_handler(StarletteHTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _validation_error)
    return server


def json_error_protocol(headers_timeout: float = BODY_TIMEOUT) -> type:
    """uvicorn's h11 HTTP protocol, answering a request it cannot parse in JSON too, and one whose headers are slow.

    h11, not httptools (uvicorn's default where it is installed): httptools takes request
    headers of any size (200 MB of them took an HTTP process to 3.8 GB), h11 keeps no more than
    :data:`~lightning_mnist.serving.uploads.MAX_REQUEST_HEADERS` of a request before its headers
    end and refuses it then; its per-request cost is small beside a prediction's. A malformed
    request line or header (``Content-Length: abc``) never reaches the app: uvicorn answers it with
    a plain-text 400 of its own; clients of this API read ``{"error": ...}`` from every 4xx, so this
    one is said the same way (uvicorn takes the protocol class as ``http=``). A request's line and
    headers must all arrive within ``headers_timeout`` seconds of its first byte, or it gets a 408
    and its connection closes: uvicorn waits for them without end, so a client sending a header line
    every few seconds held a connection for ever (a helper held 22,500 of them).
    """
    import h11
    from uvicorn.protocols.http.h11_impl import H11Protocol

    class JsonErrorProtocol(H11Protocol):
        headers_due = None  # the timer of a request whose headers have begun to arrive

        def send_400_response(self, msg: str) -> None:
            # called while uvicorn handles h11's error, which says whether its bound on what precedes a body was
            # passed (a 431; the bytes received are no measure: a malformed request's body counted, hostile round 10)
            refused = sys.exc_info()[1]
            if isinstance(refused, h11.RemoteProtocolError) and refused.error_status_hint == 431:
                self.send_error(b"431 Request Header Fields Too Large", f"the request's line and headers are over "
                                f"{MAX_REQUEST_HEADERS:,} bytes (a browser sends about one thousand)")
            else:
                self.send_error(b"400 Bad Request", f"malformed HTTP request: {' '.join(msg.split())}")

        def send_error(self, status: bytes, error: str) -> None:
            body = json.dumps({"error": error}).encode()
            self.transport.write(b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n"
                                 b"connection: close\r\n\r\n%s" % (status, len(body), body))
            self.transport.close()

        def connection_made(self, transport) -> None:
            super().connection_made(transport)  # its first request is timed from here: a connection that sent nothing
            self.headers_due = self.loop.call_later(headers_timeout, self.headers_late, self.cycle)  # was kept for ever

        def data_received(self, data: bytes) -> None:
            super().data_received(data)
            # between requests (h11's IDLE) with bytes of the next one kept: its headers are on their way
            waiting = self.conn.their_state is h11.IDLE and bool(self.conn.trailing_data[0])
            if waiting and self.headers_due is None:
                self.headers_due = self.loop.call_later(headers_timeout, self.headers_late, self.cycle)
            elif not waiting and self.headers_due is not None:
                self.headers_due.cancel()
                self.headers_due = None

        def headers_late(self, cycle) -> None:
            self.headers_due = None
            if self.cycle is cycle and self.conn.their_state is h11.IDLE and not self.transport.is_closing():
                self.send_error(b"408 Request Timeout", f"the request's line and headers did not all arrive within "
                                f"{headers_timeout:g} s")

        def connection_lost(self, exc: Exception | None) -> None:
            if self.headers_due is not None:
                self.headers_due.cancel()
            super().connection_lost(exc)

    return JsonErrorProtocol


def serve(server: ls.LitServer, host: str = "127.0.0.1", port: int = 8000, api_servers: int = 1) -> None:
    """Run ``server`` until Ctrl-C or SIGTERM (blocks); ``api_servers`` HTTP processes share the port."""
    try:
        server.run(host=host, port=port, num_api_servers=api_servers, generate_client_file=False, log_level="warning",
                   access_log=False, http=json_error_protocol(server.app.state.body_timeout),
                   h11_max_incomplete_event_size=MAX_REQUEST_HEADERS,
                   ws="none")  # nothing here speaks WebSocket: an Upgrade request was a 403 without a JSON body
    except BaseException:
        stop_inference_workers(server)
        raise


def stop_inference_workers(server: ls.LitServer, seconds: float = WORKER_STOP_SECONDS) -> None:
    """Stop the inference workers that still run when ``server.run`` ends in an exception.

    LitServe waits for its workers to load their models before the ``try`` whose ``finally`` stops
    them: Ctrl-C or SIGTERM while they loaded ended the command with its ``interrupted`` line, then
    the exit shut down the multiprocessing manager the workers report to and waited for them, and
    each printed a traceback when it reported ready to the manager that was gone (hostile round
    12). SIGTERM ends a worker at once and silently (a spawned process keeps SIGTERM's default).
    A worker started just before the interruption may not be in LitServe's list yet: this
    process' children of the worker's name are stopped too.
    """
    listed = list(getattr(server, "inference_workers", None) or [])
    listed += [child for child in multiprocessing.active_children()
               if child.name == INFERENCE_WORKER and child not in listed]
    workers = [worker for worker in listed if worker.is_alive()]
    for worker in workers:
        worker.terminate()
    for worker in workers:
        worker.join(seconds)
        if worker.is_alive():
            worker.kill()
            worker.join()
