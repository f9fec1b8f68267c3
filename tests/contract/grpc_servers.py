"""A wire-level gRPC server on 127.0.0.1 for one Google API service, for contract tests.

`serve("google.cloud.tasks.v2.CloudTasks", {"CreateTask": (handler, Request, Response)})`
registers unary handlers with the proto-plus types' own (de)serializers and yields the
address; `insecure_channel` is what the real client's gRPC transport is given (the FIELD-NOTES
pattern: ``client_options`` alone makes the clients try TLS).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from concurrent import futures
from contextlib import contextmanager
from typing import Any

import grpc

Method = tuple[Callable[..., Any], Any, Any]


@contextmanager
def serve(service: str, methods: Mapping[str, Method]) -> Iterator[str]:
    handler = grpc.method_handlers_generic_handler(
        service,
        {
            name: grpc.unary_unary_rpc_method_handler(
                fn,
                request_deserializer=request_type.deserialize,
                response_serializer=response_type.serialize,
            )
            for name, (fn, request_type, response_type) in methods.items()
        },
    )
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8))
    server.add_generic_rpc_handlers((handler,))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(grace=None)


@contextmanager
def insecure_channel(address: str) -> Iterator[grpc.Channel]:
    channel = grpc.insecure_channel(address)
    try:
        yield channel
    finally:
        channel.close()
