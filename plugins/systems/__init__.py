"""The seed systems' own pieces, one package per system: its model(s) and dataset(s) together."""
