"""The v2 gRPC message classes, built once from `dataplane_descriptor` in a private descriptor pool."""

from __future__ import annotations

import functools
from types import SimpleNamespace

from google.protobuf import descriptor_pb2, descriptor_pool, message_factory

from operators.remote.dataplane_descriptor import DATAPLANE_DESCRIPTOR

_MESSAGES = ("ModelMetadataRequest", "ModelMetadataResponse", "ModelInferRequest", "ModelInferResponse")


@functools.cache
def messages() -> SimpleNamespace:
    """`ModelMetadataRequest`, `ModelMetadataResponse`, `ModelInferRequest`, `ModelInferResponse` classes."""
    pool = descriptor_pool.DescriptorPool()
    pool.Add(descriptor_pb2.FileDescriptorProto.FromString(DATAPLANE_DESCRIPTOR))
    return SimpleNamespace(**{
        name: message_factory.GetMessageClass(pool.FindMessageTypeByName(f"inference.{name}")) for name in _MESSAGES
    })
