"""Persistence: the generation cache (cache, repair), files written whole (files), run folders (runs) and
where all of it lives (paths)."""
