"""`python -m dcluster`: same as `dcluster-server`."""

from dcluster.server import main

raise SystemExit(main())
