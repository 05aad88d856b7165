#!/usr/bin/env python3
"""Reads a GigaSPOT market through Clore's own Python client, `clore-ai` 0.1.1.

It proves that `GET /v1/wallets` and `GET /v1/my_orders` answer in the shapes that client
parses (it validates every order and wallet with pydantic models and raises on a wrong
type), and that the values it reads are the ones expected.

    python3 -m venv .venv && .venv/bin/pip install -r tests/clore_ai/requirements.txt
    GIGASPOT_URL=http://127.0.0.1:8080 GIGASPOT_KEY=gs_... \
    EXPECT_JSON='{"balance": 12.5, "order_ids": [3, 4]}' \
    .venv/bin/python tests/clore_ai/check.py

Environment:
  GIGASPOT_URL   the service's base URL, e.g. http://127.0.0.1:8080 (the script adds /v1,
                 the client's base URL; one that already ends in /v1 is taken as it is)
  GIGASPOT_KEY   an API key; the client sends it in the `auth` header
  EXPECT_JSON    a JSON object; every key is optional:
                   "balance":   number, the CLORE-Blockchain wallet's balance (compared
                                to 8 decimals, the ledger's resolution)
                   "order_ids": array of ints, the ids my_orders() returns, as a set
                   "orders":    {"<id>": {"<attribute>": value, ...}}, attributes of single
                                orders as the client exposes them (e.g. "server_id", which
                                the client fills from `renting_server`, "price", "currency")
                   "include_completed": bool, passed to my_orders() (default false; the
                                client then sends ?return_completed=false)
                   "currency":  the wallet to read (default "CLORE-Blockchain")
  CLORE_MAX_RETRIES  the client's retries (default 0: a failure shows at once instead of
                 after its 1 + 2 + 4 s of back-off)

Exit status: 0 when everything matches, 1 on a mismatch or when the client fails
(HTTP error, an answer its models refuse), 2 on bad usage.
"""

import json
import math
import os
import sys


def fail(message: str, status: int = 1) -> "NoReturn":  # noqa: F821
    print(f"clore-ai check FAILED: {message}", file=sys.stderr)
    sys.exit(status)


def field(obj, name):
    """`name` of a model object or a dict: the client's return type may be either."""
    if isinstance(obj, dict):
        return obj.get(name)
    value = getattr(obj, name, None)
    if value is None:
        # pydantic keeps unmodelled keys (extra="allow") in model_extra.
        extra = getattr(obj, "model_extra", None) or {}
        value = extra.get(name)
    return value


def as_list(result, key):
    """A list from a method that returns a list, or a raw answer holding one under `key`."""
    if isinstance(result, dict):
        result = result.get(key, [])
    if not isinstance(result, (list, tuple)):
        fail(f"expected a list from the client, got {type(result).__name__}: {result!r}")
    return list(result)


def units(value) -> int:
    """A CLORE amount in base units (10^-8), so that comparisons ignore float noise."""
    return round(float(value) * 100_000_000)


def same(actual, expected) -> bool:
    if isinstance(expected, float) or isinstance(actual, float):
        try:
            return math.isclose(float(actual), float(expected), rel_tol=0, abs_tol=5e-9)
        except (TypeError, ValueError):
            return False
    return actual == expected


def main() -> None:
    url = os.environ.get("GIGASPOT_URL", "").strip()
    key = os.environ.get("GIGASPOT_KEY", "").strip()
    raw = os.environ.get("EXPECT_JSON", "{}")
    if not url or not key:
        fail("set GIGASPOT_URL (e.g. http://127.0.0.1:8080) and GIGASPOT_KEY", 2)
    try:
        expect = json.loads(raw)
    except json.JSONDecodeError as e:
        fail(f"EXPECT_JSON is not JSON: {e}", 2)
    if not isinstance(expect, dict):
        fail("EXPECT_JSON must be a JSON object", 2)
    try:
        retries = int(os.environ.get("CLORE_MAX_RETRIES", "0"))
    except ValueError:
        fail("CLORE_MAX_RETRIES must be an integer", 2)

    try:
        import clore_ai
        from clore_ai import CloreAI, CloreAPIError
    except ImportError as e:
        fail(f"the clore-ai package is not installed ({e}); pip install -r requirements.txt", 2)
    try:
        from importlib.metadata import version

        client_version = version("clore-ai")
    except Exception:  # noqa: BLE001 - only for the summary
        client_version = getattr(clore_ai, "__version__", "?")
    try:
        from pydantic import ValidationError
    except ImportError:  # pragma: no cover - clore-ai depends on pydantic
        ValidationError = ()  # type: ignore[assignment]

    # The client joins f"{base_url}/{endpoint}": the base URL carries /v1 and no slash.
    base = url.rstrip("/")
    if not base.endswith("/v1"):
        base += "/v1"
    client = CloreAI(api_key=key, base_url=base, timeout=30.0, max_retries=retries)

    def call(name, *args, **kwargs):
        try:
            return getattr(client, name)(*args, **kwargs)
        except ValidationError as e:
            fail(f"{name}(): the client's models refused the answer of {base}: {e}")
        except CloreAPIError as e:
            fail(f"{name}(): {type(e).__name__} (code {e.code}): {e}")
        except Exception as e:  # noqa: BLE001 - report anything else plainly
            fail(f"{name}(): {type(e).__name__}: {e}")

    problems = []

    def note(line):
        print(line, flush=True)

    note(f"clore-ai {client_version} against {base}")

    currency = expect.get("currency", "CLORE-Blockchain")
    wallets = as_list(call("wallets"), "wallets")
    names = [field(w, "name") for w in wallets]
    wallet = next((w for w in wallets if field(w, "name") == currency), None)
    if wallet is None:
        problems.append(f"wallets(): no wallet named {currency!r} (names: {names})")
    else:
        balance = field(wallet, "balance")
        note(f"wallets(): {len(wallets)} wallet(s), {currency} balance {balance}")
        if "balance" in expect:
            if balance is None:
                problems.append(f"wallets(): {currency} balance is null, expected {expect['balance']}")
            elif units(balance) != units(expect["balance"]):
                problems.append(
                    f"wallets(): {currency} balance is {balance}, expected {expect['balance']}"
                )

    include_completed = bool(expect.get("include_completed", False))
    orders = as_list(call("my_orders", include_completed=include_completed), "orders")
    by_id = {}
    for order in orders:
        oid = field(order, "id")
        if oid is None:
            problems.append(f"my_orders(): an order without an id: {order!r}")
            continue
        by_id[int(oid)] = order
    ids = sorted(by_id)
    note(f"my_orders(include_completed={include_completed}): ids {ids}")
    if "order_ids" in expect:
        wanted = sorted(int(i) for i in expect["order_ids"])
        if len(orders) != len(by_id):
            problems.append(f"my_orders(): {len(orders)} orders but {len(by_id)} distinct ids")
        if ids != wanted:
            missing = sorted(set(wanted) - set(ids))
            extra = sorted(set(ids) - set(wanted))
            problems.append(
                f"my_orders(): ids {ids}, expected {wanted} (missing {missing}, unexpected {extra})"
            )
    for oid, attributes in (expect.get("orders") or {}).items():
        order = by_id.get(int(oid))
        if order is None:
            problems.append(f"my_orders(): no order {oid} to check {sorted(attributes)}")
            continue
        for name, value in attributes.items():
            actual = field(order, name)
            if not same(actual, value):
                problems.append(f"my_orders(): order {oid} has {name}={actual!r}, expected {value!r}")

    client.close()
    if problems:
        fail("\n  " + "\n  ".join(problems))
    print("clore-ai check passed")


if __name__ == "__main__":
    main()
