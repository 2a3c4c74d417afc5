"""Turn a picture of a digit (PNG, JPEG, ...) into the 28x28 float image the MNIST models read.

Framework-free (Pillow, numpy and scipy.ndimage), so the PyTorch and the Keras backend of
``python -m lightning_mnist predict`` and ``serve`` see exactly the same pixels. One module
a step, in the order a picture goes through them:

- :mod:`~mnist_common.images.decoding`: read and decode a file or request body with Pillow,
  refusing what is not a sane image (decompression bombs before any pixel is decoded), and
  apply the EXIF orientation of photos;
- :mod:`~mnist_common.images.grayscale`: composite transparency on a contrasting background
  and take the luminance, at a working size of at most ``WORK_SIDE`` pixels a side;
- :mod:`~mnist_common.images.ink`: subtract the paper (a plane fitted to the border), turn the
  strokes into ink (1 = stroke, the MNIST convention), threshold it and crop to the digit;
- :mod:`~mnist_common.images.components`: which connected pieces of ink are the digit (not a
  table edge, a shadow, a ruled line, stray marks);
- :mod:`~mnist_common.images.strokes`: stroke width, and widening strokes much finer than
  MNIST's with a round pen without closing the digit's loops;
- :mod:`~mnist_common.images.mnist_style`: scale to fit 20x20 and centre the mass in 28x28, as
  was done to the MNIST digits themselves (and the notebook's plain resize, for comparison);
- :mod:`~mnist_common.images.preparation`: :func:`~mnist_common.images.preparation.prepare` and
  its siblings, the one entry point for every way a picture comes in.
"""
