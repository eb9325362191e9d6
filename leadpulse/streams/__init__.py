"""The I/O shell: Faust app, settings, topics, tables, codecs, the offline scorer and the CLI."""
