"""ActiveClean on Apache Spark: train a convex model while cleaning only the records that matter."""

from .checkpoint import CheckpointError, Checkpoints
from .cleaners import BatchCleaner, CleanedBatch, Cleaner, CleanerError, OracleCleaner, RecordCleaner
from .detector import LearnedDetector, RuleDetector
from .engine import ActiveClean, ActiveCleanResult
from .features import FeatureSpec, Featurizer, FunctionFeaturizer
from .interactive import CleaningSession
from .losses import HingeLoss, HuberLoss, LeastSquaresLoss, LinearModelLoss, LogisticLoss, Loss, make_loss
from .model import ActiveCleanModel
from .session import get_spark
from .updater import StepSchedule

__version__ = "0.1.0"

__all__ = [
    "ActiveClean",
    "ActiveCleanModel",
    "ActiveCleanResult",
    "BatchCleaner",
    "CheckpointError",
    "Checkpoints",
    "CleanedBatch",
    "Cleaner",
    "CleanerError",
    "CleaningSession",
    "FeatureSpec",
    "Featurizer",
    "FunctionFeaturizer",
    "HingeLoss",
    "HuberLoss",
    "LearnedDetector",
    "LeastSquaresLoss",
    "LinearModelLoss",
    "LogisticLoss",
    "Loss",
    "OracleCleaner",
    "RecordCleaner",
    "RuleDetector",
    "StepSchedule",
    "get_spark",
    "make_loss",
]
