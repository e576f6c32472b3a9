import json

import pytest

from cyclegan import runfolder
from cyclegan.config import Config, ModelConfig, preset
from cyclegan.errors import ConfigError


def test_paper_preset_is_the_published_setting():
    c = preset("paper")
    m, t = c.model, c.train
    assert (m.ngf, m.ndf, m.n_blocks, m.n_layers_d, m.upsample) == (64, 64, 9, 3, "transpose")
    assert (t.load_size, t.crop_size, t.batch_size, t.epochs, t.epochs_decay) == (286, 256, 1, 100, 100)
    assert (t.lr, t.beta1, t.beta2, t.gan_loss) == (2e-4, 0.5, 0.999, "lsgan")
    assert (t.lambda_cycle, t.lambda_identity, t.pool_size) == (10, 0.5, 50)
    assert t.flip


@pytest.mark.parametrize("name", ["paper", "quality", "fast", "tiny"])
def test_presets_round_trip_through_json(tmp_path, name):
    c = preset(name)
    runfolder.write_config(tmp_path, c)
    assert runfolder.load_config(tmp_path) == c


def test_quality_is_the_paper_recipe_with_the_colour_transform_resize_upsampling_and_no_identity_loss():
    paper, quality = preset("paper"), preset("quality")
    assert (quality.model.colour, quality.model.upsample, quality.train.lambda_identity) == (True, "resize", 0.0)
    quality.model.colour, quality.model.upsample = paper.model.colour, paper.model.upsample
    quality.train.lambda_identity = paper.train.lambda_identity
    assert quality.model == paper.model and quality.train == paper.train


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
    ("preprocess", "scale_width", "preprocess must be one of"),
    ("amp", "bf16", "amp must be one of"),
])
def test_bad_values_are_refused(tmp_path, field, value, message):
    data = preset("tiny").to_dict()
    data["train"][field] = value
    (tmp_path / "config.json").write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=message):
        runfolder.load_config(tmp_path)


def test_unreadable_config_is_a_clear_error(tmp_path):
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ConfigError, match="not readable JSON"):
        runfolder.load_config(tmp_path)


def test_a_config_json_from_before_per_domain_channels_still_loads():
    data = preset("tiny").to_dict()
    del data["model"]["channels_a"], data["model"]["channels_b"], data["model"]["generator"]
    data["model"]["channels"] = 1
    config = Config.from_dict(data | {"train": data["train"] | {"lambda_identity": 0.0}})
    assert (config.model.channels_a, config.model.channels_b, config.model.generator) == (1, 1, "resnet")


def test_domains_of_different_channels_need_no_identity_loss_and_a_known_generator():
    data = preset("tiny").to_dict()
    data["model"]["channels_a"] = 1
    with pytest.raises(ConfigError, match="lambda_identity must be 0 when the domains' channels differ"):
        Config.from_dict(data)
    data["train"]["lambda_identity"] = 0.0
    assert Config.from_dict(data).model == ModelConfig(**data["model"])
    data["model"]["generator"] = "unet"
    with pytest.raises(ConfigError, match="generator must be one of"):
        Config.from_dict(data)


def test_a_config_json_from_before_preprocess_and_tensorboard_loads_with_the_old_behaviour(tmp_path):
    data = preset("tiny").to_dict()
    del data["train"]["preprocess"], data["train"]["tensorboard"]
    config = Config.from_dict(data)
    assert (config.train.preprocess, config.train.tensorboard) == ("resize_and_crop", False)
    config.train.preprocess, config.train.tensorboard = "scale_shortside_and_crop", True
    runfolder.write_config(tmp_path, config)
    assert runfolder.load_config(tmp_path) == config


def test_tensorboard_can_be_turned_on_when_resuming_but_preprocess_cannot_change():
    from cyclegan.train.loop import merge_resume_config

    assert merge_resume_config(preset("tiny"), {"tensorboard": True}).train.tensorboard
    with pytest.raises(ConfigError, match="preprocess"):
        merge_resume_config(preset("tiny"), {"preprocess": "crop"})


@pytest.mark.parametrize("saved,read", [(True, "auto"), (False, "off")])
def test_a_config_json_from_before_tri_state_amp_still_loads(tmp_path, saved, read):
    """amp was true/false, and true acted on CUDA only: what ``auto`` does now."""
    data = preset("tiny").to_dict()
    data["train"]["amp"] = saved
    (tmp_path / "config.json").write_text(json.dumps(data))
    assert runfolder.load_config(tmp_path).train.amp == read


def test_only_the_gpu_preset_asks_for_bf16():
    assert preset("fast").train.amp == "auto"
    assert {preset(name).train.amp for name in ("paper", "quality", "tiny")} == {"off"}
