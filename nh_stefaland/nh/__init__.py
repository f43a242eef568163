"""NeuralHydrology integration: the import hook, the one table of patched resolvers, trainers, testers and losses."""
