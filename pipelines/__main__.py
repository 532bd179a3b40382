"""`python -m pipelines` runs the `streamscore` command line."""

import sys

from pipelines.cli import main

sys.exit(main())
