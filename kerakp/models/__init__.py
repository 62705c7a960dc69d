"""Backbones, the landmark model and its losses. The names the recipes and the command line choose from live
here, where importing them loads no Keras."""

HEADS = ("regression", "heatmap", "unet", "light")
LOSSES = ("huber", "mse", "wing")
