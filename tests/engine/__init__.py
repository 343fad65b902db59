"""Tests of stagedsl.engine: a package, so its module names cannot collide with other folders' tests."""
