"""``python -m rdbss.experiment run|plan|compare ...``: see rdbss/experiment/cli.py."""

import sys

from rdbss.experiment.cli import main

sys.exit(main())
