"""Data readers: images (IDX gzip / TFDS) and text (tab-separated sentence pairs)."""
