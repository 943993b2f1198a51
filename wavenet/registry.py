"""One entry per model kind: its class, snapshot prefix and the scripts that train and sample it.

Snapshots name their kind by `model_type` (the class name); every message that sends the user to
the right script, and every file name of a run, is looked up here.
"""

import inspect
from dataclasses import dataclass

from .models import GatedPixelCNN, WaveNet

TRAINER_SNAPSHOT = "snapshot_iter_"  # trainer snapshots of either kind: snapshot_iter_<iteration>


@dataclass(frozen=True)
class ModelKind:
    model: type  # the nn.Module class; its name is the snapshots' model_type
    prefix: str  # model snapshots are <prefix><iteration>
    trainer: str  # the script that trains it
    sampler: str  # the script that samples from it

    @property
    def name(self):
        return self.model.__name__

    def full_config(self, config):
        """A stored config dict with the defaults of the fields it lacks: those added since it was saved."""
        parameters = inspect.signature(self.model).parameters.values()
        return {**{p.name: p.default for p in parameters if p.default is not p.empty}, **config}


KINDS = {
    kind.name: kind
    for kind in (
        ModelKind(GatedPixelCNN, prefix="pixelcnn_", trainer="train.py", sampler="infer.py"),
        ModelKind(WaveNet, prefix="wavenet_", trainer="train_wavenet.py", sampler="infer_wavenet.py"),
    )
}


def kind_of(model):
    """The ModelKind of a model instance."""
    return KINDS[type(model).__name__]
