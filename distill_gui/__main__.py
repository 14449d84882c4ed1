from distill_gui.cli import main

raise SystemExit(main())
