"""The dashboard's JSON API: one method per route over a read-only `Store`.

Every endpoint checks its query parameters first (an unknown one is a 400 naming the accepted
ones), so a typo never silently returns the unfiltered answer. Pareto fronts and hypervolume are
computed here so the browser receives small payloads.
"""

from __future__ import annotations

import functools
import math
import re
from datetime import datetime

from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import JSONResponse, PlainTextResponse

from mixnas.dashboard.store import NotFound, Store, finite
from mixnas.pareto import hypervolume_history, normalized, readable_reference, to_loss
from mixnas.storage import TRIAL_STATES


class BadRequest(HTTPException):
    def __init__(self, detail: str):
        super().__init__(400, detail)


# The study page's view state in its URL: axes, colour, scales, hypervolume dimensions.
STUDY_VIEW = ("x", "y", "colour", "xscale", "yscale", "hv")
VIEW_CHOICES = {"xscale": ("linear", "log"), "yscale": ("linear", "log"), "hv": ("all", "xy")}
# The compare page's: axes and which front (of the two axes, or of all shared objectives).
COMPARE_VIEW = ("x", "y", "front")
FRONT_CHOICES = ("xy", "all")


def query(request: Request, *allowed: str) -> dict[str, str]:
    """The request's query parameters; a 400 for any not in `allowed`."""
    unknown = sorted(set(request.query_params) - set(allowed))
    if unknown:
        known = ", ".join(allowed) or "none"
        raise BadRequest(f"unknown query parameter {unknown[0]!r} (accepted: {known})")
    return dict(request.query_params)


def check_ids(params: dict) -> None:
    """404 for a trial number or id no database column can hold (beyond 64 bits)."""
    for key in ("number", "id"):
        if key in params and not 0 <= params[key] < 1 << 63:
            raise HTTPException(404, f"no trial {key} {params[key]}")


def objectives_of(study: dict, names: list[str]) -> list[dict]:
    """The study's objectives called `names`, in that order; a 400 for unknown or repeated."""
    by_name = {o["name"]: o for o in study["objectives"]}
    for name in names:
        if name not in by_name:
            raise BadRequest(
                f"unknown objective {name!r}; study {study['name']!r} has: " + ", ".join(by_name)
            )
    if len(set(names)) != len(names):
        raise BadRequest(f"objectives must differ, got {names}")
    return [by_name[name] for name in names]


def check_view(study: dict, params: dict[str, str]) -> None:
    """A shared view's URL (`?x=state_bytes&xscale=log`) names real objectives and scales."""
    names = [o["name"] for o in study["objectives"]]
    for key in ("x", "y", "colour", "objective"):
        if params.get(key) and params[key] not in names:
            raise BadRequest(f"{key}: unknown objective {params[key]!r}; study "
                             f"{study['name']!r} has: {', '.join(names)}")
    for key, allowed in VIEW_CHOICES.items():
        if key in params and params[key] not in allowed:
            raise BadRequest(f"{key} must be one of {', '.join(allowed)}, got {params[key]!r}")


def axes(study: dict, params: dict[str, str], default: list[str]) -> list[dict]:
    """The objectives named by `?x=&y=`, or `default` when neither is given."""
    if ("x" in params) != ("y" in params):
        raise BadRequest("give both x and y, or neither")
    names = [params["x"], params["y"]] if "x" in params else default
    return objectives_of(study, names)


class Api:
    """The `/api/...` endpoints over one store."""

    def __init__(self, store: Store):
        self.store = store

    def study_of(self, request: Request, summary: bool = False) -> dict:
        try:
            return self.store.study(request.path_params["name"], summary)
        except NotFound as error:
            raise HTTPException(404, str(error)) from error

    def trial_of(self, request: Request) -> dict:
        p = request.path_params
        check_ids(p)
        try:
            if "id" in p:
                return self.store.trial(None, None, trial_id=p["id"])
            return self.store.trial(p["name"], p["number"])
        except NotFound as error:
            raise HTTPException(404, str(error)) from error

    def studies(self, request: Request):
        query(request)
        return JSONResponse({"studies": self.store.studies()})

    def study(self, request: Request):
        query(request)
        return JSONResponse(self.study_of(request, summary=True))

    def trials(self, request: Request):
        params = query(request, "state", "since")
        study = self.study_of(request)
        states = [s for s in params.get("state", "").split(",") if s]
        for state in states:
            if state not in TRIAL_STATES:
                raise BadRequest(f"unknown state {state!r}; states are: {', '.join(TRIAL_STATES)}")
        since = None
        if "since" in params:
            try:
                since = datetime.fromisoformat(params["since"])
            except ValueError as error:
                raise BadRequest(
                    f"since must be the ISO timestamp cursor of an earlier answer, "
                    f"got {params['since']!r}"
                ) from error
        names = [o["name"] for o in study["objectives"]]
        return JSONResponse(self.store.trial_rows(study["id"], names, states, since))

    def pareto(self, request: Request):
        study = self.study_of(request)
        objectives = axes(study, query(request, "x", "y"), [o["name"] for o in study["objectives"]])
        front = self.store.front(study["id"], objectives)
        repeats = self.store.repeats(study["id"])
        return JSONResponse(
            {
                "objectives": objectives,
                "trials": [p.number for p in front],
                "values": [[finite(v) for v in p.values] for p in front],
                # one point per design: the trials that repeat a front design's result
                "repeats": {
                    str(p.number): repeats[p.design][1:] for p in front if p.design in repeats
                },
            }
        )

    def hypervolume(self, request: Request):
        study = self.study_of(request)
        names = [o["name"] for o in study["objectives"]]
        if len(names) < 2:
            raise BadRequest(f"study {study['name']!r} has one objective; hypervolume needs two")
        objectives = axes(study, query(request, "x", "y"), names)  # no x, y: all objectives
        answer = self.store.memo(study["id"], ("hypervolume", *(o["name"] for o in objectives)),
                                 lambda: _hypervolume(self.store, study["id"], objectives))
        return JSONResponse(answer)

    def insight(self, request: Request):
        query(request)
        study = self.study_of(request)
        return JSONResponse(self.store.insight(study["id"], study["objectives"]))

    def compared(self, request: Request, *view: str) -> tuple[dict, dict]:
        """The two studies of `?a=NAME&b=NAME`; a 400 when one is missing, a 404 when unknown.
        `view`: the other parameters the URL may carry (the compare page's axes and front)."""
        params = query(request, "a", "b", *view)
        if not params.get("a") or not params.get("b"):
            raise BadRequest("give two studies: ?a=NAME&b=NAME")
        try:
            return self.store.study(params["a"], False), self.store.study(params["b"], False)
        except NotFound as error:
            raise HTTPException(404, str(error)) from error

    def check_compare_view(self, request: Request) -> None:
        """The compare page's URL (`?a=&b=&x=&y=&front=xy|all`): studies that exist, axes among
        the objectives both studies share, a known front."""
        a, b = self.compared(request, *COMPARE_VIEW)
        params = dict(request.query_params)
        shared = [o["name"] for o in a["objectives"] if o in b["objectives"]]
        for key in ("x", "y"):
            if key in params and params[key] not in shared:
                raise BadRequest(f"{key}: {params[key]!r} is not an objective both studies share "
                                 f"({', '.join(shared) or 'none'})")
        if "front" in params and params["front"] not in FRONT_CHOICES:
            raise BadRequest(f"front must be one of {', '.join(FRONT_CHOICES)}, "
                             f"got {params['front']!r}")

    def compare(self, request: Request):
        a, b = self.compared(request)
        return JSONResponse(self.store.compare(a, b))

    def trial(self, request: Request):
        query(request)
        trial = self.trial_of(request)
        front = self.store.front(trial["study_id"], trial["objectives"])
        # one point per design: a trial that reused a front design's result is on the front too
        trial["on_front"] = trial["state"] == "complete" and any(
            p.number == trial["number"] or (p.design and p.design == trial["arch_hash"])
            for p in front
        )
        del trial["arch_json"]  # the page uses the parsed `arch`
        return JSONResponse(trial)

    def code(self, request: Request):
        params = query(request, "vocab_size", "download")
        trial = self.trial_of(request)
        if not trial["arch_json"]:
            raise HTTPException(404, f"trial {trial['number']} has no architecture")
        vocab_size = trial["vocab_size"]
        if "vocab_size" in params:
            if not re.fullmatch(r"[1-9][0-9]{0,8}", params["vocab_size"]):
                raise BadRequest(
                    f"vocab_size must be a positive integer, not {params['vocab_size']!r}"
                )
            vocab_size = int(params["vocab_size"])
        if vocab_size is None:
            raise BadRequest("the study does not record a vocabulary size; pass ?vocab_size=N")
        if params.get("download", "0") not in ("0", "1"):
            raise BadRequest(f"download must be 0 or 1, got {params['download']!r}")
        try:
            code = generated_code(trial["arch_json"], vocab_size)
        except ImportError as error:
            raise HTTPException(501, f"code export is unavailable: {error}") from error
        except (ValueError, KeyError) as error:
            raise HTTPException(422, f"cannot export trial {trial['number']}: {error}") from error
        headers = {}
        if params.get("download") == "1":
            stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", trial["study"])
            headers["content-disposition"] = (
                f'attachment; filename="{stem}_trial{trial["number"]}.py"'
            )
        return PlainTextResponse(code, media_type="text/x-python", headers=headers)


def _hypervolume(store: Store, study_id: int, objectives: list[dict]) -> dict:
    """The hypervolume history of the study's front over `objectives` (see `Api.hypervolume`)."""
    names = [o["name"] for o in objectives]
    directions = [o["direction"] for o in objectives]
    points = [
        p for p in store.points(study_id, names) if all(math.isfinite(v) for v in p.values)
    ]
    answer = {"objectives": objectives, "reference": None, "ideal": None, "trials": [],
              "hypervolume": [], "normalized": []}
    if points:
        ref = readable_reference([p.values for p in points], directions)
        losses = [to_loss(p.values, directions) for p in points]
        ref_loss = to_loss(ref, directions)
        ideal = [min(column) for column in zip(*losses)]
        history = hypervolume_history(losses, ref_loss)
        answer.update(
            reference=list(ref), ideal=list(to_loss(ideal, directions)),
            trials=[p.number for p in points], hypervolume=history,
            normalized=[normalized(v, ideal, ref_loss) for v in history],
        )
    return answer


@functools.lru_cache(maxsize=256)
def generated_code(arch_json: str, vocab_size: int) -> str:
    """Export's source for an architecture; imported lazily because export needs torch."""
    from mixnas.export import generate_code
    from mixnas.search_space.architecture import Architecture

    return generate_code(Architecture.from_json(arch_json), vocab_size)
