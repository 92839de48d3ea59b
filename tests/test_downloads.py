"""Downloads against a local HTTP server: a good file, a wrong checksum, a 404, an interrupted stream, a server that
is down — each failure one line with nothing left behind — and a checkout without ../shared that fetches every data
set from its (locally served) source and reads it with the library's loaders."""

import gzip
import hashlib
import io
import socket
import struct
import tarfile
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch

import dlr_nb.data as D
from conftest import REPO

SHARED = REPO.parent / "shared" / "data"
PAYLOAD = bytes(range(256)) * 400  # 102,400 bytes


class _Handler(BaseHTTPRequestHandler):
    files: dict[str, bytes] = {}

    def do_GET(self):  # noqa: N802 (the name http.server calls)
        body = self.files.get(self.path)
        if body is None:
            self.send_error(404, "Not Found")
            return
        truncated = self.path.startswith("/truncated")
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body[: len(body) // 2] if truncated else body)
        if truncated:
            self.wfile.flush()
            self.close_connection = True

    def log_message(self, *args):  # keep the test output quiet
        pass


@pytest.fixture
def server():
    "A local HTTP server in a thread; `server.files[path] = bytes` serves them; yields its base address."
    files: dict[str, bytes] = {}
    handler = type("Handler", (_Handler,), {"files": files})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    base = f"http://127.0.0.1:{httpd.server_address[1]}"
    try:
        yield base, files
    finally:
        httpd.shutdown()
        httpd.server_close()


def _only_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message, message
    return message


def test_a_good_download_is_verified_and_placed(server, tmp_path):
    base, files = server
    files["/good.bin"] = PAYLOAD
    dest = tmp_path / "data" / "good.bin"
    D.download(base + "/good.bin", dest, hashlib.sha256(PAYLOAD).hexdigest(), len(PAYLOAD))
    assert dest.read_bytes() == PAYLOAD
    assert sorted(p.name for p in dest.parent.iterdir()) == ["good.bin"]


def test_a_wrong_checksum_keeps_nothing(server, tmp_path):
    base, files = server
    files["/good.bin"] = PAYLOAD
    with pytest.raises(D.DownloadError) as e:
        D.download(base + "/good.bin", tmp_path / "x.bin", "0" * 64)
    assert "sha256 checksum mismatch" in _only_line(e)
    assert list(tmp_path.iterdir()) == []


def test_a_404_keeps_nothing(server, tmp_path):
    base, _ = server
    with pytest.raises(D.DownloadError) as e:
        D.download(base + "/missing.bin", tmp_path / "x.bin")
    assert "404" in _only_line(e) and "/missing.bin" in str(e.value)
    assert list(tmp_path.iterdir()) == []


@pytest.mark.parametrize("size_known", [True, False])
def test_an_interrupted_stream_keeps_nothing(server, tmp_path, size_known):
    base, files = server
    files["/truncated.bin"] = PAYLOAD
    with pytest.raises(D.DownloadError) as e:
        D.download(base + "/truncated.bin", tmp_path / "x.bin", size=len(PAYLOAD) if size_known else None)
    assert "/truncated.bin" in _only_line(e)
    assert list(tmp_path.iterdir()) == []


def test_a_server_that_is_down_is_one_line(tmp_path):
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(D.DownloadError) as e:
        D.download(f"http://127.0.0.1:{port}/x.bin", tmp_path / "x.bin", timeout=5)
    assert "failed (URLError" in _only_line(e)
    assert list(tmp_path.iterdir()) == []


def _idx(array_shape: tuple[int, ...], data: bytes, magic: int) -> bytes:
    return gzip.compress(struct.pack(">I", magic) + struct.pack(f">{len(array_shape)}I", *array_shape) + data)


def _reference_checkpoint() -> bytes:
    "A torch pickle laid out as the reference's mnist_25_epoch_93.97.ckpt, from the workplace's converted weights."
    from safetensors.torch import load_file

    weights = load_file(str(SHARED / "checkpoints" / "mlpnet_mnist.safetensors"))
    state = {}
    for i in (1, 2, 3):
        w = weights[f"fc{i}.weight"]
        state[f"module.fc{i}._weight_mask"] = torch.ones_like(w)
        state[f"module.fc{i}._layer.weight"] = w
    opt = torch.optim.SGD.__new__(torch.optim.SGD)
    opt.__dict__.update(defaults={"lr": 0.01}, state={}, param_groups=[])
    raw = io.BytesIO()
    torch.save({"epoch": 24, "model_state_dict": state, "optimizer": opt}, raw, _use_new_zipfile_serialization=False)
    return raw.getvalue()


def _serve_every_data_set(base: str, files: dict[str, bytes], monkeypatch):
    """Serve every data set's source and point the registry at the server. Where the served bytes are the
    workplace's copies of the upstream files (MNIST test, the STS Benchmark members) the registry's own checksums
    verify them; where they are stand-ins (the archives, MNIST train, the checkpoint pickle) the checksums of the
    downloads are replaced by theirs, while the converted checkpoint must still match its registered sha256."""
    sources = {}
    sources["mnist"] = {}
    for f, s in D.SOURCES["mnist"].items():
        files["/mnist/" + f] = (SHARED / "mnist" / f).read_bytes()
        sources["mnist"][f] = s._replace(url=base + "/mnist/" + f)
    images = _idx((3, 28, 28), bytes(3 * 28 * 28), 2051)
    labels = _idx((3,), bytes([7, 1, 4]), 2049)
    sources["mnist_train"] = {}
    for f, body in zip(D.DATASETS["mnist_train"], (images, labels)):
        files["/mnist/" + f] = body
        s = D.SOURCES["mnist_train"][f]
        sources["mnist_train"][f] = s._replace(
            url=base + "/mnist/" + f, sha256=hashlib.sha256(body).hexdigest(), size=len(body)
        )
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as t:
        for f in D.DATASETS["stsb"]:
            t.add(SHARED / "stsb" / f, arcname="stsbenchmark/" + f)
    files["/Stsbenchmark.tar.gz"] = tar.getvalue()
    sources["stsb"] = {f: s._replace(url=base + "/Stsbenchmark.tar.gz") for f, s in D.SOURCES["stsb"].items()}
    train_rows = (SHARED / "sst2" / "train.tsv").read_bytes() + b"".join(
        (SHARED / "sst2" / "dev_heldout.tsv").read_bytes().splitlines(keepends=True)[1:]
    )
    zipped = io.BytesIO()
    with zipfile.ZipFile(zipped, "w") as z:
        z.writestr("SST-2/train.tsv", train_rows)
        z.writestr("SST-2/dev.tsv", (SHARED / "sst2" / "validation.tsv").read_bytes())
    files["/SST-2.zip"] = zipped.getvalue()
    md5 = "md5:" + hashlib.md5(zipped.getvalue()).hexdigest()
    sources["sst2"] = {f: s._replace(url=base + "/SST-2.zip", url_checksum=md5) for f, s in D.SOURCES["sst2"].items()}
    ckpt = _reference_checkpoint()
    files["/mnist_25_epoch_93.97.ckpt"] = ckpt
    s = D.SOURCES["checkpoints"]["mlpnet_mnist.safetensors"]
    sources["checkpoints"] = {
        "mlpnet_mnist.safetensors": s._replace(
            url=base + "/mnist_25_epoch_93.97.ckpt",
            url_checksum="sha256:" + hashlib.sha256(ckpt).hexdigest(),
            url_size=len(ckpt),
        )
    }
    assert set(sources) == set(D.SOURCES)
    for name, table in sources.items():
        monkeypatch.setitem(D.SOURCES, name, table)


def test_a_checkout_without_shared_data_fetches_every_data_set(server, tmp_path, monkeypatch):
    from dlr_nb.pruning.mlpnet import fisher_split, load_mlpnet

    base, files = server
    _serve_every_data_set(base, files, monkeypatch)
    monkeypatch.setattr(D, "find_repo_root", lambda *a, **k: None)  # no ../shared beside the checkout
    monkeypatch.delenv("DLR_DATA_DIR", raising=False)
    monkeypatch.setenv("DLR_CACHE_DIR", str(tmp_path / "cache"))
    assert not any(D.has_data(name) for name in D.SOURCES)
    sts = D.load_stsb("dev")
    assert len(sts) == 1500
    sst = {split: len(D.load_sst2(split)) for split in D.SST2_SPLITS}
    assert sst == {"train": 60614, "dev_heldout": 6735, "validation": 872}
    x, y = D.load_mnist("test")
    assert x.shape == (10000, 784)
    x_train, y_train = D.load_mnist("train")
    assert x_train.shape == (3, 784) and y_train.tolist() == [7, 1, 4]
    net = load_mlpnet()
    with torch.no_grad():
        assert float((net(x).argmax(1) == y).float().mean()) > 0.93  # the reference network, converted
    assert all(D.has_data(name) for name in D.SOURCES)
    assert fisher_split(3)["source"] == "train"  # the training images, as the reference's Fisher, once at hand
    cache = tmp_path / "cache"
    leftovers = [p for p in cache.rglob("*") if p.name.startswith(".")]
    assert leftovers == [], leftovers
    assert sorted(p.name for p in (cache / "mnist").iterdir()) == sorted(
        D.DATASETS["mnist"] + D.DATASETS["mnist_train"]
    )


def test_a_changed_upstream_file_is_refused(server, tmp_path, monkeypatch):
    base, files = server
    _serve_every_data_set(base, files, monkeypatch)
    member = (SHARED / "stsb" / "sts-dev.csv").read_bytes() + b"one more line\n"  # not the upstream bytes
    tar = io.BytesIO()
    with tarfile.open(fileobj=tar, mode="w:gz") as t:
        info = tarfile.TarInfo("stsbenchmark/sts-dev.csv")
        info.size = len(member)
        t.addfile(info, io.BytesIO(member))
    files["/Stsbenchmark.tar.gz"] = tar.getvalue()
    table = {f: s for f, s in D.SOURCES["stsb"].items() if f == "sts-dev.csv"}
    monkeypatch.setitem(D.SOURCES, "stsb", table)
    with pytest.raises(D.DownloadError) as e:
        D.fetch_dataset("stsb", tmp_path / "stsb")
    assert "sts-dev.csv made from" in _only_line(e) and "sha256 mismatch" in str(e.value)
    assert [p.name for p in (tmp_path / "stsb").iterdir()] == []


def test_a_missing_data_set_names_the_command_that_fetches_it(tmp_path, monkeypatch):
    monkeypatch.setattr(D, "find_repo_root", lambda *a, **k: None)
    monkeypatch.delenv("DLR_DATA_DIR", raising=False)
    monkeypatch.setenv("DLR_CACHE_DIR", str(tmp_path))
    with pytest.raises(D.DataNotFoundError) as e:
        D.data_dir("sst2", download_missing=False)
    assert D.fetch_command("sst2") in _only_line(e)


def test_the_registry_records_the_workplace_copies():
    assert SHARED.is_dir(), "the workplace copy ../shared/data is needed for this check"
    for name, table in D.SOURCES.items():
        for f, s in table.items():
            copy = SHARED / D.FOLDERS.get(name, name) / f
            if copy.is_file():
                assert hashlib.sha256(copy.read_bytes()).hexdigest() == (s.copy_sha256 or s.sha256), f
            assert s.kind in ("upstream", "recut", "converted")
    assert Path(D.MLPNET_URL).name == "mnist_25_epoch_93.97.ckpt"
