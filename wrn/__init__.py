"""Wide Residual Networks (Zagoruyko & Komodakis 2016): models, data and training, free of specs and clusters."""
