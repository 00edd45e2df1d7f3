"""`python -m gpu_worker` runs the same CLI as `spine-worker`."""

from gpu_worker.cli import main

raise SystemExit(main())
