"""``python -m imagetagger.cli``."""

import sys

from imagetagger.cli import main

sys.exit(main())
