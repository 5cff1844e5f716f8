"""The fault admin endpoint as a client sees it: its path, its token's variable, and `set_faults`.

A leaf (httpx only), so that `smsload load` can drive a server's faults without importing the
server (`sim.server.faults` is the server's side of the same endpoint).
"""

from __future__ import annotations

from typing import Any

ADMIN_PATH = "/smsload/admin/faults"
ENV_ADMIN_TOKEN = "SMSLOAD_ADMIN_TOKEN"  # the admin token, for `smsload serve`, its workers and `smsload load`
ADMIN_HEADER = "X-Admin-Token"


class AdminError(Exception):
    """The server has no fault admin endpoint, refused the admin token, or refused the state."""


def set_faults(base_url: str, admin_token: str, state: dict[str, Any] | None, timeout_s: float = 5.0) -> dict[str, Any]:
    """PUT the fault state (`sim.model.faults` form) to the server, or GET it when `state` is None;
    the server's state as it now holds it."""
    import httpx  # only when a fault is set: `smsload --help` imports this module for its names

    url, headers = f"{base_url}{ADMIN_PATH}", {ADMIN_HEADER: admin_token}
    try:
        if state is None:
            response = httpx.get(url, headers=headers, timeout=timeout_s)
        else:
            response = httpx.put(url, json=state, headers=headers, timeout=timeout_s)
    except httpx.HTTPError as exc:
        raise AdminError(f"{url}: no answer ({type(exc).__name__})") from None
    # Without the endpoint the path is an unknown route behind the API's own token check (401 on
    # X-Auth-Token, or 404); the endpoint's own refusal names X-Admin-Token.
    if response.status_code == 401 and ADMIN_HEADER in response.text:
        raise AdminError(f"{url}: the server refused the admin token")
    if response.status_code in (401, 404):
        raise AdminError(f"{url}: the server has no fault admin endpoint (start it with --admin-token)")
    if response.status_code != 200:
        raise AdminError(f"{url}: HTTP {response.status_code}: {response.text[:200]}")
    result: dict[str, Any] = response.json()
    return result
