"""`python -m scheduler.router ...`: the same as `dockyard router ...`."""
import sys

from scheduler.router.cli import main

sys.exit(main())
