"""Assembles the routing server. Its methods are specified in the contract and answer UNIMPLEMENTED for now."""

from __future__ import annotations

import pathlib

from callersync.routing.v1 import routing_pb2, routing_pb2_grpc
from services.runtime.config import Settings
from services.runtime.server import GrpcServer
from services.runtime.service import ServiceDef

SERVICE_NAME = routing_pb2.DESCRIPTOR.services_by_name["RoutingService"].full_name


async def build(settings: Settings, port: int) -> GrpcServer:
    servicer = routing_pb2_grpc.RoutingServiceServicer()
    return GrpcServer(
        "routing",
        SERVICE_NAME,
        lambda server: routing_pb2_grpc.add_RoutingServiceServicer_to_server(servicer, server),
        host=settings.host,
        port=port,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
    )


ROUTING = ServiceDef("routing", "routing", pathlib.Path(__file__).parent / "migrations", build)
