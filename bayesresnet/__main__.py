from bayesresnet.app.cli import main

raise SystemExit(main())
