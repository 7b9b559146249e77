"""`python -m consumer.cli`: the `dedup` command."""

import sys

from consumer.cli.main import main

sys.exit(main())
