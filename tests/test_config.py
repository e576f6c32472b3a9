import json

import pytest

from cyclegan.config import Config, preset
from cyclegan.errors import ConfigError


def test_paper_preset_is_the_published_setting():
    c = preset("paper")
    m, t = c.model, c.train
    assert (m.ngf, m.ndf, m.n_blocks, m.n_layers_d, m.upsample) == (64, 64, 9, 3, "transpose")
    assert (t.load_size, t.crop_size, t.batch_size, t.epochs, t.epochs_decay) == (286, 256, 1, 100, 100)
    assert (t.lr, t.beta1, t.beta2, t.gan_loss) == (2e-4, 0.5, 0.999, "lsgan")
    assert (t.lambda_cycle, t.lambda_identity, t.pool_size) == (10, 0.5, 50)
    assert t.flip


@pytest.mark.parametrize("name", ["paper", "fast", "tiny"])
def test_presets_round_trip_through_json(tmp_path, name):
    c = preset(name)
    c.save(tmp_path / "config.json")
    assert Config.load(tmp_path / "config.json") == c


def test_unknown_preset_and_field_are_named():
    with pytest.raises(ConfigError, match="unknown preset 'huge'"):
        preset("huge")
    with pytest.raises(ConfigError, match="colour"):
        Config.from_dict({"model": {"colour": 1}})


@pytest.mark.parametrize("field,value,message", [
    ("crop_size", 30, "multiple of 4"),
    ("load_size", 16, "load_size"),
    ("gan_loss", "wgan", "gan_loss"),
    ("device", "tpu", "device"),
    ("batch_size", 0, "batch_size"),
])
def test_bad_values_are_refused(tmp_path, field, value, message):
    data = preset("tiny").to_dict()
    data["train"][field] = value
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        Config.load(tmp_path / "config.json")


def test_unreadable_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        Config.load(tmp_path / "config.json")
