from fworker.cli import main

raise SystemExit(main())
