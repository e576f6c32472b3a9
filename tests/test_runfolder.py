import os

import pytest
import torch

from cyclegan import runfolder as ckpt
from cyclegan.config import ModelConfig
from cyclegan.errors import CheckpointError
from cyclegan.models.generators import build_generator


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path, monkeypatch):
    path = tmp_path / "G_AB.safetensors"
    ckpt.atomic_write_bytes(path, b"old good state")

    def crash(fd):
        raise OSError("disk full")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(OSError):
        ckpt.atomic_write_bytes(path, b"half written")
    assert path.read_bytes() == b"old good state"
    assert [p.name for p in tmp_path.iterdir()] == ["G_AB.safetensors"]  # no temp file left behind


def test_weights_round_trip_with_step_metadata(tmp_path):
    net = build_generator(ModelConfig(ngf=8, n_blocks=1))
    ckpt.save_weights(net, tmp_path / "g.safetensors", step=42)
    other = build_generator(ModelConfig(ngf=8, n_blocks=1))
    ckpt.load_weights(other, tmp_path / "g.safetensors")
    assert all(torch.equal(a, b) for a, b in zip(net.state_dict().values(), other.state_dict().values()))
    assert ckpt.weights_step(tmp_path / "g.safetensors") == 42


def test_weights_that_do_not_match_the_config_are_named(tmp_path):
    ckpt.save_weights(build_generator(ModelConfig(ngf=8, n_blocks=2)), tmp_path / "g.safetensors", step=0)
    with pytest.raises(CheckpointError, match=r"missing keys model\.11|shape mismatches"):
        ckpt.load_weights(build_generator(ModelConfig(ngf=16, n_blocks=3)), tmp_path / "g.safetensors")


def test_missing_and_corrupt_files_are_clear_errors(tmp_path):
    net = build_generator(ModelConfig(ngf=8, n_blocks=1))
    with pytest.raises(CheckpointError, match="is missing"):
        ckpt.load_weights(net, tmp_path / "nope.safetensors")
    (tmp_path / "bad.safetensors").write_bytes(b"\x00" * 10)
    with pytest.raises(CheckpointError, match="not a readable safetensors"):
        ckpt.load_weights(net, tmp_path / "bad.safetensors")
    (tmp_path / "train_state.pt").write_bytes(b"garbage")
    with pytest.raises(CheckpointError, match="cannot be resumed"):
        ckpt.load_state(tmp_path)


def test_train_state_refuses_pickled_code(tmp_path):
    class Evil:
        def __reduce__(self):
            return (os.system, ("echo pwned",))

    torch.save({"x": Evil()}, tmp_path / "train_state.pt")
    with pytest.raises(CheckpointError):
        ckpt.load_state(tmp_path)


def test_written_files_get_ordinary_permissions_not_mkstemps_0600(tmp_path):
    ckpt.atomic_write_bytes(tmp_path / "config.json", b"{}")
    assert (tmp_path / "config.json").stat().st_mode & 0o777 == 0o666 & ~ckpt._UMASK
