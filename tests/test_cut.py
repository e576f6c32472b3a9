"""CUT and FastCUT (``--model cut|fastcut``): the anti-aliased generator, PatchNCE, the update step,
and a CUT run going through what a CycleGAN run does (train, exact resume, best/, translate,
export, official weights, the app)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from cyclegan import runfolder as ckpt
from cyclegan.cli import main
from cyclegan.config import Config, ModelConfig, preset, validate, with_family
from cyclegan.errors import ConfigError
from cyclegan.models.generators import AntialiasedResnetGenerator, BlurDownsample, BlurUpsample, build_generator
from cyclegan.models.patchnce import PatchNCEHeads, sample_positions
from cyclegan.train.cut_step import cut_train_step, step_generator
from cyclegan.train.loop import TrainingInterrupted, train
from cyclegan.train.losses import patch_nce
from cyclegan.train.pool import ImagePool
from cyclegan.train.step import Models, Optimizers
from cyclegan.devices import chosen_autocast
from cyclegan.translate.translator import Translator

from conftest import small_config


def cut_config(data, family: str = "cut", **train_overrides) -> Config:
    """small_config's tiny networks and data, trained as ``family``."""
    config = with_family(small_config(data), family)
    for name, value in train_overrides.items():
        setattr(config.train, name, value)
    validate(config)
    return config


def _weights(run) -> dict[str, torch.Tensor]:
    return {f"{name}.{k}": v for name in ckpt.GENERATORS + ckpt.DISCRIMINATORS
            for k, v in ckpt.read_weights(run / f"{name}.safetensors").items()}


# ------------------------------------------------------------------------------------- the networks

def test_the_blur_sampling_keeps_a_flat_image_flat_and_halves_or_doubles_its_size():
    flat = torch.full((1, 4, 12, 10), 0.3)
    down, up = BlurDownsample(4)(flat), BlurUpsample(4)(flat)
    assert down.shape == (1, 4, 6, 5) and up.shape == (1, 4, 24, 20)
    assert torch.allclose(down, flat[:, :, :6, :5]) and torch.allclose(up, torch.full_like(up, 0.3))  # edges too
    # a one-pixel shift moves the blurred, subsampled signal smoothly: no pixel jumps by the full step
    edge = torch.zeros(1, 1, 16, 16)
    edge[..., 8:] = 1.0
    shifted = torch.roll(edge, 1, dims=3)
    change = (BlurDownsample(1)(edge) - BlurDownsample(1)(shifted)).abs().max()
    assert 0 < change < 1


def test_the_antialiased_generator_has_cuts_layers_and_keys():
    net = AntialiasedResnetGenerator(3, ngf=8, n_blocks=9, antialias=True)
    keys = net.state_dict().keys()
    assert {"model.1.weight", "model.4.weight", "model.7.filt", "model.8.weight", "model.11.filt",
            "model.12.conv_block.1.weight", "model.21.filt", "model.22.weight", "model.25.filt",
            "model.30.weight"} <= keys
    assert AntialiasedResnetGenerator.encoder_layers(9) == 21
    assert isinstance(net.model[20], type(net.model[12])) and isinstance(net.model[21], BlurUpsample)
    x = torch.rand(2, 3, 36, 20) * 2 - 1
    assert net(x).shape == x.shape
    features = net.encode(x, [0, 4, 8, 12, 16])
    assert [f.shape[1:] for f in features] == [(3, 42, 26), (16, 36, 20), (32, 18, 10), (32, 9, 5), (32, 9, 5)]


@pytest.mark.parametrize("generator", ["resnet", "resnet_aa"])
def test_the_stated_receptive_radius_covers_what_an_output_pixel_sees(generator):
    """Perturb one input pixel: no output pixel farther than the stated radius may change. Instance
    norms are taken out first: their image-wide statistics let every pixel see every other, which is
    why tiles share the whole image's statistics (translate/tiling.py), not part of the geometry."""
    model = with_family(Config(model=ModelConfig(ngf=4, n_blocks=2)), "cut").model if generator == "resnet_aa" \
        else ModelConfig(ngf=4, n_blocks=2)
    net = build_generator(model).eval()
    for module in net.modules():
        for name, child in module.named_children():
            if isinstance(child, torch.nn.InstanceNorm2d):
                setattr(module, name, torch.nn.Identity())
    x = torch.rand(1, 3, 128, 128) * 2 - 1
    y = x.clone()
    y[..., 64, 64] += 1.0
    with torch.no_grad():
        changed = ((net(x) - net(y)).abs().amax(dim=(0, 1)) > 0).nonzero()
    reach = (changed - 64).abs().max().item()
    assert 0 < reach <= net.receptive_radius


# ------------------------------------------------------------------------------------ configuration

def test_with_family_sets_the_published_defaults_and_adapts_the_layers_to_short_encoders():
    cut, fast = with_family(preset("paper"), "cut"), with_family(preset("paper"), "fastcut")
    assert (cut.model.family, cut.model.generator, cut.model.nce_layers) == ("cut", "resnet_aa", "0,4,8,12,16")
    assert (cut.train.lambda_nce, cut.train.nce_identity, cut.train.flip_equivariance) == (1.0, True, False)
    assert (fast.train.lambda_nce, fast.train.nce_identity, fast.train.flip_equivariance) == (10.0, False, True)
    assert cut.train.pool_size == fast.train.pool_size == 0 and cut.train.lambda_identity == 0
    assert (cut.train.nce_patches, cut.train.nce_temperature, cut.model.nce_width) == (256, 0.07, 256)
    assert with_family(preset("tiny"), "cut").model.nce_layers == "0,4,8,12,14"  # 3 blocks: no layer 16
    assert with_family(preset("paper"), "cyclegan").to_dict() == preset("paper").to_dict()


def test_config_json_names_the_family_and_old_run_folders_load_as_cyclegan(tmp_path):
    config = with_family(preset("tiny"), "fastcut")
    assert Config.from_json(config.to_json()) == config
    old = json.loads(preset("paper").to_json())
    for field in ("family", "nce_layers", "nce_width"):
        del old["model"][field]
    assert Config.from_json(json.dumps(old)).model.family == "cyclegan"


@pytest.mark.parametrize("change, message", [
    ({"nce_layers": "0,4,30"}, "reaches past the encoder"),
    ({"nce_layers": "8,4"}, "ascending layer numbers"),
    ({"upsample": "resize"}, "drop --upsample resize"),
    ({"family": "gan"}, "family must be one of"),
    ({"family": "cyclegan", "generator": "resnet", "one_way": True}, "cycle loss needs both generators"),
    ({"one_way": True, "select_by": "cycle_l1"}, "one-way run does not train"),
])
def test_bad_cut_settings_are_one_clear_error(change, message):
    config = with_family(preset("paper"), "cut")
    for name, value in change.items():
        setattr(config.model if hasattr(config.model, name) else config.train, name, value)
    with pytest.raises(ConfigError, match=message):
        validate(config)


# ------------------------------------------------------------------------------------- the loss

def test_patch_nce_is_low_when_each_patch_matches_its_own_position_and_high_when_shuffled():
    torch.manual_seed(0)
    keys = torch.nn.functional.normalize(torch.randn(2 * 64, 32), dim=1)
    matched = patch_nce(keys.clone().requires_grad_(), keys, images=2, temperature=0.07)
    shuffled = patch_nce(keys[torch.randperm(128)], keys, images=2, temperature=0.07)
    assert matched < 0.1 < np.log(64) < shuffled  # chance (log of the patches per image) lies between


def test_patch_positions_are_shared_by_the_batch_and_replayed_by_the_step_seed():
    features = [torch.zeros(2, 4, 8, 8), torch.zeros(2, 4, 2, 3)]
    first = sample_positions(features, 10, step_generator(0, 5, 0))
    again = sample_positions(features, 10, step_generator(0, 5, 0))
    other = sample_positions(features, 10, step_generator(0, 6, 0))
    assert [p.tolist() for p in first] == [p.tolist() for p in again] != [p.tolist() for p in other]
    assert len(first[0]) == 10 and sorted(first[1].tolist()) == list(range(6))  # all 6 where fewer than asked
    heads = PatchNCEHeads([4, 4], width=16)
    vectors = heads([torch.randn(2, 4, 8, 8), torch.randn(2, 4, 2, 3)], first)
    assert [v.shape for v in vectors] == [(20, 16), (12, 16)]
    assert torch.allclose(vectors[0].norm(dim=1), torch.ones(20))


@pytest.mark.parametrize("family", ["cut", "fastcut"])
def test_a_cut_step_trains_generators_heads_and_discriminators_and_lowers_patchnce(shapes_dir, family):
    config = cut_config(shapes_dir, family)
    torch.manual_seed(0)
    models = Models.build(config, torch.device("cpu"))
    opt = Optimizers.build(models, config)
    pools = (ImagePool(0), ImagePool(0))
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in models.named().items()}
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    autocast = chosen_autocast("off", torch.device("cpu"))
    losses = [cut_train_step(models, opt, pools, a, b, config, autocast, step_generator(0, i, 0)) for i in range(15)]
    assert set(losses[0]) == {"loss_G", "loss_G_adv", "loss_nce", "loss_D_A", "loss_D_B", "skipped"}
    assert all(float(step["skipped"]) == 0 for step in losses)
    for name, net in models.named().items():
        assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), before[name])), f"{name} did not learn"
    assert float(losses[-1]["loss_nce"]) < float(losses[0]["loss_nce"])


def test_a_one_way_step_trains_a_to_b_alone():
    """--one-way: G_AB, its heads and D_B, nothing for B->A (no networks, no D_A loss)."""
    config = cut_config(Path("unused"), "cut")
    config.model.one_way = True
    torch.manual_seed(0)
    models = Models.build(config, torch.device("cpu"))
    assert set(models.named()) == {"G_AB", "D_B", "F_AB"} and models.G_BA is None and models.D_A is None
    opt = Optimizers.build(models, config)
    before = {name: [p.detach().clone() for p in net.parameters()] for name, net in models.named().items()}
    a, b = torch.rand(2, 3, 32, 32) * 2 - 1, torch.rand(2, 3, 32, 32) * 2 - 1
    autocast = chosen_autocast("off", torch.device("cpu"))
    losses = [cut_train_step(models, opt, (ImagePool(0), ImagePool(0)), a, b, config, autocast,
                             step_generator(0, i, 0)) for i in range(3)]
    assert set(losses[0]) == {"loss_G", "loss_G_adv", "loss_nce", "loss_D_B", "skipped"}
    for name, net in models.named().items():
        assert any(not torch.equal(p, q) for p, q in zip(net.parameters(), before[name])), f"{name} did not learn"


# ------------------------------------------------------------------------- a CUT run end to end

def test_a_cut_run_resumes_exactly_after_an_interruption(tmp_path, shapes_dir):
    straight = train(cut_config(shapes_dir, "fastcut"), tmp_path / "straight")  # flips and patches: both drawn
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(cut_config(shapes_dir, "fastcut"), tmp_path / "split", should_stop=lambda step: step == 9)
    train(ckpt.load_config(tmp_path / "split"), tmp_path / "split", resume=True)
    a, b = _weights(straight), _weights(tmp_path / "split")
    assert a.keys() == b.keys() and max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6
    state = ckpt.load_state(tmp_path / "split")
    assert {"F_AB", "F_BA"} <= state["models"].keys()  # the heads resume with the rest


@pytest.fixture(scope="module")
def cut_run(tmp_path_factory, shapes_dir):
    """A CUT run trained through the command line, with held-out evaluation, best/ and a kept epoch."""
    run = tmp_path_factory.mktemp("cut") / "run"
    assert main(["-q", "train", "--data", str(shapes_dir), "--run", str(run), "--model", "cut", "--ngf", "8",
                 "--ndf", "8", "--n-blocks", "1", "--n-layers-d", "2", "--load-size", "36", "--crop-size", "32",
                 "--batch-size", "2", "--epochs", "1", "--epochs-decay", "1", "--keep-epochs", "-1", "--log-every", "2",
                 "--device", "cpu"]) == 0
    return run


def test_a_cut_run_folder_names_its_family_and_has_best_metrics_and_samples(cut_run):
    config = ckpt.load_config(cut_run)
    assert (config.model.family, config.model.generator) == ("cut", "resnet_aa")
    assert ckpt.read_best(cut_run)["epoch"] in (1, 2)
    rows = ckpt.read_metrics(cut_run)
    assert any(r.get("loss_nce") for r in rows) and any(r.get("val_swd_AtoB") for r in rows)
    assert (cut_run / "samples" / "epoch_002.png").is_file()
    assert (cut_run / "F_AB.safetensors").is_file()


@pytest.mark.filterwarnings("ignore:.*torch.jit.*:FutureWarning")
def test_a_cut_run_translates_both_ways_exports_and_is_refused_a_resume_with_another_model(cut_run, shapes_dir,
                                                                                          tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["-q", "translate", "--run", str(cut_run), "--direction", "both", "--best",
                 "--input", str(shapes_dir / "testA"), "--output", str(out)]) == 0
    assert len(list((out / "AtoB").glob("*.png"))) == 4 and len(list((out / "BtoA").glob("*.png"))) == 4
    assert main(["-q", "export", "--run", str(cut_run), "--direction", "BtoA", "--out", str(tmp_path / "g.pt")]) == 0
    module = torch.jit.load(str(tmp_path / "g.pt"))
    x = torch.rand(1, 3, 30, 22) * 2 - 1
    with torch.inference_mode():
        expected = Translator.from_run(cut_run, device="cpu").translate_tensor(x, "BtoA")
        assert (module(x) - expected).abs().max() <= 1e-5
    assert main(["-q", "train", "--resume", str(cut_run), "--model", "cyclegan"]) == 1
    assert "drop --run, --preset and --model" in capsys.readouterr().err


def test_a_one_way_run_resumes_exactly_and_says_in_one_line_wherever_b_to_a_is_asked_for(tmp_path, shapes_dir,
                                                                                           capsys):
    """A one-way run (A->B alone) resumes exactly, keeps best/ by its A->B scores, and every place that
    offers B->A (translate, export, evaluate, report) says why it is not there instead of failing."""
    one_way = cut_config(shapes_dir, "cut")
    one_way.model.one_way = True
    straight = train(one_way, tmp_path / "straight")
    with pytest.raises(TrainingInterrupted, match="--resume"):
        train(one_way, tmp_path / "run", should_stop=lambda step: step == 5)
    run = train(ckpt.load_config(tmp_path / "run"), tmp_path / "run", resume=True)
    files = {p.name for p in run.glob("*.safetensors")}
    assert files == {"G_AB.safetensors", "D_B.safetensors", "F_AB.safetensors"}
    for name in files:
        a, b = ckpt.read_weights(straight / name), ckpt.read_weights(run / name)
        assert max((a[k] - b[k]).abs().max().item() for k in a) <= 1e-6, name
    assert {p.name for p in (run / "best").glob("*.safetensors")} == {"G_AB.safetensors"}
    assert ckpt.read_best(run)["value"] > 0  # chosen by A->B's SWD alone
    rows = [r for r in ckpt.read_metrics(run) if r.get("val_swd_AtoB")]
    assert rows and not any(r.get("val_swd_BtoA") for r in rows) and not any(r.get("loss_D_A") for r in ckpt.read_metrics(run))

    out = tmp_path / "out"
    assert main(["-q", "translate", "--run", str(run), "--direction", "AtoB", "--best",
                 "--input", str(shapes_dir / "testA"), "--output", str(out)]) == 0
    assert len(list(out.glob("*.png"))) == 4
    capsys.readouterr()
    for command in (["translate", "--run", str(run), "--direction", "BtoA", "--input", str(shapes_dir / "testB"),
                     "--output", str(tmp_path / "back")],
                    ["export", "--run", str(run), "--direction", "BtoA", "--out", str(tmp_path / "g.pt")]):
        assert main(["-q", *command]) == 1
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and "cannot translate BtoA" in err and "--one-way" in err
    assert not (tmp_path / "back").exists() and not (tmp_path / "g.pt").exists()
    assert main(["-q", "evaluate", "--run", str(run), "--data", str(shapes_dir)]) == 0
    printed = capsys.readouterr().out
    assert "BtoA: not measured" in printed and "--one-way" in printed and "\nAtoB " in printed
    assert main(["-q", "report", "--run", str(run)]) == 0
    assert "not trained (--one-way: A->B only)" in capsys.readouterr().out

    # The app's Translate tab: "both" (and the way back) make what the run has, and one line says why not the rest
    from cyclegan.app.catalog import RunCatalog
    from cyclegan.app.translate import ModelCache, TranslateHandlers, UploadLimits

    (tmp_path / "checkpoints").mkdir()
    shutil.copytree(run, tmp_path / "checkpoints" / "zebra")
    (tmp_path / "work").mkdir()
    handlers = TranslateHandlers(RunCatalog(tmp_path / "checkpoints"),
                                 ModelCache(1, lambda path, weights: Translator.from_run(path, device="cpu")),
                                 UploadLimits(2**20, 10**6, 64), tmp_path / "work")
    assert "AtoB only" in handlers.catalog.get("zebra").label
    photo = sorted((shapes_dir / "testA").iterdir())[0]
    for direction, cycle in (("both", False), ("AtoB", True)):
        _, downloads, status = handlers.translate("zebra", "latest", [str(photo)], direction, cycle)
        assert [Path(d).name for d in downloads] == [f"{photo.stem}_AtoB.png"]
        assert status.count("not made") == 1 and "--one-way" in status
    with pytest.raises(Exception, match="cannot translate BtoA.*--one-way"):
        handlers.translate("zebra", "latest", [str(photo)], "BtoA", False)


def test_official_cut_weights_import_as_a_cut_generator(tmp_path):
    """A file as CUT's code saves it (its own layer names, the blur filters included, DataParallel's prefix)."""
    torch.manual_seed(1)
    model = with_family(Config(model=ModelConfig(ngf=8, n_blocks=6)), "cut").model
    net = build_generator(model)
    torch.save({f"module.{k}": v for k, v in net.state_dict().items()}, tmp_path / "latest_net_G.pth")
    assert main(["-q", "import-official", "--pth", str(tmp_path / "latest_net_G.pth"), "--out",
                 str(tmp_path / "run")]) == 0
    imported = ckpt.load_config(tmp_path / "run").model
    assert (imported.generator, imported.family, imported.n_blocks, imported.ngf) == ("resnet_aa", "cut", 6, 8)
    x = torch.rand(1, 3, 40, 28) * 2 - 1
    with torch.inference_mode():
        assert torch.allclose(Translator.from_run(tmp_path / "run", device="cpu").translate_tensor(x, "AtoB"),
                              net.eval()(x), atol=1e-5)


def test_the_app_translates_with_a_cut_run_both_ways_and_shows_its_curves(cut_run, tmp_path):
    gradio_client = pytest.importorskip("gradio_client")
    from appserver import running_app

    checkpoints = tmp_path / "checkpoints"
    shutil.copytree(cut_run, checkpoints / "cut")
    shutil.copytree(cut_run, checkpoints / "cut_copy")
    (tmp_path / "datasets").mkdir()
    photo = tmp_path / "photo.png"
    Image.new("RGB", (45, 31), (30, 120, 200)).save(photo)
    with running_app(checkpoints, tmp_path / "datasets", tmp_path / "app.log") as url:
        client = gradio_client.Client(url, verbose=False)
        _, downloads, status = client.predict("cut", "best", [gradio_client.handle_file(str(photo))], "both", False,
                                              False, api_name="/translate")
        assert sorted(Path(p).name for p in downloads if p.endswith(".png")) == ["photo_AtoB.png", "photo_BtoA.png"]
        assert "Translated 1 of 1" in status
        info, config, losses, _, _ = client.predict("cut", api_name="/show_run")
        verdict = client.predict(["cut", "cut_copy"], api_name="/compare_runs")
    assert json.loads(config)["model"]["family"] == "cut"
    assert {"G", "G_adv", "nce", "D_A", "D_B"} <= {series for _, _, series in losses["data"]}
    assert "cut / paper" in verdict and "Use cut: a tie" in verdict  # the same run twice: a tie
