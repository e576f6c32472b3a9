"""`cyclegan export`: ONNX and TorchScript generators that give PyTorch's output at any size."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from cyclegan import runfolder as ckpt
from cyclegan.cli import main
from cyclegan.errors import CheckpointError, ConfigError
from cyclegan.translate.export import export_generator
from cyclegan.translate.translator import Translator

ort = pytest.importorskip("onnxruntime", reason="the export extra is not installed")


def test_onnx_matches_pytorch_on_odd_and_varying_sizes(random_run, tmp_path):
    out = export_generator(random_run, "AtoB", tmp_path / "g.onnx")
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [i.name for i in session.get_inputs()] == ["image"]
    translator = Translator.from_run(random_run, device="cpu")
    for shape in [(1, 3, 37, 45), (2, 3, 64, 29), (1, 3, 8, 8)]:
        x = torch.rand(shape) * 2 - 1
        (onnx_out,) = session.run(None, {"image": x.numpy()})
        assert onnx_out.shape == shape
        assert np.abs(onnx_out - translator.translate_tensor(x, "AtoB").numpy()).max() <= 1e-4


@pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")
def test_a_generator_with_a_global_skip_exports_to_both_formats(tmp_path):
    from conftest import write_random_run

    run = write_random_run(tmp_path / "skip", skip=True)
    translator = Translator.from_run(run, device="cpu")
    x = torch.rand(1, 3, 30, 38) * 2 - 1
    expected = translator.translate_tensor(x, "AtoB")
    session = ort.InferenceSession(str(export_generator(run, "AtoB", tmp_path / "g.onnx")),
                                   providers=["CPUExecutionProvider"])
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected.numpy()).max() <= 1e-4
    module = torch.jit.load(str(export_generator(run, "AtoB", tmp_path / "g.pt")))
    with torch.inference_mode():
        assert (module(x) - expected).abs().max() <= 1e-5


def test_cuts_antialiased_generator_exports_to_onnx(tmp_path):
    from conftest import write_random_run

    run = write_random_run(tmp_path / "cut", generator="resnet_aa", family="cut", nce_layers="0,4,8,12")
    session = ort.InferenceSession(str(export_generator(run, "BtoA", tmp_path / "g.onnx")),
                                   providers=["CPUExecutionProvider"])
    x = torch.rand(1, 3, 37, 45) * 2 - 1
    expected = Translator.from_run(run, device="cpu").translate_tensor(x, "BtoA")
    assert np.abs(session.run(None, {"image": x.numpy()})[0] - expected.numpy()).max() <= 1e-4


@pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")
def test_torchscript_matches_pytorch(random_run, tmp_path):
    out = export_generator(random_run, "BtoA", tmp_path / "g.pt")
    module = torch.jit.load(str(out))
    translator = Translator.from_run(random_run, device="cpu")
    x = torch.rand(1, 3, 41, 23) * 2 - 1
    with torch.inference_mode():
        assert (module(x) - translator.translate_tensor(x, "BtoA")).abs().max() <= 1e-5


def test_cli_export_and_its_errors(random_run, tmp_path, capsys):
    target = tmp_path / "models" / "shapes.ts"
    assert main(["-q", "export", "--run", str(random_run), "--direction", "AtoB", "--out", str(target)]) == 0
    assert target.is_file() and str(target) in capsys.readouterr().out
    bad_suffix = str(tmp_path / "g.bin")
    assert main(["-q", "export", "--run", str(random_run), "--direction", "AtoB", "--out", bad_suffix]) == 1
    assert "cannot tell the format from g.bin" in capsys.readouterr().err
    assert not (tmp_path / "g.bin").exists()


def test_missing_generator_leaves_no_file(random_run, tmp_path):
    ckpt.generator_path(random_run, "G_BA").unlink()
    with pytest.raises(CheckpointError, match="cannot translate BtoA"):
        export_generator(random_run, "BtoA", tmp_path / "g.onnx", "onnx")
    with pytest.raises(ConfigError, match="onnx or torchscript"):
        export_generator(random_run, "AtoB", tmp_path / "g.onnx", "tflite")
    assert list(tmp_path.glob("g.onnx*")) == [] and list(tmp_path.glob(".g.onnx*")) == []
