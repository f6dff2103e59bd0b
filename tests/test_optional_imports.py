"""``import ember`` (and naming the optional loggers/callbacks) must not import their heavy packages."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

HEAVY = ("tensorboard", "tensorboardX", "torch.utils.tensorboard", "mlflow", "wandb", "rich", "psutil")

SCRIPT = f"""
import sys
import ember
import ember.callbacks, ember.loggers
from ember.loggers import TensorBoardLogger, MLFlowLogger, WandbLogger
from ember.callbacks import RichProgressBar, RichModelSummary, DeviceStatsMonitor, ThroughputMonitor
trainer = ember.Trainer(default_root_dir=sys.argv[1])  # the default logger (TensorBoard when installed)
bar = RichProgressBar() if __import__("importlib.util").util.find_spec("rich") else None
loaded = [name for name in {HEAVY!r} if name in sys.modules]
print("LOADED", loaded)
"""


def test_import_ember_does_not_import_optional_packages(tmp_path):
    result = subprocess.run([sys.executable, "-c", SCRIPT, str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                            timeout=120)
    assert result.returncode == 0, result.stderr
    assert "LOADED []" in result.stdout, result.stdout
