"""The seed systems the project grew from, each with its model, data and own pieces together.

- ``pde``: a patch-transformer PDE surrogate on a FitzHugh-Nagumo solver's fields;
- ``ocec``: an open/closed-eye classifier (CNN + CosFace margin head) on drawn eye crops;
- ``metr``: a road-sensor traffic forecaster with missing readings (METR-LA style);
- ``mesh``: an edge GNN on finite-element solutions over random triangulations;
- ``compare``: seed 002's digit-pair comparison, the matrix and ensemble example.

Each registers its pieces through the same hooks as any plugin.
"""
