"""Held-out metrics: SWD, SSIM, diversity, discriminator separation, the held-out split, FID/KID code
(with randomly initialised feature networks only: those numbers are not FID), and the CLI."""

from __future__ import annotations

import json
import logging
import math

import pytest
import torch
from torch import nn

from cyclegan import images as imaging
from cyclegan.data import folders
from cyclegan.evaluate import heldout, inception, metrics, table
from cyclegan.cli import main
from cyclegan.config import ModelConfig
from cyclegan.models.discriminators import build_discriminator
from cyclegan.models.generators import build_generator
from cyclegan.train.loop import train
from cyclegan.translate.translator import Translator

from conftest import small_config


def _smooth_images(n: int, size: int, seed: int = 0) -> torch.Tensor:
    """uint8 images with structure at several scales (random blobs upsampled), like photos more than noise."""
    g = torch.Generator().manual_seed(seed)
    coarse = torch.rand(n, 3, size // 8, size // 8, generator=g) * 2 - 1
    fine = torch.rand(n, 3, size // 2, size // 2, generator=g) * 0.4 - 0.2
    image = (nn.functional.interpolate(coarse, size=(size, size), mode="bilinear")
             + nn.functional.interpolate(fine, size=(size, size), mode="bilinear"))
    return imaging.to_uint8(image)


def _noisy(images: torch.Tensor, sigma: float) -> torch.Tensor:
    noise = torch.randn(images.shape, generator=torch.Generator().manual_seed(1)) * sigma
    return imaging.to_uint8(imaging.to_float(images) + noise)


def _tiny_nets(seed: int = 0) -> tuple[nn.Module, ...]:
    torch.manual_seed(seed)
    m = ModelConfig(ngf=8, ndf=8, n_blocks=1, n_layers_d=2)
    return build_generator(m), build_generator(m), build_discriminator(m), build_discriminator(m)


# --- SWD ---------------------------------------------------------------------------------------


def test_swd_of_a_set_with_itself_is_zero():
    images = _smooth_images(12, 32)
    assert metrics.swd(images, images) == pytest.approx(0.0, abs=1e-9)


def test_swd_grows_monotonically_with_noise():
    images = _smooth_images(16, 32)
    scores = [metrics.swd(_noisy(images, sigma), images) for sigma in (0.0, 0.03, 0.1, 0.3)]
    assert scores[0] == pytest.approx(0.0, abs=1e-9)
    assert scores == sorted(scores) and len(set(scores)) == 4, scores


def test_swd_grows_monotonically_with_a_colour_shift():
    """Normalising with the reference's statistics (not each set's own) is what makes a cast visible."""
    images = _smooth_images(16, 32)
    shift = torch.tensor([1, 0, -1]).view(1, 3, 1, 1)
    scores = [metrics.swd((images.int() + amount * shift).clamp(0, 255).to(torch.uint8), images)
              for amount in (0, 8, 24, 64)]
    assert scores == sorted(scores) and len(set(scores)) == 4, scores


def test_swd_compares_sets_of_different_sizes_and_refuses_different_resolutions():
    images = _smooth_images(16, 32)
    assert metrics.swd(images[:8], images) < metrics.swd(_noisy(images[:8], 0.3), images)
    with pytest.raises(ValueError, match="one size"):
        metrics.swd(_smooth_images(4, 64), images)


def test_laplacian_pyramid_stops_at_16_px_and_sums_back_to_the_image():
    x = imaging.to_float(_smooth_images(2, 64))
    levels = metrics.laplacian_pyramid(x)
    assert [lv.shape[-1] for lv in levels] == [64, 32, 16]
    rebuilt = levels[-1]
    for band in reversed(levels[:-1]):
        rebuilt = band + nn.functional.interpolate(rebuilt, size=band.shape[-2:], mode="bilinear", align_corners=False)
    assert torch.allclose(rebuilt, x, atol=1e-5)


# --- pixel metrics -----------------------------------------------------------------------------


def test_ssim_is_one_for_identical_images_and_lower_for_noisy_ones():
    x = imaging.to_float(_smooth_images(2, 32))
    assert metrics.ssim(x, x) == pytest.approx(1.0, abs=1e-6)
    assert metrics.ssim(imaging.to_float(_noisy(_smooth_images(2, 32), 0.2)), x) < 0.9


def test_ssim_agrees_with_torchmetrics():
    tm = pytest.importorskip("torchmetrics.functional.image")
    x = imaging.to_float(_smooth_images(2, 32))
    y = imaging.to_float(_noisy(_smooth_images(2, 32), 0.1))
    _, full = tm.structural_similarity_index_measure((y + 1) / 2, (x + 1) / 2, data_range=1.0,
                                                          return_full_image=True)
    # torchmetrics averages over reflect-padded borders too; ours (as Wang et al. and scikit-image)
    # only where the 11x11 window fits: compare on that region.
    assert metrics.ssim(y, x) == pytest.approx(float(full[..., 5:-5, 5:-5].mean()), abs=1e-4)


def test_ground_truth_scores_keep_their_keys_and_add_ssim(tmp_path, shapes_dir):
    run = train(small_config(shapes_dir, epochs=1, epochs_decay=0, eval_every=0), tmp_path / "run")
    scores = heldout.evaluate_ground_truth(Translator.from_run(run, device="cpu"), shapes_dir)
    for direction in ("AtoB", "BtoA"):
        assert {"l1", "psnr", "identity_l1", "identity_psnr", "ssim", "identity_ssim", "images"} <= scores[direction].keys()
        assert 0 < scores[direction]["identity_ssim"] < 1


# --- collapse and balance ----------------------------------------------------------------------


def test_diversity_is_zero_for_identical_outputs_and_one_for_the_inputs_themselves():
    images = _smooth_images(8, 32)
    assert metrics.mean_pairwise_distance(images[:1].expand(8, -1, -1, -1)) == 0.0
    held = heldout.HeldOut(images, images.flip(0))
    assert held.diversity(images, "A") == pytest.approx(1.0)
    assert held.diversity(images[:1].expand(8, -1, -1, -1), "A") == 0.0


def test_separation_auc():
    assert metrics.separation_auc(torch.tensor([2.0, 3.0]), torch.tensor([0.0, 1.0])) == 1.0
    assert metrics.separation_auc(torch.tensor([0.0, 1.0]), torch.tensor([2.0, 3.0])) == 0.0
    assert metrics.separation_auc(torch.ones(4), torch.ones(4)) == 0.5


# --- held-out split ----------------------------------------------------------------------------


def test_heldout_split_is_a_fixed_disjoint_fraction(tmp_path):
    paths = [tmp_path / f"{i:03d}.png" for i in range(100)]
    train_paths, held = folders.heldout_split(paths, 0.05, seed=0, salt=1)
    assert len(held) == 5 and set(train_paths).isdisjoint(held) and set(train_paths) | set(held) == set(paths)
    assert folders.heldout_split(list(reversed(paths)), 0.05, seed=0, salt=1) == (train_paths, held)  # order-free
    assert folders.heldout_split(paths, 0.05, seed=1, salt=1)[1] != held
    assert len(folders.heldout_split([tmp_path / f"{i}.png" for i in range(10_000)], 0.05, 0, 1)[1]) == folders.MAX_HELDOUT
    assert folders.heldout_split(paths[:3], 0.05, 0, 1)[1]  # always at least one image


def test_a_run_without_test_folders_holds_out_the_same_images_on_resume(tmp_path, shapes_dir):
    config = small_config(shapes_dir, test_a="", test_b="", val_fraction=0.25, epochs=1, epochs_decay=0)
    first = folders.heldout_for(config.train, "A", folders.find_images(shapes_dir / "trainA"))
    again = folders.heldout_for(config.train, "A", folders.find_images(shapes_dir / "trainA"))
    assert first == again and len(first[1]) == 3 and set(first[0]).isdisjoint(first[1])
    run = train(config, tmp_path / "run")
    assert json.loads((run / "best" / "meta.json").read_text())["metrics"]["val_heldout_images_AtoB"] == 3


# --- evaluation of networks --------------------------------------------------------------------


def test_evaluate_heldout_reports_every_metric_and_leaves_training_state_alone():
    G_AB, G_BA, D_A, D_B = _tiny_nets()
    held = heldout.HeldOut(_smooth_images(6, 32, seed=1), _smooth_images(6, 32, seed=2))
    torch.manual_seed(123)
    rng_before = torch.get_rng_state()
    results = heldout.evaluate_heldout(G_AB, G_BA, held, D_A=D_A, D_B=D_B)
    assert torch.equal(torch.get_rng_state(), rng_before)
    assert all(net.training for net in (G_AB, G_BA, D_A, D_B))
    for direction in ("AtoB", "BtoA"):
        assert {"swd", "swd_identity", "swd_coarse", "swd_coarse_sd", "cycle_l1", "identity_mapping_l1",
                "diversity", "d_real", "d_fake", "d_auc", "heldout_images"} <= results[direction].keys()
    flat = table.flatten(results)
    assert flat["val_swd"] == pytest.approx((flat["val_swd_AtoB"] + flat["val_swd_BtoA"]) / 2)
    assert flat["val_swd_coarse"] == pytest.approx((flat["val_swd_coarse_AtoB"] + flat["val_swd_coarse_BtoA"]) / 2)
    assert table.selection_value(results, "fid") is None


def test_trained_tiny_model_beats_an_untrained_one_and_the_identity_on_swd(trained_tiny_run):
    run, data = trained_tiny_run
    trained, _ = heldout.evaluate_run(Translator.from_run(run, device="cpu"), run, data)
    config = Translator.from_run(run, device="cpu").config
    torch.manual_seed(0)
    fresh = [build_generator(config.model, "AtoB"), build_generator(config.model, "BtoA")]
    paths_a, paths_b, _ = folders.run_heldout_paths(config.train, data)
    held = heldout.HeldOut.from_paths(paths_a, paths_b, config.train.crop_size)
    untrained = heldout.evaluate_heldout(*fresh, held)
    for direction in ("AtoB", "BtoA"):
        t, u = trained[direction], untrained[direction]
        print(direction, f"trained {t['swd']:.1f}, untrained {u['swd']:.1f}, identity {t['swd_identity']:.1f}")
        assert t["swd"] < u["swd"] and t["swd"] < t["swd_identity"], (t, u)


# --- FID / KID ---------------------------------------------------------------------------------


class _RandomFeatures(nn.Module):
    """A randomly initialised CNN standing in for Inception: exercises the FID/KID code offline.
    Its distances are not FID and are never reported as such."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(0)
        self.net = nn.Sequential(nn.Conv2d(3, 16, 3, 2), nn.ReLU(), nn.Conv2d(16, 32, 3, 2), nn.ReLU(),
                                 nn.AdaptiveAvgPool2d(1), nn.Flatten())

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        return self.net(imaging.to_float(images))


def test_frechet_and_kernel_distances_are_zero_for_identical_sets_and_grow_with_a_shift():
    pytest.importorskip("torchmetrics")
    features = _RandomFeatures()
    images = _smooth_images(40, 32)
    real = inception.image_features(features, images, torch.device("cpu"))
    same = inception.fid_kid(real, real)
    shifted = inception.fid_kid(real, inception.image_features(features, (images.int() + 40).clamp(0, 255).byte(), torch.device("cpu")))
    assert abs(same["fid"]) < 1e-3 and abs(same["kid"]) < 1e-3
    assert shifted["fid"] > 100 * max(abs(same["fid"]), 1e-6) and shifted["kid"] > same["kid"]


def test_inception_weights_load_from_a_local_file_without_pickle(tmp_path, monkeypatch):
    """Random weights in torch-fidelity's layout stand in for the real file (nothing is downloaded)."""
    fidelity = pytest.importorskip("torch_fidelity.feature_extractor_inceptionv3")
    from safetensors.torch import save_file

    with monkeypatch.context() as patch:  # build the network once without any weights, to get its shapes
        patch.setattr(fidelity, "load_state_dict_from_url", lambda *a, **k: {})
        patch.setattr(fidelity.FeatureExtractorInceptionV3, "load_state_dict", lambda self, state: None)
        random_state = fidelity.FeatureExtractorInceptionV3("inception-v3-compat", ["2048"]).state_dict()
    path = tmp_path / "inception.safetensors"
    save_file({k: v.contiguous() for k, v in random_state.items()}, str(path))
    inception.inception_network.cache_clear()
    network = inception.inception_network(str(path))
    assert network is not None
    features = inception.image_features(network, _smooth_images(2, 32), torch.device("cpu"))
    assert features.shape == (2, 2048) and torch.isfinite(features).all()
    inception.inception_network.cache_clear()


def test_missing_inception_weights_are_reported_once_and_skipped(monkeypatch, caplog):
    pytest.importorskip("torch_fidelity")

    def offline(*args, **kwargs):
        raise OSError("no network")

    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", offline)
    inception.inception_network.cache_clear()
    with caplog.at_level(logging.WARNING, logger="cyclegan.evaluate"):
        assert inception.inception_network() is None
        assert inception.inception_network() is None
    assert sum("FID/KID skipped" in r.getMessage() for r in caplog.records) == 1
    inception.inception_network.cache_clear()


# --- CLI ---------------------------------------------------------------------------------------


def test_cli_evaluate_json_and_table(tmp_path, shapes_dir, capsys):
    run = train(small_config(shapes_dir, epochs=1, epochs_decay=0), tmp_path / "run")
    assert main(["evaluate", "--run", str(run), "--data", str(shapes_dir), "--json"]) == 0
    results = json.loads(capsys.readouterr().out)
    for direction in ("AtoB", "BtoA"):
        assert {"swd", "swd_identity", "cycle_l1", "diversity", "d_auc", "l1", "psnr", "ssim", "identity_l1",
                "identity_psnr"} <= results[direction].keys()
    assert main(["evaluate", "--run", str(run)]) == 0  # the run's own held-out images
    out = capsys.readouterr().out
    assert "SWD input" in out and "held-out images: the run's held-out images" in out
    assert main(["evaluate", "--run", str(run), "--best", "--json"]) == 0
    assert "d_auc" not in json.loads(capsys.readouterr().out)["AtoB"]  # best/ keeps no discriminators


def test_cli_evaluate_fid_without_weights_skips_and_succeeds(tmp_path, shapes_dir, capsys):
    run = train(small_config(shapes_dir, epochs=1, epochs_decay=0, eval_every=0), tmp_path / "run")
    inception.inception_network.cache_clear()
    assert main(["evaluate", "--run", str(run), "--data", str(shapes_dir), "--json",
                 "--inception-weights", str(tmp_path / "missing.pth")]) == 0
    assert "fid" not in json.loads(capsys.readouterr().out)["AtoB"]
    inception.inception_network.cache_clear()


def test_change_scores_say_how_much_of_the_needed_change_was_made():
    x = torch.zeros(3, 8, 8)
    truth = torch.full((3, 8, 8), 0.5)
    assert metrics.change_scores(*metrics.change_agreement(x, truth, truth)) == {"change_made": 1.0, "change_corr": 1.0}
    assert metrics.change_scores(*metrics.change_agreement(x, x, truth)) == {"change_made": 0.0, "change_corr": 0.0}
    half = metrics.change_scores(*metrics.change_agreement(x, truth / 2, truth))
    assert half["change_made"] == pytest.approx(0.5) and half["change_corr"] == pytest.approx(1.0)
    wrong = metrics.change_scores(*metrics.change_agreement(x, -truth, truth))
    assert wrong["change_made"] == pytest.approx(-1.0) and wrong["change_corr"] == pytest.approx(-1.0)


def test_swd_bootstrap_spread_is_positive_and_shrinks_with_more_images():
    images = _smooth_images(24, 32)
    reference = metrics.SlicedWasserstein(images)
    noisy = _noisy(images, 0.1)
    score = reference.measure(noisy, resamples=8)
    assert score.value == reference(noisy) and score.sd > 0 and score.coarse_sd > 0
    assert math.isnan(reference.measure(noisy).sd) and math.isnan(reference.measure(noisy).coarse_sd)
    few = reference.measure(noisy[:6], resamples=8)
    assert few.sd > score.sd and few.coarse_sd > score.coarse_sd


def test_coarse_swd_leaves_out_the_finest_band():
    """Pixel-scale noise lives in the finest band: it moves the full SWD much more than the coarse
    one, while a colour shift, which lives in the low-pass level, moves both."""
    images = _smooth_images(24, 64)
    reference = metrics.SlicedWasserstein(images)
    noisy = reference.measure(_noisy(images, 0.1))
    assert noisy.coarse < noisy.value / 2
    shifted = reference.measure((images.int() + 40).clamp(0, 255).to(torch.uint8))
    assert shifted.coarse > shifted.value  # the colour error is spread over fewer levels
    tiny = _smooth_images(4, 16)  # one level: nothing to leave out
    single = metrics.SlicedWasserstein(tiny).measure(_noisy(tiny, 0.1))
    assert single.coarse == single.value


def _flat_direction(change: float, swd: float, identity: float, gap: float) -> dict[str, float]:
    return {f"val_{k}_{d}": v for d in table.DIRECTIONS
            for k, v in (("change", change), ("swd", swd), ("swd_identity", identity), ("domain_gap", gap))}


def test_untranslated_needs_no_change_no_progress_and_a_real_gap():
    assert len(table.untranslated(_flat_direction(0.005, 366, 370, 3.0))) == 2  # the input, returned
    assert table.untranslated(_flat_direction(0.10, 380, 370, 3.0)) == []  # changed a lot (worse, but changed)
    assert table.untranslated(_flat_direction(0.005, 200, 370, 3.0)) == []  # small change, right direction
    assert table.untranslated(_flat_direction(0.005, 366, 370, 1.1)) == []  # the domains barely differ
    assert "AtoB (outputs differ from their inputs by 0.0050" in table.untranslated(_flat_direction(0.005, 366, 370, 3.0))[0]


def test_domain_gap_is_near_one_for_one_domain_and_large_for_two():
    same = heldout.HeldOut(_smooth_images(16, 32, seed=1), _smooth_images(16, 32, seed=2))
    assert same.domain_gap("A", "B") < 1.5
    shifted = (_smooth_images(16, 32, seed=2).int() + 90).clamp(0, 255).to(torch.uint8)
    apart = heldout.HeldOut(_smooth_images(16, 32, seed=1), shifted)
    assert apart.domain_gap("A", "B") > 2.0
