"""The web app in a real browser: Debian's Chromium driven by Playwright against ``python app.py``.

Outside CI the module skips when Chromium is missing; in CI (CI=true) it never skips: `.ci/run`
installs Chromium, and a missing one fails here loudly.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest
from PIL import Image

from cyclegan.data.synthetic import make_dataset
from cyclegan.train.loop import train

from appserver import running_app
from conftest import small_config

CHROMIUM = Path("/usr/bin/chromium")
IN_CI = os.environ.get("CI", "").lower() == "true"
if not CHROMIUM.exists() and not IN_CI:
    pytest.skip("Debian's chromium is not installed (apt-get install -y chromium); CI always runs this",
                allow_module_level=True)

if IN_CI:
    from playwright import sync_api  # in CI a missing Playwright is a failure, not a skip
else:
    sync_api = pytest.importorskip("playwright.sync_api")

CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync"]
TIMEOUT_MS = 60_000
TRAIN_TIMEOUT_MS = 240_000
UPLOAD_LIMIT_MB = 1


@pytest.fixture(scope="module")
def app_url(tmp_path_factory, shapes_dir):
    """The app serving a tiny trained run and a small dataset for the Train tab."""
    root = tmp_path_factory.mktemp("browser_app")
    checkpoints, datasets = root / "checkpoints", root / "datasets"
    train(small_config(shapes_dir, epochs=1, epochs_decay=0), checkpoints / "tiny")
    make_dataset(datasets / "mini", n_train=8, n_test=2, size=32)  # tiny preset, batch 4: 2 steps an epoch
    with running_app(checkpoints, datasets, root / "app.log", "--max-upload-mb", str(UPLOAD_LIMIT_MB)) as url:
        yield url


@pytest.fixture(scope="module")
def browser_context(tmp_path_factory):
    assert CHROMIUM.exists(), f"{CHROMIUM} is missing: install it with `apt-get install -y chromium`"
    profile = tmp_path_factory.mktemp("chromium_profile")  # a fresh user-data-dir
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(profile), executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True,
            viewport={"width": 1280, "height": 900})
        try:
            yield context
        finally:
            context.close()
    shutil.rmtree(profile, ignore_errors=True)


@pytest.fixture
def page(browser_context, app_url):
    page = browser_context.new_page()
    page.set_default_timeout(TIMEOUT_MS)
    page.goto(app_url)
    page.wait_for_selector("#translate-button")
    yield page
    page.close()


def wait_for_upload(page, name: str) -> None:
    """Wait until ``name`` is listed as uploaded.

    Gradio lists a finished upload as a row labelled with the file name, while its text is the stem and the
    extension in two spans ("red .png"), so matching by text would only catch the transient progress message
    and race with a fast upload.
    """
    page.locator("#uploads").get_by_label(name, exact=True).wait_for()


def upload_a_good_image_and_translate(page, tmp_path: Path, expected_status: str) -> None:
    """After a refused upload: a good image still translates, so the app kept serving."""
    good = tmp_path / "good.png"
    Image.new("RGB", (32, 32), (20, 30, 200)).save(good)
    page.locator("#uploads input[type=file]").set_input_files(str(good))
    wait_for_upload(page, "good.png")
    page.click("#translate-button")
    page.wait_for_function(f"document.querySelector('#translate-status').innerText.includes({expected_status!r})")


def test_translate_an_upload_in_the_browser(page, tmp_path):
    source = tmp_path / "red.png"
    Image.new("RGB", (48, 40), (200, 30, 30)).save(source)
    page.locator("#uploads input[type=file]").set_input_files(str(source))
    wait_for_upload(page, "red.png")
    page.click("#translate-button")
    page.wait_for_function("document.querySelectorAll('#results img').length >= 2")
    output = page.locator("#results img").nth(1)
    output.wait_for(state="visible")
    # decoded, not a broken link: waited for, since a visible <img> may still be loading its file
    page.wait_for_function("() => { const img = document.querySelectorAll('#results img')[1];"
                           " return img.complete && img.naturalWidth > 0; }")
    assert "Translated 1 of 1" in page.locator("#translate-status").inner_text()
    assert "red_AtoB" in page.locator("#downloads").inner_text()  # name and extension are drawn apart
    page.screenshot(path=str(tmp_path / "translate.png"), full_page=True)
    assert (tmp_path / "translate.png").stat().st_size > 0


def test_a_bad_upload_shows_the_message_and_the_app_keeps_serving(page, tmp_path):
    bad = tmp_path / "notes.png"
    bad.write_text("not a picture")
    page.locator("#uploads input[type=file]").set_input_files(str(bad))
    wait_for_upload(page, "notes.png")
    page.click("#translate-button")
    page.get_by_text("notes.png is not an image").first.wait_for()
    page.screenshot(path=str(tmp_path / "bad_upload.png"), full_page=True)
    upload_a_good_image_and_translate(page, tmp_path, "Translated 1 of 2")  # it joins notes.png in the list
    assert "not translated: notes.png is not an image" in page.locator("#translate-status").inner_text()


def test_an_upload_over_the_size_limit_is_refused_by_name_and_the_app_keeps_serving(page, tmp_path):
    big = tmp_path / "big.png"
    big.write_bytes(b"\x89PNG" + bytes(int(1.5 * UPLOAD_LIMIT_MB * 2**20)))
    page.locator("#uploads input[type=file]").set_input_files(str(big))
    page.get_by_text(f'exceed the maximum allowed size of {UPLOAD_LIMIT_MB:.1f} Mb: "big.png"').first.wait_for()
    assert page.locator("#uploads").get_by_label("big.png", exact=True).count() == 0  # never uploaded
    page.screenshot(path=str(tmp_path / "too_big.png"), full_page=True)
    upload_a_good_image_and_translate(page, tmp_path, "Translated 1 of 1")


def test_train_tab_trains_a_tiny_run_that_appears_in_the_translate_dropdown(page, tmp_path):
    page.get_by_role("tab", name="Train").click()
    assert page.locator("#dataset-select input").input_value() == "mini"
    page.locator("#run-name input, #run-name textarea").first.fill("from_browser")
    page.locator("#epochs input").first.fill("1")
    page.locator("#epochs-decay input").first.fill("0")
    page.click("#start-training")
    progress = page.locator("#train-progress")
    page.wait_for_function("document.querySelector('#train-progress').innerText.includes('Progress: epoch')",
                           timeout=TRAIN_TIMEOUT_MS)
    page.wait_for_function("document.querySelector('#train-progress').innerText.includes('finished')",
                           timeout=TRAIN_TIMEOUT_MS)
    assert "1 epoch(s) complete" in progress.inner_text()
    page.screenshot(path=str(tmp_path / "train.png"), full_page=True)

    page.get_by_role("tab", name="Translate").click()
    page.locator("#run-select input").click()
    option = page.get_by_role("option", name="from_browser | mini/trainA <-> mini/trainB | 1/1 epochs")
    option.wait_for()
    option.click()
    page.wait_for_function("document.querySelector('#run-info').innerText.includes('from_browser')")
