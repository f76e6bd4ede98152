from bench.zero_shot.run import main

raise SystemExit(main())
