"""Built-in plugins of stagedsl, registered through the same hooks as third-party ones."""
