"""A tiny, random-init speechbrain ECAPA-TDNN in the layout of
speechbrain/spkrec-ecapa-voxceleb (hyperparams.yaml + embedding_model.ckpt), for tests of
the local-directory loading path."""

from __future__ import annotations

from pathlib import Path

import torch

__all__ = ["HYPERPARAMS", "write_ecapa_dir"]

HYPERPARAMS = """
n_mels: 80
pretrained_path: {path}
compute_features: !new:speechbrain.lobes.features.Fbank
    n_mels: !ref <n_mels>
mean_var_norm: !new:speechbrain.processing.features.InputNormalization
    norm_type: sentence
    std_norm: False
embedding_model: !new:speechbrain.lobes.models.ECAPA_TDNN.ECAPA_TDNN
    input_size: !ref <n_mels>
    channels: [64, 64, 64, 64, 192]
    kernel_sizes: [5, 3, 3, 3, 1]
    dilations: [1, 2, 3, 4, 1]
    attention_channels: 16
    se_channels: 16
    lin_neurons: 32
modules:
    compute_features: !ref <compute_features>
    mean_var_norm: !ref <mean_var_norm>
    embedding_model: !ref <embedding_model>
pretrainer: !new:speechbrain.utils.parameter_transfer.Pretrainer
    loadables:
        embedding_model: !ref <embedding_model>
    paths:
        embedding_model: !ref <pretrained_path>/embedding_model.ckpt
"""


def write_ecapa_dir(path: Path, prefix: str = "") -> dict[str, torch.Tensor]:
    """A local model folder in the layout of speechbrain/spkrec-ecapa-voxceleb."""
    from speechbrain.lobes.models.ECAPA_TDNN import ECAPA_TDNN

    torch.manual_seed(123)
    model = ECAPA_TDNN(
        80, channels=[64, 64, 64, 64, 192], attention_channels=16, se_channels=16, lin_neurons=32
    )
    for p in model.parameters():  # distinctive values, far from any default initialisation
        p.data.normal_(0, 0.05)
    state = {f"{prefix}{k}": v for k, v in model.state_dict().items()}
    path.mkdir(parents=True)
    torch.save(state, path / "embedding_model.ckpt")
    (path / "hyperparams.yaml").write_text(HYPERPARAMS.format(path=path))
    return model.state_dict()
