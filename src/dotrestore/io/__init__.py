"""Files in and out: atomic writes and staged outputs (files), the output guard (guard), image files
(images: listing, reading with the size limit, saving) and video files (video)."""
