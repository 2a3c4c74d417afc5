"""The LitAPI LitServe runs in each inference worker: prepared digits in, three backends' answers out.

LitServe starts every inference worker as a fresh (spawned) process, unpickles this
object there and calls :meth:`DigitAPI.setup`, which is where the frameworks are imported,
in the order that works in one process (torch first, then Keras through
:func:`lightning_mnist.frameworks.import_keras`), with their thread pools sized for the
worker. LitServe collects concurrent requests into batches (``max_batch_size``,
``batch_timeout``); each batch goes through PyTorch, Keras and ONNX Runtime once (those its
requests asked for), and every answer says how long each backend took for the batch it was in.

The requests arrive already prepared (:mod:`lightning_mnist.serving.uploads` refuses bad
ones in the HTTP process), so nothing in a batch can fail because of another request.
"""

# No ``from __future__ import annotations`` here: LitServe hands decode_request's annotation
# object to FastAPI, which must see the dependency in it, not a string.

import os
import signal
import time
from pathlib import Path
from typing import Annotated, Optional

import litserve as ls
import numpy as np
from fastapi import Depends

from mnist_common.predictions import record
from lightning_mnist.serving.uploads import UNUSABLE, Upload, read_upload, refuse

API_PATH = "/predict"
IDLE_WAIT_SECONDS = 1.0  # how long a worker waits in the request queue at a time when no request comes


class WaitingBatchedLoop(ls.loops.BatchedLoop):
    """LitServe's batched loop, waiting in the request queue while the server is idle instead of polling it.

    LitServe's own loop collects each batch by asking the request queue for a request every millisecond
    (``batch_timeout`` at a time), whether or not one came; the queue is a multiprocessing manager's, so each ask is
    a round trip to the manager process too: an idle server took 18 % of a core (its processes over a minute; 0.6 %
    with this loop), on a laptop or beside a training. Here, when LitServe's collection found nothing, the worker
    waits in the queue for the next request, which wakes it the moment one arrives (one ask a second while none
    does), puts it back into the queue it had just found empty, and LitServe collects the batch as before. Under
    load nothing changes: a batch is found at once (waiting first and putting every first request back cost 10-25 %
    of the requests a second at 8 clients, measured: the one put back waited behind the others).
    """

    def get_batch_requests(self, lit_api, request_queue, transport):
        batch = super().get_batch_requests(lit_api, request_queue, transport)
        if batch != ([], []):
            return batch
        waited = self.get_request(request_queue, timeout=IDLE_WAIT_SECONDS)
        if waited is not None:  # LitServe's next collection takes it (its shutdown sentinel too)
            request_queue.put(waited)
        return [], []


class DigitAPI(ls.LitAPI):
    """The digit in prepared 28x28 pictures, from PyTorch, Keras and ONNX Runtime (the same model by default).

    ``weights`` runs on PyTorch; ``keras_weights`` on Keras and ``onnx_weights`` on ONNX Runtime,
    and when either is None the ``weights`` file runs there too (converted in memory: to a Keras
    model, or exported to ONNX), so every backend answers. Each may be a ``.ckpt``, a ``.keras`` or
    a ``cv_results.json``; ``onnx_weights`` may also be an ``.onnx`` file. ``onnx_model``: the ONNX graph of the
    model ONNX Runtime runs, exported (and checked) by the serve command before the server started.
    """

    def __init__(self, weights: str, keras_weights: Optional[str] = None, threads: int = 1,
                 max_batch_size: int = 32, batch_timeout: float = 0.005, onnx_weights: Optional[str] = None,
                 onnx_model: Optional[bytes] = None):
        super().__init__(max_batch_size=max_batch_size, batch_timeout=batch_timeout, api_path=API_PATH,
                         loop=WaitingBatchedLoop() if max_batch_size > 1 else "auto")  # one a request: LitServe waits
        self.weights = {"torch": str(weights), "keras": str(keras_weights or weights),
                        "onnx": str(onnx_weights or weights)}
        self.onnx_model = onnx_model
        self.threads = threads
        self.predictors: dict = {}

    def setup(self, device: str) -> None:
        """Import the frameworks (torch first), size their thread pools, load the three models and warm them up.

        Ctrl-C reaches every process of the terminal's group; this worker ignores it and is
        stopped by the main process, which LitServe shuts down in order.
        """
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        import torch

        torch.set_num_threads(self.threads)
        torch.set_num_interop_threads(1)
        from lightning_mnist.frameworks import import_keras

        import_keras()
        import tensorflow as tf

        tf.config.threading.set_intra_op_parallelism_threads(self.threads)  # before the first op, or it is ignored
        tf.config.threading.set_inter_op_parallelism_threads(1)
        from lightning_mnist.predictors import load_predictor

        self.predictors = {backend: load_predictor(path, backend, graph=True, threads=self.threads,
                                                   onnx_model=self.onnx_model if backend == "onnx" else None)
                           for backend, path in self.weights.items()}
        for size in sorted({1, 2, self.max_batch_size}):  # Keras traces its graph on the first shapes
            for predictor in self.predictors.values():
                predictor.predict_proba(np.zeros((size, 28, 28), np.float32))
        described = "; ".join(predictor.describe() for predictor in self.predictors.values())
        print(f"inference worker {os.getpid()} ready: {described}", flush=True)

    def decode_request(self, request: Annotated[Upload, Depends(read_upload)]) -> Upload:
        """The request was read and prepared by the HTTP process (the dependency in the annotation)."""
        return request

    def predict(self, uploads):
        """Each backend runs once on the images of the batch that asked for it; (upload, answers, batch size) each."""
        batch = uploads if isinstance(uploads, list) else [uploads]  # max_batch_size 1: one upload, unbatched
        pixels = np.stack([upload.pixels for upload in batch])
        answers = [{} for _ in batch]
        for backend, predictor in self.predictors.items():
            rows = [i for i, upload in enumerate(batch) if backend in upload.backends]
            if not rows:
                continue
            started = time.perf_counter()
            probabilities = predictor.predict_proba(pixels[rows])
            milliseconds = (time.perf_counter() - started) * 1000
            for i, p in zip(rows, probabilities):
                answers[i][backend] = (p, milliseconds)
        outputs = [(upload, answer, len(batch)) for upload, answer in zip(batch, answers)]
        return outputs if isinstance(uploads, list) else outputs[0]

    def encode_response(self, output) -> dict:
        """The JSON answer: the digit (the first backend's: PyTorch, Keras, ONNX Runtime), each backend's answer,
        whether they agree and their largest difference (two or more backends), the 28x28 input."""
        upload, answers, batch = output
        overflowed = [backend for backend, (probabilities, _) in answers.items()
                      if not np.isfinite(probabilities).all()]
        if overflowed:  # finite weights can still overflow on a picture (the start-up probes passed)
            raise refuse(UNUSABLE, f"{upload.name}: the model gives non-finite probabilities for it "
                                   f"({', '.join(overflowed)})")
        per_backend = {}
        for backend, (probabilities, milliseconds) in answers.items():
            answer = record(upload.name, probabilities, milliseconds=round(milliseconds, 3),
                            weights=Path(self.weights[backend]).name)
            del answer["image"]  # said once, at the top
            per_backend[backend] = answer
        first = next(iter(answers))
        response = record(upload.name, answers[first][0], backend=first, **per_backend)
        if len(answers) > 1:
            probabilities = np.stack([p for p, _ in answers.values()])
            response["agree"] = len({answer["digit"] for answer in per_backend.values()}) == 1
            response["max_difference"] = float((probabilities.max(0) - probabilities.min(0)).max())
        response.update(batch=batch, input={"png": upload.seen, "inverted": upload.inverted,
                                            "size": list(upload.size)})
        return response
