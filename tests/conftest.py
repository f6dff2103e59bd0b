import sys
from pathlib import Path

# Make the repository root importable (``import ember``, ``import tests.parity``) without installing.
_ROOT = str(Path(__file__).resolve().parent.parent)
if _ROOT not in sys.path:
    sys.path.insert(0, _ROOT)
