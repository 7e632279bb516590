"""``python journaled_worker.py ARGS``: the real worker (``python -m fworker ARGS``),
except that its queue is ``tests.support.journal.JournaledQueue``: every committed
update is also written to a journal, in the same SQLite transaction."""
import os
import sys

# Run as a script, sys.path[0] is this folder: the repository root instead, so that
# the helpers import as tests.support.* and none of them shadows another module.
sys.path[0] = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))

import fworker  # noqa: E402,F401  (monkey-patches before the rest)

# isort: split

from fworker import queue  # noqa: E402  (after sys.path is set)
from tests.support.journal import JournaledQueue  # noqa: E402  (after sys.path is set)

if __name__ == "__main__":
    # Before fworker.worker is imported, so that it picks up the journaled queue.
    queue.UpdateQueue = JournaledQueue
    from fworker.cli import main

    sys.exit(main())
