"""``nh-stefaland predict``: streamflow for basins without a gauge, from one run or an ensemble of runs."""
