"""Charge ids are uuid5 of the settlement's natural key: every attempt at a settlement names the same charge,
and ids already stored (by the uuid.uuid5 spelling before) stay the ids of their keys."""

import uuid

import pytest

from services.billing.charge_ids import _CHARGE_IDS, charge_id


@pytest.mark.parametrize("key", ["call:c-1", "booking:b-42", "call:" + "x" * 128, "call:appel-été-✓", "call:"])
def test_a_charge_id_is_the_uuid5_of_its_key(key):
    assert charge_id(key) == str(uuid.uuid5(_CHARGE_IDS, key))
    assert uuid.UUID(charge_id(key)).version == 5
