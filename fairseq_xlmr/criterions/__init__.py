"""Registered criteria only, one per file, file name = registry name (`xlmr_*`)."""
