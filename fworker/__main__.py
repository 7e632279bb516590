import fworker  # noqa: F401  (monkey-patches before the CLI imports anything)
from fworker.cli import main

raise SystemExit(main())
