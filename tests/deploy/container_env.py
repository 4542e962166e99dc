"""A deployed container's environment as its process reads it: Kubernetes' ConfigMap then env (with $(VAR)
expanded, as the kubelet does), or compose's environment (with ${VAR} interpolated, as compose does). A value
taken from a Secret or from a variable compose requires is a marker, so a test can tell a credential's source."""

import re

SECRET = "callersync-secrets"
# Variables whose values are credentials (a URL with a password in it included); the publishable key is not one,
# and CALLERSYNC_TLS_KEY_FILE is a path.
CREDENTIAL = re.compile(r"SECRET|PASSWORD|TOKEN|API_KEY|ACCESS_KEY|DATABASE_URL|REDIS_URL|_AUTH$")
# ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?message}, ${VAR?message}
INTERPOLATION = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?:(:?[-?])([^}]*))?\}")
K8S_REFERENCE = re.compile(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)")


def from_secret(key: str) -> str:
    return f"<secret {key}>"


def required(variable: str) -> str:
    return f"<required {variable}>"


def supplied_out_of_band(value: str) -> bool:
    """True when the value came from a Secret (Kubernetes) or a variable compose refuses to start without."""
    return bool(re.search(r"<(secret|required) [^>]+>", value))


def k8s(container: dict, config_map: dict[str, str]) -> dict[str, str]:
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        assert set(source) == {"configMapRef"}, source
        env.update(config_map)
    for entry in container.get("env", []):
        if "valueFrom" in entry:
            ref = entry["valueFrom"]["secretKeyRef"]
            assert ref["name"] == SECRET, entry
            env[entry["name"]] = from_secret(ref["key"])
        else:
            # An undefined reference stays as written, like the kubelet leaves it.
            env[entry["name"]] = K8S_REFERENCE.sub(lambda m: env.get(m[1], m[0]), entry["value"])
    return env


def interpolations(value: str) -> list[tuple[str, str]]:
    """(variable, operator) of each ${...} in a compose value; the operator is '' for a bare ${VAR}."""
    return [(m[1], m[2] or "") for m in INTERPOLATION.finditer(value)]


def compose(environment: dict[str, str]) -> dict[str, str]:
    def value_of(m: re.Match) -> str:
        variable, operator, argument = m[1], m[2] or "", m[3] or ""
        if operator.endswith("?"):
            return required(variable)
        return argument if operator.endswith("-") else ""

    return {name: INTERPOLATION.sub(value_of, str(value)) for name, value in environment.items()}
