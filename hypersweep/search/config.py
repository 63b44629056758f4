"""Study configs: YAML -> validated `StudyConfig`.

Everything a user can get wrong is checked here, before any store is touched,
and reported as one `UserError` line that names the key and what is valid.
"""
from __future__ import annotations

import copy
import difflib
import functools
import os
import re
import typing
from pathlib import Path
from typing import Any, Iterable, Literal, Mapping, Sequence
from urllib.parse import urlsplit, urlunsplit

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, ValidationInfo, field_validator
from pydantic_core import PydanticCustomError

from hypersweep.models.errors import UserError, unknown
from hypersweep.models.errors import shown as yaml_shown
from hypersweep.models.registry import is_own, own_file

if typing.TYPE_CHECKING:
    from hypersweep.spaces import Space


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)

    @field_validator("*", mode="before")
    @classmethod
    def _numbers_are_numbers(cls, v: Any, info: ValidationInfo) -> Any:
        """YAML's true and false are not numbers: pydantic took `trials: true` for 1.
        Nor is a quoted number (`trials: "5"`), which pydantic took as 5 where
        `params.lr: "0.01"` is refused: a number is written without quotes. Nor is
        a float an integer (`trials: 2.0`), as `params.epochs: 2.0` is not."""
        if isinstance(v, float) and info.field_name is not None:
            # `trials: 2.0` was taken as 2 where `params.epochs: 2.0` is refused: a
            # whole number is written as one.
            types = _types(cls.model_fields[info.field_name].annotation)
            if int in types and float not in types:
                raise PydanticCustomError("not_integer", "not an integer",
                                          {"expected": _expected_of(types, "int_type")})
        if isinstance(v, (bool, str)) and info.field_name is not None:
            types = _types(cls.model_fields[info.field_name].annotation)
            if type(v) in types or v in types or not types & {int, float}:
                return v        # a bool or str key, or a literal's value (`parallel: auto`)
            kind = "int_type" if int in types else "float_type"
            if isinstance(v, bool):     # `parallel: true`: an integer or 'auto'
                raise PydanticCustomError("not_integer", "not a number",
                                          {"expected": _expected_of(types, kind)})
            if _reads_as_number(v):
                raise PydanticCustomError("quoted_number", "a number in quotes",
                                          {"expected": _expected_of(types, kind)})
        return v


def _reads_as_number(text: str) -> bool:
    """Whether pydantic's lax mode would take `text` for a number ('5', ' 0.2 ', '1e3')."""
    try:
        float(text)
    except ValueError:
        return False
    return True


def _expected_of(types: set, kind: str) -> str:
    """`an integer`, or `an integer or 'auto'` for a key that takes a literal too."""
    return " or ".join([_EXPECTED[kind], *(repr(t) for t in types if not isinstance(t, type))])


def _types(annotation: Any) -> set:
    """The plain types an annotation admits (`int | None` -> {int, NoneType})."""
    args = typing.get_args(annotation)
    return set().union(*map(_types, args)) if args else {annotation}


SEED_MAX = 2 ** 32 - 1      # numpy's and scikit-learn's seeds: 0 .. 2**32 - 1


MAX_STUDY_NAME = 400


def check_study_name(v: str) -> str:
    """A study's name, or a ValueError saying what is wrong with it."""
    # The name is shown in tables, paths and the MLflow UI, and typed to resume.
    if not v.strip():
        raise ValueError("a blank name; give the study a name")
    if v != v.strip():
        # kept, the spaces had to be quoted to resume it, and look like none in tables
        raise ValueError(f"a name cannot start or end with spaces; use {v.strip()!r}")
    if any(not c.isprintable() for c in v):
        raise ValueError("a name cannot hold control characters (a newline, a tab, ...)")
    if len(v) > MAX_STUDY_NAME:
        # MLflow refuses an experiment name past 500, once the study had begun.
        raise ValueError(f"at most {MAX_STUDY_NAME} characters (the MLflow experiment's "
                         "name, with room for a rerun's suffix)")
    return v


class DataConfig(_Strict):
    name: str = "digits"
    val_fraction: float = 0.2
    test_fraction: float = 0.2
    split_seed: int = Field(default=0, ge=0, le=SEED_MAX)
    options: dict[str, Any] = Field(default_factory=dict)   # dataset-specific, e.g. {length: 50}


class Objective(_Strict):
    """A metric and its direction; the direction has no default: a metric named
    without one (`{metric: val_loss}`) would be maximized, a loss too. A direction
    against the metric (val_loss maximized) is refused: see natural_direction."""

    metric: str
    direction: Literal["maximize", "minimize"]


class PrunerConfig(_Strict):
    """`pruner: asha` or `pruner: {name: asha, min_resource: 1, reduction_factor: 4}`.
    Unset settings take the pruner's defaults (search.strategies.PRUNERS)."""

    name: str = "none"
    min_resource: int | None = Field(default=None, ge=1)      # asha, hyperband
    reduction_factor: int | None = Field(default=None, ge=2)  # asha, hyperband
    startup_trials: int | None = Field(default=None, ge=0)    # median
    warmup_epochs: int | None = Field(default=None, ge=0)     # median


DEFAULT_TRIALS = 20
# A study's trials and a trial's epochs, at most: 10**20 passed, and ran (or waited
# out) a budget no study has. README's config section says these.
MAX_TRIALS = 1_000_000
MAX_EPOCHS = 1_000_000


class SearchConfig(_Strict):
    strategy: str = "tpe"
    # None: the grid size (grid), else 20
    trials: int | None = Field(default=None, ge=1, le=MAX_TRIALS)
    seed: int = Field(default=0, ge=0, le=SEED_MAX)
    objective: Objective | list[Objective] = Objective(metric="val_accuracy",
                                                       direction="maximize")
    pruner: PrunerConfig = PrunerConfig()
    grid_points: int = Field(default=4, ge=2)
    enqueue: list[dict[str, Any]] = Field(default_factory=list)   # parameter sets tried first
    warm_start: str | None = None       # a finished study in the same storage to learn from

    @field_validator("warm_start")
    @classmethod
    def _warm_start_named(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():     # `--warm-start ""` was ignored
            raise ValueError("a blank name; give the study to learn from, or leave it out")
        return v

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_name(cls, v: Any) -> Any:
        # `pruner: asha`; `pruner:` left empty (null) is no pruner, as leaving it out is
        return {"name": v} if isinstance(v, str) else {"name": "none"} if v is None else v
    # Ask and tell in synchronous batches of resources.parallel, told in trial order,
    # so a parallel study samples the same parameters whatever order trials finish in.
    deterministic: bool = False
    # On resume, trials an interruption failed (a crash left them RUNNING, or a stop
    # failed them) are left failed, or also retried, once, with the same parameters
    # (as new trials).
    on_interrupt: Literal["fail", "retry"] = "fail"

    @property
    def objectives(self) -> list[Objective]:
        return self.objective if isinstance(self.objective, list) else [self.objective]


YEAR_S = 365 * 24 * 3600
RAY_RESOURCE_UNIT = 0.0001      # the least share of a CPU or GPU Ray schedules


class ResourcesConfig(_Strict):
    executor: Literal["serial", "ray"] = "ray"
    parallel: int | Literal["auto"] = 1          # trials at once; auto fills the Ray cluster
    cpus_per_trial: float = Field(default=1, gt=0, allow_inf_nan=False)
    gpus_per_trial: float = Field(default=0, ge=0, allow_inf_nan=False)   # fractions: packed
    address: str | None = None                   # a Ray cluster to join; None: a local one
    # Re-runs of a trial whose worker died; bounded (Ray takes a C int, and a trial
    # whose worker dies a thousand times has a cause to fix, not to wait out).
    max_retries: int = Field(default=1, ge=0, le=1000)
    # Seconds per attempt; a year at most (Ray's wait takes no infinite timeout: no
    # limit is null, the default).
    trial_timeout: float | None = Field(default=None, gt=0, le=YEAR_S, allow_inf_nan=False)

    @field_validator("parallel")
    @classmethod
    def _positive(cls, v: int | str) -> int | str:
        if isinstance(v, int) and v < 1:
            raise ValueError("must be >= 1 or 'auto'")
        return v

    @field_validator("cpus_per_trial", "gpus_per_trial")
    @classmethod
    def _ray_unit(cls, v: float, info: ValidationInfo) -> float:
        # Ray counts resources in ten-thousandths: a smaller share crashed `run` in a
        # traceback of Ray's, after `validate` said ok
        if 0 < v < RAY_RESOURCE_UNIT:
            least = "0 or at least" if info.field_name == "gpus_per_trial" else "at least"
            raise ValueError(f"must be {least} {RAY_RESOURCE_UNIT} (Ray counts CPUs and GPUs "
                             f"in ten-thousandths)")
        return v

    @field_validator("address")
    @classmethod
    def _ray_address(cls, v: str | None) -> str | None:
        # local: a private local instance, as null (resume's way to leave the study's)
        return None if v is None or v == "local" else ray_address(v)


_HOST_PORT = re.compile(r"(ray://)?(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9_.-]+):(\d+)")


def ray_address(text: str) -> str:
    """A Ray cluster's address as Ray takes it: HOST:PORT (the head node's GCS),
    ray://HOST:PORT (Ray Client), or auto (the cluster `ray start` runs on this
    machine); a ValueError says what else was given, before anything connects."""
    if text == "auto":
        return text
    found = _HOST_PORT.fullmatch(text)
    if found and 1 <= int(found[3]) <= 65535:
        return text
    why = (f"; port {found[3]} is out of range (1-65535)" if found else
           "; a URL's scheme other than ray:// is not one" if "://" in text else
           "; no port" if ":" not in text else "")
    raise ValueError(f"expected HOST:PORT (the head node's GCS address, e.g. 10.0.0.5:6379), "
                     f"ray://HOST:PORT, auto or local{why}")


def default_tracking_uri() -> str:
    # As every MLflow tool takes it: the environment's tracking server, else a file here.
    return os.environ.get("MLFLOW_TRACKING_URI") or "sqlite:///mlflow.db"


class TrackingConfig(_Strict):
    uri: str = Field(default_factory=default_tracking_uri)     # MLflow tracking URI
    storage: str = "sqlite:///optuna.db"    # Optuna storage URL


class StudyConfig(_Strict):
    study: str      # check_study_name: not blank (`study: ""` said pydantic's words)
    description: str = ""
    data: DataConfig = DataConfig()
    model: str
    params: dict[str, Any] = Field(default_factory=dict)
    space: dict[str, Any] = Field(default_factory=dict)
    search: SearchConfig = SearchConfig()
    resources: ResourcesConfig = ResourcesConfig()
    tracking: TrackingConfig = TrackingConfig()

    @field_validator("data", mode="before")
    @classmethod
    def _data_name(cls, v: Any) -> Any:
        return {"name": v} if isinstance(v, str) else v     # `data: digits`, as `pruner: asha`

    @field_validator("study", mode="before")
    @classmethod
    def _named(cls, v: Any) -> Any:
        if v is None:       # `study:` left empty, `--set study=`
            raise ValueError("a blank name; give the study a name")
        return v

    @field_validator("study")
    @classmethod
    def _printable(cls, v: str) -> str:
        return check_study_name(v)

    def snapshot(self) -> dict[str, Any]:
        """The config as stored with the study (Optuna) and its parent run (MLflow):
        the stores' URLs without their passwords, which anyone reading the runs
        would otherwise see. Commands that read a snapshot back are given the
        storage URL anyway (to open the study); see `check_unmasked`."""
        out = self.model_dump(mode="json")
        out["tracking"] = {k: without_password(v) for k, v in out["tracking"].items()}
        return out

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.snapshot(), sort_keys=False)


MASK = "***"


def without_password(url: str) -> str:
    """`url` with the password of its user info replaced by ***, for what is printed
    or stored: postgresql://user:***@host/db."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    userinfo, host = parts.netloc.rsplit("@", 1)
    return urlunsplit(parts._replace(netloc=f"{userinfo.split(':', 1)[0]}:{MASK}@{host}"))


def check_unmasked(cfg: StudyConfig) -> None:
    """A config read back from a snapshot names its stores without passwords: the
    command must have been given the real URL."""
    for key, option in (("storage", "--storage"), ("uri", "--tracking-uri")):
        url = getattr(cfg.tracking, key)
        parts = urlsplit(url)
        if parts.password == MASK:
            raise UserError(f"tracking.{key}: the study stored {url} without its password; "
                            f"pass {option} with it (or leave it out of the URL: "
                            "PGPASSWORD / ~/.pgpass, MLFLOW_TRACKING_PASSWORD)")


# ---------------------------------------------------------------- loading

class ConfigLoader(yaml.SafeLoader):
    """YAML as a study config is read: `1e-4` is a float (YAML 1.1, PyYAML's, wants
    `1.0e-4` and reads `1e-4` as a string, which `params` then refused), and a key
    given twice in one mapping is an error rather than the last one silently
    winning (a key that overrides one merged in with `<<` is not given twice)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict:
        seen: set = set()
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue        # `<<: *base`: its keys are the base's, which these override
            key = self.construct_object(key_node, deep=deep)
            if not isinstance(key, (str, int, float, bool)):
                continue        # a list or mapping as a key: refused below, as unhashable
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"key '{key}' appears twice in one mapping", key_node.start_mark)
            seen.add(key)
        return super().construct_mapping(node, deep=deep)


ConfigLoader.add_implicit_resolver(
    "tag:yaml.org,2002:float",
    re.compile(r"""^(?:[-+]?(?:[0-9][0-9_]*)\.[0-9_]*(?:[eE][-+]?[0-9]+)?
                  |[-+]?(?:[0-9][0-9_]*)(?:[eE][-+]?[0-9]+)
                  |\.[0-9_]+(?:[eE][-+]?[0-9]+)?
                  |[-+]?\.(?:inf|Inf|INF)
                  |\.(?:nan|NaN|NAN))$""", re.X),
    list("-+0123456789."))


def load_yaml(text: str) -> Any:
    """The YAML document in `text`; yaml.YAMLError when it is malformed, also when it
    nests too deeply to read (PyYAML recurses once per level)."""
    try:
        loaded = yaml.load(text, Loader=ConfigLoader)  # noqa: S506 - a SafeLoader
    except RecursionError:
        raise yaml.YAMLError("nested too deeply") from None
    _check_acyclic(loaded, set(), set())
    return loaded


def _check_acyclic(value: Any, inside: set[int], seen: set[int]) -> None:
    """An alias inside its own anchor (`space: &s {x: *s}`) loads as a value that
    holds itself: nesting without end, which every later step recursed into. A
    value met before through another alias is not walked again."""
    if not isinstance(value, (dict, list)) or id(value) in seen:
        return
    if id(value) in inside:
        raise yaml.YAMLError("an alias refers to the anchor it is inside (&name ... *name), "
                             "which nests without end")
    inside.add(id(value))
    for item in value.values() if isinstance(value, dict) else value:
        _check_acyclic(item, inside, seen)
    inside.discard(id(value))
    seen.add(id(value))


# A study config is a few kilobytes; PyYAML reads about a megabyte a second, so a
# 50 MB file (a data file given by mistake) took 40 s to be refused, or accepted.
MAX_CONFIG_BYTES = 10_000_000


def read_yaml(path: str | Path) -> dict[str, Any]:
    p = Path(path)
    if p.is_dir():
        raise UserError(f"{path}: a directory; give a study config file (YAML)")
    if not p.exists():
        stdin = "; to read it from standard input, give /dev/stdin" if str(path) == "-" else ""
        raise UserError(f"{path}: no such study config file{stdin}")
    too_large = f"a study config is at most {MAX_CONFIG_BYTES / 1e6:g} MB (is it the right file?)"
    if p.is_file():
        size = p.stat().st_size         # before reading: refused at once, not in 40 s
        if size > MAX_CONFIG_BYTES:
            raise UserError(f"{path}: {size / 1e6:.1f} MB; {too_large}")
    try:
        # A pipe too (`run <(envsubst < study.yaml)`), read up to the most a config
        # holds: a device such as /dev/zero never ends.
        with p.open("rb") as f:
            data = f.read(MAX_CONFIG_BYTES + 1)
        if len(data) > MAX_CONFIG_BYTES:
            raise UserError(f"{path}: more than {MAX_CONFIG_BYTES / 1e6:g} MB; {too_large}")
        raw = load_yaml(data.decode("utf-8"))
    except UnicodeDecodeError:
        raise UserError(f"{path}: not a text file; a study config is YAML (UTF-8)") from None
    except OSError as e:
        raise UserError(f"{path}: cannot read it: {e.strerror or e}") from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" (line {mark.line + 1}, column {mark.column + 1})" if mark else ""
        problem = getattr(e, "problem", None) or str(e).splitlines()[0]
        if "'\\t'" in problem:     # PyYAML: found character '\t' that cannot start any token
            problem += "; YAML takes spaces, not tabs, to indent (and before a # comment)"
        raise UserError(f"{path}: malformed YAML{where}: {problem}") from None
    if raw is None:
        what = "the file is empty" if not data.strip() else "the file holds no settings"
        raise UserError(f"{path}: {what}; a study config is a YAML mapping "
                        "(see studies/quickstart.yaml)")
    if not isinstance(raw, dict):
        kind = {list: "a list", str: "text", bool: "true or false"}.get(type(raw), "a number")
        raise UserError(f"{path}: a study config must be a YAML mapping, got {kind}")
    return raw


def apply_overrides(raw: Mapping[str, Any], sets: Sequence[str] = (),
                    **named: Any) -> dict[str, Any]:
    """`--set a.b=VALUE` (VALUE parsed as YAML) and named options, e.g. trials=10."""
    out = copy.deepcopy(dict(raw))
    pairs: list[tuple[str, Any]] = []
    for item in sets:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise UserError(f"--set {item!r}: expected KEY=VALUE, e.g. params.epochs=5")
        try:
            pairs.append((key.strip(), load_yaml(value)))
        except yaml.YAMLError:
            raise UserError(f"--set {key}: value {value!r} is not valid YAML; quote it as YAML "
                            f"text, and the whole for the shell: --set \"{key}='{value}'\"") \
                from None
    pairs += [(k, v) for k, v in named.items() if v is not None]
    for key, value in pairs:
        _set_path(out, key, value)
    return out


NAMED_OVERRIDES = {
    "trials": "search.trials", "strategy": "search.strategy", "seed": "search.seed",
    "tracking_uri": "tracking.uri", "storage": "tracking.storage",
    "executor": "resources.executor", "parallel": "resources.parallel",
    "warm_start": "search.warm_start",
    "ray_address": "resources.address",
}


# Keys whose value may be a name alone (`data: digits`, `pruner: asha`): the mapping's `name`
_SHORTHANDS = {("data",), ("search", "pruner")}


def _set_path(tree: dict[str, Any], dotted: str, value: Any) -> None:
    """Set `a.b.c` in the config tree: a list's entry by its index (`search.objective.1.
    direction`), and inside a name given alone (`data: digits`) as in its mapping."""
    dotted = NAMED_OVERRIDES.get(dotted, dotted)
    parts = dotted.split(".")
    node: Any = tree
    for i, part in enumerate(parts):
        where = ".".join(parts[:i + 1])
        if isinstance(node, list):
            if not part.isdigit() or int(part) >= len(node):
                raise UserError(f"--set {dotted}: {'.'.join(parts[:i])} is a list of "
                                f"{len(node)}; give an index from 0 to {len(node) - 1} "
                                f"({'.'.join(parts[:i])}.0...), or set the whole list")
            part = int(part)
        if i == len(parts) - 1:
            node[part] = value
            return
        child = node[part] if isinstance(node, list) else node.get(part)
        if child is None:
            child = node[part] = {}
        elif isinstance(child, str) and tuple(parts[:i + 1]) in _SHORTHANDS:
            child = node[part] = {"name": child}        # `data: digits`: {name: digits}
        if not isinstance(child, (dict, list)):
            raise UserError(f"--set {dotted}: {where} is not a mapping")
        node = child


def load_config(path: str | Path, sets: Sequence[str] = (), **named: Any) -> StudyConfig:
    """Read, override and fully validate a study config. Touches no store."""
    raw = apply_overrides(read_yaml(path), sets, **named)
    cfg = parse_config(raw)
    _check_beside_config(raw, Path(path))
    check_semantics(cfg)
    return cfg


def _check_beside_config(raw: Mapping[str, Any], path: Path) -> None:
    """A relative file the config names (its model's, its data's) that is not in the
    directory the command runs in, but is beside the config: run from elsewhere,
    it was "no such file" with no hint why."""
    here, config_dir = Path.cwd().resolve(), path.resolve().parent
    if here == config_dir:
        return
    named = []
    model = raw.get("model")
    if isinstance(model, str) and own_file(model):
        named.append(("model", own_file(model)))
    data = raw.get("data")
    options = data.get("options") if isinstance(data, Mapping) else None
    if isinstance(options, Mapping):
        named += [(f"data.options.{k}", options[k]) for k in PATH_OPTIONS
                  if isinstance(options.get(k), str) and options[k]]
    for key, name in named:
        file = Path(name).expanduser()
        if file.is_absolute() or file.exists() or not (config_dir / file).exists():
            continue
        raise UserError(f"{key}: {name}: not in {here}, where relative paths are read from; "
                        f"it is beside the config, at {config_dir / file}: run from "
                        f"{config_dir}, or write that path")


def parse_config(raw: Mapping[str, Any]) -> StudyConfig:
    raw = with_default_space(raw)
    try:
        cfg = StudyConfig.model_validate(raw)
    except ValidationError as e:
        raise UserError(_one_line(e)) from None
    check_store_urls(cfg.tracking)         # as written: its errors quote what the user wrote
    return with_trial_budget(with_absolute_paths(cfg))


def check_store_urls(tracking: TrackingConfig) -> None:
    """Store URLs that would fail once a store was made, checked before either is
    opened: the Optuna storage is a database URL; the MLflow store is not a bare
    file name, nor a file store MLflow 3 refuses; and they are two databases (one
    SQLite file given as both was made an MLflow store, then refused by Optuna)."""
    _check_sqlite_slashes(tracking.uri, "tracking.uri")
    check_storage_url(tracking.storage)
    check_tracking_uri(tracking.uri)
    for url, key, default in ((tracking.uri, "tracking.uri", "mlflow.db"),
                              (tracking.storage, "tracking.storage", "optuna.db")):
        match = _SQLITE.fullmatch(url)
        if match and (match[2] == "//" and not match[3] or match[3].lstrip("/") == ":memory:"):
            raise UserError(f"{key}: {url!r} is an in-memory SQLite database, gone when the "
                            f"command ends with all it holds; name a file: sqlite:///{default}")
    uri, storage = (u.split("?", 1)[0] for u in (tracking.uri, tracking.storage))
    if uri.startswith("sqlite:///") and storage.startswith("sqlite:///") \
            and _same_file(uri[len("sqlite:///"):], storage[len("sqlite:///"):]):
        raise UserError(f"tracking.storage: the same file as tracking.uri ({uri}); the Optuna "
                        "storage and the MLflow store are two files (by default "
                        "sqlite:///optuna.db and sqlite:///mlflow.db)")


def _same_file(a: str, b: str) -> bool:
    """Two paths to one file: spelled alike once symlinks are followed, or, where it
    is there already, the same file (a hard link)."""
    if os.path.realpath(a) == os.path.realpath(b):
        return True
    try:
        return os.path.samefile(a, b)
    except OSError:         # not there yet: two names, two files
        return False


def check_storage_url(url: str, key: str = "tracking.storage") -> None:
    """An Optuna storage URL that is no database URL, names a database SQLAlchemy has
    no dialect for, or one whose driver is not installed: a one-line error naming
    `key`, before any store is opened (Optuna said only "Failed to import DB access
    module for the specified storage URL", and `validate` said ok)."""
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError, NoSuchModuleError
    _check_sqlite_slashes(url, key)
    try:
        dialect = make_url(url).get_dialect()   # the dialect's class: no driver, no connection
    except NoSuchModuleError:      # an ArgumentError too: first
        scheme = url.partition("://")[0]
        # SQLAlchemy 1.4 dropped `postgres://`, which Heroku and many guides still write.
        hint = "; PostgreSQL's is postgresql://" if scheme.split("+")[0] == "postgres" else ""
        raise UserError(f"{key}: {without_password(url)!r}: no database '{scheme}'{hint}; "
                        "valid: sqlite, postgresql, mysql, mariadb, oracle, mssql") from None
    except ArgumentError:
        hint = f"; for a SQLite file: sqlite:///{url}" if "://" not in url else ""
        raise UserError(f"{key}: {without_password(url)!r} is not a database URL{hint}") from None
    try:
        dialect.import_dbapi()
    except ImportError as e:
        raise UserError(f"{key}: {without_password(url)!r}: {missing_driver(e.name)}") from None


# A database driver's module -> how to install it.
_DRIVERS = {"psycopg": "pip install 'hypersweep[postgres]'",
            "psycopg2": "pip install 'hypersweep[postgres]'",
            "MySQLdb": "pip install mysqlclient (or pymysql, with mysql+pymysql://)",
            "pymysql": "pip install pymysql", "mysql": "pip install mysql-connector-python",
            "pyodbc": "pip install pyodbc", "oracledb": "pip install oracledb",
            "cx_Oracle": "pip install cx_Oracle"}


def missing_driver(module: str | None) -> str:
    """`its database driver (MODULE) is not installed; pip install ...`."""
    how = _DRIVERS.get((module or "").split(".")[0])
    return f"its database driver ({module}) is not installed" + (f"; {how}" if how else "")


_SQLITE = re.compile(r"(sqlite(?:\+\w+)?):(/*)([^?]*)(.*)", re.DOTALL)


def _check_sqlite_slashes(url: str, key: str) -> None:
    """A SQLite URL with other than three slashes before a relative file
    (`sqlite://optuna.db`, `sqlite:/optuna.db`): SQLAlchemy reads the name as a
    host, or not at all, and the error said nothing of the slashes. `sqlite://`
    alone is an in-memory database; four slashes start an absolute path."""
    match = _SQLITE.fullmatch(url)
    if match is None:
        return
    scheme, slashes, path, query = match.groups()
    if len(slashes) >= 3 or (slashes == "//" and not path):
        return
    raise UserError(f"{key}: {url!r} is not a SQLite URL; a SQLite file's URL has three "
                    "slashes before a relative path (four before an absolute one): "
                    f"{scheme}:///{path}{query}")


def check_tracking_uri(uri: str, key: str = "tracking.uri") -> None:
    """An MLflow tracking URI of a scheme MLflow has no store for, or that is a bare
    file name, or a file store MLflow 3 refuses: a one-line error naming `key`."""
    check_tracking_scheme(uri, key)
    local = uri.startswith("file:") or "://" not in uri and not uri.startswith("databricks")
    if local and uri.endswith((".db", ".sqlite", ".sqlite3")):
        raise UserError(f"{key}: {uri!r} is a file name; a SQLite store's URI is "
                        f"sqlite:///{uri.removeprefix('file:')}")
    if local and os.environ.get("MLFLOW_ALLOW_FILE_STORE", "").lower() not in ("true", "1"):
        raise UserError(f"{key}: {uri!r} is an MLflow file store, which MLflow 3 "
                        "refuses unless MLFLOW_ALLOW_FILE_STORE=true is set; a SQLite store "
                        "(sqlite:///mlflow.db, the default) has every feature")


# The schemes of MLflow's own tracking stores (a database's with any "+driver").
_TRACKING_SCHEMES = ("file", "sqlite", "postgresql", "mysql", "mssql", "http", "https",
                     "databricks", "databricks-uc", "uc")
_NO_COLON = re.compile(r"(?P<scheme>[A-Za-z][\w+.-]*)(?P<slashes>//+)(?P<rest>.*)", re.DOTALL)


def check_tracking_scheme(uri: str, key: str = "tracking.uri") -> None:
    """A tracking URI whose scheme lacks its colon (`http//host:5000`: MLflow took
    it for a folder of that name) or is none MLflow knows (`htp://`: MLflow said
    its model registry was unavailable): a one-line error naming `key`."""
    match = _NO_COLON.fullmatch(uri)
    if match and _known_scheme(match["scheme"]):
        scheme, slashes, rest = match["scheme"], match["slashes"], match["rest"]
        meant = (f"{scheme}:///{'/' if len(slashes) >= 4 else ''}{rest}"
                 if scheme.split("+")[0].lower() == "sqlite" else f"{scheme}://{rest}")
        raise UserError(f"{key}: no colon after the scheme {scheme!r}; meant "
                        f"{without_password(meant)}?")
    scheme = urlsplit(uri).scheme if ":" in uri else ""
    if scheme and not _known_scheme(scheme):
        raise UserError(f"{key}: {without_password(uri)!r}: MLflow has no store of scheme "
                        f"'{scheme}'; valid: sqlite:///FILE, postgresql://, mysql://, "
                        "mssql://, http://HOST:PORT, https://HOST:PORT, databricks, file:DIR")


def _known_scheme(scheme: str) -> bool:
    """MLflow's own, or a tracking-store plugin's (the entry points MLflow loads,
    group mlflow.tracking_store: looked up only for another scheme, as reading
    them takes a tenth of a second)."""
    scheme = scheme.split("+")[0].lower()
    if scheme in _TRACKING_SCHEMES:
        return True
    from importlib.metadata import entry_points
    return scheme in {ep.name.lower() for ep in entry_points(group="mlflow.tracking_store")}


# Dataset options that name a file or a directory (models/data.py, models/image_files.py).
PATH_OPTIONS = ("path", "root")


def with_absolute_paths(cfg: StudyConfig) -> StudyConfig:
    """Relative files made absolute, against the directory the command runs in: the
    SQLite (or file) stores and the data files. The config is stored with the
    study, and `resume`, `rerun`, `final` and `best` read it back from wherever
    they run: a relative `sqlite:///mlflow.db` there would open (create) another
    MLflow store, and a second parent run in it."""
    tracking = cfg.tracking.model_copy(update={"uri": absolute_url(cfg.tracking.uri),
                                               "storage": absolute_url(cfg.tracking.storage)})
    options = {k: str(_absolute(v)) if k in PATH_OPTIONS
               and isinstance(v, str) and v else v for k, v in cfg.data.options.items()}
    model = cfg.model
    file = own_file(model)
    if file is not None:        # a builder of the study's own, FILE.py:FUNCTION
        model = f"{_absolute(file)}:{model.rpartition(':')[2]}"
    return cfg.model_copy(update={"tracking": tracking, "model": model,
                                  "data": cfg.data.model_copy(update={"options": options})})


def absolute_url(url: str) -> str:
    """A store URL whose file is named relative to the current directory, with that
    file's absolute path instead: `sqlite:///runs/x.db` -> `sqlite:////home/me/runs/x.db`
    (any sqlite driver, its query kept); `file:mlruns`, `./mlruns` -> `file:///...`.
    Anything else (absolute paths, in-memory SQLite, servers, `databricks`) is
    returned as it is."""
    scheme, sep, rest = url.partition("://")
    if sep and scheme.split("+")[0] == "sqlite":
        path, q, query = rest.partition("?")
        relative = path[1:]          # after the third slash; a fourth starts an absolute path
        if path.startswith("/") and relative and not relative.startswith("/") \
                and relative != ":memory:" and not relative.startswith("file:"):
            return f"{scheme}:///{_absolute(relative).as_posix()}{q}{query}"
        return url
    if url.startswith("file:") and not url.startswith("file:/"):
        return _absolute(url[len("file:"):]).as_uri()
    if not sep and url.startswith((".", "~")):      # a local path, as MLflow takes one
        return _absolute(url).as_uri()
    return url


def _absolute(path: str) -> Path:
    """The file's absolute path, `..` and symbolic links resolved: the name stored
    is the file opened (`runs/../data/x` would be stored as written otherwise)."""
    return Path(path).expanduser().resolve()


def with_trial_budget(cfg: StudyConfig) -> StudyConfig:
    """Resolve `search.trials`: grid search runs its enqueued points and its grid,
    and no more (a larger budget stops when the grid is exhausted)."""
    s = cfg.search
    if s.strategy != "grid":
        trials = s.trials or DEFAULT_TRIALS
    else:
        from hypersweep.spaces import grid_size, on_grid, parse_space

        from hypersweep.search.strategies import SHUFFLED_GRID

        space = parse_space(cfg.space, key="space")
        points = grid_size(space, s.grid_points)
        if s.trials is None and points > SHUFFLED_GRID:
            raise UserError(f"search.trials: the grid has {points:,} points ({s.grid_points} per "
                            "continuous range, search.grid_points); set search.trials to run a "
                            "uniform sample of them, or use fewer grid points")
        # An enqueued point of the grid is run once, first.
        size = points + sum(not on_grid(space, s.grid_points, p) for p in s.enqueue)
        trials = min(s.trials or size, size)
    return cfg.model_copy(update={"search": s.model_copy(update={"trials": trials})})


def with_default_space(raw: Mapping[str, Any]) -> Mapping[str, Any]:
    """No `space:` means the builder's default space, less the names fixed in params
    and those the fixed params leave unused (`arch: dcgan` leaves the MLP's `width`).
    The resolved space is what gets validated, stored and rerun."""
    if "space" in raw or not isinstance(raw.get("model"), str):
        return raw
    from hypersweep.models.train import used_when
    from hypersweep.spaces.defaults import default_space

    fixed = raw.get("params") or {}
    fixed = fixed if isinstance(fixed, dict) else {}
    space = default_space(raw["model"])
    uses = used_when(raw["model"])

    def unused(name: str) -> bool:     # `params.arch: dcgan` leaves width unused
        other, using = uses.get(name, (None, ()))
        return other in fixed and fixed[other] not in using
    return {**raw, "space": {k: v for k, v in space.items()
                             if k not in fixed and not unused(k)}}


def _one_line(err: ValidationError) -> str:
    errors = err.errors()
    # A key that takes one of several types (resources.parallel: an int or 'auto')
    # fails once per type. The deepest failure is in the type the input meant
    # (a mapping with a wrong key inside); failures side by side list the types.
    # Among the deepest, an unknown key comes first: a misspelt one ("metrik") also
    # leaves the key it meant missing, and the did-you-mean says both.
    first = max(errors, key=lambda e: (len(e["loc"]), e["type"] == "extra_forbidden"))
    loc = _readable_loc(first["loc"], unknown_key=first["type"] == "extra_forbidden")
    key = ".".join(loc) or "config"
    if first["type"] == "extra_forbidden":
        valid = _fields_at(loc[:-1])
        close = difflib.get_close_matches(loc[-1], valid, n=1) or [
            v for v in valid if v.lower() == loc[-1].lower()]       # `PARAMS` for `params`
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        if not close and loc[:-1] == ["data"]:     # `data: {name: csv, path: x.csv}`
            hint = f" (a dataset's own option goes under options: data.options.{loc[-1]})"
        return f"{key}: unknown key{hint}; valid: {', '.join(valid)}"
    if first["type"] == "missing":
        values = _literal_values(loc)
        valid = f"; valid: {', '.join(values)}" if values else ""
        metric = (first.get("input") or {}).get("metric") \
            if isinstance(first.get("input"), dict) else None
        better = natural_direction(metric) if loc[-1:] == ["direction"] and \
            isinstance(metric, str) else None
        if better:      # an objective's metric without its direction: which one is better
            valid += f" ({metric} is better {'lower' if better == 'minimize' else 'higher'}: " \
                     f"direction: {better})"
        return f"{key}: required key is missing{valid}"
    given = first.get("input")
    alternatives = [e for e in errors if e["loc"][:-1] == first["loc"][:-1]
                    and _is_type_tag(str(e["loc"][-1]))]
    if len(alternatives) > 1:
        return f"{key}: expected {' or '.join(_expected(e) for e in alternatives)}" \
               f", got {_shown(given)}"
    values = _literal_values(loc) if first["type"] == "literal_error" else []
    if values and isinstance(given, str):
        # As the registries say an unknown name, not "Input should be 'a' or 'b'".
        close = difflib.get_close_matches(given, values, n=1, cutoff=0.5)
        hint = f" (did you mean '{close[0]}'?)" if close else ""
        return f"{key}: unknown value {given!r}{hint}; valid: {', '.join(values)}"
    return f"{key}: {_described(first)}"


def option_error(option: str, err: ValidationError) -> str:
    """A command-line option's value that its type refused, in the words a config's
    errors use: `--trials: expected an integer, got 'abc'`. (typer checks an
    option's type with pydantic, whose words reached the user: "Input should be a
    valid integer, unable to parse string as an integer".)"""
    return f"{option}: {_described(err.errors()[0])}"


def _bound(value: Any) -> str:
    """A range's end as a reader writes it: 31536000 (a year), not 31536000.0."""
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return f"{value} (a year, in seconds)" if value == YEAR_S else str(value)


def _described(error: Mapping[str, Any]) -> str:
    """What is wrong with a value, in the product's words (pydantic's name its own
    classes and say "Input should be"), with the value given."""
    kind, given, ctx = error["type"], error.get("input"), error.get("ctx") or {}
    got = f", got {_shown(given)}"
    if kind == "quoted_number":     # `trials: "5"`: see _Strict
        return f"expected {ctx['expected']}, got text {_shown(given)}"
    if kind == "not_integer":       # `trials: 2.0`
        return f"expected {ctx['expected']}{got}"
    if kind in _EXPECTED:           # a wrong type
        return f"expected {_EXPECTED[kind]}{got}"
    if kind in _BOUNDS:             # in the words the models' own checks use
        return f"must be {_BOUNDS[kind]} {_bound(next(iter(ctx.values())))}{got}"
    if kind == "string_too_short":
        least = ctx.get("min_length", 1)
        return "must not be empty" if least <= 1 else f"must be at least {least} characters{got}"
    if kind == "string_too_long":
        return f"must be at most {ctx.get('max_length')} characters, got {len(given)}"
    if kind in ("too_short", "too_long"):
        bound = ("at least", ctx.get("min_length")) if kind == "too_short" else \
            ("at most", ctx.get("max_length"))
        items = "item" if bound[1] == 1 else "items"
        return f"must hold {bound[0]} {bound[1]} {items}, got {ctx.get('actual_length')}"
    if kind == "finite_number":
        return f"must be a finite number{got}"
    if kind == "multiple_of":
        return f"must be a multiple of {ctx.get('multiple_of')}{got}"
    if kind == "literal_error":
        return f"expected {ctx.get('expected')}{got}"
    msg = error["msg"].removeprefix("Value error, ").removeprefix("Assertion failed, ")
    if msg.startswith("Input should be "):      # a type this file names no words for
        msg = "expected " + msg.removeprefix("Input should be ").replace("a valid ", "a ", 1)
    return f"{msg}{got}"


def _shown(given: Any) -> str:
    """A value as an error quotes it: YAML's true, not Python's True; a long one cut."""
    shown = yaml_shown(given)
    if len(shown) > 80:     # one line to read, not a 600-character name
        shown = f"{shown[:60]}... ({len(given) if isinstance(given, str) else len(shown)} " \
                f"characters)"
    return shown


_EXPECTED = {"int_parsing": "an integer", "int_type": "an integer", "int_from_float": "an integer",
             "float_parsing": "a number", "float_type": "a number", "string_type": "a string",
             "bool_parsing": "true or false", "bool_type": "true or false",
             "model_type": "a mapping", "dict_type": "a mapping", "list_type": "a list",
             "tuple_type": "a list", "model_attributes_type": "a mapping"}


_BOUNDS = {"greater_than_equal": ">=", "greater_than": ">", "less_than_equal": "<=",
           "less_than": "<"}


def _expected(error: Mapping[str, Any]) -> str:
    """What one type of a key that takes several wanted, in a few words."""
    if error["type"] == "literal_error":
        return error["ctx"]["expected"]
    return _EXPECTED.get(error["type"], error["msg"][:1].lower() + error["msg"][1:])


def _readable_loc(loc: tuple, unknown_key: bool = False) -> list[str]:
    """Keep field names and list indices; drop the union-member tags pydantic adds.
    The last part of an unknown key's loc is the key as typed (`Trials`, `int`),
    whatever it looks like."""
    out: list[str] = []
    model: type[BaseModel] | None = StudyConfig
    for i, part in enumerate(loc):
        if unknown_key and i == len(loc) - 1:
            out.append(str(part))
        elif isinstance(part, int):
            out[-1:] = [f"{out[-1]}[{part}]"] if out else [str(part)]
        elif model is None:
            if not _is_type_tag(str(part)):     # a type of a key that takes several
                out.append(str(part))           # a key inside a free-form mapping
        elif part in model.model_fields:
            out.append(part)
            model = _submodel(model.model_fields[part].annotation)
        elif not _is_type_tag(part):
            out.append(part)                # an unknown key (extra_forbidden)
    return out


def _is_type_tag(part: str) -> bool:
    return not part.isidentifier() or part[:1].isupper() or part in {"int", "str", "float", "bool"}


def _submodel(ann: Any) -> type[BaseModel] | None:
    if isinstance(ann, type) and issubclass(ann, BaseModel):
        return ann
    for a in getattr(ann, "__args__", ()):
        found = _submodel(a)
        if found is not None:
            return found
    return None


def _literal_values(loc: list[str]) -> list[str]:
    """The values a key takes, when its type lists them (`direction`)."""
    model = _model_at(loc[:-1])
    field = model.model_fields.get(loc[-1]) if model and loc else None
    if field is None or typing.get_origin(field.annotation) is not Literal:
        return []
    return [str(v) for v in typing.get_args(field.annotation)]


def _fields_at(loc: list[str]) -> list[str]:
    model = _model_at(loc)
    return list(model.model_fields) if model else []


def _model_at(loc: list[str]) -> type[BaseModel] | None:
    """The config section at `loc` (["search", "objective"]), None past a mapping."""
    model: type[BaseModel] | None = StudyConfig
    for part in loc:
        model = _submodel(model.model_fields[part.split("[")[0]].annotation) if model else None
    return model


# ---------------------------------------------------------------- semantics

def check_semantics(cfg: StudyConfig) -> None:
    """Checks that need the registries: builder, dataset, names, types, strategy."""
    # Imported here so that `search.config` stays importable without torch for tooling.
    from hypersweep.models.data import dataset_names
    from hypersweep.models.registry import check_value, get_builder
    from hypersweep.models.train import check_fit, check_space_values, hyperparameters
    from hypersweep.search.strategies import (PRUNERS, SAMPLERS, SINGLE_OBJECTIVE_ONLY,
                                              check_enqueue, check_pruner)
    from hypersweep.spaces import (check_against, lowest_whole_values, parse_space, space_values,
                                   trial_lows, walk)

    get_builder(cfg.model)
    if cfg.data.name not in dataset_names():
        raise unknown("dataset", cfg.data.name, dataset_names(), key="data.name")
    hparams = hyperparameters(cfg.model)
    for name, value in cfg.params.items():
        if name not in hparams:
            raise unknown("hyperparameter", name, hparams, key=f"params.{name}")
        check_value(hparams[name], value, key=f"params.{name}")
    space = parse_space(cfg.space, key="space")
    check_against(space, hparams, key="space")
    check_epochs(cfg.params, space)
    for name, _, where, _ in walk(space):       # branches too: a branch's value would win
        if name in cfg.params:
            raise UserError(f"params.{name}: fixed in params and searched in {where}; keep one")
    if cfg.search.strategy not in SAMPLERS:
        raise unknown("strategy", cfg.search.strategy, SAMPLERS, key="search.strategy")
    if cfg.search.warm_start and cfg.search.strategy == "grid":
        raise UserError("search.warm_start: grid search learns nothing from earlier trials, so "
                        f"it would run the points of '{cfg.search.warm_start}' again; warm-start "
                        "tpe, gp, cmaes, nsga2, random or qmc, or continue that study with "
                        "hypersweep resume")
    if cfg.search.pruner.name not in PRUNERS:
        raise unknown("pruner", cfg.search.pruner.name, PRUNERS, key="search.pruner")
    epochs = fixed_epochs(cfg)
    if epochs is None and "epochs" not in cfg.params:     # searched: bounded by its most
        check_pruner(cfg.search.pruner, most_epochs(space), searched=True)
    else:
        check_pruner(cfg.search.pruner, epochs, by_default="epochs" not in cfg.params)
    check_enqueue(cfg.search.enqueue, space)
    # Loads the dataset (cached, which checks data.options) and tries the model on
    # it; the task the trials will train (the first check's: every trial's values)
    # decides the valid objectives.
    data = cfg.data.model_dump()
    check_space_values(cfg.model, data, cfg.params, space_values(space),
                       functools.partial(lowest_whole_values, space))
    tasks = []
    lows = trial_lows(space)
    for params, searched, keys, alone in fit_checks(cfg.params, space):
        try:
            tasks.append(check_fit(cfg.model, data, params, searched=searched, keys=keys,
                                   lows=lows))
        except UserError:
            if alone is None or _fits(cfg.model, data, *alone, lows):
                raise
            # The branch's condition cannot fit without the values it fixes either:
            # a searched value's error, left to the trials as a choice's is.
    check_objectives(cfg, objective_metrics(tasks[0]), SINGLE_OBJECTIVE_ONLY)


def check_epochs(params: Mapping[str, Any], space: Space) -> None:
    """No trial trains more than MAX_EPOCHS epochs: `params.epochs`, and the
    epochs a space names (a range's ends, a choice, a branch, a fixed value)."""
    from hypersweep.spaces import Conditional, space_values, walk

    named = [("params.epochs", params["epochs"])] if "epochs" in params else []
    named += [(key, v) for name, key, v, _ in space_values(space) if name == "epochs"]
    named += [(key, v) for name, p, key, _ in walk(space)
              if name == "epochs" and isinstance(p, Conditional) for v in p.branches]
    for key, value in named:
        if isinstance(value, (int, float)) and not isinstance(value, bool) \
                and value > MAX_EPOCHS:
            raise UserError(f"{key}: must be <= {MAX_EPOCHS}, got {value}")


def _fits(model: str, data: Mapping[str, Any], params: Mapping[str, Any],
          searched: set[str], lows: Sequence[Mapping[str, int]]) -> bool:
    from hypersweep.models.train import check_fit
    try:
        check_fit(model, data, params, searched=searched, lows=lows)
    except UserError:
        return False
    return True


# (params, searched, keys of the values not from params, and for a branch's check
# the same without the values the branch fixes: (params, searched), else None)
FitCheck = tuple[dict[str, Any], set[str], dict[str, str],
                 tuple[dict[str, Any], set[str]] | None]


def fit_checks(params: Mapping[str, Any], space: Space) -> list[FitCheck]:
    """What check_fit tries the model on: (params, searched, the keys of the values
    not from `params`). First every trial's values: `params` and what the space
    fixes outside its branches (`head: many_to_many`, `{choice: [9]}`). Every trial
    takes those as it takes params, so one that cannot fit the data fails them all;
    counted as searched, check_fit let it pass. Then, for each branch that fixes
    values, every trial of that branch's: those and the values fixed on the way to
    it, with the branch's condition set to it, and fixed there too: every trial
    of the branch has both (`padding: {choice: {valid: {kernel: 9}, ...}}`). An
    error that the condition's value gives without the branch's values too is a
    searched value's, which check_fit leaves to the trials, as it does for a
    choice among values (`alone`: that check)."""
    from hypersweep.spaces import Conditional, fixed_values, param_names, walk

    names, fixed = param_names(space), fixed_values(space)
    top = fixed.pop((), {})
    every = {**params, **{n: v for n, (v, _) in top.items()}}
    checks: list[FitCheck] = [(every, names - set(top), {n: k for n, (_, k) in top.items()},
                               None)]
    branch_keys = {path + ((name, b),): f"{where}.choice.{b}"
                   for name, p, where, path in walk(space) if isinstance(p, Conditional)
                   for b in p.branches}
    for path in sorted(fixed, key=len):     # an outer branch's error first, as its own
        held = {**top, **{n: vk for p, values in fixed.items() if p == path[:len(p)]
                          for n, vk in values.items()}}
        keys = {n: k for n, (_, k) in held.items()}
        conditions = {}
        for i, (name, branch) in enumerate(path):
            if name not in held:            # a conditional of one branch is held
                conditions[name] = branch
                keys[name] = branch_keys[path[:i + 1]]
        checks.append(({**params, **conditions, **{n: v for n, (v, _) in held.items()}},
                       names - set(held) - set(conditions), keys,
                       ({**every, **conditions}, names - set(top) - set(conditions))))
    return checks


def most_epochs(space: Space) -> int | None:
    """The most epochs a trial of `space` trains, where the space searches them
    (a range's high end, a choice's largest; across branches); None where it
    cannot say."""
    from hypersweep.spaces import Categorical, Conditional, Fixed, Int, walk

    most: list[int] = []
    for name, param, _, _ in walk(space):
        if name != "epochs":
            continue
        values = (param.high,) if isinstance(param, Int) else param.values \
            if isinstance(param, Categorical) else (param.value,) if isinstance(param, Fixed) \
            else tuple(param.branches) if isinstance(param, Conditional) else ()
        most += [v for v in values if isinstance(v, int) and not isinstance(v, bool)]
    return max(most) if most else None


def fixed_epochs(cfg: StudyConfig) -> int | None:
    """The epochs every trial trains (at most): `params.epochs`, else, where the space
    does not search it, the training options' default; None where it is searched.
    What bounds the pruners' resources (asha's and hyperband's)."""
    from hypersweep.models.train import hyperparameters
    from hypersweep.spaces import param_names, parse_space

    epochs = cfg.params.get("epochs")
    if epochs is None and "epochs" not in param_names(parse_space(cfg.space)):
        epochs = hyperparameters(cfg.model)["epochs"].default
    return epochs if isinstance(epochs, int) else None


def check_objectives(cfg: StudyConfig, metrics: list[str], single_only: set[str]) -> None:
    objs, listed = cfg.search.objectives, isinstance(cfg.search.objective, list)
    if not objs:
        raise UserError("search.objective: an empty list; give a metric and a direction")
    if "objective" not in cfg.search.model_fields_set and objs[0].metric not in metrics:
        # The default is classification's: say so, rather than blame a key not written.
        loss = "val_loss" if "val_loss" in metrics else metrics[0]
        raise UserError(f"search.objective: not set, and the default ({objs[0].metric}) is not "
                        f"a metric of this model's task; set one, e.g. search.objective: "
                        f"{{metric: {loss}, direction: minimize}}; valid metrics: "
                        f"{', '.join(metrics)}")
    for i, obj in enumerate(objs):
        key = "search.objective" + (f"[{i}]" if listed else "")
        if obj.metric not in metrics:
            raise unknown("metric", obj.metric, metrics, key=f"{key}.metric")
        if obj.metric in [o.metric for o in objs[:i]]:
            raise UserError(f"{key}.metric: '{obj.metric}' is already an objective")
        better = natural_direction(obj.metric)
        if better not in (None, obj.direction):
            raise UserError(f"{key}.direction: {obj.direction}, but a "
                            f"{'lower' if better == 'minimize' else 'higher'} {obj.metric} "
                            f"is better; use direction: {better}")
    ray_only = [k for k in ("address", "trial_timeout") if getattr(cfg.resources, k) is not None]
    if cfg.resources.executor == "serial" and ray_only:
        raise UserError(f"resources.{ray_only[0]}: needs executor: ray; the serial executor "
                        f"runs trials inside this process (for a serial run of a study that "
                        f"sets it: --set resources.{ray_only[0]}=null)")
    if len(objs) > 1 and cfg.search.pruner.name != "none":
        raise UserError("search.pruner: pruning needs a single objective; use pruner: none "
                        "with a list of objectives")
    if len(objs) > 1 and cfg.search.strategy in single_only:
        raise UserError(f"search.strategy: {cfg.search.strategy} optimises a single objective; "
                        f"for a list of objectives use nsga2, tpe, gp, random, qmc or grid")


# Objectives measured in time: their values differ from run to run.
TIMINGS = ("inference_ms",)


def config_notes(cfg: StudyConfig) -> list[str]:
    """What a valid config does that its author may not expect, one line each
    (`validate` and `run` print them)."""
    notes = []
    res = cfg.resources
    if res.executor == "serial":
        # auto: as many as it can run, which is one
        if res.parallel != "auto" and res.parallel > 1:
            notes.append(f"resources.parallel: {res.parallel} applies to the ray executor; "
                         "the serial executor runs one trial at a time")
        if res.gpus_per_trial > 0:
            notes.append(f"resources.gpus_per_trial: {res.gpus_per_trial:g} applies to the ray "
                         "executor; the serial executor trains on the CPU")
        cpus = os.cpu_count() or 1
        if res.cpus_per_trial > cpus:
            notes.append(f"resources.cpus_per_trial: {res.cpus_per_trial:g} CPUs per trial, but "
                         f"this machine has {cpus}; the serial executor trains each trial here, "
                         f"on {cpus} torch threads")
        if res.max_retries != ResourcesConfig.model_fields["max_retries"].default:
            notes.append(f"resources.max_retries: {res.max_retries} applies to the ray "
                         "executor, whose trials run in worker processes; the serial executor "
                         "runs them in this one, which a trial that kills it stops")
    # Not its default (the stored snapshot of a study holds every key): set on purpose.
    grid_default = SearchConfig.model_fields["grid_points"].default
    if cfg.search.grid_points != grid_default and cfg.search.strategy != "grid":
        notes.append(f"search.grid_points: {cfg.search.grid_points} applies to grid search; "
                     f"{cfg.search.strategy} samples each range whole")
    notes += unused_notes(cfg)
    from hypersweep.spaces import Fixed, parse_space, walk
    if all(isinstance(p, Fixed) for _, p, _, _ in walk(parse_space(cfg.space))):
        own = " (a builder of your own has no default space: give one)" if is_own(cfg.model) \
            else ""
        trials = "the one trial trains" if cfg.search.trials == 1 else \
            f"the {cfg.search.trials} trials train"
        notes.append(f"space: nothing is searched; {trials} the same hyperparameters"
                     f"{', each with its own seed' if cfg.search.trials > 1 else ''}{own}")
    notes += _data_notes(cfg)
    from hypersweep.models.train import fit_note
    params, searched, _, _ = fit_checks(cfg.params, parse_space(cfg.space))[0]
    fit = fit_note(cfg.model, cfg.data.model_dump(), params, searched)
    notes += [fit] if fit else []
    timed = [o.metric for o in cfg.search.objectives if o.metric in TIMINGS]
    if timed and cfg.search.strategy not in ("grid", "random", "qmc"):
        notes.append(f"search.objective: {timed[0]} is a timing, which differs from run to "
                     f"run: a rerun of this study samples other parameters once "
                     f"{cfg.search.strategy} learns from it (after its first random trials)")
    return notes


def _data_notes(cfg: StudyConfig) -> list[str]:
    """What the dataset's loader decided that the author may not expect (the task
    `task: auto` took, the inputs a table's columns made)."""
    from hypersweep.models.train import loaded_splits
    return list(loaded_splits(cfg.data.model_dump()).notes)


def unused_notes(cfg: StudyConfig) -> list[str]:
    """A searched hyperparameter that no trial uses: one that only some values of
    another one use (`beta2`: optimizer adam or adamw), where that one never takes
    them (a `sgd` branch, or `params.optimizer: sgd`). It only adds a dimension.
    And a choice of one value, which is not searched at all."""
    from hypersweep.models.train import hyperparameters, used_when
    from hypersweep.spaces import Categorical, Fixed, parse_space, values_beside, walk

    space, uses, notes = parse_space(cfg.space), used_when(cfg.model), []
    defaults = {n: h.default for n, h in hyperparameters(cfg.model).items()}
    for name, param, where, path in walk(space):
        if isinstance(param, Categorical) and len(param.values) == 1:
            notes.append(f"{where}: a choice of one value, {param.values[0]!r}, is the same in "
                         "every trial; it is not searched")
        if isinstance(param, Fixed) or name not in uses:
            continue
        other, using = uses[name]
        values, always = values_beside(space, other, path)
        if values is None:
            continue
        default = ""
        if not always:
            value = cfg.params.get(other, defaults.get(other))
            default = "" if other in cfg.params or values else " (its default)"
            values.add(value)
        if values.isdisjoint(using):
            notes.append(f"{where}: searched, but no trial uses it: {name} matters only with "
                         f"{other} {_either(using)}, and {other} is {_either(values)}{default} "
                         "here")
    # Set in params, where what uses it is fixed to another value: ignored too
    searched = {name for name, *_ in walk(space)}
    for name, value in cfg.params.items():
        if name not in uses or name in searched or uses[name][0] in searched:
            continue
        other, using = uses[name]
        value_of = cfg.params.get(other, defaults.get(other))
        if value_of not in using:
            default = "" if other in cfg.params else " (its default)"
            notes.append(f"params.{name}: {value!r} is not used: {name} matters only with "
                         f"{other} {_either(using)}, and {other} is {value_of}{default} here")
    return notes


def _either(values: Iterable[Any]) -> str:
    shown = sorted(map(str, values))
    return shown[0] if len(shown) == 1 else ", ".join(shown[:-1]) + " or " + shown[-1]


# Metrics that count (a model's trainable parameters): whole numbers, shown and exported
# as integers, not 6760.0 or 6.76e+03, though MLflow and Optuna keep every value a float.
COUNTS = frozenset({"param_count"})


def as_count(metric: str, value: Any) -> Any:
    """`value` as an int when `metric` counts (`COUNTS`) and the value is whole."""
    if metric in COUNTS and isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def natural_direction(metric: str) -> str | None:
    """The direction in which `metric` (val_loss, train_accuracy, ...) gets better,
    or None for what is a cost to trade, not a score (param_count, inference_ms):
    a study may minimize or maximize those."""
    from hypersweep.models.tasks import BETTER

    split, _, name = metric.partition("_")
    return BETTER.get(name) if split in ("train", "val") else None


def objective_metrics(task_name: str) -> list[str]:
    """Metrics a trial of this task reports that can serve as an objective."""
    from hypersweep.models.tasks import get_task

    task = get_task(task_name)
    # Generation scores its samples once per epoch, as validation metrics only.
    train = ["loss", *getattr(task, "train_metric_names", task.metric_names)]
    val = ["loss", *task.metric_names]
    return ([f"train_{m}" for m in train] + [f"val_{m}" for m in val]
            + ["param_count", "inference_ms"])
