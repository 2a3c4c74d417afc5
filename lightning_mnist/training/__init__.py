"""The Trainer commands (``fit``, ``validate``, ``test``, ``cv``): LightningCLI, its callbacks, k-fold."""
