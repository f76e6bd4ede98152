from bench.graph_quality.run import main

raise SystemExit(main())
