"""``nh-stefaland pub``: folds, plan, runs, leakage guards and the report of ungauged-basin and -region tests."""
