"""Data files of the app (icon, examples), installed as the package distill_gui.resources."""
