"""The web app: its pure logic (path checks, run listing, model cache, uploads, training jobs) and
the real server, started with ``python app.py`` on 127.0.0.1 and driven through gradio_client."""

from __future__ import annotations

import io
import json
import re
import shutil
import sys
import time
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from cyclegan import runfolder as ckpt
from cyclegan.app.catalog import PathRefused, RunCatalog, check_new_name, domain_name, list_datasets, safe_child, \
    save_uploaded_dataset
from cyclegan.app.common import describe_run, run_list_updates
from cyclegan.app.jobs import JobBusy, TrainingJobs, last_error, log_lines, parse_progress
from cyclegan.app.translate import ModelCache, UploadLimits, open_upload, translate_uploads
from cyclegan.data.synthetic import make_dataset
from cyclegan.errors import CheckpointError, ConfigError, DataError
from cyclegan.train.loop import train
from cyclegan.translate.translator import Translator

from appserver import running_app
from conftest import small_config

gradio_client = pytest.importorskip("gradio_client")
AppError = pytest.importorskip("gradio_client.exceptions").AppError
handle_file = gradio_client.handle_file

SIZE = (50, 37)  # not a multiple of 4: the app must hand back exactly the input's size


# ----------------------------------------------------------------------------------------- fixtures

@pytest.fixture(scope="module")
def app_dirs(tmp_path_factory, shapes_dir) -> tuple[Path, Path]:
    """checkpoints/ with a tiny trained run (evaluated, so it has best/ and plots/), a copy of it
    trained too briefly to have best weights, and a broken copy; datasets/ with one dataset."""
    root = tmp_path_factory.mktemp("app")
    checkpoints, datasets = root / "checkpoints", root / "datasets"
    train(small_config(shapes_dir, epochs=1, epochs_decay=0, keep_epochs=-1), checkpoints / "tiny")
    shutil.copytree(checkpoints / "tiny", checkpoints / "no_best", ignore=shutil.ignore_patterns(ckpt.BEST_DIR))
    broken = checkpoints / "broken"
    shutil.copytree(checkpoints / "tiny", broken)
    data = (broken / "G_BA.safetensors").read_bytes()
    (broken / "G_BA.safetensors").write_bytes(data[: len(data) // 2])
    datasets.mkdir()
    shutil.copytree(shapes_dir, datasets / "shapes")
    return checkpoints, datasets


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> dict[str, Path]:
    """A good image of an odd size and the bad uploads: not an image, empty, truncated."""
    folder = tmp_path_factory.mktemp("uploads")
    good = folder / "photo.png"
    Image.new("RGB", SIZE, (200, 40, 30)).save(good)
    buffer = io.BytesIO()
    Image.effect_noise((64, 64), 60).convert("RGB").save(buffer, format="PNG")  # noise: a PNG of some size
    truncated = folder / "truncated.png"
    truncated.write_bytes(buffer.getvalue()[: len(buffer.getvalue()) // 2])
    notes = folder / "notes.png"
    notes.write_text("this is text, not a picture")
    empty = folder / "empty.png"
    empty.write_bytes(b"")
    return {"good": good, "truncated": truncated, "not_image": notes, "empty": empty}


@pytest.fixture(scope="module")
def server(app_dirs, tmp_path_factory) -> str:
    checkpoints, datasets = app_dirs
    log = tmp_path_factory.mktemp("server") / "app.log"
    with running_app(checkpoints, datasets, log, "--max-upload-mb", "1", "--concurrency", "2") as url:
        yield url


@pytest.fixture
def client(server):
    return gradio_client.Client(server, verbose=False)


def _translate(client, files, direction="AtoB", cycle=False, run="tiny", weights="latest"):
    return client.predict(run, weights, [handle_file(str(f)) for f in files], direction, cycle, False,
                          api_name="/translate")


# ------------------------------------------------------------------------------- the real server

@pytest.mark.parametrize("direction", ["AtoB", "BtoA"])
def test_server_translates_each_way_at_the_input_size(client, images, direction):
    gallery, downloads, status = _translate(client, [images["good"]], direction)
    assert [Path(p).name for p in downloads] == [f"photo_{direction}.png"]
    with Image.open(downloads[0]) as out:
        assert out.size == SIZE
    assert len(gallery) == 2 and "input" in gallery[0]["caption"]  # the input, then its result beside it
    assert "Translated 1 of 1" in status


def test_server_both_ways_with_cycle_gives_every_png_and_a_zip(client, images):
    _, downloads, _ = _translate(client, [images["good"]], "both", cycle=True)
    pngs = sorted(Path(p).name for p in downloads if p.endswith(".png"))
    assert pngs == ["photo_AtoB.png", "photo_AtoB_cycle.png", "photo_BtoA.png", "photo_BtoA_cycle.png"]
    archive = next(p for p in downloads if p.endswith(".zip"))
    with zipfile.ZipFile(archive) as z:
        assert sorted(z.namelist()) == pngs


@pytest.mark.parametrize("kind, message", [("not_image", "is not an image"), ("empty", "is empty (0 bytes)"),
                                           ("truncated", "truncated or corrupt")])
def test_server_bad_upload_returns_the_apps_error_and_keeps_serving(client, images, kind, message):
    with pytest.raises(AppError, match=re.escape(message)):
        _translate(client, [images[kind]])
    _, downloads, _ = _translate(client, [images["good"]])  # still serving
    assert len(downloads) == 1


def test_server_one_bad_file_in_a_batch_does_not_stop_the_others(client, images):
    _, downloads, status = _translate(client, [images["good"], images["not_image"]])
    assert len(downloads) == 1
    assert "Translated 1 of 2" in status and "notes.png is not an image" in status


def test_server_refuses_an_upload_over_the_size_limit(server, client, images):
    too_big = io.BytesIO(b"\x89PNG" + bytes(int(1.5 * 2**20)))
    response = httpx.post(server + "gradio_api/upload", files={"files": ("big.png", too_big, "image/png")}, timeout=60)
    assert response.status_code == 413
    _, downloads, _ = _translate(client, [images["good"]])  # still serving
    assert len(downloads) == 1


@pytest.mark.parametrize("name", ["../tiny", "/etc", ".hidden", "tiny/../../x"])
def test_server_refuses_runs_outside_the_checkpoints_folder(client, images, name):
    with pytest.raises(AppError, match="refused"):
        _translate(client, [images["good"]], run=name)


def test_server_lists_a_broken_run_as_unusable_with_the_reason(client, images):
    _, _, _, translate_choices, _, runs_choices, *_ = client.predict("tiny", "", "", api_name="/poll")
    usable = [value for _, value in translate_choices["choices"]]
    labels = {value: label for label, value in runs_choices["choices"]}
    assert usable == ["no_best", "tiny"]
    assert "unusable" in labels["broken"] and "G_BA.safetensors is not a readable safetensors file" in labels["broken"]
    assert re.search(r"^tiny \| shapes/trainA <-> shapes/trainB \| 1/1 epochs \| best: val_swd [0-9.e+]+ \(epoch 1\)$",
                     labels["tiny"])
    with pytest.raises(AppError, match="cannot be used"):
        _translate(client, [images["good"]], run="broken")


def test_server_best_weights_missing_is_a_clear_error(client, images):
    with pytest.raises(AppError, match="no best weights yet"):
        _translate(client, [images["good"]], run="no_best", weights="best")
    _, downloads, _ = _translate(client, [images["good"]], run="tiny", weights="best")
    assert len(downloads) == 1


def test_server_translates_with_a_kept_epoch_and_names_a_missing_one(client, images, app_dirs):
    from cyclegan.app.translate import weights_choices

    assert weights_choices(app_dirs[0] / "tiny", has_best=True) == ["latest", "best", "epoch 1"]
    assert weights_choices(app_dirs[0] / "no_best", has_best=False) == ["latest", "epoch 1"]
    _, downloads, status = _translate(client, [images["good"]], run="tiny", weights="epoch 1")
    assert len(downloads) == 1 and "epoch 1 weights" in status
    with pytest.raises(AppError, match="keeps no generators of epoch 9"):
        _translate(client, [images["good"]], run="tiny", weights="epoch 9")
    with pytest.raises(AppError, match="weights must be latest, best or 'epoch K'"):
        _translate(client, [images["good"]], run="tiny", weights="newest")


def test_server_runs_tab_shows_config_curves_and_sample_grids(client):
    info, config, losses, metrics, grids = client.predict("tiny", api_name="/show_run")
    assert "1 of 1 epochs" in info
    assert json.loads(config)["model"]["ngf"] == 8
    assert losses["columns"] == ["step", "value", "series"]
    assert {"G", "cycle", "D_A", "D_B"} <= {series for _, _, series in losses["data"]}
    assert metrics["columns"] == ["epoch", "value", "series"]  # one scale: the SWDs and their baselines
    assert {series for _, _, series in metrics["data"]} == {"swd_AtoB", "swd_identity_AtoB", "swd_BtoA",
                                                           "swd_identity_BtoA", "swd"}
    captions = [picture["caption"] for picture in grids]
    assert captions[0].startswith("epoch 1 (chosen: best/")  # the sample grid first, the chosen one marked,
    assert "the best of 1 evaluation(s)" in captions[0]  # with why it was chosen; then the curves
    assert {"losses", "lr", "heldout"} <= set(captions[1:])


def test_server_twenty_concurrent_requests_from_several_threads_all_succeed(server, images):
    def user(requests: int) -> list[tuple[int, int]]:
        own = gradio_client.Client(server, verbose=False)  # one client per thread: several users
        sizes = []
        for i in range(requests):
            _, downloads, _ = _translate(own, [images["good"]], ("AtoB", "BtoA")[i % 2])
            with Image.open(downloads[0]) as out:
                sizes.append(out.size)
        return sizes

    with ThreadPoolExecutor(max_workers=5) as pool:
        results = [size for sizes in pool.map(user, [4] * 5) for size in sizes]
    assert results == [SIZE] * 20


# ------------------------------------------------------------------------------- pure logic

def test_safe_child_refuses_names_that_leave_the_folder(tmp_path):
    root = tmp_path / "checkpoints"
    (root / "good").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (root / "link_out").symlink_to(outside)
    assert safe_child(root, "good") == (root / "good").resolve()
    for name in ["..", "../secret", "/etc", "a/b", ".hidden", "", "link_out", "x\\..\\y"]:
        with pytest.raises(PathRefused):
            safe_child(root, name)


def test_new_names_are_plain(tmp_path):
    assert check_new_name(" my_run-2.a ") == "my_run-2.a"
    for name in ["", ".run", "a/b", "..", "x" * 65, "sp ace"]:
        with pytest.raises(PathRefused):
            check_new_name(name)


def test_catalog_describes_good_and_broken_runs(app_dirs, tmp_path):
    source = app_dirs[0] / "tiny"
    root = tmp_path / "checkpoints"
    shutil.copytree(source, root / "good")
    shutil.copytree(source, root / "one_way")
    (root / "one_way" / "G_BA.safetensors").unlink()
    shutil.copytree(source, root / "no_weights")
    for name in ckpt.GENERATORS:
        (root / "no_weights" / f"{name}.safetensors").unlink()
    shutil.copytree(source, root / "bad_config")
    (root / "bad_config" / "config.json").write_text("{ not json")
    shutil.copytree(source, root / "wrong_shape")
    config = json.loads((source / "config.json").read_text())
    config["model"]["ngf"] = 16
    (root / "wrong_shape" / "config.json").write_text(json.dumps(config))
    (root / "empty").mkdir()
    (root / ".hidden").mkdir()

    runs = {r.name: r for r in RunCatalog(root).runs()}
    assert set(runs) == {"good", "one_way", "no_weights", "bad_config", "wrong_shape", "empty"}
    assert runs["good"].usable and runs["good"].directions == ("AtoB", "BtoA")
    assert runs["good"].epochs_done == 1 and runs["good"].epochs_total == 1
    assert re.fullmatch(r"val_swd [0-9.e+]+ \(epoch 1\)", runs["good"].best) and runs["good"].has_best
    assert runs["one_way"].usable and runs["one_way"].directions == ("AtoB",) and "AtoB only" in runs["one_way"].label
    assert not runs["no_weights"].usable and "no generator weights" in runs["no_weights"].label
    assert not runs["bad_config"].usable and "not readable JSON" in runs["bad_config"].reason
    assert not runs["wrong_shape"].usable and "does not match config.json" in runs["wrong_shape"].reason
    assert not runs["empty"].usable and runs["empty"].reason == "config.json is missing"


def test_catalog_follows_symlinks_inside_the_folder_and_says_which_it_skipped(app_dirs, tmp_path):
    root = tmp_path / "checkpoints"
    shutil.copytree(app_dirs[0] / "tiny", root / "good")
    (root / "latest").symlink_to(root / "good")  # inside the folder: followed
    outside = tmp_path / "elsewhere"
    shutil.copytree(app_dirs[0] / "tiny", outside)
    (root / "link_out").symlink_to(outside)  # outside: skipped, and said so
    (root / "broken").symlink_to(tmp_path / "gone")
    (root / ".building").mkdir()  # hidden: the tool's own temporary folders, neither listed nor reported
    catalog = RunCatalog(root)
    assert {r.name for r in catalog.runs()} == {"good", "latest"}
    skipped = dict(catalog.skipped())
    assert set(skipped) == {"link_out", "broken"}
    assert "outside" in skipped["link_out"] and "--checkpoints" in skipped["link_out"]
    assert "not a folder" in skipped["broken"]
    notice = run_list_updates(catalog).notice
    assert notice["visible"] and "Skipped link_out" in notice["value"] and "No trained runs" not in notice["value"]


def test_a_page_load_lists_the_runs_on_disk_now(app_dirs, tmp_path):
    """A run trained while the server is up appears when the page is (re)loaded, not only after
    *Refresh runs*: the built app refreshes its run lists on every page load."""
    from cyclegan.app.server import AppState, build_ui
    from cyclegan.app.settings import AppSettings

    root, datasets = tmp_path / "checkpoints", tmp_path / "datasets"
    root.mkdir()
    datasets.mkdir()
    demo = build_ui(AppState.from_settings(AppSettings(checkpoints=root, datasets=datasets)))
    on_load = [f for f in demo.fns.values() if f.name == "refresh" and (0, "load") in f.targets]
    assert len(on_load) == 1
    shutil.copytree(app_dirs[0] / "tiny", root / "trained_later")
    updates = list(on_load[0].fn(None).values())
    run, notice = updates[0], updates[1]
    assert run["value"] == "trained_later" and run["visible"] and not notice["visible"]


def test_catalog_reinspects_a_run_only_when_its_files_change(app_dirs, tmp_path):
    root = tmp_path / "checkpoints"
    shutil.copytree(app_dirs[0] / "tiny", root / "run")
    catalog = RunCatalog(root)
    first = catalog.runs()[0]
    assert catalog.runs()[0] is first
    (root / "run" / "G_AB.safetensors").write_bytes(b"garbage")
    again = catalog.runs()[0]
    assert again is not first and not again.usable and "G_AB.safetensors" in again.reason


def test_catalog_shows_the_best_epoch_and_warnings_when_the_run_recorded_them(app_dirs, tmp_path):
    root = tmp_path / "checkpoints"
    run = root / "run"
    shutil.copytree(app_dirs[0] / "no_best", run)
    (run / ckpt.WARNINGS_FILE).unlink(missing_ok=True)
    info = RunCatalog(root).get("run")
    assert info.best == "not known" and not info.has_best and info.warnings == []  # nothing recorded: degrade
    translator = Translator.from_run(run, device="cpu")
    ckpt.save_best(run, translator.generators,
                   {"epoch": 3, "step": 6, "metric": "val_swd", "value": 0.12345})
    ckpt.RunWarnings(run).add("collapse", 4, 8, "mode collapse suspected")
    info = RunCatalog(root).runs()[0]
    assert info.has_best and info.best == "val_swd 0.1235 (epoch 3)" and "best: val_swd 0.1235 (epoch 3)" in info.label
    assert info.warnings == ["mode collapse suspected"]
    assert "mode collapse suspected" in describe_run(info) and "Best weights: available" in describe_run(info)
    (run / ckpt.BEST_DIR / ckpt.BEST_META).write_text("{ cut short")
    assert RunCatalog(root).get("run").best == "not known"  # a broken meta.json is not an error either


def test_domain_names_are_short():
    assert domain_name("datasets/shapes/trainA") == "shapes/trainA"
    assert domain_name("/data/horses") == "horses"
    assert domain_name("") == "not known"


def test_model_cache_evicts_the_least_recently_used_and_loads_once(tmp_path):
    runs = []
    for name in "abc":
        (tmp_path / name).mkdir()
        runs.append(tmp_path / name)
    loaded: list[str] = []

    def loader(path: Path, weights: str) -> str:
        time.sleep(0.05)  # long enough for concurrent requests to overlap
        loaded.append(path.name)
        return f"model {path.name}"

    cache = ModelCache(2, loader)
    with ThreadPoolExecutor(8) as pool:
        assert set(pool.map(lambda _: cache.get(runs[0], "latest"), range(8))) == {"model a"}
    assert loaded == ["a"]
    cache.get(runs[1], "latest")
    cache.get(runs[0], "latest")  # a is now the most recently used
    cache.get(runs[2], "latest")  # evicts b
    assert [Path(k[0]).name for k in cache.keys()] == ["a", "c"]
    cache.get(runs[1], "latest")
    assert loaded == ["a", "b", "c", "b"]
    with pytest.raises(ConfigError):
        ModelCache(0, loader)


def test_model_cache_reloads_when_the_weights_change(app_dirs, tmp_path):
    run = tmp_path / "run"
    shutil.copytree(app_dirs[0] / "tiny", run)
    cache = ModelCache(2, lambda path, weights: Translator.from_run(path, device="cpu", best=weights == "best"))
    first = cache.get(run, "latest")
    assert cache.get(run, "latest") is first
    time.sleep(0.01)
    shutil.copyfile(run / "G_AB.safetensors", run / "G_AB.tmp")
    (run / "G_AB.tmp").replace(run / "G_AB.safetensors")  # a newer checkpoint landed
    assert cache.get(run, "latest") is not first and cache.loads == 2


def test_open_upload_limits_and_resizing(tmp_path, images):
    limits = UploadLimits(max_bytes=2**20, max_pixels=200 * 200, max_side=32)
    image, note = open_upload(images["good"], limits)
    assert image.size == (32, 24) and "resized from 50x37 to 32x24 (max side 32 px)" in note
    image, note = open_upload(images["good"], limits, resize=False)
    assert image.size == SIZE and "full size" in note
    big = tmp_path / "wide.png"
    Image.new("RGB", (400, 200)).save(big)
    with pytest.raises(DataError, match="wide.png is 400x200 .* over the 0 megapixel limit"):
        open_upload(big, limits)
    with pytest.raises(DataError, match="over the 0 MB upload limit"):
        open_upload(big, UploadLimits(max_bytes=10, max_pixels=10**8, max_side=32))
    rgba = tmp_path / "alpha.png"
    Image.new("RGBA", (20, 10), (1, 2, 3, 100)).save(rgba)
    assert open_upload(rgba, limits)[0].mode == "RGBA"
    for kind, message in [("not_image", "is not an image"), ("empty", "is empty"), ("truncated", "truncated")]:
        with pytest.raises(DataError, match=message):
            open_upload(images[kind], limits)


def test_translate_uploads_reports_bad_files_and_names_outputs_apart(app_dirs, images, tmp_path):
    translator = Translator.from_run(app_dirs[0] / "tiny", device="cpu")
    twin = tmp_path / "twin"
    twin.mkdir()
    shutil.copyfile(images["good"], twin / "photo.png")  # the same file name twice in one upload
    limits = UploadLimits(2**20, 10**6, 1024)
    out = tmp_path / "out"
    out.mkdir()
    result = translate_uploads(translator, [images["good"], images["empty"], twin / "photo.png"], ["BtoA"], True,
                               limits, out)
    assert len(result.failures) == 1 and "empty.png is empty" in result.failures[0]
    assert [Path(p).name for p in result.downloads] == ["photo_BtoA.png", "photo_BtoA_cycle.png", "photo_2_BtoA.png",
                                                        "photo_2_BtoA_cycle.png", "cyclegan_results.zip"]
    assert result.columns == 3 and len(result.gallery) == 6


def test_no_runs_shows_how_to_make_one(tmp_path):
    dropdown, notice, runs = run_list_updates(RunCatalog(tmp_path / "none"))
    assert dropdown["visible"] is False and dropdown["choices"] == []
    assert notice["visible"] is True and "make demo" in notice["value"] and "Train" in notice["value"]
    assert runs["choices"] == []


def test_uploaded_image_sets_become_a_dataset(tmp_path, images):
    root = tmp_path / "datasets"
    saved = save_uploaded_dataset(root, "mine", [images["good"], images["not_image"]], [images["good"]])
    assert saved.kept == {"trainA": 1, "trainB": 1} and "notes.png" in saved.skipped[0]
    assert list_datasets(root) == ["mine"]
    with pytest.raises(DataError, match="already exists"):
        save_uploaded_dataset(root, "mine", [images["good"]], [images["good"]])
    with pytest.raises(PathRefused):
        save_uploaded_dataset(root, "../out", [images["good"]], [images["good"]])
    with pytest.raises(DataError, match="no readable image for trainB"):
        save_uploaded_dataset(root, "half", [images["good"]], [images["empty"]])
    assert sorted(p.name for p in root.iterdir()) == ["mine"]  # nothing half-saved left behind


TQDM_LOG = ("INFO: Domain A: 8 images\nepoch 1/2:   0%|          | 0/4 [00:00<?, ?it/s]\repoch 1/2:  25%|##5       | "
            "1/4 [00:00<00:01,  1.62it/s]\repoch 1/2: 100%|##########| 4/4 [00:01<00:00,  3.04it/s, G=21.503]\r     \r"
            "INFO: epoch 1/2 done (step 4)\nepoch 2/2:  50%|#####     | 2/4 [00:07<00:08,  4.31s/it, G=20.193]")


def test_progress_is_read_from_the_trainers_progress_bar():
    p = parse_progress(TQDM_LOG)
    assert (p.epoch, p.epochs, p.batch, p.batches, p.rate) == (2, 2, 2, 4, "4.31 s/it")
    assert parse_progress("epoch 1/3:   0%|    | 0/4 [00:00<?, ?it/s]").rate is None
    assert parse_progress("no bar yet").epoch is None
    assert log_lines(TQDM_LOG).splitlines() == [  # each redraw collapsed to what a terminal would show
        "INFO: Domain A: 8 images", "INFO: epoch 1/2 done (step 4)",
        "epoch 2/2:  50%|#####     | 2/4 [00:07<00:08,  4.31s/it, G=20.193]"]
    assert last_error("INFO: x\nerror: dataset is empty; add images\n") == "dataset is empty; add images"


def test_the_train_tab_shows_the_trainers_time_estimate():
    from cyclegan.app.jobs import JobStatus
    from cyclegan.app.train import job_text

    running = JobStatus("running", "Training run 'x'.", run="x", seconds_spent=125.0, seconds_left=7200.0)
    assert "Time: 2 min 5 s spent; about 2 h left (an estimate)." in job_text(running)
    assert "Time:" not in job_text(JobStatus("running", "Training run 'x'.", run="x"))  # nothing measured yet


def test_the_train_tab_can_start_a_cut_run_and_names_a_bad_model(tmp_path):
    from cyclegan.app.jobs import train_command
    from cyclegan.cli import build_parser

    command = train_command("python", tmp_path / "d", tmp_path / "r", "tiny", 2, 1, "cpu", "fastcut")
    parsed = build_parser().parse_args(command[3:])  # the command line the job runs parses as `train`
    assert parsed.model == "fastcut" and parsed.preset == "tiny"
    (tmp_path / "datasets" / "shapes" / "trainA").mkdir(parents=True)
    (tmp_path / "datasets" / "shapes" / "trainB").mkdir()
    jobs = TrainingJobs(tmp_path / "checkpoints", tmp_path / "datasets", device="cpu", python=sys.executable)
    with pytest.raises(ConfigError, match="unknown model 'gan'; choose one of: cyclegan, cut, fastcut"):
        jobs.start("shapes", "run", "tiny", 1, 1, model="gan")
    with pytest.raises(ConfigError, match="one way trains CUT or FastCUT A->B only"):
        jobs.start("shapes", "run", "tiny", 1, 1, model="cyclegan", one_way=True)
    assert not (tmp_path / "checkpoints" / "run").exists()  # refused before anything was made


def test_the_train_tab_starts_a_one_way_run_as_the_cli_would(tmp_path):
    from cyclegan.app.jobs import train_command
    from cyclegan.cli import build_parser

    command = train_command("python", tmp_path / "d", tmp_path / "r", "tiny", 2, 1, "cpu", "cut", one_way=True)
    parsed = build_parser().parse_args(command[3:])
    assert parsed.model == "cut" and parsed.one_way is True
    both = build_parser().parse_args(train_command("python", tmp_path / "d", tmp_path / "r", "tiny", 2, 1, "cpu",
                                                   "cut")[3:])
    assert "one_way" not in vars(both)  # left to the preset: both ways


def test_training_job_stops_resumably_and_resumes_to_the_end(tmp_path):
    datasets, checkpoints = tmp_path / "datasets", tmp_path / "checkpoints"
    make_dataset(datasets / "shapes", n_train=24, n_test=2, size=32)
    jobs = TrainingJobs(checkpoints, datasets, device="cpu", python=sys.executable)
    with pytest.raises(PathRefused):
        jobs.start("../shapes", "run", "tiny", 1, 1)
    with pytest.raises(ConfigError, match="unknown preset"):
        jobs.start("shapes", "run", "huge", 1, 1)
    status = jobs.start("shapes", "run", "tiny", 1, 1)  # 24 images, batch 4: 6 steps in each of 2 epochs
    assert status.active
    try:
        with pytest.raises(JobBusy, match="one job at a time"):
            jobs.start("shapes", "other", "tiny", 1, 1)
        deadline = time.monotonic() + 120
        while jobs.status().progress.epoch is None and jobs.status().active and time.monotonic() < deadline:
            time.sleep(0.05)
        assert jobs.stop().state == "stopping"
        status = jobs.wait(120)
    finally:
        jobs.shutdown()
    assert status.state == "stopped", status.log
    assert (checkpoints / "run" / ckpt.STATE_FILE).exists() and "press Resume" in status.message
    with pytest.raises(CheckpointError, match="no resumable checkpoint"):
        jobs.resume("missing")
    jobs.resume("run")
    try:
        status = jobs.wait(300)
    finally:
        jobs.shutdown()
    assert status.state == "finished", status.log
    assert status.epochs_done == 2 and status.sample == checkpoints / "run" / "samples" / "epoch_002.png"
    with pytest.raises(CheckpointError, match="already trained all its 2 epochs"):
        jobs.resume("run")


def test_app_binds_localhost_without_share_by_default():
    from cyclegan.cli import build_parser
    from cyclegan.app.settings import settings_from_args

    settings = settings_from_args(build_parser().parse_args(["app"]))
    assert settings.host == "127.0.0.1" and settings.share is False and settings.port == 7860
    with pytest.raises(ConfigError, match="--max-models must be at least 1"):
        settings_from_args(build_parser().parse_args(["app", "--max-models", "0"]))
