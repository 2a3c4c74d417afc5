"""``python -m lightning_mnist serve``: digit predictions over HTTP, PyTorch, Keras and ONNX Runtime side by side, on
LitServe.

- :mod:`.uploads`: what ``POST /predict`` accepts (an image as the body or as a multipart
  field ``file``), read within a size limit and prepared by the one MNIST preprocessing
  (:func:`mnist_common.images.preparation.prepare_bytes`) in the HTTP process; a bad upload gets its
  4xx there and never reaches the model.
- :mod:`.api`: the LitAPI that LitServe runs in its inference worker(s): batches of
  prepared 28x28 images through the three backends, timed per backend.
- :mod:`.server`: the LitServer around it: the draw-a-digit page at ``GET /``
  (``page/index.html``), one-line JSON errors, LitServe's ``/health``.
"""
