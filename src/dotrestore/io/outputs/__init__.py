"""Safe output writing: an output folder held by one handle (folder), the output guard (guard),
staged outputs moved into place together (staged)."""
