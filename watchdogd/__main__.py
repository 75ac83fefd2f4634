from watchdogd.cli import main

raise SystemExit(main())
