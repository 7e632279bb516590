import fworker  # noqa: F401  (monkey-patches before the CLI imports anything)

# isort: split
from fworker.cli import main

raise SystemExit(main())
