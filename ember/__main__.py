"""``python -m ember plot <log_dir> ...``: the same as the ``ember`` console command."""

import sys

from ember.cli import main

sys.exit(main())
