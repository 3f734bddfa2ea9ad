"""The configuration: its schema, loading with overrides, the packaged presets and the generated
reference."""
