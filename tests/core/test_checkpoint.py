import pickle

import pytest
import torch

from napari_mito_wda.core.data.checkpoint import (
    CheckpointError,
    default_model_path,
    load_checkpoint,
    save_checkpoint,
)
from napari_mito_wda.core.engine.model import ModelConfig, MultiTaskUNet


def _out(model, x):
    with torch.no_grad():
        return model(x)["seg"]


def test_round_trip_rebuilds_the_same_network(tmp_path, tiny_model):
    extras = {"source_prototypes": torch.randn(2, 8)}
    path = save_checkpoint(tmp_path / "m.pt", tiny_model, meta={"note": "hi"}, extras=extras)
    loaded = load_checkpoint(path)
    assert loaded.config == tiny_model.config.to_dict() and loaded.meta == {"note": "hi"}
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(_out(loaded.model, x), _out(tiny_model, x))
    torch.testing.assert_close(loaded.extras["source_prototypes"], extras["source_prototypes"])


def test_half_precision_file_is_smaller_and_close(tmp_path, tiny_model):
    full = save_checkpoint(tmp_path / "f.pt", tiny_model)
    half = save_checkpoint(tmp_path / "h.pt", tiny_model, half=True)
    assert half.stat().st_size < full.stat().st_size
    x = torch.rand(1, 1, 32, 32)
    torch.testing.assert_close(_out(load_checkpoint(half).model, x), _out(tiny_model, x), atol=2e-2, rtol=1e-2)


def test_refuses_to_overwrite(tmp_path, tiny_model):
    save_checkpoint(str(tmp_path / "m.pt"), tiny_model)  # plain string paths work too
    with pytest.raises(FileExistsError):
        save_checkpoint(tmp_path / "m.pt", tiny_model)


def test_missing_file(tmp_path):
    with pytest.raises(CheckpointError, match="no such model file"):
        load_checkpoint(tmp_path / "none.pt")


def test_corrupt_file(tmp_path, tiny_ckpt):
    data = tiny_ckpt.read_bytes()
    bad = tmp_path / "bad.pt"
    bad.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="corrupt or truncated"):
        load_checkpoint(bad)
    junk = tmp_path / "junk.pt"
    for garbage in (b"\x80\x02garbage that is not a checkpoint", b"abcd", b""):  # "abcd": struct.error in torch
        junk.write_bytes(garbage)
        with pytest.raises(CheckpointError, match="corrupt or truncated"):
            load_checkpoint(junk)


def test_foreign_file(tmp_path, tiny_model):
    torch.save(tiny_model.state_dict(), tmp_path / "plain.pt")
    with pytest.raises(CheckpointError, match="foreign"):
        load_checkpoint(tmp_path / "plain.pt")


class Payload:
    def __reduce__(self):
        return (print, ("this must never run",))


def test_file_carrying_code_is_refused(tmp_path, capsys):
    torch.save({"format": "napari-mito-wda/checkpoint", "x": Payload()}, tmp_path / "evil.pt")
    with pytest.raises(CheckpointError, match="could run code"):
        load_checkpoint(tmp_path / "evil.pt")
    assert "must never run" not in capsys.readouterr().out
    with open(tmp_path / "evil.pkl", "wb") as fh:
        pickle.dump(Payload(), fh)
    with pytest.raises(CheckpointError):
        load_checkpoint(tmp_path / "evil.pkl")


def test_incompatible_weights_and_versions(tmp_path, tiny_model, monkeypatch):
    path = save_checkpoint(tmp_path / "m.pt", tiny_model)
    payload = torch.load(path, weights_only=True)
    payload["config"] = payload["config"].replace('"base": 4', '"base": 8')
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="incompatible"):
        load_checkpoint(tmp_path / "mismatch.pt")
    payload = torch.load(path, weights_only=True)
    payload["format_version"] = 99
    torch.save(payload, tmp_path / "future.pt")
    with pytest.raises(CheckpointError, match="upgrade"):
        load_checkpoint(tmp_path / "future.pt")


def test_shipped_source_model_loads_with_its_card_and_replay_set():
    loaded = load_checkpoint(default_model_path())
    assert default_model_path().stat().st_size < 6e6  # a few MB, fit to ship
    assert loaded.meta["training_data"]["image"].endswith("image.tif")
    assert loaded.meta["holdout_metrics"]["dice"] > 0.5
    assert loaded.extras["replay_images"].dtype == torch.uint8
    assert loaded.extras["replay_images"].shape == loaded.extras["replay_masks"].shape
    assert loaded.extras["source_prototypes"].shape == (2, loaded.config["proj_dim"])
    assert isinstance(loaded.model, MultiTaskUNet) and ModelConfig.from_dict(loaded.config).downsample >= 1


def test_the_detection_loss_weighting_travels_with_the_model(tmp_path, tiny_model):
    plain = load_checkpoint(save_checkpoint(tmp_path / "a.pt", tiny_model, meta={"settings": {"lr": 1e-3}}))
    weighted = load_checkpoint(save_checkpoint(tmp_path / "b.pt", tiny_model,
                                               meta={"settings": {"det_pos_weight": 20.0}}))
    assert plain.det_pos_weight == 0.0 and weighted.det_pos_weight == 20.0
    assert load_checkpoint(save_checkpoint(tmp_path / "c.pt", tiny_model)).det_pos_weight == 0.0  # no card
