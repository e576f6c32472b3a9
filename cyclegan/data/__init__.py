"""Image folders in, training tensors out: find and validate, hold out, crop (nothing of training)."""
