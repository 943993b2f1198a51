"""Snapshots: round trips, atomic writes, and refusal of files that are not safe snapshots."""

import dataclasses
import os
import pickle

import pytest
import torch

from wavenet import GatedPixelCNN, WaveNet, checkpoint, files
from wavenet.errors import UserError
from wavenet.registry import KINDS


@pytest.mark.parametrize(
    "model", [GatedPixelCNN(3, 8, 1, 8, 4, num_classes=10), WaveNet(16, 8, 8, 1, 3, num_speakers=2)]
)
def test_model_round_trip_rebuilds_from_config_alone(tmp_path, model):
    path = str(tmp_path / "model")
    checkpoint.save(path, checkpoint.model_snapshot(model, {"levels": model.config.levels}))
    rebuilt = checkpoint.build_model(checkpoint.load(path), type(model).__name__)
    for name, value in model.state_dict().items():
        assert torch.equal(value, rebuilt.state_dict()[name])
    assert rebuilt.config == model.config


def test_snapshot_for_the_other_model_names_the_right_script(tmp_path):
    path = str(tmp_path / "model")
    checkpoint.save(path, checkpoint.model_snapshot(WaveNet(16, 8, 8, 1, 2), {}))
    with pytest.raises(UserError, match="WaveNet snapshot.*infer_wavenet.py"):
        checkpoint.build_model(checkpoint.load(path), "GatedPixelCNN")


class RunsCode:
    def __reduce__(self):
        return (os.system, ("touch pwned",))


def test_crafted_pickle_is_refused_and_runs_nothing(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    torch.save({"format": 1, "model_type": "WaveNet", "payload": RunsCode()}, "evil")
    with open("evil_plain", "wb") as f:
        pickle.dump(RunsCode(), f)
    for name in ("evil", "evil_plain"):
        with pytest.raises(UserError, match="not a readable snapshot"):
            checkpoint.load(name)
    assert not os.path.exists("pwned")


def test_not_a_snapshot_and_missing_file(tmp_path):
    junk = tmp_path / "junk"
    junk.write_bytes(b"this is not a snapshot")
    with pytest.raises(UserError, match="not a readable snapshot"):
        checkpoint.load(str(junk))
    torch.save({"weights": torch.zeros(2)}, str(tmp_path / "other"))
    with pytest.raises(UserError, match="not a snapshot of this project"):
        checkpoint.load(str(tmp_path / "other"))
    with pytest.raises(UserError, match="not found"):
        checkpoint.load(str(tmp_path / "missing"))


def test_atomic_write_keeps_the_old_file_when_writing_fails(tmp_path):
    path = str(tmp_path / "file")
    files.atomic_write(path, lambda f: f.write(b"old"))

    def crash(f):
        f.write(b"half of the new")
        raise RuntimeError("killed")

    with pytest.raises(RuntimeError):
        files.atomic_write(path, crash)
    assert (tmp_path / "file").read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["file"]


def test_flags_that_contradict_the_snapshot_are_errors():
    snapshot = checkpoint.model_snapshot(GatedPixelCNN(3, 8, 1, 8, 4), {"levels": 4})
    checkpoint.check_flags(snapshot, {"hidden_dim": 8, "levels": None}, "m")
    with pytest.raises(UserError, match="--hidden_dim 16 contradicts m.*--hidden_dim 8"):
        checkpoint.check_flags(snapshot, {"hidden_dim": 16}, "m")


OLD_VERSION = os.path.join(os.path.dirname(__file__), "fixtures", "c5e1cea")  # written by that version


def old_model(name, model_type):
    """The model of snapshot `name` written by version c5e1cea, whose config was a plain dict."""
    snapshot = checkpoint.load(os.path.join(OLD_VERSION, name))
    model = checkpoint.build_model(snapshot, model_type).eval()
    # its keys, and the fields added since with their defaults
    assert dataclasses.asdict(model.config) == KINDS[model_type].full_config(snapshot["config"])
    return model


def test_snapshots_of_version_c5e1cea_rebuild_and_give_its_logits():
    expected = torch.load(os.path.join(OLD_VERSION, "expected.pt"), weights_only=True)
    pixelcnn, wavenet = old_model("pixelcnn_6", "GatedPixelCNN"), old_model("wavenet_5", "WaveNet")
    with torch.no_grad():
        pixelcnn_logits = pixelcnn(expected["pixelcnn_input"].float() / 3, expected["pixelcnn_label"])
        wavenet_logits = wavenet(expected["wavenet_codes"], expected["wavenet_speaker"])
    # the same float32 arithmetic as then; the tolerance only covers another CPU's summation order
    torch.testing.assert_close(pixelcnn_logits, expected["pixelcnn_logits"], rtol=0, atol=1e-5)
    torch.testing.assert_close(wavenet_logits, expected["wavenet_logits"], rtol=0, atol=1e-5)


def test_weights_of_another_layout_are_summed_up_in_one_short_line():
    model = GatedPixelCNN(3, 8, 2, 8, 4)
    weights = dict(GatedPixelCNN(3, 16, 2, 8, 4).state_dict())
    weights["extra.weight"] = torch.zeros(1)
    del weights["out.bias"]
    with pytest.raises(UserError) as caught:
        checkpoint.load_weights(model, weights, "X")
    message = str(caught.value)
    assert message.startswith("X: its weights do not fit this version's GatedPixelCNN (1 missing, such as out.bias; ")
    assert "1 unexpected, such as extra.weight; " in message and " of another shape, such as blocks.0." in message
    assert message.endswith("); retrain, or use the version of this project that wrote it") and len(message) < 400
