"""Each process's knobs live with it, under the variable names they always had: the gateway's and the wallet's
own settings are read from the same CALLERSYNC_* variables the shared Settings used to read."""

from __future__ import annotations

import dataclasses

import pytest

from services.gateway.config import GatewayConfig
from services.runtime.config import Settings
from services.wallet.config import WalletConfig

GATEWAY_ENV = {
    "CALLERSYNC_JWT_SECRET": "k1,k2", "CALLERSYNC_JWT_ISSUER": "iss", "CALLERSYNC_JWT_AUDIENCE": "aud",
    "CALLERSYNC_JWT_JWKS_URL": "http://idp/jwks.json", "CALLERSYNC_JWT_MAX_LIFETIME_S": "600",
    "CALLERSYNC_CORS_ORIGINS": "https://a.test", "CALLERSYNC_GATEWAY_HEADER_TIMEOUT_S": "3",
    "CALLERSYNC_GATEWAY_KEEPALIVE_S": "30", "CALLERSYNC_STRIPE_WEBHOOK_SECRET": "whsec_1",
}


def test_the_gateway_reads_its_knobs_from_the_variables_it_always_read():
    assert GatewayConfig.from_env(GATEWAY_ENV) == GatewayConfig(
        jwt_secret="k1,k2", jwt_issuer="iss", jwt_audience="aud", jwt_jwks_url="http://idp/jwks.json",
        jwt_max_lifetime_s=600, cors_origins="https://a.test", gateway_header_timeout_s=3, gateway_keepalive_s=30,
        stripe_webhook_secret="whsec_1")
    assert GatewayConfig.from_env({}) == GatewayConfig()


def test_an_issuer_or_audience_set_empty_turns_its_check_off_as_before():
    config = GatewayConfig.from_env({"CALLERSYNC_JWT_ISSUER": "", "CALLERSYNC_JWT_AUDIENCE": ""})
    assert (config.jwt_issuer, config.jwt_audience) == ("", "")


def test_the_publishable_key_is_the_wallets():
    env = {"CALLERSYNC_STRIPE_PUBLISHABLE_KEY": "pk_test_1"}
    assert WalletConfig.from_env(env).stripe_publishable_key == "pk_test_1"


def test_the_shared_settings_hold_no_knob_of_one_process():
    shared = {f.name for f in dataclasses.fields(Settings)}
    assert not shared & ({f.name for f in dataclasses.fields(GatewayConfig)} | {"stripe_publishable_key"})


def test_the_shared_settings_read_their_variables_as_before():
    s = Settings.from_env({"CALLERSYNC_HOST": "", "CALLERSYNC_TRUST_DOMAIN": "", "CALLERSYNC_STRIPE_API_BASE": "",
                           "CALLERSYNC_INSECURE_LISTEN": "yes", "CALLERSYNC_WALLET_PORT": "", "CALLERSYNC_LOG_LEVEL":
                           "DEBUG", "CALLERSYNC_DB_POOL_SIZE": "3"})
    assert (s.host, s.trust_domain, s.stripe_api_base) == ("", Settings.trust_domain, Settings.stripe_api_base)
    assert (s.insecure_listen, s.wallet_port, s.log_level, s.db_pool_size) == (True, Settings.wallet_port, "DEBUG", 3)
    assert not Settings.from_env({"CALLERSYNC_INSECURE_LISTEN": "no"}).insecure_listen
    assert Settings.from_env({}) == Settings()
    with pytest.raises(SystemExit, match="CALLERSYNC_HEALTH_PORT='x' is not an integer"):
        Settings.from_env({"CALLERSYNC_HEALTH_PORT": "x"})
