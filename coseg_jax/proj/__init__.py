"""Research recipes built on the library (big_vision's ``proj/``): training and inference
choices that are not the paper's, each measured in docs/results.md."""
