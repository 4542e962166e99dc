"""Runs localstripe (a stateful server speaking Stripe's API) with its store in a file of ours, or in memory only.

The package keeps its store in /tmp/localstripe.pickle, one file for every instance on the machine, rewritten on
every change: two instances (a developer's `callersync up` and a test run) would load each other's customers.
Usage: python -m services.runtime.localstripe_runner STORE_FILE|- --port N"""

from __future__ import annotations

import pickle
import sys


def main() -> None:
    from localstripe import resources, server

    path = sys.argv[1]
    sys.argv = [sys.argv[0], *sys.argv[2:]]

    def dump(store: resources.Store) -> None:
        if path != "-":
            with open(path, "wb") as f:
                pickle.dump(store, f, protocol=pickle.HIGHEST_PROTOCOL)

    def load(store: resources.Store) -> None:
        if path == "-":
            return
        try:
            with open(path, "rb") as f:
                old = pickle.load(f)
        except (FileNotFoundError, EOFError, pickle.UnpicklingError):
            return
        store.clear()
        store.update(old)

    resources.Store.dump_to_disk = dump  # type: ignore[method-assign]
    resources.Store.try_load_from_disk = load  # type: ignore[method-assign]
    server.start()


if __name__ == "__main__":
    main()
