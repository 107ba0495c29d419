"""Training graphs lowered by the torch backend: the shared loop, progressive learning, contrastive training.

``loop`` is the loop every feature shares (stages, progress lines, atomic checkpoints loaded with
``weights_only=True``, resume, Ctrl-C) and the classification step; ``progressive`` EfficientNetV2's stages
(image size and regularization rising together) and the fixed-size baseline; ``contrastive`` BASIC's
micro-batched contrastive loss with exact gradients; ``data`` the shipped task (scikit-learn's digits) and
its regularizers (RandAugment-style augmentation, mixup); ``runner`` one run of a graph as ``graphmill train``
does it. The search's accuracy evaluator trains through ``train_classifier`` too.
"""

from __future__ import annotations

from .contrastive import check_micro_batch, contrastive_backward, info_nce, knn_accuracy, train_contrastive
from .data import AUGMENT_OPS, MAX_MAGNITUDE, TASK, digits_data, mixup, rand_augment
from .loop import (LoopResult, accuracy, calibrate_batchnorm, first_output, load_checkpoint, save_checkpoint,
                   train_classifier, training_loop)
from .progressive import Stage, fixed_schedule, progressive_schedule, split_steps, with_dropout
from .runner import (MAX_BATCH, MODES, TrainConfig, TrainRun, check_config, check_digits_classifier, check_logits,
                     check_model, check_stage_sizes, image_input, plan, run_training, steps_per_epoch)

__all__ = ["AUGMENT_OPS", "LoopResult", "MAX_BATCH", "MAX_MAGNITUDE", "MODES", "Stage", "TASK", "TrainConfig",
           "TrainRun",
           "accuracy", "calibrate_batchnorm", "check_config", "check_digits_classifier", "check_logits",
           "check_micro_batch",
           "check_model", "check_stage_sizes", "contrastive_backward",
           "digits_data", "first_output", "fixed_schedule", "image_input", "info_nce", "knn_accuracy",
           "load_checkpoint", "mixup", "plan", "progressive_schedule", "rand_augment", "run_training",
           "save_checkpoint", "split_steps", "steps_per_epoch", "train_classifier", "train_contrastive",
           "training_loop", "with_dropout"]
