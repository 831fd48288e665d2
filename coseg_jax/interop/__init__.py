"""Interoperability with other frameworks: the PyTorch twin (extra ``[torch]``)."""
