"""attnkit_lmp: the LMP zero-shot motion-transfer method as attnkit plugins, with its CLI and demo."""
