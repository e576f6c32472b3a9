"""Applying a trained run: the Translator, tiling for large images, folders, export, official weights."""
