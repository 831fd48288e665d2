"""The data-parallel mesh shared by training and evaluation, and each host's batches.

Every device of every process forms one 1-D mesh: the batch axis is sharded over it,
parameters are replicated. On several hosts each host reads its own slice of every
global batch (``build_data``) and ``put_batch`` assembles the global arrays.
"""

import dataclasses

import jax
from jax.sharding import Mesh, NamedSharding, PartitionSpec as P
import numpy as np

from coseg_jax.data import pipeline
from coseg_jax.errors import BadValue

MODEL_INPUTS = ("image_a", "image_b", "features_a", "features_b", "mask_a", "mask_b")


@dataclasses.dataclass(frozen=True)
class Sharding:
  """A 1-D data-parallel mesh over every device of every process."""
  mesh: Mesh

  @classmethod
  def create(cls):
    return cls(Mesh(np.asarray(jax.devices()), ("data",)))

  @property
  def data(self):
    return NamedSharding(self.mesh, P("data"))

  @property
  def replicated(self):
    return NamedSharding(self.mesh, P())

  def check_batch_size(self, batch_size):
    devices = self.mesh.devices.size
    if batch_size % devices:
      raise BadValue(f"config.batch_size={batch_size} does not divide over {devices} devices "
                     f"({jax.process_count()} processes): use a multiple of {devices}")

  def put_batch(self, local_batch):
    """This host's slice of a global batch -> global model inputs sharded on the batch axis.

    The copies to the devices are asynchronous: putting the next batch before waiting on
    the current step overlaps the transfer with the computation.
    """
    put = lambda x: jax.make_array_from_process_local_data(self.data, x)
    return {k: jax.tree.map(put, v) for k, v in local_batch.items() if k in MODEL_INPUTS}

  def replicate(self, tree):
    """A host-local pytree (identical on every host) -> replicated global arrays."""
    def put(x):
      x = np.asarray(x)
      return jax.make_array_from_callback(x.shape, self.replicated, lambda index: x[index])
    return jax.tree.map(put, tree)


def build_data(config, split, seed):
  """This host's iterator over its slice of the global batches of ``split``."""
  return pipeline.build(config.data, split=split, batch_size=config.batch_size, seed=seed,
                        shard_index=jax.process_index(), shard_count=jax.process_count())
