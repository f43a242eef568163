"""Tools on trained runs behind the ``nh-stefaland`` command: ungauged-basin tests, reconstruction skill, embeddings."""
