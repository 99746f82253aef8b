"""Image bytes to model input, image statistics, heat maps."""
