"""The paper's analyses as declared experiments: each is a small config (methods, default dataset,
IFs, bits, seeds, an optional swept method parameter) that runs through the ordinary runner and
result store, so re-running an experiment only computes the cells it is missing.

    python run_benchmark.py --list-experiments
    python run_benchmark.py --experiment beta-sensitivity --dataset digits --set n_epochs=5

``--set NAME=VALUE`` (repeatable) overrides an experiment field (``methods``, ``if``/
``imbalance_factors``, ``bits``, ``seeds``, ``values``, ``split_seed``; lists are comma-separated,
methods with their parameters e.g. ``methods="LTHNet(k=3),CSQ"``) or else sets a method
parameter on every method of the run that has it (``n_epochs=2``, ``hidden_dim=128``,
``settings=features``). A method parameter changes the method spec, hence the cell keys: those
runs are stored beside, never over, the default ones.
"""
from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Sequence

from common.errors import BenchmarkError
from methods.registry import UnknownMethodError

from .specs import MethodSpec, expand_method_specs, parse_value, split_top_level

PAPER_IMBALANCE_FACTORS = (1.0, 50.0, 100.0)
#: The row the significance tables test against the best other method (the paper's claim, §6.4).
SIGNIFICANCE_TARGET = "LTHNet (k=3)"


class ExperimentError(BenchmarkError, ValueError):
    """A bad experiment name or override; the message says what exists and how to write it."""


@dataclass(frozen=True)
class FigureOutput:
    """A figure an experiment can produce: the drawing function in ``benchmark.figures`` (called as
    ``draw(frame, dataset, bits, path_stem)`` with the experiment's stored cells, see
    ``analysis_report.experiment_frame``), the file stem, and which rows it draws."""

    stem: str
    draw: str
    rows: str = "all"  # "all", "lthnet" (rows whose base starts with LTHNet) or "baselines" (the others)


#: Every figure an experiment can declare (by name) -- the one dispatch table of the figures.
FIGURES: dict[str, FigureOutput] = {
    "figure3": FigureOutput("figure3_beta", "plot_beta_sensitivity"),
    "figure4": FigureOutput("figure4_batch_lthnet", "plot_batch_size_lthnet", rows="lthnet"),
    "figure5": FigureOutput("figure5_dme", "plot_dme_ablation"),
    "figure6": FigureOutput("figure6_batch_deep", "plot_batch_size_deep", rows="baselines"),
    "figure7": FigureOutput("figure7_convergence", "plot_convergence"),
}
TABLE = "table"  # the output kind of the main grids: the Table 3/4 layout and its companions


@dataclass(frozen=True)
class Experiment:
    """One analysis of the paper.

    ``bits`` is a tuple of code lengths, ``"default"`` (the dataset's own: 32/64/96 on the paper's
    datasets) or ``"middle"`` (the middle default: 64 bits on the paper's datasets, as the paper's
    Figs. 4, 6 and 7 use). ``sweep``/``values``: a method parameter and the values it takes (each
    value is a separate method spec, e.g. ``LTHNet(beta=0.9,k=3)``); a value equal to the
    method's default gives the plain spec, so it shares its cells with the main tables.
    """

    name: str
    title: str
    methods: tuple[str, ...]
    dataset: str = "cifar100"
    imbalance_factors: tuple[float, ...] = PAPER_IMBALANCE_FACTORS
    bits: Any = "default"
    seeds: tuple[int, ...] = (0,)
    sweep: str | None = None
    values: tuple = ()
    outputs: tuple[str, ...] = (TABLE,)  # TABLE and/or names of FIGURES
    split_seed: int = 0
    note: str = ""

    def __post_init__(self):
        unknown = [name for name in self.outputs if name != TABLE and name not in FIGURES]
        if unknown:
            raise ExperimentError(f"experiment {self.name!r} declares unknown output(s) {unknown}; "
                                  f"outputs are {TABLE!r} or one of {sorted(FIGURES)}.")

    @property
    def produces_table(self) -> bool:
        return TABLE in self.outputs

    @property
    def figures(self) -> tuple[str, ...]:
        return tuple(name for name in self.outputs if name != TABLE)

    def describe(self) -> str:
        sweep = f"; sweeps {self.sweep} over {', '.join(map(repr, self.values))}" if self.sweep else ""
        bits = self.bits if isinstance(self.bits, str) else "/".join(map(str, self.bits))
        return (f"{self.title}: {', '.join(self.methods)} on {self.dataset} at IF "
                f"{'/'.join(f'{f:g}' for f in self.imbalance_factors)}, bits {bits}{sweep}")


DEEP_BASELINES = ("DPSH", "HashNet", "DSDH", "CSQ")

EXPERIMENTS: dict[str, Experiment] = {e.name: e for e in (
    Experiment("table3", "Table 3 (CIFAR-100 main grid)", ("all",), dataset="cifar100"),
    Experiment("table4", "Table 4 (ImageNet100 main grid)", ("all",), dataset="imagenet100"),
    Experiment(
        "beta-sensitivity", "Fig. 3 (class-balanced loss beta)", ("LTHNet(k=3)",), sweep="beta",
        values=(0.0, 0.9, 0.99, 0.999, 0.9999), outputs=("figure3",),
        note=("The paper's text does not list the beta values of Fig. 3 (only beta in [0, 1), beta = 0 "
              "chosen); these are the class-balanced loss's usual values (Cui et al., CVPR 2019)."),
    ),
    Experiment(
        "batch-size", "Figs. 4 and 6 (training batch size)", ("LTHNet(k=3)",) + DEEP_BASELINES,
        bits="middle", sweep="batch_size", values=(8, 16, 32, 64, 128), outputs=("figure4", "figure6"),
        note=("Fig. 4 is LTHNet (k=3), Fig. 6 the deep baselines, both at 64 bits. The paper's text names "
              "batch sizes 8 and 16 (best for LTHNet on CIFAR-100 / ImageNet100), 16/32/64 and 128 (Fig. 6); "
              "we sweep 8..128 in powers of two."),
    ),
    Experiment(
        "dme-ablation", "Fig. 5 (extended dynamic meta-embedding on/off)", ("LTHNet(k=0)",),
        sweep="use_meta_embedding", values=(True, False), outputs=("figure5",),
        note="LTHNet (k=0) with (TRUE) and without (FALSE) the extended DME module, as in the paper.",
    ),
    Experiment(
        "convergence", "Fig. 7 (normalised training loss per epoch)", ("LTHNet(k=3)",), bits="middle",
        outputs=("figure7",),
        note="Each run's per-epoch mean loss divided by its maximum (the records' training_log['loss']).",
    ),
)}


def get_experiment(name: str) -> Experiment:
    if name not in EXPERIMENTS:
        raise ExperimentError(
            f"unknown experiment {name!r}. Declared experiments: {', '.join(EXPERIMENTS)} "
            "(see --list-experiments).")
    return EXPERIMENTS[name]


def list_experiments_text() -> str:
    width = max(map(len, EXPERIMENTS))
    lines = []
    for experiment in EXPERIMENTS.values():
        lines.append(f"{experiment.name:<{width}}  {experiment.describe()}")
    return "\n".join(lines)


# ---------------------------------------------------------------------------- overrides


FIELD_ALIASES = {"if": "imbalance_factors", "imbalance_factors": "imbalance_factors", "ifs": "imbalance_factors",
                 "methods": "methods", "bits": "bits", "seeds": "seeds", "values": "values",
                 "split_seed": "split_seed"}


def parse_overrides(assignments: Sequence[str]) -> tuple[dict[str, Any], dict[str, Any]]:
    """``NAME=VALUE`` strings -> (experiment field overrides, method parameter overrides)."""
    fields, params = {}, {}
    for assignment in assignments:
        name, sep, value = assignment.partition("=")
        name = name.strip()
        if not sep or not name or not value.strip():
            raise ExperimentError(
                f"cannot read --set {assignment!r}; write NAME=VALUE, e.g. --set n_epochs=2 or --set if=1,50.")
        value = value.strip()
        if name in FIELD_ALIASES:
            field_name = FIELD_ALIASES[name]
            items = split_top_level(value)
            if field_name == "methods":
                fields[field_name] = tuple(items)
            elif field_name == "split_seed":
                fields[field_name] = int(parse_value(value))
            elif field_name == "bits" and value in ("default", "middle"):
                fields[field_name] = value
            else:
                parsed = tuple(parse_value(item) for item in items)
                if field_name in ("bits", "seeds") and not all(
                        isinstance(v, int) and not isinstance(v, bool) for v in parsed):
                    raise ExperimentError(f"--set {name}= needs integers, got {value!r}; e.g. --set {name}=32,64.")
                if field_name == "imbalance_factors":
                    if not all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in parsed):
                        raise ExperimentError(f"--set if= needs numbers, got {value!r}; e.g. --set if=1,50.")
                    parsed = tuple(float(v) for v in parsed)
                fields[field_name] = parsed
        else:
            params[name] = parse_value(value)
    return fields, params


# ---------------------------------------------------------------------------- resolution


@dataclass(frozen=True)
class Point:
    """One method spec of an experiment: its base row (``LTHNet (k=3)``) and the swept value."""

    spec: MethodSpec
    base: str
    value: Any = None


@dataclass
class ExperimentRun:
    """An experiment resolved for one dataset: concrete specs, IFs, bits and seeds."""

    experiment: Experiment
    dataset: str
    imbalance_factors: list[float]
    bits: list[int]
    seeds: list[int]
    split_seed: int
    points: list[Point]
    method_params: dict[str, Any] = field(default_factory=dict)

    @property
    def specs(self) -> list[MethodSpec]:
        unique: dict[str, MethodSpec] = {}
        for point in self.points:
            unique.setdefault(point.spec.key, point.spec)
        return list(unique.values())

    @property
    def method_keys(self) -> list[str]:
        return [spec.key for spec in self.specs]

    def target_display(self, base: str = SIGNIFICANCE_TARGET) -> str | None:
        """The display name of the run's spec for a base row (e.g. with ``n_epochs=1`` added)."""
        for point in self.points:
            if point.base == base:
                return point.spec.display
        return None

    def to_dict(self) -> dict:
        return {
            "experiment": self.experiment.name, "title": self.experiment.title, "dataset": self.dataset,
            "imbalance_factors": self.imbalance_factors, "bits": self.bits, "seeds": self.seeds,
            "split_seed": self.split_seed, "sweep": self.experiment.sweep,
            "outputs": list(self.experiment.outputs), "note": self.experiment.note,
            "method_params": {k: repr(v) for k, v in self.method_params.items()},
            "points": [{"key": p.spec.key, "display": p.spec.display, "base": p.base, "value": p.value}
                       for p in self.points],
        }


def resolve_bits(bits, default_bits: Sequence[int]) -> list[int]:
    default_bits = list(default_bits)
    if bits == "default":
        return default_bits
    if bits == "middle":
        return [default_bits[len(default_bits) // 2]]
    return [int(b) for b in bits]


def _with_params(spec: MethodSpec, extra: dict[str, Any]) -> MethodSpec:
    """Add parameters the method has; a value equal to the class default (and not in the base
    spec) is left out, so ``LTHNet(k=3)`` with beta=0 stays ``LTHNet(k=3)``."""
    cls = spec.method_class()
    defaults = cls().get_params()
    params = dict(spec.params)
    for name, value in extra.items():
        if name not in defaults:
            continue
        default = defaults[name]
        if name not in spec.params and type(default) is type(value) and default == value:
            continue
        if name not in spec.params and isinstance(default, float) and isinstance(value, (int, float)) \
                and not isinstance(value, bool) and float(value) == default:
            continue
        params[name] = value
    return MethodSpec(spec.name, params)


def resolve(experiment: Experiment, dataset: str, default_bits: Sequence[int],
            field_overrides: dict[str, Any] | None = None,
            method_params: dict[str, Any] | None = None, exclude: Sequence[str] = ()) -> ExperimentRun:
    """Concrete specs for ``dataset``; ``field_overrides`` replace experiment fields,
    ``method_params`` are set on every method of the run that has them (see module docstring) and
    ``exclude`` leaves methods out (``--exclude``)."""
    field_overrides = dict(field_overrides or {})
    method_params = dict(method_params or {})
    unknown_fields = set(field_overrides) - set(FIELD_ALIASES.values())
    if unknown_fields:
        raise ExperimentError(f"unknown experiment field(s) {sorted(unknown_fields)}.")
    if "values" in field_overrides and experiment.sweep is None:
        raise ExperimentError(f"experiment {experiment.name!r} sweeps no parameter; --set values= does not apply.")
    experiment = replace(experiment, **field_overrides)
    if experiment.sweep and experiment.sweep in method_params:
        raise ExperimentError(
            f"{experiment.sweep} is the parameter experiment {experiment.name!r} sweeps; set its values with "
            f"--set values=..., not --set {experiment.sweep}=...")
    try:
        bases = expand_method_specs(list(experiment.methods), list(exclude))
    except UnknownMethodError as error:
        raise ExperimentError(str(error)) from error
    accepted = set()
    for base in bases:
        accepted |= set(base.method_class()().get_params())
    unused = sorted(set(method_params) - accepted)
    if unused:
        raise ExperimentError(
            f"no method of experiment {experiment.name!r} has parameter(s) {unused}; experiment fields are "
            f"{sorted(set(FIELD_ALIASES))}. Check the spelling (e.g. --set n_epochs=2).")
    if experiment.sweep:
        sweepable = [b for b in bases if experiment.sweep in b.method_class()().get_params()]
        if not sweepable:
            raise ExperimentError(f"no method of experiment {experiment.name!r} has the swept parameter "
                                  f"{experiment.sweep!r}.")
        if not experiment.values:
            raise ExperimentError(f"experiment {experiment.name!r} needs at least one value of {experiment.sweep}.")
    points = []
    for base in bases:
        fixed = _with_params(base, method_params)
        if experiment.sweep and experiment.sweep in base.method_class()().get_params():
            for value in experiment.values:
                spec = _with_params(fixed, {experiment.sweep: value})
                points.append(Point(spec, base.display, value))
        else:
            points.append(Point(fixed, base.display, None))
    for point in points:  # validates parameter names/values now, not mid-run
        point.spec.build()
    if not experiment.seeds:
        raise ExperimentError("an experiment needs at least one seed.")
    return ExperimentRun(
        experiment=experiment, dataset=dataset, imbalance_factors=[float(f) for f in experiment.imbalance_factors],
        bits=resolve_bits(experiment.bits, default_bits), seeds=[int(s) for s in experiment.seeds],
        split_seed=int(experiment.split_seed), points=points, method_params=method_params)


def main_run_experiment(methods: Sequence[str], imbalance_factors: Sequence[float], bits, seeds: Sequence[int],
                        dataset: str, split_seed: int = 0) -> Experiment:
    """The plain ``run_benchmark.py --methods ...`` run, as an ad-hoc experiment named ``main``."""
    return Experiment("main", "Main grid (Tables 3-4 layout)", tuple(methods), dataset=dataset,
                      imbalance_factors=tuple(float(f) for f in imbalance_factors),
                      bits="default" if bits is None else tuple(bits), seeds=tuple(seeds), split_seed=split_seed)
