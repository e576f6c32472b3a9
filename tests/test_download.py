"""`cyclegan download`: datasets and pretrained models from a local HTTP server standing in for the
official one (no network is used): full and resumed downloads, damaged and malicious archives, errors."""

from __future__ import annotations

import hashlib
import io
import random
import re
import stat
import threading
import zipfile
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
import torch
from PIL import Image

from cyclegan.cli import main
from cyclegan.data import download as dl
from cyclegan.data.folders import MADE_BY
from cyclegan.translate.translator import Translator
from test_translate_official import OfficialGenerator


class FileServer:
    """Serves ``files`` (path -> bytes) with Range support; ``drop`` (path -> bytes) cuts the next
    response to that path off after so many bytes; ``ranges=False`` ignores Range headers."""

    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}
        self.drop: dict[str, int] = {}
        self.ranges = True
        self.requests: list[tuple[str, str | None]] = []
        server = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args) -> None:
                pass

            def do_GET(self) -> None:
                asked = self.headers.get("Range") if server.ranges else None
                server.requests.append((self.path, asked))
                data = server.files.get(self.path)
                if data is None:
                    self.send_error(404)
                    return
                start = int(re.fullmatch(r"bytes=(\d+)-", asked).group(1)) if asked else 0
                if start >= len(data) and asked:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{len(data)}")
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                    return
                self.send_response(206 if asked else 200)
                if asked:
                    self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
                self.send_header("Content-Length", str(len(data) - start))
                self.end_headers()
                body = data[start:]
                cut = server.drop.pop(self.path, None)
                self.wfile.write(body if cut is None else body[:cut])
                self.close_connection = cut is not None

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_port}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def paths(self) -> list[str]:
        return [path for path, _ in self.requests]


@pytest.fixture
def server(monkeypatch):
    srv = FileServer()
    srv.thread.start()
    monkeypatch.setenv(dl.BASE_URL_ENV, srv.url)  # the mirror setting: no test reaches the real server
    monkeypatch.setattr(dl, "RETRY_WAIT", 0.0)
    yield srv
    srv.httpd.shutdown()
    srv.httpd.server_close()


def png(seed: int) -> bytes:
    buf = io.BytesIO()
    Image.new("RGB", (8, 8), (seed * 40 % 256, 90, 160)).save(buf, "PNG")
    return buf.getvalue()


def dataset_zip(top: str = "horse2zebra/") -> bytes:
    """An archive laid out as the official ones: NAME/trainA, trainB, testA, testB."""
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        zf.writestr(top, b"") if top else None
        for i, split in enumerate(("trainA", "trainB", "testA", "testB")):
            for j in range(2):
                zf.writestr(f"{top}{split}/{j}.png", png(i * 2 + j) + random.Random(j).randbytes(2000))  # a few KB
    return buf.getvalue()


def _layout(folder: Path) -> list[str]:
    """The files a download put in ``folder``, less the marker saying which command made it."""
    assert (folder / MADE_BY).read_text().startswith("download ")
    return sorted(str(p.relative_to(folder)) for p in folder.rglob("*") if p.is_file() and p.name != MADE_BY)


EXPECTED = [f"{s}/{j}.png" for s in ("testA", "testB", "trainA", "trainB") for j in range(2)]


def cli(*args, capsys, quiet=True) -> tuple[int, list[str]]:
    """Run the command in-process (with -q: no progress bar); its exit status and its stderr lines."""
    code = main([*(["-q"] if quiet else []), *map(str, args)])
    return code, [line for line in capsys.readouterr().err.splitlines() if line.strip()]


def test_full_download_lands_as_dataset_and_leaves_nothing_else(server, tmp_path, capsys):
    server.files["/datasets/horse2zebra.zip"] = dataset_zip()
    out = tmp_path / "datasets"
    code, err = cli("download", "dataset", "horse2zebra", "--out", out, capsys=capsys, quiet=False)
    assert code == 0 and any("horse2zebra.zip" in line and "B/s" in line for line in err)  # size and speed
    assert _layout(out / "horse2zebra") == EXPECTED
    assert sorted(p.name for p in out.iterdir()) == ["horse2zebra"]  # no archive, temporary or .download left
    assert (out / "horse2zebra" / "trainA" / "0.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


@pytest.mark.parametrize("ranges", [True, False], ids=["range", "server-without-range"])
def test_a_dropped_connection_is_resumed(server, tmp_path, capsys, ranges):
    data = dataset_zip()
    server.files["/datasets/horse2zebra.zip"] = data
    server.drop["/datasets/horse2zebra.zip"] = half = len(data) // 2
    server.ranges = ranges
    code, _ = cli("download", "dataset", "horse2zebra", "--out", tmp_path, capsys=capsys)
    assert code == 0 and _layout(tmp_path / "horse2zebra") == EXPECTED
    assert server.requests == [("/datasets/horse2zebra.zip", None),
                               ("/datasets/horse2zebra.zip", f"bytes={half}-" if ranges else None)]


def test_an_interrupted_command_resumes_when_run_again(server, tmp_path, capsys, monkeypatch):
    data = dataset_zip()
    server.files["/datasets/horse2zebra.zip"] = data
    server.drop["/datasets/horse2zebra.zip"] = half = len(data) // 2
    monkeypatch.setattr(dl, "RETRIES", 0)
    code, err = cli("download", "dataset", "horse2zebra", "--out", tmp_path, capsys=capsys)
    assert code == 1 and len(err) == 1 and "run the same command again to resume" in err[0]
    assert (tmp_path / dl.DOWNLOADS / "horse2zebra.zip.part").stat().st_size == half
    assert not (tmp_path / "horse2zebra").exists()
    code, _ = cli("download", "dataset", "horse2zebra", "--out", tmp_path, capsys=capsys)
    assert code == 0 and _layout(tmp_path / "horse2zebra") == EXPECTED
    assert server.requests[-1] == ("/datasets/horse2zebra.zip", f"bytes={half}-")


def _flip(data: bytes, at: int) -> bytes:
    return data[:at] + bytes([data[at] ^ 0xFF]) + data[at + 1:]


@pytest.mark.parametrize("damage", ["truncated", "corrupted"])
def test_a_damaged_archive_is_an_error_and_leaves_nothing_behind(server, tmp_path, capsys, damage):
    data = dataset_zip()
    # truncated: the server sends (and announces) only half; corrupted: a byte of a member's data flipped
    served = data[: len(data) // 2] if damage == "truncated" else _flip(data, data.index(b"trainB/1.png") + 300)
    server.files["/datasets/horse2zebra.zip"] = served
    out = tmp_path / "datasets"
    code, err = cli("download", "dataset", "horse2zebra", "--out", out, capsys=capsys)
    assert code == 1 and len(err) == 1 and err[0].startswith("error: ") and "damaged" in err[0], err
    assert list(out.iterdir()) == []
    # the damaged download is not kept for resuming: the next try fetches the whole file again
    server.files["/datasets/horse2zebra.zip"] = data
    assert cli("download", "dataset", "horse2zebra", "--out", out, capsys=capsys)[0] == 0
    assert server.requests[-1] == ("/datasets/horse2zebra.zip", None) and _layout(out / "horse2zebra") == EXPECTED


def test_size_and_checksum_are_checked_where_known(server, tmp_path, capsys, monkeypatch):
    data = dataset_zip()
    server.files["/datasets/horse2zebra.zip"] = data
    for size, sha, ok in ((len(data) + 1, None, False), (None, "0" * 64, False),
                          (len(data), hashlib.sha256(data).hexdigest(), True)):
        monkeypatch.setitem(dl.DATASETS, "horse2zebra", dl.Entry("horse2zebra", "test", size=size, sha256=sha))
        code, err = cli("download", "dataset", "horse2zebra", "--out", tmp_path / "d", capsys=capsys)
        assert code == (0 if ok else 1), err
        if not ok:
            assert "SHA-256" in err[0] if sha else "catalogue expects" in err[0]
            assert list((tmp_path / "d").iterdir()) == []
    assert _layout(tmp_path / "d" / "horse2zebra") == EXPECTED


def _evil_zip(kind: str) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        zf.writestr("horse2zebra/trainA/0.png", png(0))
        if kind == "dotdot":
            zf.writestr("horse2zebra/../../evil.png", b"x")
        elif kind == "absolute":
            zf.writestr(zipfile.ZipInfo("/tmp/cyclegan-evil.png"), b"x")
        else:
            info = zipfile.ZipInfo("horse2zebra/trainA/link.png")
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
    return buf.getvalue()


@pytest.mark.parametrize("kind", ["dotdot", "absolute", "symlink"])
def test_an_archive_that_escapes_its_folder_is_refused(server, tmp_path, capsys, kind):
    server.files["/datasets/horse2zebra.zip"] = _evil_zip(kind)
    out = tmp_path / "a" / "b"
    code, err = cli("download", "dataset", "horse2zebra", "--out", out, capsys=capsys)
    assert code == 1 and len(err) == 1 and "refused" in err[0], err
    assert list(out.iterdir()) == []
    assert not (tmp_path / "evil.png").exists() and not (tmp_path / "a" / "evil.png").exists()
    # the same from a file placed by hand
    (tmp_path / "evil.zip").write_bytes(_evil_zip(kind))
    code, err = cli("download", "dataset", "horse2zebra", "--out", out, "--from-file", tmp_path / "evil.zip",
                    capsys=capsys)
    assert code == 1 and "refused" in err[0] and list(out.iterdir()) == []


def test_a_missing_file_or_no_server_is_a_one_line_error(server, tmp_path, capsys):
    code, err = cli("download", "dataset", "horse2zebra", "--out", tmp_path, capsys=capsys)
    assert code == 1 and len(err) == 1
    assert f"{server.url}/datasets/horse2zebra.zip" in err[0] and "404" in err[0] and "--from-file" in err[0]
    # nothing listens on a port just released: the same one line, for a mirror given with --base-url
    server.httpd.server_close()
    code, err = cli("download", "model", "horse2zebra", "--out", tmp_path / "run", "--base-url", "http://127.0.0.1:9/x",
                    capsys=capsys)
    assert code == 1 and len(err) == 1 and "http://127.0.0.1:9/x/pretrained_models/horse2zebra.pth" in err[0]
    assert "--from-file horse2zebra.pth" in err[0] and "Traceback" not in err[0]
    assert list(tmp_path.iterdir()) == []


def test_existing_dataset_is_kept_unless_overwrite(server, tmp_path, capsys):
    server.files["/datasets/horse2zebra.zip"] = dataset_zip()
    (tmp_path / "horse2zebra").mkdir()
    (tmp_path / "horse2zebra" / "mine.txt").write_text("keep")
    code, err = cli("download", "dataset", "horse2zebra", "--out", tmp_path, capsys=capsys)
    assert code == 1 and "--overwrite" in err[0] and server.requests == []  # refused before downloading
    assert (tmp_path / "horse2zebra" / "mine.txt").exists()
    # --overwrite replaces only a folder this command made: not one's own
    code, err = cli("download", "dataset", "horse2zebra", "--out", tmp_path, "--overwrite", capsys=capsys)
    assert code == 1 and "not made by `cyclegan download dataset`" in err[0] and server.requests == []
    assert (tmp_path / "horse2zebra" / "mine.txt").exists()
    (tmp_path / "horse2zebra" / "mine.txt").unlink()
    (tmp_path / "horse2zebra").rmdir()
    assert cli("download", "dataset", "horse2zebra", "--out", tmp_path, capsys=capsys)[0] == 0
    assert cli("download", "dataset", "horse2zebra", "--out", tmp_path, "--overwrite", capsys=capsys)[0] == 0
    assert _layout(tmp_path / "horse2zebra") == EXPECTED
    assert sorted(p.name for p in tmp_path.iterdir()) == ["horse2zebra"]


@pytest.mark.parametrize("top", ["horse2zebra/", "other_name/", ""])
def test_from_file_installs_a_zip_placed_by_hand(tmp_path, capsys, top):
    (tmp_path / "h2z.zip").write_bytes(dataset_zip(top))
    code, _ = cli("download", "dataset", "horse2zebra", "--out", tmp_path / "d", "--from-file", tmp_path / "h2z.zip",
                  capsys=capsys)
    assert code == 0 and _layout(tmp_path / "d" / "horse2zebra") == EXPECTED
    assert (tmp_path / "h2z.zip").exists()  # the user's file is theirs


def test_list_and_unknown_names(capsys, tmp_path):
    assert main(["download", "list", "--base-url", "https://mirror.example/cg"]) == 0
    out = capsys.readouterr().out
    for name in ("horse2zebra", "summer2winter_yosemite", "ae_photos", "style_monet", "cityscapes_label2photo"):
        assert name in out
    assert "https://mirror.example/cg/datasets/NAME.zip" in out
    code, err = cli("download", "dataset", "horse3zebra", "--out", tmp_path, capsys=capsys)
    assert code == 1 and "horse2zebra" in err[0]


# --- pretrained models -----------------------------------------------------------------------------

def _official_pth(seed: int) -> tuple[bytes, OfficialGenerator]:
    torch.manual_seed(seed)
    net = OfficialGenerator(ngf=8, n_blocks=2).eval()
    buf = io.BytesIO()
    torch.save(net.state_dict(), buf)
    return buf.getvalue(), net


def test_a_model_pair_becomes_one_run_that_translates(server, tmp_path, capsys):
    (h2z, g_a), (z2h, g_b) = _official_pth(0), _official_pth(1)
    server.files["/pretrained_models/horse2zebra.pth"] = h2z
    server.files["/pretrained_models/zebra2horse.pth"] = z2h
    server.drop["/pretrained_models/zebra2horse.pth"] = len(z2h) // 3  # resumed too
    checkpoints = tmp_path / "checkpoints"
    code, _ = cli("download", "model", "horse2zebra", "--out", checkpoints / "horse2zebra", capsys=capsys)
    assert code == 0
    assert sorted(p.name for p in checkpoints.iterdir()) == ["horse2zebra"]  # no .download or temporary left
    translator = Translator.from_run(checkpoints / "horse2zebra", device="cpu")
    x = torch.rand(1, 3, 20, 28) * 2 - 1
    with torch.inference_mode():
        for direction, official in (("AtoB", g_a), ("BtoA", g_b)):
            assert (translator.translate_tensor(x, direction) - official(x)).abs().max() <= 1e-5
    # and through the command a user runs next
    Image.new("RGB", (24, 16), (200, 120, 40)).save(tmp_path / "horse.png")
    code = main(["translate", "--run", str(checkpoints / "horse2zebra"), "--direction", "both", "--input",
                 str(tmp_path / "horse.png"), "--output", str(tmp_path / "out"), "--device", "cpu", "-q"])
    assert code == 0 and Image.open(tmp_path / "out" / "AtoB" / "horse.png").size == (24, 16)
    # an existing run is kept
    code, err = cli("download", "model", "horse2zebra", "--out", checkpoints / "horse2zebra", capsys=capsys)
    assert code == 1 and "--overwrite" in err[0]


def test_one_direction_and_from_file(server, tmp_path, capsys):
    (h2z, _), (z2h, _) = _official_pth(0), _official_pth(1)
    server.files["/pretrained_models/horse2zebra.pth"] = h2z
    assert cli("download", "model", "horse2zebra", "--out", tmp_path / "one", "--one-direction", capsys=capsys)[0] == 0
    assert Translator.from_run(tmp_path / "one", device="cpu").directions == ("AtoB",)
    assert server.paths() == ["/pretrained_models/horse2zebra.pth"]
    # by hand: the partner's file, under its official name beside the given one, is used too
    (tmp_path / "files").mkdir()
    (tmp_path / "files" / "h.pth").write_bytes(h2z)
    (tmp_path / "files" / "zebra2horse.pth").write_bytes(z2h)
    code, _ = cli("download", "model", "horse2zebra", "--out", tmp_path / "both", "--from-file",
                  tmp_path / "files" / "h.pth", capsys=capsys)
    assert code == 0 and Translator.from_run(tmp_path / "both", device="cpu").directions == ("AtoB", "BtoA")


def test_a_damaged_model_file_leaves_no_run(server, tmp_path, capsys):
    h2z, _ = _official_pth(0)
    server.files["/pretrained_models/style_monet.pth"] = h2z[: len(h2z) // 2]
    server.files["/pretrained_models/monet2photo.pth"] = h2z
    code, err = cli("download", "model", "style_monet", "--out", tmp_path / "c" / "style_monet", capsys=capsys)
    assert code == 1 and len(err) == 1 and "style_monet.pth" in err[0], err
    assert list((tmp_path / "c").iterdir()) == []
