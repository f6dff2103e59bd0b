"""Progress bars: the ``ProgressBar`` base and the default ``TQDMProgressBar``."""

from ember.callbacks.progress.progress_bar import ProgressBar
from ember.callbacks.progress.tqdm_progress import TQDMProgressBar

__all__ = ["ProgressBar", "TQDMProgressBar"]
