"""Building blocks of the scenario models: field types, and problems reported by field path.

- Distribution fields (`PositiveDist`, `NonNegativeDist`) take a bare number or a mapping
  `{dist: ..., ...}` and hold a ready `sim.model.distributions` object; `RetryField` holds a
  ready `RetryPolicy`. Both serialize back to the file form.
- `by_kind` picks a union member by its `kind`, so errors name `fleet.arrival.duration_s`
  rather than a union branch.
- A user fixing a file needs the dotted path of each field ("agent.retry.base_s"), what was
  expected and what was given, for every problem at once. Pydantic has all of that but speaks
  in `loc` tuples and its own words; `problems_from` translates. Cross-field rules raise
  `rules(...)` from a model validator so that several problems of one model are all reported.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Annotated, Any, Literal, NoReturn, Union, get_args, get_origin

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    PlainSerializer,
    PlainValidator,
    ValidationError,
    model_validator,
)
from pydantic_core import PydanticCustomError

from sim.model.distributions import Constant, Distribution, Empirical, Exponential, LogNormal, Uniform
from sim.model.retry import RetryPolicy, RetryPolicyName
from sim.scenario_yaml import Problem


def fail(message: str) -> NoReturn:
    """Reject a value from inside a validator, with our own wording (no "Value error, " prefix)."""
    raise PydanticCustomError("scenario_value", "{message}", {"message": message})


def rules(problems: list[Problem]) -> None:
    """Report cross-field problems (paths relative to the model being validated), all at once."""
    if problems:
        summary = "; ".join(f"{p}: {m}" for p, m in problems)
        raise PydanticCustomError("scenario_rules", "{summary}", {"summary": summary, "problems": problems})


@dataclass(frozen=True)
class Pick:
    """Annotation metadata: which model validates this input (by its `dist` or `kind`), for naming its fields."""

    model_for: Callable[[Any], type[BaseModel] | None]


def problems_from(exc: ValidationError, root: type[BaseModel], data: Any) -> list[Problem]:
    out: list[Problem] = []
    for err in exc.errors(include_url=False):
        loc = tuple(part for part in err["loc"] if part != "[key]")  # a bad dict key: the key is the path
        path = ".".join(str(part) for part in loc)
        if err["type"] == "scenario_rules":
            out += [(f"{path}.{sub}" if path else sub, msg) for sub, msg in err["ctx"]["problems"]]
        elif err["type"] == "extra_forbidden":
            keys = _accepted_keys(root, data, loc[:-1])
            out.append((path, "unknown field" + (f"; expected one of: {', '.join(keys)}" if keys else "")))
        elif err["type"] == "missing":
            out.append((path, "required field is missing"))
        else:
            out.append((path, _with_input(err["msg"], err.get("input"), err["type"])))
    return out


def _with_input(msg: str, value: Any, kind: str) -> str:
    if kind.startswith("scenario_") or isinstance(value, (dict, list, tuple)):
        return msg  # our own messages already say what was given; containers are too long to echo
    return f"{msg} ({value!r})" if ", got " in msg else f"{msg}, got {value!r}"


def _accepted_keys(root: type[BaseModel], data: Any, loc: tuple[Any, ...]) -> list[str] | None:
    """The field names of the model at `loc`, following the input to resolve unions; None if unsure."""
    ann: Any = root
    node: Any = data
    picks: tuple[Pick, ...] = ()
    for part in loc:
        model = _model_for(ann, node, picks)
        if model is not None:
            field = model.model_fields.get(part) if isinstance(part, str) else None
            if field is None:
                return None
            ann, picks = field.annotation, tuple(m for m in field.metadata if isinstance(m, Pick))
        elif get_origin(ann) in (tuple, list, dict):
            ann, picks = get_args(ann)[1 if get_origin(ann) is dict else 0], ()
        else:
            return None
        try:
            node = node[part]
        except (KeyError, IndexError, TypeError):
            return None
    model = _model_for(ann, node, picks)
    return list(model.model_fields) if model is not None else None


def _model_for(ann: Any, node: Any, picks: tuple[Pick, ...]) -> type[BaseModel] | None:
    if get_origin(ann) is Annotated:
        ann, *meta = get_args(ann)
        picks += tuple(m for m in meta if isinstance(m, Pick))
    if picks:
        return picks[0].model_for(node)
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    if get_origin(ann) is Union and isinstance(node, dict):
        for member in get_args(ann):
            kind = getattr(member, "model_fields", {}).get("kind")
            if kind is not None and kind.default == node.get("kind"):
                return member
    return None


# --- field types ---------------------------------------------------------------------------

# The largest magnitude of any number in a scenario: beyond it a run overflows (a lognormal's
# samples, a disk size in bytes), whatever the machine. Sizes that depend on the machine
# (fleet, duration, rates) are checked by sim.scenario_limits.
MAX_MAGNITUDE = 1e12


def _no_bool(value: Any) -> Any:
    """YAML's `true` is not the number 1: pydantic's lax mode would take it as one."""
    if isinstance(value, bool):
        fail(f"expected a number, got {value!r}")
    return value


NoBool = BeforeValidator(_no_bool)
Finite = Annotated[float, NoBool, Field(ge=-MAX_MAGNITUDE, le=MAX_MAGNITUDE, allow_inf_nan=False)]
Positive = Annotated[float, NoBool, Field(gt=0, le=MAX_MAGNITUDE, allow_inf_nan=False)]
NonNegative = Annotated[float, NoBool, Field(ge=0, le=MAX_MAGNITUDE, allow_inf_nan=False)]
Fraction = Annotated[float, NoBool, Field(ge=0, le=1)]


def _whole(value: Any) -> Any:
    """`1e4` is a YAML float but a whole number: take it; refuse `true`, 2.5 and "3" (strict int)."""
    value = _no_bool(value)
    if type(value) is float and value.is_integer() and abs(value) < 2**63:
        return int(value)
    return value


Whole = BeforeValidator(_whole)  # with Field(strict=True) on an int field
MAX_SIGMA = 5.0  # a lognormal's sigma: at 5 one sample in a million is 10^10 times the median


class FrozenModel(BaseModel):
    """Every scenario model: unknown keys are errors, instances are immutable."""

    model_config = ConfigDict(extra="forbid", frozen=True)


# --- distribution fields -------------------------------------------------------------------


class _ConstantSpec(FrozenModel):
    dist: Literal["constant"]
    value: Finite

    def build(self) -> Distribution:
        return Constant(self.value)


class _UniformSpec(FrozenModel):
    dist: Literal["uniform"]
    low: Finite
    high: Finite

    @model_validator(mode="after")
    def _ordered(self) -> _UniformSpec:
        rules([("high", f"expected high >= low, got low={self.low} high={self.high}")] if self.low > self.high else [])
        return self

    def build(self) -> Distribution:
        return Uniform(self.low, self.high)


class _ExponentialSpec(FrozenModel):
    dist: Literal["exponential"]
    mean: Positive

    def build(self) -> Distribution:
        return Exponential(self.mean)


class _LogNormalSpec(FrozenModel):
    dist: Literal["lognormal"]
    median: Positive
    sigma: Annotated[float, NoBool, Field(ge=0, le=MAX_SIGMA, allow_inf_nan=False)]

    def build(self) -> Distribution:
        return LogNormal(self.median, self.sigma)


class _EmpiricalSpec(FrozenModel):
    dist: Literal["empirical"]
    values: tuple[Finite, ...] = Field(min_length=1)

    def build(self) -> Distribution:
        return Empirical(self.values)


DIST_SPECS: dict[str, type[FrozenModel]] = {
    "constant": _ConstantSpec,
    "uniform": _UniformSpec,
    "exponential": _ExponentialSpec,
    "lognormal": _LogNormalSpec,
    "empirical": _EmpiricalSpec,
}


def _smallest(d: Distribution) -> float | None:
    """The smallest value `d` can sample, or None when every sample is > 0 (exponential, lognormal)."""
    if isinstance(d, Constant):
        return d.value
    if isinstance(d, Uniform):
        return d.low
    if isinstance(d, Empirical):
        return min(d.values)
    return None


def _parse_dist(value: Any, positive: bool) -> Distribution:
    if isinstance(value, Distribution):
        dist = value
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        dist = _ConstantSpec(dist="constant", value=value).build()
    elif isinstance(value, Mapping):
        name = value.get("dist")
        spec = DIST_SPECS.get(name) if isinstance(name, str) else None
        if spec is None:
            fail(
                f"expected `dist:` one of {', '.join(DIST_SPECS)}, got {name!r}"
                if "dist" in value
                else f"a distribution mapping needs `dist:` (one of {', '.join(DIST_SPECS)})"
            )
        dist = spec.model_validate(value).build()  # type: ignore[attr-defined]
    else:
        fail(f"expected a number or a mapping with `dist:` ({', '.join(DIST_SPECS)}), got {value!r}")
    low = _smallest(dist)
    if low is not None and (low <= 0 if positive else low < 0):
        fail(f"expected every sample {'> 0' if positive else '>= 0'}, got {dist.to_spec()} (smallest value {low})")
    return dist


def _dist_field(positive: bool) -> Any:
    return Annotated[
        Distribution,
        PlainValidator(lambda v: _parse_dist(v, positive)),
        PlainSerializer(lambda d: d.to_spec(), return_type=dict),
        Pick(lambda node: DIST_SPECS.get(str(node.get("dist"))) if isinstance(node, Mapping) else None),
    ]


PositiveDist = _dist_field(positive=True)  # sizes, rates: a zero would divide by zero
NonNegativeDist = _dist_field(positive=False)  # durations: zero means "instant"


def by_kind(options: Mapping[str, type[FrozenModel]]) -> BeforeValidator:
    """Pick the union member by `kind`, so errors name `fleet.arrival.duration_s`, not a union branch."""

    def parse(value: Any) -> Any:
        if isinstance(value, tuple(options.values())):
            return value
        kind = value.get("kind") if isinstance(value, Mapping) else None
        if not isinstance(kind, str) or kind not in options:
            fail(
                f"expected a mapping with `kind:` one of {', '.join(options)}, got "
                + (f"kind {kind!r}" if isinstance(value, Mapping) else repr(value))
            )
        return options[kind].model_validate(value)

    return BeforeValidator(parse)


def _parse_retry(value: Any) -> RetryPolicy:
    if isinstance(value, RetryPolicy):
        return value
    spec = _RetrySpec.model_validate(value)
    return RetryPolicy(policy=spec.policy, base_s=spec.base_s, cap_s=spec.cap_s, max_attempts=spec.max_attempts)


def _dump_retry(r: RetryPolicy) -> dict[str, Any]:
    return {"policy": r.policy.value, "base_s": r.base_s, "cap_s": r.cap_s, "max_attempts": r.max_attempts}


class _RetrySpec(FrozenModel):
    policy: RetryPolicyName = RetryPolicyName.EXPONENTIAL_FULL_JITTER
    base_s: Positive = 0.5
    cap_s: Positive = 30.0
    max_attempts: Annotated[int, Whole] = Field(
        default=5, ge=1, le=1000, strict=True
    )  # every try counts, the first included

    @model_validator(mode="after")
    def _cap_above_base(self) -> _RetrySpec:
        rules(
            [("cap_s", f"expected cap_s >= base_s ({self.base_s}), got {self.cap_s}")]
            if self.cap_s < self.base_s
            else []
        )
        return self


RetryField = Annotated[
    RetryPolicy,
    PlainValidator(_parse_retry),
    PlainSerializer(_dump_retry, return_type=dict),
    Pick(lambda _: _RetrySpec),
]
