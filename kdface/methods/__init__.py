"""One module per method: its ``keras.Model`` (and ``train_step``/``compute_loss``), presets and CLI hooks.

The CLIs find a method by name in :data:`kdface.cli.METHODS`.
"""
