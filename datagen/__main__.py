"""`python -m datagen`: the fraudbatch-datagen command."""

from datagen.cli import main

raise SystemExit(main())
