"""Berth's traffic verbs on a service: the split across serving revisions, promote and abort of a
running rollout, shadow traffic (mirror) and staged revisions, plus the message of a rolled-back
operation. Mixed into :class:`~berth.core.webservice.Webservice`."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Dict, List, Mapping, Optional

from ...exceptions import WebserviceException
from .rollout import check_weights

if TYPE_CHECKING:  # pragma: no cover
    from ..._http import Response
    from ..workspace import Workspace

__all__ = ["ProgressiveDelivery", "rolled_back_message"]

_GATE_NAMES = {"errorRate": "error rate", "p99Latency": "p99 latency"}


def _gate_value(gate: str, value: Any) -> str:
    if value is None:
        return "not measured"
    return f"{float(value):.2f}%" if gate == "errorRate" else f"{float(value):.1f} ms"


def gate_line(figure: Mapping[str, Any]) -> str:
    """``error rate 30.50% (baseline 0.20%) over threshold 1.20% after 57 requests: failed``."""
    gate = str(figure.get("gate", ""))
    baseline = figure.get("baseline")
    base = f" (baseline {_gate_value(gate, baseline)})" if baseline is not None else ""
    return (
        f"{_GATE_NAMES.get(gate, gate)} measured {_gate_value(gate, figure.get('measured'))}{base}, "
        f"threshold {_gate_value(gate, figure.get('threshold'))}, after {figure.get('requests', 0)} requests: "
        f"{figure.get('verdict', 'unknown')}"
    )


def rolled_back_message(operation: Mapping[str, Any], service: Optional[Mapping[str, Any]]) -> str:
    """Why a ``RolledBack`` operation ended: its error (gate, threshold and measured value as the
    server words them) and the failed gates of that rollout, as the operation stored them (else as
    the service shows them)."""
    error = operation.get("error") or {}
    lines = [
        f"Service rollout was rolled back: operation {operation.get('id')} "
        f"(revision {operation.get('targetRevision')}) did not pass its gates."
    ]
    if error:
        lines.append(f"{error.get('code', 'RolledBack')} at {error.get('step', '?')}: {error.get('message', '')}")
    status = operation.get("rollout") or (service or {}).get("rolloutStatus") or {}
    if status.get("operationId") == operation.get("id"):
        for figure in status.get("gates") or []:
            if figure.get("verdict") == "failed":
                lines.append("Gate " + gate_line(figure))
    if service is not None:
        lines.append(
            f"Service {service.get('name')} is {service.get('state')}; revision {service.get('servingRevision')} "
            "serves requests."
        )
    return "\n".join(lines)


class ProgressiveDelivery:
    """The traffic verbs (Berth extension). Uses the host class's ``workspace``, ``name``,
    ``_path()``, ``_start()`` and ``update_deployment_state()``."""

    workspace: "Workspace"
    name: str

    def _path(self) -> str:  # pragma: no cover - provided by Webservice
        raise NotImplementedError

    def _start(self, response: "Response") -> None:  # pragma: no cover - provided by Webservice
        raise NotImplementedError

    def update_deployment_state(self) -> None:  # pragma: no cover - provided by Webservice
        raise NotImplementedError

    def get_traffic(self) -> Dict[str, Any]:
        """Berth: each serving revision with its name, weight, replicas and last-minute figures
        (requests/s, 5xx rate, p50/p99), the running rollout and the mirror, as the server's
        ``Traffic`` JSON (``revisions``, ``rollout``, ``mirror``)."""
        payload: Dict[str, Any] = self.workspace.service_context.json("GET", self._path() + "/traffic")
        return payload

    def set_traffic(self, weights: Mapping[Any, int], names: Optional[Mapping[Any, str]] = None) -> None:
        """Berth: splits traffic by hand, e.g. ``set_traffic({3: 90, 4: 10})``; revisions not running
        are started first. Asynchronous like ``update``: call :meth:`wait_for_deployment`.

        :param weights: Revision → percent, summing to 100.
        :param names: Revision → name (v1 ``AksEndpoint`` version names).
        :raises WebserviceException: Bad revisions or weights (checked before sending), or the
            server's refusal (409 while another operation runs).
        """
        body: Dict[str, Any] = {"weights": check_weights(weights)}
        if names:
            body["names"] = {str(k): str(v) for k, v in names.items()}
        response = self.workspace.service_context.request(
            "PUT", self._path() + "/traffic", json_body=body, expect=(202,), what="set traffic"
        )
        self._start(response)

    def _rollout_action(self, action: str) -> Dict[str, Any]:
        status: Dict[str, Any] = self.workspace.service_context.json(
            "POST", f"{self._path()}/rollout/{action}", what=f"{action} rollout"
        )
        self.update_deployment_state()
        return status

    def promote(self) -> Dict[str, Any]:
        """Berth: ends the running rollout's bake now; the new revision takes all traffic. Returns
        the rollout's status. :raises WebserviceException: 409 when no rollout runs."""
        return self._rollout_action("promote")

    def abort(self) -> Dict[str, Any]:
        """Berth: rolls the running rollout back at once; traffic returns to the previous revision.
        Returns the rollout's status. :raises WebserviceException: 409 when no rollout runs."""
        return self._rollout_action("abort")

    def mirror(self, revision: Optional[int], percent: int = 0) -> Optional[Dict[str, Any]]:
        """Berth: copies ``percent`` % of live requests to ``revision`` after the primary answered
        (clients only ever get the primary's answer). ``percent=0`` (or ``revision=None``) stops
        mirroring and returns ``None``; otherwise returns the mirror's figures.

        :raises WebserviceException: A bad revision or percent, or the server's refusal.
        """
        if revision is None or percent == 0:
            self.workspace.service_context.request(
                "DELETE", self._path() + "/mirror", expect=(204, 200), what="stop mirroring"
            )
            return None
        errors: List[str] = []
        if isinstance(revision, bool) or not isinstance(revision, int) or revision < 1:
            errors.append(f"Error, revision is {revision!r}: it must be a revision number >= 1.")
        if isinstance(percent, bool) or not isinstance(percent, int) or not 0 <= percent <= 100:
            errors.append(f"Error, percent is {percent!r}: it must be a whole percent from 1 to 100 (0 stops).")
        if errors:
            raise WebserviceException("\n".join(errors) + "\n")
        status: Dict[str, Any] = self.workspace.service_context.json(
            "PUT", self._path() + "/mirror", json_body={"revision": revision, "percent": percent}, what="mirror"
        )
        return status

    def mirror_diffs(self) -> List[Dict[str, Any]]:
        """Berth: the first 100 pairs of differing answers (primary vs shadow), oldest first."""
        payload = self.workspace.service_context.json("GET", self._path() + "/mirror/diffs")
        return list((payload or {}).get("value") or [])

    def _stage(self, body: Dict[str, Any]) -> Dict[str, Any]:
        """Writes a new revision (an update body) without serving it; returns the ``Revision``."""
        response = self.workspace.service_context.request(
            "POST", self._path() + "/revisions", json_body=body, expect=(201,), what="stage revision"
        )
        revision: Dict[str, Any] = response.json()
        return revision

