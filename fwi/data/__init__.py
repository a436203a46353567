"""Synthetic salt geology, dataset generation, the HDF5 dataset layout, normalisation and loaders."""
