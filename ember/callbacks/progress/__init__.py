"""Progress bars: the ``ProgressBar`` base, the default ``TQDMProgressBar`` and ``RichProgressBar``."""

from ember.callbacks.progress.progress_bar import ProgressBar
from ember.callbacks.progress.rich_progress import RichProgressBar, RichProgressBarTheme
from ember.callbacks.progress.tqdm_progress import TQDMProgressBar

__all__ = ["ProgressBar", "RichProgressBar", "RichProgressBarTheme", "TQDMProgressBar"]
