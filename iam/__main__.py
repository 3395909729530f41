from iam.cli import main

raise SystemExit(main())
