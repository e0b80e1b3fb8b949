from bayesresnet.cli import main

raise SystemExit(main())
