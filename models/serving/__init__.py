"""Serving registry models over the Open Inference Protocol (KServe v2): the MLServer runtime of the project."""
