"""`cyclegan import-official`: generators saved by junyanz/pytorch-CycleGAN-and-pix2pix become run folders."""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import torch
from PIL import Image
from torch import nn

from cyclegan.cli import main
from cyclegan.errors import CheckpointError
from cyclegan.models.generators import count_parameters
from cyclegan.translate.official import import_official, load_official
from cyclegan.translate.translator import Translator

# The official generator, written out here from its published definition (networks.py of the
# official repository: ResnetGenerator / ResnetBlock with instance norm), independently of ours.
_norm = functools.partial(nn.InstanceNorm2d, affine=False, track_running_stats=False)


class OfficialBlock(nn.Module):
    def __init__(self, dim: int, dropout: bool) -> None:
        super().__init__()
        layers = [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim), nn.ReLU(True)]
        if dropout:
            layers += [nn.Dropout(0.5)]
        layers += [nn.ReflectionPad2d(1), nn.Conv2d(dim, dim, 3, bias=True), _norm(dim)]
        self.conv_block = nn.Sequential(*layers)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x + self.conv_block(x)


class OfficialGenerator(nn.Module):
    def __init__(self, ngf: int = 64, n_blocks: int = 9, dropout: bool = False) -> None:
        super().__init__()
        model = [nn.ReflectionPad2d(3), nn.Conv2d(3, ngf, 7, bias=True), _norm(ngf), nn.ReLU(True)]
        for i in range(2):
            mult = 2**i
            model += [nn.Conv2d(ngf * mult, ngf * mult * 2, 3, stride=2, padding=1, bias=True),
                      _norm(ngf * mult * 2), nn.ReLU(True)]
        model += [OfficialBlock(ngf * 4, dropout) for _ in range(n_blocks)]
        for i in range(2):
            mult = 2 ** (2 - i)
            model += [nn.ConvTranspose2d(ngf * mult, ngf * mult // 2, 3, stride=2, padding=1, output_padding=1,
                                         bias=True), _norm(ngf * mult // 2), nn.ReLU(True)]
        model += [nn.ReflectionPad2d(3), nn.Conv2d(ngf, 3, 7), nn.Tanh()]
        self.model = nn.Sequential(*model)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.model(x)


def _official(path: Path, seed: int = 0, ngf: int = 8, n_blocks: int = 2, dropout: bool = False,
              running_stats: bool = False) -> OfficialGenerator:
    """Save an official-layout generator's state_dict as the official code does; return the network."""
    torch.manual_seed(seed)
    net = OfficialGenerator(ngf, n_blocks, dropout).eval()
    state = net.state_dict()
    if running_stats:  # what files written by PyTorch < 0.4 hold for each InstanceNorm layer
        for name, module in net.named_modules():
            if isinstance(module, nn.InstanceNorm2d):
                state[f"{name}.running_mean"] = torch.zeros(module.num_features)
                state[f"{name}.running_var"] = torch.ones(module.num_features)
    torch.save(state, path)
    return net


@pytest.mark.parametrize("layout", [{}, {"dropout": True}, {"running_stats": True}])
def test_imported_generator_gives_the_official_output(tmp_path, layout):
    official = _official(tmp_path / "latest_net_G_A.pth", **layout)
    import_official(tmp_path / "latest_net_G_A.pth", tmp_path / "run", "AtoB")
    translator = Translator.from_run(tmp_path / "run", device="cpu")
    x = torch.rand(2, 3, 36, 44) * 2 - 1
    with torch.inference_mode():
        expected = official(x)
    assert (translator.translate_tensor(x, "AtoB") - expected).abs().max() <= 1e-5


def test_published_resnet9_shape_is_read_off_the_file(tmp_path):
    _official(tmp_path / "horse2zebra.pth", ngf=64, n_blocks=9)
    model, net = load_official(tmp_path / "horse2zebra.pth")
    assert (model.ngf, model.n_blocks, model.channels_a, model.channels_b, model.upsample) == (64, 9, 3, 3, "transpose")
    assert count_parameters(net) == 11_378_179  # the official ResNet-9 generator's size


def test_both_directions_go_into_one_run_folder(tmp_path):
    g_a = _official(tmp_path / "latest_net_G_A.pth", seed=1)
    g_b = _official(tmp_path / "latest_net_G_B.pth", seed=2)
    import_official(tmp_path / "latest_net_G_A.pth", tmp_path / "run", "AtoB")
    one_way = Translator.from_run(tmp_path / "run", device="cpu")
    with pytest.raises(CheckpointError, match="cannot translate BtoA.*import-official.*--direction BtoA"):
        one_way(Image.new("RGB", (16, 16)), "BtoA")
    import_official(tmp_path / "latest_net_G_B.pth", tmp_path / "run", "BtoA")
    translator = Translator.from_run(tmp_path / "run", device="cpu")
    assert translator.directions == ("AtoB", "BtoA")
    x = torch.rand(1, 3, 20, 24) * 2 - 1
    with torch.inference_mode():
        assert (translator.translate_tensor(x, "AtoB") - g_a(x)).abs().max() <= 1e-5
        assert (translator.translate_tensor(x, "BtoA") - g_b(x)).abs().max() <= 1e-5


def test_existing_generator_is_kept_unless_overwrite(tmp_path):
    _official(tmp_path / "a.pth", seed=1)
    _official(tmp_path / "b.pth", seed=2)
    target = import_official(tmp_path / "a.pth", tmp_path / "run")
    before = target.read_bytes()
    with pytest.raises(CheckpointError, match="exists; pass --overwrite"):
        import_official(tmp_path / "b.pth", tmp_path / "run")
    assert target.read_bytes() == before
    import_official(tmp_path / "b.pth", tmp_path / "run", overwrite=True)
    assert target.read_bytes() != before


def test_a_different_network_or_a_foreign_folder_is_refused(tmp_path):
    _official(tmp_path / "small.pth", ngf=8)
    _official(tmp_path / "wide.pth", ngf=16)
    import_official(tmp_path / "small.pth", tmp_path / "run", "AtoB")
    with pytest.raises(CheckpointError, match="different network"):
        import_official(tmp_path / "wide.pth", tmp_path / "run", "BtoA")
    (tmp_path / "photos").mkdir()
    (tmp_path / "photos" / "holiday.jpg").write_bytes(b"x")
    with pytest.raises(CheckpointError, match="not a run folder"):
        import_official(tmp_path / "small.pth", tmp_path / "photos")


def test_truncated_file_is_a_clear_error(tmp_path):
    _official(tmp_path / "full.pth")
    data = (tmp_path / "full.pth").read_bytes()
    (tmp_path / "cut.pth").write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match=r"cut\.pth cannot be read as PyTorch weights .*download it again"):
        import_official(tmp_path / "cut.pth", tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_wrong_keys_and_shapes_are_listed(tmp_path):
    _official(tmp_path / "g.pth")
    state = torch.load(tmp_path / "g.pth", weights_only=True)
    state["model.4.weight"] = torch.zeros(16, 8, 5, 5)
    del state["model.19.bias"]  # the final conv, with 2 blocks
    state["model.2.weight"] = torch.ones(8)  # a batch-norm generator has affine norm weights
    torch.save(state, tmp_path / "bad.pth")
    with pytest.raises(CheckpointError) as error:
        import_official(tmp_path / "bad.pth", tmp_path / "run")
    message = str(error.value)
    assert "bad.pth does not match an official CycleGAN or CUT ResNet generator" in message
    assert "missing keys model.19.bias" in message
    assert "unexpected keys model.2.weight" in message
    assert "shape mismatches model.4.weight: file (16, 8, 5, 5) vs model (16, 8, 3, 3)" in message


def test_a_discriminator_file_is_named_as_the_wrong_network(tmp_path):
    torch.save({"model.0.weight": torch.zeros(64, 3, 4, 4), "model.0.bias": torch.zeros(64)}, tmp_path / "D.pth")
    with pytest.raises(CheckpointError, match="missing keys model.1.bias.*unexpected keys model.0.bias"):
        import_official(tmp_path / "D.pth", tmp_path / "run")


def test_pickled_code_is_never_run(tmp_path):
    torch.save({"model.1.weight": torch.zeros(1), "note": Path("x")}, tmp_path / "evil.pth")
    with pytest.raises(CheckpointError, match="evil.pth cannot be read as PyTorch weights"):
        import_official(tmp_path / "evil.pth", tmp_path / "run")
    with pytest.raises(CheckpointError, match="does not exist"):
        import_official(tmp_path / "missing.pth", tmp_path / "run")


def test_cli_import_then_translate(tmp_path, capsys):
    _official(tmp_path / "horse2zebra.pth")
    run = tmp_path / "checkpoints" / "horse2zebra"
    assert main(["-q", "import-official", "--pth", str(tmp_path / "horse2zebra.pth"), "--out", str(run)]) == 0
    assert "G_AB.safetensors" in capsys.readouterr().out
    Image.new("RGB", (30, 22), (90, 140, 60)).save(tmp_path / "horse.jpg")
    assert main(["-q", "translate", "--run", str(run), "--direction", "AtoB", "--input", str(tmp_path / "horse.jpg"),
                 "--output", str(tmp_path / "out")]) == 0
    assert Image.open(tmp_path / "out" / "horse.png").size == (30, 22)
    assert main(["-q", "translate", "--run", str(run), "--direction", "BtoA", "--input", str(tmp_path / "horse.jpg"),
                 "--output", str(tmp_path / "out")]) == 1
    assert "cannot translate BtoA" in capsys.readouterr().err
    # held-out metrics of the direction it has, and one line on the other and how to import it
    for domain in ("testA", "testB"):
        (tmp_path / domain).mkdir()
        for i in range(3):
            Image.new("RGB", (40, 40), (60 * i, 140, 60)).save(tmp_path / domain / f"{i}.png")
    assert main(["-q", "evaluate", "--run", str(run), "--data", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "\nAtoB " in printed and "BtoA: not measured" in printed and "import-official" in printed
