"""Content pipeline: collect -> select -> freeze an issue -> render -> send."""
