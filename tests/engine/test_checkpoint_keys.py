"""The LightningModule writes its checkpoints where ``ssdlite.models.load_checkpoint`` reads them."""

import torch

from ssdlite.engine.module import SSDLiteModule
from ssdlite.models import (
    CATEGORY_IDS_KEY,
    CLASS_NAMES_KEY,
    EMA_WEIGHTS_PREFIX,
    HYPER_PARAMETERS_KEY,
    MODEL_CONFIG_KEY,
    MODEL_WEIGHTS_PREFIX,
    STATE_DICT_KEY,
    load_checkpoint,
)


def test_a_saved_module_loads_with_its_ema_weights_and_classes(tmp_path):
    module = SSDLiteModule(num_classes=2, class_names=["cat", "dog"], category_ids=[17, 18], width_mult=0.35,
                           image_size=64)
    state = module.state_dict()
    assert all(key.startswith((MODEL_WEIGHTS_PREFIX, EMA_WEIGHTS_PREFIX)) for key in state)
    with torch.no_grad():
        for parameter in module.ema_model.module.parameters():
            parameter.add_(1.0)
    checkpoint = {STATE_DICT_KEY: module.state_dict(), HYPER_PARAMETERS_KEY: dict(module.hparams)}
    module.on_save_checkpoint(checkpoint)
    assert checkpoint[HYPER_PARAMETERS_KEY][MODEL_CONFIG_KEY] == module.model.config
    assert checkpoint[HYPER_PARAMETERS_KEY][CLASS_NAMES_KEY] == ["cat", "dog"]
    assert checkpoint[HYPER_PARAMETERS_KEY][CATEGORY_IDS_KEY] == [17, 18]
    torch.save(checkpoint, tmp_path / "module.ckpt")
    loaded, meta = load_checkpoint(tmp_path / "module.ckpt")
    assert meta["class_names"] == ["cat", "dog"] and meta["category_ids"] == [17, 18]
    for key, value in loaded.state_dict().items():
        assert torch.equal(value, module.ema_model.module.state_dict()[key]), key
