"""Pipeline partitioning (GPipe): cut a graph into contiguous stages, cost them, model their memory.

``partition`` holds the ``pipeline-partition`` pass; ``costs`` the per-node forward/backward times and
bytes it weighs; ``balance`` the ways of cutting a sequence (torchgpipe's balance, the optimal dynamic
program); ``memory`` the per-stage memory model with and without re-materialization.
"""

from .balance import block_partition, equal_split, optimal_partition
from .costs import NodeCosts, batch_dimension, node_costs
from .memory import OPTIMIZER_STATE, stage_memory
from .partition import METHODS, OBJECTIVES, PipelinePartition, check_objective, partition_graph

__all__ = ["block_partition", "equal_split", "optimal_partition", "NodeCosts", "batch_dimension", "node_costs",
           "OPTIMIZER_STATE", "stage_memory", "METHODS", "OBJECTIVES", "PipelinePartition", "check_objective",
           "partition_graph"]
