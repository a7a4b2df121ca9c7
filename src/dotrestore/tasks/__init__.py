"""Workflows, each written once: fitting, applying to image files, applying to a clip.

The command line, the explorer and the experiment run their jobs through here; below are the
estimator, the runtime and the file rooms.
"""
