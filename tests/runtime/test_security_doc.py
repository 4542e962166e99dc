"""docs/security.md's table of who may call what is the code's, row for row."""

import pathlib

from services.billing.access import ACCESS as BILLING
from services.routing.access import ACCESS as ROUTING
from services.wallet.access import ACCESS as WALLET

DOC = pathlib.Path(__file__).resolve().parents[2] / "docs/security.md"


def test_the_documented_table_is_the_code():
    lines = [line for line in DOC.read_text().splitlines() if line.startswith("| ") and "Service/" in line]
    header = next(line for line in DOC.read_text().splitlines() if line.startswith("| method | billing"))
    roles = [cell.strip() for cell in header.strip("|").split("|")][1:]
    documented = {}
    for line in lines:
        cells = [cell.strip() for cell in line.strip("|").split("|")]
        documented[cells[0]] = {role for role, mark in zip(roles, cells[1:], strict=True) if mark}
    expected = {
        f"{service}/{method}": set(allowed) - {"wallet"}
        for service, table in (("WalletService", WALLET), ("BillingService", BILLING), ("RoutingService", ROUTING))
        for method, allowed in table.items()
    }
    assert documented == expected
