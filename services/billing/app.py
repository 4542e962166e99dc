"""Assembles the billing server. Its methods are specified in the contract and answer UNIMPLEMENTED for now."""

from __future__ import annotations

import pathlib

from callersync.billing.v1 import billing_pb2, billing_pb2_grpc
from services.runtime.config import Settings
from services.runtime.server import GrpcServer
from services.runtime.service import ServiceDef

SERVICE_NAME = billing_pb2.DESCRIPTOR.services_by_name["BillingService"].full_name


async def build(settings: Settings, port: int) -> GrpcServer:
    servicer = billing_pb2_grpc.BillingServiceServicer()
    return GrpcServer(
        "billing",
        SERVICE_NAME,
        lambda server: billing_pb2_grpc.add_BillingServiceServicer_to_server(servicer, server),
        host=settings.host,
        port=port,
        max_concurrent_rpcs=settings.max_concurrent_rpcs,
    )


BILLING = ServiceDef("billing", "billing", pathlib.Path(__file__).parent / "migrations", build)
