"""`python -m anomalyops.pipelines.cli`: the `anomalyops` command."""

import sys

from anomalyops.pipelines.cli.main import main

sys.exit(main())
