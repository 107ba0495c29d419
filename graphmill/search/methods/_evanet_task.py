"""EvaNet's generated video task: which shape moves, and where to (issue 15 item 4).

Every clip is ``frames`` x ``size`` x ``size`` (one channel) and holds two shapes on a noisy background: one
moves one pixel per frame in one of four directions, the other stands still. The class is
``(moving shape, direction)``: 2 shapes (a 5 x 5 square, a 13-pixel disk) x 4 directions (right, left, down, up)
= 8 classes. The still shape is a random one of the two, so a single frame cannot say which shape is the
moving one, and nothing but the frame order says the direction: the task needs space-time features. Each
shape's brightness is drawn from [0.5, 1] (the square's 25 pixels at 0.5 are about as bright as the disk's
13 at 1, so shape is not total brightness), and Gaussian noise (sigma ``noise``) is added to every pixel.

Everything is drawn from one ``numpy`` generator seeded with ``seed``: the same seed gives the same clips in
every process; the train, validation (the search's reward) and test (reported) sets are disjoint draws.
"""

from __future__ import annotations

import functools
from dataclasses import asdict, dataclass

import numpy as np

from graphmill.util.errors import UserInputError

SHAPES = ("square", "disk")
DIRECTIONS = ("right", "left", "down", "up")
NUM_CLASSES = len(SHAPES) * len(DIRECTIONS)


@dataclass(frozen=True)
class VideoTask:
    """The generated moving-shapes task: sizes, noise and the seed that draws it."""

    seed: int = 0
    frames: int = 8
    size: int = 16
    train: int = 2048
    val: int = 512
    test: int = 512
    noise: float = 0.4

    def check(self) -> "VideoTask":
        for name in ("frames", "size", "train", "val", "test"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < 1:
                raise UserInputError(f"task {name}={v!r}: must be a whole number >= 1")
        if self.frames < 2:  # one frame holds no motion, and the network's 2x2x2 pool would leave none
            raise UserInputError(f"task frames={self.frames}: must be a whole number >= 2 (the motion needs two)")
        if self.size < self.frames + 6:
            raise UserInputError(f"task size={self.size}: a shape moving {self.frames - 1} pixels needs size >= "
                                 f"{self.frames + 6}")
        if self.size > 64 or self.frames > 32 or self.train + self.val + self.test > 20000:
            raise UserInputError("task too large for a CPU proxy (size <= 64, frames <= 32, <= 20000 clips)")
        if not (isinstance(self.noise, (int, float)) and 0 <= self.noise <= 5):
            raise UserInputError(f"task noise={self.noise!r}: must be in [0, 5]")
        return self

    def describe(self) -> str:
        """The task in one sentence, as every result states it."""
        return (f"generated moving-shapes clips (seed {self.seed}): {self.frames} frames x {self.size}x{self.size}, "
                f"one channel; classify which of 2 shapes (square, disk) moves and in which of 4 directions "
                f"(8 classes) next to a still distractor shape, Gaussian noise sigma {self.noise:g}; "
                f"{self.train} train / {self.val} validation (reward) / {self.test} test clips")

    def to_json(self) -> dict:
        return asdict(self)


def render(rng: np.random.Generator, n: int, frames: int, size: int, noise: float) -> tuple[np.ndarray, np.ndarray]:
    """``n`` clips ``[n, 1, frames, size, size]`` (float32) and their labels ``shape * 4 + direction``."""
    travel = frames - 1
    margin = 3
    shape = rng.integers(0, 2, n)
    direction = rng.integers(0, 4, n)
    along = rng.integers(margin, size - margin - travel, n)   # start on the axis of motion
    across = rng.integers(margin, size - margin, n)           # the other coordinate
    t = np.arange(frames)
    sign = np.where(direction % 2 == 0, 1, -1)                # right/down: +1, left/up: -1
    start = np.where(sign > 0, along, along + travel)
    pos = start[:, None] + sign[:, None] * t[None, :]         # [n, T]
    horizontal = direction < 2
    cx = np.where(horizontal[:, None], pos, across[:, None]).astype(np.float32)
    cy = np.where(horizontal[:, None], across[:, None], pos).astype(np.float32)
    still = rng.integers(0, 2, n)
    sx = rng.integers(margin, size - margin, n).astype(np.float32)
    sy = rng.integers(margin, size - margin, n).astype(np.float32)
    bright = rng.uniform(0.5, 1.0, (n, 2)).astype(np.float32)
    yy, xx = np.mgrid[0:size, 0:size].astype(np.float32)

    def mask(kind, x, y):  # x, y: [n, T] or [n, 1] -> [n, T, S, S]
        dx = xx[None, None] - x[:, :, None, None]
        dy = yy[None, None] - y[:, :, None, None]
        sq = np.maximum(np.abs(dx), np.abs(dy)) <= 2
        disk = dx * dx + dy * dy <= 4.5
        return np.where(kind[:, None, None, None] == 0, sq, disk).astype(np.float32)

    clip = mask(shape, cx, cy) * bright[:, 0, None, None, None]
    clip = np.maximum(clip, mask(still, sx[:, None], sy[:, None]) * bright[:, 1, None, None, None])
    clip = clip + rng.standard_normal(clip.shape).astype(np.float32) * np.float32(noise)
    return clip[:, None].astype(np.float32), (shape * 4 + direction).astype(np.int64)


@functools.lru_cache(maxsize=4)
def task_arrays(task: VideoTask) -> tuple[np.ndarray, ...]:
    """``(x_train, y_train, x_val, y_val, x_test, y_test)`` of ``task``, normalized with the training set's
    mean and standard deviation (cached per process: every evaluation of a worker shares one copy)."""
    task.check()
    rng = np.random.default_rng([task.seed, 20190])
    parts = [render(rng, n, task.frames, task.size, task.noise) for n in (task.train, task.val, task.test)]
    mean, std = float(parts[0][0].mean()), float(parts[0][0].std()) or 1.0
    out: list[np.ndarray] = []
    for x, y in parts:
        out += [((x - mean) / std).astype(np.float32), y]
    return tuple(out)
