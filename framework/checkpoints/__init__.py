"""Checkpoints and exact resume.

A run writes ``<run dir>/checkpoints/last.ckpt`` between two training steps (every ``checkpoint.every_n_steps``
steps, every ``checkpoint.every_n_minutes`` minutes, when a stop signal arrives, and at the end), atomically.
It holds everything the next step depends on, so that ``python run.py resume=<run dir>`` continues the run
bit for bit as if it had never stopped:

- :mod:`.io`: the atomic Lightning ``CheckpointIO``;
- :mod:`.callback`: when to write, and what the run adds to Lightning's checkpoint (RNG streams, data
  position, metrics-file position, W&B run id, the config);
- :mod:`.stream`: training batches as one endless, step-addressed stream, so a resumed run starts at the
  batch the uninterrupted run would have seen next;
- :mod:`.metrics_log`: the per-step CSV, continued where the checkpoint left it;
- :mod:`.resume`: reading a run directory back into a :class:`ResumePoint`.
"""

from framework.checkpoints.callback import Checkpointing
from framework.checkpoints.io import AtomicCheckpointIO
from framework.checkpoints.metrics_log import RunCSVLogger
from framework.checkpoints.resume import LAST, ResumePoint, checkpoint_dir
from framework.checkpoints.stream import step_stream

__all__ = ["AtomicCheckpointIO", "Checkpointing", "LAST", "ResumePoint", "RunCSVLogger", "checkpoint_dir",
           "step_stream"]
