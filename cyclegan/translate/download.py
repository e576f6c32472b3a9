"""The published pretrained CycleGAN generators, one command each, as ready run folders.

The names are those of the official ``scripts/download_cyclegan_model.sh``. Each file is one
generator (one direction); where the official code publishes both directions of one translation
(horse2zebra and zebra2horse, ...), ``download_model`` fetches both and imports them into one run
(the named one as A→B, its partner as B→A), through ``import_official`` like ``cyclegan
import-official``, so ``translate``, ``export`` and the app use it at once. The run is built in a
temporary folder and renamed into place: an interrupted or failed download never leaves half a run.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..data.download import DOWNLOADS, Entry, base_url, discard_download, fetch, lookup, move_into_place
from ..data.folders import check_replaceable
from ..errors import CheckpointError, CycleGANError
from .official import import_official

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModelEntry(Entry):
    partner: str | None = None  # the published generator of the other direction (imported as B→A)


def _pair(a: str, b: str, about_a: str, about_b: str) -> tuple[ModelEntry, ModelEntry]:
    return ModelEntry(a, about_a, partner=b), ModelEntry(b, about_b, partner=a)


MODEL_COMMAND = "download model"  # the command whose --overwrite may replace a run folder it made
MODELS = {e.name: e for e in (
    *_pair("apple2orange", "orange2apple", "apple -> orange", "orange -> apple"),
    *_pair("summer2winter_yosemite", "winter2summer_yosemite", "summer -> winter (Yosemite)",
           "winter -> summer (Yosemite)"),
    *_pair("horse2zebra", "zebra2horse", "horse -> zebra", "zebra -> horse"),
    *_pair("monet2photo", "style_monet", "Monet painting -> photo", "photo -> Monet painting"),
    ModelEntry("style_cezanne", "photo -> Cezanne painting"),
    ModelEntry("style_ukiyoe", "photo -> Ukiyo-e print"),
    ModelEntry("style_vangogh", "photo -> Van Gogh painting"),
    *_pair("sat2map", "map2sat", "aerial photo -> map", "map -> aerial photo"),
    *_pair("cityscapes_photo2label", "cityscapes_label2photo", "street photo -> label map (Cityscapes)",
           "label map -> street photo (Cityscapes)"),
    *_pair("facades_photo2label", "facades_label2photo", "facade photo -> labels", "facade labels -> photo"),
    ModelEntry("iphone2dslr_flower", "phone photo -> DSLR-style shallow depth of field (flowers)"),
)}


def model_url(name: str, base: str | None = None) -> str:
    return f"{base_url(base)}/pretrained_models/{name}.pth"


def download_model(name: str, out: str | Path | None = None, *, base: str | None = None,
                   from_file: str | Path | None = None, overwrite: bool = False, one_direction: bool = False,
                   progress: bool = True) -> Path:
    """Download the published generator ``name`` (and its partner, unless ``one_direction``) into the
    run folder ``out`` (default ``checkpoints/NAME``); returns ``out``.

    With ``from_file`` the generator comes from that ``.pth`` file instead, and the partner from the
    file of its official name beside it (``zebra2horse.pth``) when there is one.
    """
    entry = lookup(MODELS, name, "pretrained model")
    out = Path(out) if out is not None else Path("checkpoints") / name
    if out.exists() and not overwrite:
        raise CheckpointError(f"{out} exists; pass --overwrite to replace it")
    if out.exists():
        check_replaceable(out, MODEL_COMMAND)  # a trained run is never replaced by a download
    names = [name] + ([entry.partner] if entry.partner and not one_direction else [])
    downloaded: list[Path] = []
    if from_file is not None:
        given = Path(from_file)
        if not given.is_file():
            raise CheckpointError(f"{given} does not exist; pass the generator file, e.g. {name}.pth")
        files = [given]
        if len(names) == 2:
            partner = given.with_name(f"{entry.partner}.pth")
            if partner.is_file():
                files.append(partner)
            else:
                log.warning("%s is not beside %s: the run gets the AtoB direction only", partner.name, given)
    else:
        out.parent.mkdir(parents=True, exist_ok=True)
        flags = f" --out {out}" if out != Path("checkpoints") / name else ""
        hint = (f"download {' and '.join(n + '.pth' for n in names)} by other means, put them in one folder and "
                f"run: cyclegan download model {name} --from-file {name}.pth{flags}")
        for n in names:
            downloaded.append(fetch(model_url(n, base), out.parent / DOWNLOADS / f"{n}.pth", progress=progress,
                                    hint=hint))
        files = downloaded
    out.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{out.name}.", suffix=".tmp", dir=out.parent))
    try:
        run = work / out.name
        for path, direction in zip(files, ("AtoB", "BtoA")):
            import_official(path, run, direction)
        move_into_place(run, out, overwrite, MODEL_COMMAND)
    except CycleGANError:
        for path in downloaded:  # a file that does not load is fetched anew next time
            discard_download(path)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)
    for path in downloaded:
        discard_download(path)
    log.info("%s: %s", out, ", ".join(f"{d} from {p.name}" for p, d in zip(files, ("AtoB", "BtoA"))))
    return out
