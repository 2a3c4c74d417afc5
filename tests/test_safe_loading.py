"""A malicious checkpoint, local or served over HTTP, to every command that takes one: no code runs.

The file is a real pickle whose unpickling writes a marker file (proved below with an unsafe
load); every command must refuse it in one line, exit non-zero, and leave the marker unwritten.
"""

from __future__ import annotations

import functools
import http.server
import json
import pathlib
import threading

import pytest
import torch

from conftest import main_error
from lightning_mnist.__main__ import main


class WritesAFile:
    """Unpickling this calls ``Path.write_text``: code running while a checkpoint is read."""

    def __init__(self, marker: pathlib.Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.write_text, (self.marker, "code ran while a checkpoint was read")


@pytest.fixture(scope="module")
def evil(tmp_path_factory):
    """(folder with evil.ckpt and a cv_results.json naming it, the marker, the file's URL on a local server)."""
    folder = tmp_path_factory.mktemp("evil")
    marker = folder / "MARKER"
    contents = {"state_dict": {"network.conv2d.weight": torch.zeros(1)}, "hyper_parameters": WritesAFile(marker),
                "epoch": 0, "global_step": 0, "loops": {}, "optimizer_states": []}
    torch.save(contents, folder / "evil.ckpt")
    (folder / "cv_results.json").write_text(json.dumps({"framework": "lightning", "folds": [
        {"fold": 0, "model_path": "evil.ckpt"}]}))
    torch.load(folder / "evil.ckpt", weights_only=False)  # proof that the payload works when trusted
    assert marker.read_text().startswith("code ran")
    marker.unlink()

    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(folder))
    handler.log_message = lambda *args: None
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield folder, marker, f"http://127.0.0.1:{server.server_port}/evil.ckpt"
    server.shutdown()


COMMANDS = {
    "fit resumes a URL": ["fit", "--ckpt_path", "{url}"],
    "fit resumes a file": ["fit", "--ckpt_path", "{folder}/evil.ckpt"],
    "validate a URL": ["validate", "--ckpt_path", "{url}"],
    "validate a file": ["validate", "--ckpt_path", "{folder}/evil.ckpt"],
    "test a URL": ["test", "--ckpt_path", "{url}"],
    "test a file": ["test", "--ckpt_path", "{folder}/evil.ckpt"],
    "test a k-fold ensemble": ["test", "--ckpt_path", "{folder}/cv_results.json"],
    "predict a file": ["predict", "{png}", "--weights", "{folder}/evil.ckpt"],
    "predict a URL": ["predict", "{png}", "--weights", "{url}"],
    "predict a k-fold ensemble": ["predict", "{png}", "--weights", "{folder}/cv_results.json"],
    "predict on Keras": ["predict", "{png}", "--weights", "{folder}/evil.ckpt", "--backend", "keras"],
    "convert a file": ["convert", "{folder}/evil.ckpt", "{out}/out.keras"],
    "convert a URL": ["convert", "{url}", "{out}/out.keras"],
    "serve a file": ["serve", "--weights", "{folder}/evil.ckpt", "--port", "8765"],
    "serve a URL": ["serve", "--weights", "{url}", "--keras_weights", "{folder}/evil.ckpt"],
}


@pytest.mark.parametrize("case", list(COMMANDS))
def test_a_malicious_checkpoint_runs_no_code(case, evil, tmp_path, monkeypatch, capsys):
    folder, marker, url = evil
    png = tmp_path / "digit.png"
    from PIL import Image, ImageDraw

    picture = Image.new("L", (60, 60), 255)
    ImageDraw.Draw(picture).line([(30, 8), (30, 52)], fill=0, width=5)  # a "1", so predict gets to the weights
    picture.save(png)
    args = [a.format(url=url, folder=folder, png=png, out=tmp_path) for a in COMMANDS[case]]
    monkeypatch.chdir(tmp_path)
    code, error, _ = main_error(main, args, capsys)
    assert code != 0
    assert "weights-only" in error or "a URL" in error, error
    assert not marker.exists()  # no code ran
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digit.png"]  # nothing written either
