"""Berth's progressive delivery settings: :class:`Rollout` (the deployment config's ``rollout``
block: strategy, bake, gates, shadow), the duration text it accepts (``15s``, ``2m``, ``1h``, ``90``)
and the rules of a hand-set traffic split. The server applies the same rules; checking here fails
early with the same words."""

from __future__ import annotations

import re
from typing import Any, Dict, List, Mapping, Optional, TypeVar, Union

from ...exceptions import WebserviceException

__all__ = ["Rollout", "STRATEGIES", "parse_duration", "check_weights", "rollout_block", "with_rollout"]

#: Strategy names as the server writes them.
STRATEGIES = ("rolling", "canary", "linear", "blueGreen")
_STRATEGY_ALIASES = {"rolling": "rolling", "canary": "canary", "linear": "linear", "bluegreen": "blueGreen",
                     "blue-green": "blueGreen", "blue_green": "blueGreen"}
_DURATION_RULE = "whole seconds (90) or a number with s, m or h ('15s', '2m', '1h', '1m30s')"
_MAX_BAKE_SECONDS = 24 * 3600


def parse_duration(text: Union[str, int]) -> int:
    """Seconds in ``text``: ``90``, ``"90"``, ``"15s"``, ``"2m"``, ``"1h"``, ``"1m30s"``.

    :raises WebserviceException: Anything else, naming the text and the rule.
    """
    if isinstance(text, bool) or not isinstance(text, (str, int)):
        raise WebserviceException(f"Error, {text!r} is not a duration: write {_DURATION_RULE}.")
    if isinstance(text, int):
        if text < 0:
            raise WebserviceException(f"Error, {text!r} is not a duration: write {_DURATION_RULE}.")
        return text
    trimmed = text.strip()
    if trimmed.isdigit() and trimmed.isascii():
        return int(trimmed)
    parts = re.fullmatch(r"(?:(\d+)[hH])?(?:(\d+)[mM])?(?:(\d+)[sS])?", trimmed)
    if not trimmed or parts is None or not any(parts.groups()):
        raise WebserviceException(f"Error, {text!r} is not a duration: write {_DURATION_RULE}.")
    hours, minutes, seconds = (int(g) if g else 0 for g in parts.groups())
    return hours * 3600 + minutes * 60 + seconds


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


class Rollout:
    """How traffic moves to a new revision of a service (Berth extension).

    Pass it as ``rollout=`` to ``deploy_configuration(...)`` (the default for later updates) or to
    ``update(...)`` (this change and the next ones)::

        Rollout(strategy="canary", canary_percent=10, bake="2m", max_error_rate=1, max_p99_ms=300)

    :param strategy: ``rolling`` (all at once when the new replicas are ready, the default),
        ``canary`` (``canary_percent`` % for the bake, then 100 %), ``linear`` (``steps`` equal steps,
        each baked) or ``blueGreen`` (switch at once, keep the old revision warm for the bake).
    :param canary_percent: 1–99.
    :param steps: 2–20.
    :param bake_seconds: Seconds each step bakes (0–86400; > 0 for canary and linear).
    :param bake: The same as text: ``"15s"``, ``"2m"``, ``"1h"`` (give one of the two).
    :param max_error_rate: Gate: percent points of 5xx rate the new revision may have above the old
        one's (0–100).
    :param max_p99_ms: Gate: the new revision's p99 latency limit in ms (≥ 1).
    :param min_requests: Gates judge nothing before this many requests (≥ 1).
    :param auto_rollback: Roll back by itself when a gate fails (server default: True).
    :param shadow_percent: Copy this share (1–100) of requests to the new revision before it takes any.
    :param shadow_revision: The revision that gets the copies (default: the rollout's new revision).
    :raises WebserviceException: Every problem, one ``Error, ...`` line each.
    """

    def __init__(
        self,
        strategy: Optional[str] = None,
        canary_percent: Optional[int] = None,
        steps: Optional[int] = None,
        bake_seconds: Optional[int] = None,
        bake: Optional[Union[str, int]] = None,
        max_error_rate: Optional[float] = None,
        max_p99_ms: Optional[int] = None,
        min_requests: Optional[int] = None,
        auto_rollback: Optional[bool] = None,
        shadow_percent: Optional[int] = None,
        shadow_revision: Optional[int] = None,
    ) -> None:
        errors: List[str] = []
        self.strategy: Optional[str] = None
        if strategy is not None:
            named = _STRATEGY_ALIASES.get(str(strategy).lower()) if isinstance(strategy, str) else None
            if named is None:
                errors.append(f"Error, strategy is {strategy!r}: it must be one of {', '.join(STRATEGIES)}.")
            self.strategy = named
        self.bake_seconds: Optional[int] = None
        if bake_seconds is not None and bake is not None:
            errors.append("Error, give bake_seconds or bake, not both.")
        elif bake_seconds is not None:
            if not _whole(bake_seconds) or not 0 <= bake_seconds <= _MAX_BAKE_SECONDS:
                errors.append(f"Error, bake_seconds is {bake_seconds!r}: it must be whole seconds from 0 to 86400 (24h).")
            else:
                self.bake_seconds = bake_seconds
        elif bake is not None:
            try:
                seconds = parse_duration(bake)
            except WebserviceException as e:
                errors.append(f"Error, bake: {e.message[len('Error, '):]}")
            else:
                if seconds > _MAX_BAKE_SECONDS:
                    errors.append(f"Error, bake is {bake!r}: a bake lasts at most 24h.")
                else:
                    self.bake_seconds = seconds
        ranges = (
            ("canary_percent", canary_percent, 1, 99, "a percent from 1 to 99"),
            ("steps", steps, 2, 20, "a whole number of steps from 2 to 20"),
            ("max_p99_ms", max_p99_ms, 1, None, "whole milliseconds >= 1"),
            ("min_requests", min_requests, 1, None, "a whole number of requests >= 1"),
            ("shadow_percent", shadow_percent, 1, 100, "a percent of requests from 1 to 100"),
            ("shadow_revision", shadow_revision, 1, None, "a revision number >= 1"),
        )
        for label, value, low, high, rule in ranges:
            if value is not None and (not _whole(value) or value < low or (high is not None and value > high)):
                errors.append(f"Error, {label} is {value!r}: it must be {rule}.")
        if max_error_rate is not None and (
            isinstance(max_error_rate, bool)
            or not isinstance(max_error_rate, (int, float))
            or not 0 <= max_error_rate <= 100
        ):
            errors.append(
                f"Error, max_error_rate is {max_error_rate!r}: it is percent points of 5xx rate above the old "
                "revision's, from 0 to 100 (e.g. 1 or 0.5)."
            )
        if auto_rollback is not None and not isinstance(auto_rollback, bool):
            errors.append(f"Error, auto_rollback is {auto_rollback!r}: it must be True or False.")
        if shadow_revision is not None and shadow_percent is None:
            errors.append("Error, shadow_revision needs shadow_percent: say which share of requests to copy.")
        if self.bake_seconds == 0 and self.strategy in ("canary", "linear"):
            errors.append(
                f"Error, the {self.strategy} strategy needs a bake > 0: each step must bake to be judged "
                "(e.g. bake='60s'), or use blueGreen or rolling."
            )
        if errors:
            raise WebserviceException("\n".join(errors) + "\n")
        self.canary_percent = canary_percent
        self.steps = steps
        self.max_error_rate = max_error_rate
        self.max_p99_ms = max_p99_ms
        self.min_requests = min_requests
        self.auto_rollback = auto_rollback
        self.shadow_percent = shadow_percent
        self.shadow_revision = shadow_revision

    def serialize(self) -> Dict[str, Any]:
        """The deployment config's ``rollout`` block: only the settings given (the server keeps the
        others: its defaults on create, the service's current values on update)."""
        out: Dict[str, Any] = {}
        for key, value in (
            ("strategy", self.strategy),
            ("canaryPercent", self.canary_percent),
            ("steps", self.steps),
            ("bakeSeconds", self.bake_seconds),
            ("maxErrorRate", self.max_error_rate),
            ("maxP99Ms", self.max_p99_ms),
            ("minRequests", self.min_requests),
            ("autoRollback", self.auto_rollback),
        ):
            if value is not None:
                out[key] = value
        if self.shadow_percent is not None:
            shadow: Dict[str, Any] = {"percent": self.shadow_percent}
            if self.shadow_revision is not None:
                shadow["revision"] = self.shadow_revision
            out["shadow"] = shadow
        return out

    @staticmethod
    def deserialize(payload: Optional[Mapping[str, Any]]) -> Optional["Rollout"]:
        """A ``Rollout`` from a service's ``rollout`` settings (``None`` for none)."""
        if not payload:
            return None
        shadow = payload.get("shadow") or {}
        return Rollout(
            strategy=payload.get("strategy"),
            canary_percent=payload.get("canaryPercent"),
            steps=payload.get("steps"),
            bake_seconds=payload.get("bakeSeconds"),
            max_error_rate=payload.get("maxErrorRate"),
            max_p99_ms=payload.get("maxP99Ms"),
            min_requests=payload.get("minRequests"),
            auto_rollback=payload.get("autoRollback"),
            shadow_percent=shadow.get("percent"),
            shadow_revision=shadow.get("revision"),
        )

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Rollout) and self.serialize() == other.serialize()

    def __repr__(self) -> str:
        return f"Rollout({', '.join(f'{k}={v!r}' for k, v in self.serialize().items())})"


def check_weights(weights: Mapping[Any, Any]) -> Dict[str, int]:
    """``{3: 90, 4: 10}`` → ``{"3": 90, "4": 10}``, checked: revision numbers ≥ 1, whole weights
    from 0 to 100 summing to 100.

    :raises WebserviceException: Every problem, naming the revision, the weight and the fix.
    """
    if not isinstance(weights, Mapping) or not weights:
        raise WebserviceException(
            f"Error, weights is {weights!r}: give each serving revision its percent, e.g. {{3: 90, 4: 10}}."
        )
    errors: List[str] = []
    out: Dict[str, int] = {}
    for revision, weight in weights.items():
        key = str(revision)
        if isinstance(revision, bool) or not key.isdigit() or int(key) < 1 or str(int(key)) != key:
            errors.append(f"Error, {revision!r} is not a revision number (1, 2, ...): revisions() lists them.")
            continue
        if not _whole(weight) or not 0 <= weight <= 100:
            errors.append(f"Error, the weight of revision {key} is {weight!r}: it must be a whole percent from 0 to 100.")
            continue
        if key in out:
            errors.append(f"Error, revision {key} is listed twice: give each revision once.")
        out[key] = weight
    if not errors and sum(out.values()) != 100:
        listed = ", ".join(f"{k}: {v}" for k, v in out.items())
        errors.append(
            f"Error, the weights ({listed}) sum to {sum(out.values())}: they must sum to 100; change one so the "
            "total is 100."
        )
    if errors:
        raise WebserviceException("\n".join(errors) + "\n")
    return out


def rollout_block(rollout: Any) -> Dict[str, Any]:
    """The ``rollout`` block of ``rollout`` (a :class:`Rollout`).

    :raises WebserviceException: ``rollout`` is something else.
    """
    if not isinstance(rollout, Rollout):
        raise WebserviceException(
            f"Error, rollout must be a Rollout object (Rollout(strategy='canary', ...)), not {rollout!r}."
        )
    return rollout.serialize()


_Config = TypeVar("_Config")


def with_rollout(config: _Config, rollout: Optional[Rollout]) -> _Config:
    """``config`` (a deployment configuration) carrying ``rollout``, checked."""
    if rollout is not None:
        rollout_block(rollout)
        setattr(config, "rollout", rollout)
    return config
