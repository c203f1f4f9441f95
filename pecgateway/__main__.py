"""Entry point for ``python -m pecgateway``."""

from pecgateway.cli import main

raise SystemExit(main())
