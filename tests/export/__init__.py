"""Tests of stagedsl.export: a package, so its module names cannot collide with other folders' tests."""
