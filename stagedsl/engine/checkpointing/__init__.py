"""Checkpoints on disk: the weights of each stage and the trainer checkpoints a run resumes from.

Nothing is imported here; see `stagedsl.engine` for what each module does.
"""
